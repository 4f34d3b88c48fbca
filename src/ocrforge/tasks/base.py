"""The small interface through which the engine knows a task (Lightning's module/trainer split, task side)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import Dataset


class Task(ABC):
    """What to compute for one task. The engine calls these; it never looks inside a batch itself.

    A batch is a dict of tensors (and lists) made by ``collate``; a model's output is a dict of tensors.
    """

    name: ClassVar[str]
    data_schema: ClassVar[type]

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg

    @classmethod
    def adopt_from_checkpoint(cls, config: dict, stored: dict) -> None:
        """Copy values a training run derived (class names, charsets) from a checkpoint's config into ``config``."""
        return None

    def remap_state(self, state: dict[str, torch.Tensor], stored: dict | None,
                    model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
        """Adapt weights from a checkpoint trained with config ``stored`` before ``--load-from`` loads them
        (e.g. classifier rows for another dictionary); returns the state and a report, or None if unchanged."""
        return state, None

    # --- building -------------------------------------------------------------------------------------------
    @abstractmethod
    def build_model(self) -> nn.Module: ...

    @abstractmethod
    def build_dataset(self, split: str) -> Dataset | None:
        """The dataset of ``split`` ('train' | 'val' | 'test'), yielding per-sample dicts ready to collate."""

    def collate(self, samples: list[dict]) -> dict:
        return torch.utils.data.default_collate(samples)

    @abstractmethod
    def build_loss(self) -> nn.Module:
        """A module called as ``loss(outputs, batch)`` returning a dict with the total under ``'loss'``."""

    @abstractmethod
    def build_metric(self) -> Any:
        """A torchmetrics.Metric with ``update(outputs, batch)`` and ``compute() -> dict[str, Tensor]``."""

    def default_monitor(self) -> tuple[str, str]:
        """(metric key, 'max' | 'min') used for top-k checkpoints when the config names none."""
        return "val/loss", "min"

    # --- running --------------------------------------------------------------------------------------------
    def forward_train(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        return model(batch["image"])

    def forward_eval(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        return model(batch["image"])

    def rename_metrics(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Metric names as logged (e.g. class indices -> class names)."""
        return metrics

    @abstractmethod
    def predictions(self, outputs: dict[str, torch.Tensor], batch: dict) -> list[dict]:
        """Post-processed, JSON-serialisable predictions, one per sample of the batch."""

    def save_test_artifacts(self, metrics: dict, predictions: list[dict], out_dir: Path,
                            show_dir: Path | None) -> None:
        """Write task pictures (confusion matrix, prediction grids …) after ``ocrforge test``."""
        return None

    # --- inference and export -------------------------------------------------------------------------------
    @abstractmethod
    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 HxWx3 -> float32 CxHxW, exactly as the model saw it in training (numpy only)."""

    @abstractmethod
    def export_module(self, model: nn.Module) -> nn.Module:
        """An inference-only wrapper whose outputs are the ONNX outputs, in ``onnx_output_names`` order."""

    @abstractmethod
    def onnx_output_names(self) -> Sequence[str]: ...

    def onnx_dynamic_axes(self) -> dict[str, dict[int, str]]:
        axes = {"image": {0: "batch"}}
        axes.update({name: {0: "batch"} for name in self.onnx_output_names()})
        return axes

    @abstractmethod
    def onnx_metadata(self) -> dict[str, Any]:
        """Everything a consumer needs besides the graph: preprocessing, class names, output meaning."""
