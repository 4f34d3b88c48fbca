"""The small interface through which the engine knows a task (Lightning's module/trainer split, task side)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import Dataset
from torchvision.transforms import v2

from ..config.schema import LoaderSchema, registry_node, split_data_spec
from ..data.images import mean_std_arrays
from ..errors import ConfigError
from ..registry import TRANSFORMS, component_registry


@dataclass
class DataSchemaBase:
    """The ``data`` fields every task has; a task's schema subclasses it (and may redefine a field's default)."""

    color: str = "RGB"  # channel order the model reads: RGB, or BGR (models imported from PaddleOCR)
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    train: dict[str, Any] | None = registry_node("dataset", extra=LoaderSchema)
    val: dict[str, Any] | None = registry_node("dataset", extra=LoaderSchema)
    test: dict[str, Any] | None = registry_node("dataset", extra=LoaderSchema)


class TaskSamples(Dataset):
    """Raw samples -> model-ready samples in DataLoader workers; subclasses define ``__getitem__``."""

    def __init__(self, raw: Dataset, task: Task, augment: v2.Transform | None) -> None:
        self.raw, self.task, self.augment = raw, task, augment

    def __len__(self) -> int:
        return len(self.raw)  # type: ignore[arg-type]

    def label_lengths(self) -> np.ndarray:
        """Every sample's label length, known before loading (for ``bucket_by_length``)."""
        lengths = getattr(self.raw, "label_lengths", None)
        if lengths is None:
            raise ConfigError(f"bucket_by_length: {type(self.raw).__name__} cannot tell its label lengths before "
                              f"loading (recognition label files and LMDB can)")
        return np.asarray(lengths(), dtype=np.int64)

    def sample_info(self, index: int) -> dict[str, Any]:
        """What is known of a sample without loading it (``path``, ground truth), from the raw dataset's own
        ``sample_info``; listed for a sample that could not be loaded."""
        info = getattr(self.raw, "sample_info", None)
        return info(index) if info is not None else {}

    def augmented(self, image: np.ndarray) -> np.ndarray:
        if self.augment is None:
            return image
        return self.augment(torch.from_numpy(image).permute(2, 0, 1)).permute(1, 2, 0).numpy()


class Task(ABC):
    """What to compute for one task. The engine calls these; it never looks inside a batch itself.

    A batch is a dict of tensors (and lists) made by ``collate``; a model's output is a dict of tensors.
    """

    name: ClassVar[str]
    data_schema: ClassVar[type]
    export_class: ClassVar[type[TaskExport]]
    # The numpy-only module with ``prepare(image, meta)`` and ``decode_outputs(outputs, meta, sizes)`` that runs an
    # exported model (export/runtime.py imports it by this name, read from the source without importing the task).
    inference_module: ClassVar[str]

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self._raw: dict[str, Dataset] = {}
        # Plain floats for per-sample code: reading OmegaConf nodes in a DataLoader worker's hot loop is slow.
        self.mean = tuple(float(v) for v in cfg.data.mean)
        self.std = tuple(float(v) for v in cfg.data.std)
        self._mean, self._std = (torch.from_numpy(a) for a in mean_std_arrays(self.mean, self.std))
        # Channel order the model reads (batches always carry RGB); PaddleOCR's models read BGR.
        self.color = str(cfg.data.get("color", "RGB"))
        if self.color not in ("RGB", "BGR"):
            raise ConfigError(f"data.color must be RGB or BGR, got {self.color!r}")
        self.channels_last = False  # set with train.channels_last: inputs in the model's NHWC layout

    def injected_dataset_args(self) -> dict[str, Any]:
        """Values the task hands to datasets that declare them in ``config_injected`` (class names, charset)."""
        return {}

    def dataset_defaults(self, split: str) -> dict[str, Any]:
        """Values the task suggests to datasets that name them in ``task_defaults``, where the config sets none
        (the config may still set them, or null them)."""
        return {}

    def split_node(self, split: str) -> dict[str, Any] | None:
        """``data.<split>`` as a plain dict; ``test`` falls back to ``val``."""
        node = self.cfg.data.get(split) or (self.cfg.data.get("val") if split == "test" else None)
        return OmegaConf.to_container(node) if node is not None else None

    def raw_dataset(self, split: str) -> Dataset | None:
        """The split's dataset of raw samples (``{"image", "label", "path"}``), built once."""
        if split not in self._raw:
            node = self.split_node(split)
            if node is None:
                return None
            spec, _ = split_data_spec(node)
            datasets = component_registry(self.name, "dataset")
            dataset_class = datasets.get(spec["type"])
            wanted = getattr(dataset_class, "config_injected", ())
            injected = {k: v for k, v in self.injected_dataset_args().items() if k in wanted}
            defaults = getattr(dataset_class, "task_defaults", ())
            spec = {**{k: v for k, v in self.dataset_defaults(split).items() if k in defaults}, **spec}
            self._raw[split] = self.check_raw_dataset(split, datasets.build(spec, **injected), injected)
        return self._raw[split]

    def check_raw_dataset(self, split: str, dataset: Dataset, injected: dict[str, Any]) -> Dataset:
        """Hook to reject a dataset that cannot match the task's config (e.g. a class count)."""
        return dataset

    def augmentation(self, split: str) -> v2.Transform | None:
        """``data.<split>.transforms`` as one torchvision v2 pipeline (run in DataLoader workers)."""
        node = self.split_node(split)
        specs = split_data_spec(node)[1]["transforms"] if node is not None else []
        return v2.Compose([TRANSFORMS.build(t) for t in specs]) if specs else None

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
    def model_input(self, batch: dict) -> torch.Tensor:
        """The batch's uint8 NCHW images normalised on their device, as ``preprocess`` does in numpy."""
        images = batch["image"]
        if images.dtype != torch.uint8:
            raise TypeError(f"batches carry uint8 images, got {images.dtype}")
        return self.normalise(images)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """NCHW RGB images of values 0-255 (uint8, or float from batched augmentation) normalised on their device."""
        if images.is_cuda and not self._mean.is_pinned():
            # From pinned memory the per-step copy is asynchronous: a pageable one would stall the host each step.
            self._mean, self._std = self._mean.pin_memory(), self._std.pin_memory()
        mean = self._mean.to(images.device, non_blocking=True)
        std = self._std.to(images.device, non_blocking=True)
        if self.color == "BGR":
            images = images.flip(1)
        normalised = (images.float() / 255.0 - mean) / std
        return normalised.contiguous(memory_format=torch.channels_last) if self.channels_last else normalised

    def forward_train(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        return model(self.model_input(batch))

    def forward_eval(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        return model(self.model_input(batch))

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

    def exporter(self) -> TaskExport:
        """What ``export``, ``predict`` and the PP-OCR importer need: preprocessing, the inference wrapper, ONNX
        names, axes and metadata."""
        return self.export_class(self)


class TaskExport(ABC):
    """A task's inference contract, shared by ONNX export and the PyTorch prediction path (``task.exporter()``)."""

    def __init__(self, task: Task) -> None:
        self.task = task

    @abstractmethod
    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 HxWx3 -> float32 CxHxW, exactly as the model saw it in training (numpy only)."""

    @abstractmethod
    def module(self, model: nn.Module) -> nn.Module:
        """An inference-only wrapper whose outputs are the ONNX outputs, in ``output_names`` order."""

    @abstractmethod
    def output_names(self) -> Sequence[str]: ...

    def input_names(self) -> Sequence[str]:
        return ("image",)

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        axes = {name: {0: "batch"} for name in self.input_names()}
        axes.update({name: {0: "batch"} for name in self.output_names()})
        return axes

    @abstractmethod
    def metadata(self) -> dict[str, Any]:
        """Everything a consumer needs besides the graph: preprocessing, class names, output meaning."""

    def extra_metadata(self) -> dict[str, str]:
        """Metadata keys besides ``ocrforge`` that other runtimes read (e.g. RapidOCR's ``character``)."""
        return {}
