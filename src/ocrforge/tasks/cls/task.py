"""Classification task: wires datasets, model, loss, metric, pictures and export together for the engine."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import Dataset

from ...config.schema import LoaderSchema, image_size_field, model_spec, registry_node, split_data_spec
from ...data.collate import chw_tensor
from ...errors import ConfigError
from ...registry import DATASETS, MODELS, TASKS
from ..base import Task, TaskSamples
from . import datasets as _datasets  # noqa: F401  (registers the datasets)
from . import heads as _heads  # noqa: F401  (registers the heads)
from . import loss as _loss  # noqa: F401  (registers the loss)
from . import model as _model  # noqa: F401  (registers the model)
from . import synth as _synth  # noqa: F401  (registers the synthetic dataset)
from .inference import decode, fit, mean_colour, preprocess
from .metric import ClassificationMetric
from .visualize import save_confusion_matrix, save_prediction_grids


@dataclass
class ClsDataSchema:
    image_size: list[int] = image_size_field([64, 64])  # [H, W]
    color: str = "RGB"  # channel order the model reads: RGB, or BGR (models imported from PaddleOCR)
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    # False stretches to image_size, True letterboxes centred; "line": height kept, padded right (PaddleOCR's cls).
    keep_ratio: bool | Literal["line"] = False
    # Class names in index order; discovered from the training dataset when left empty.
    classes: list[str] | None = None
    train: dict[str, Any] | None = registry_node("dataset", extra=LoaderSchema)
    val: dict[str, Any] | None = registry_node("dataset", extra=LoaderSchema)
    test: dict[str, Any] | None = registry_node("dataset", extra=LoaderSchema)


class ClsSamples(TaskSamples):
    """Raw samples -> (augmented) uint8 tensors at the model's input size, in DataLoader workers."""

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.raw[index]
        image = self.augmented(sample["image"])
        fitted = fit(image, self.task.image_size, self.task.keep_ratio, self.task.fill)
        return {"image": chw_tensor(fitted), "label": sample["label"],
                "index": index, "path": sample["path"]}


@TASKS.register("cls")
class ClassificationTask(Task):
    name = "cls"
    data_schema = ClsDataSchema

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__(cfg)
        if not cfg.data.get("classes"):
            cfg.data.classes = self._discover_classes()
        self.classes: list[str] = [str(c) for c in cfg.data.classes]
        self.image_size = tuple(int(v) for v in cfg.data.image_size)
        self.keep_ratio: bool | str = "line" if cfg.data.keep_ratio == "line" else bool(cfg.data.keep_ratio)
        self.fill = mean_colour(self.mean, self.color)

    @classmethod
    def adopt_from_checkpoint(cls, config: dict, stored: dict) -> None:
        if not config["data"].get("classes") and stored.get("data", {}).get("classes"):
            config["data"]["classes"] = stored["data"]["classes"]

    def _discover_classes(self) -> list[str]:
        for split in ("train", "val", "test"):
            if self.cfg.data.get(split):
                spec, _ = split_data_spec(OmegaConf.to_container(self.cfg.data[split]))
                dataset_cls = DATASETS.get(spec.pop("type"))
                return list(dataset_cls.discover_classes(**spec))
        raise ValueError("data.classes is empty and no data split is configured to discover classes from")

    # --- building -------------------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        return MODELS.build(model_spec(OmegaConf.to_container(self.cfg.model)), num_classes=len(self.classes))

    def injected_dataset_args(self) -> dict[str, Any]:
        return {"classes": self.classes}

    def check_raw_dataset(self, split: str, dataset: Dataset, injected: dict[str, Any]) -> Dataset:
        own = getattr(dataset, "classes", None)
        if not injected and own is not None and len(own) != len(self.classes):
            raise ConfigError(f"data.classes has {len(self.classes)} names but data.{split} "
                              f"({type(dataset).__name__}) produces {len(own)} classes: {own}")
        return dataset

    def build_dataset(self, split: str) -> Dataset | None:
        raw = self.raw_dataset(split)
        return ClsSamples(raw, self, self.augmentation(split)) if raw is not None else None

    def build_loss(self) -> nn.Module:
        from ...registry import LOSSES

        spec = OmegaConf.to_container(self.cfg.loss) if self.cfg.get("loss") else {"type": "cross_entropy"}
        return LOSSES.build(spec)

    def build_metric(self) -> ClassificationMetric:
        return ClassificationMetric(len(self.classes))

    def default_monitor(self) -> tuple[str, str]:
        return "val/acc", "max"

    # --- running --------------------------------------------------------------------------------------------
    def forward_train(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        return model(self.model_input(batch), batch["label"])  # margin heads need the labels

    def rename_metrics(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """``class_acc/<index>`` -> ``class_acc/<class name>``."""
        out = {}
        for key, value in metrics.items():
            if key.startswith("class_acc/"):
                key = f"class_acc/{self.classes[int(key.split('/')[1])]}"
            out[key] = value
        return out

    def predictions(self, outputs: dict[str, torch.Tensor], batch: dict) -> list[dict]:
        decoded = decode(outputs["logits"].float().cpu().numpy(), self.classes)
        for pred, label, index, path in zip(decoded, batch["label"].tolist(), batch["index"].tolist(),
                                            batch["path"], strict=True):
            pred.update(gt=self.classes[label], index=index, path=path)
        return decoded

    def save_test_artifacts(self, metrics: dict, predictions: list[dict], out_dir: Path,
                            show_dir: Path | None) -> None:
        confusion = np.zeros((len(self.classes), len(self.classes)), dtype=np.int64)
        for pred in predictions:
            confusion[self.classes.index(pred["gt"]), pred["class_id"]] += 1
        save_confusion_matrix(confusion, self.classes, out_dir / "confusion_matrix.png")
        (out_dir / "confusion_matrix.json").write_text(json.dumps({"classes": self.classes,
                                                                   "matrix": confusion.tolist()}))
        if show_dir is not None:
            raw = self.raw_dataset("test")
            save_prediction_grids(predictions, lambda p: raw[p["index"]]["image"], show_dir)

    # --- inference and export -------------------------------------------------------------------------------
    def preprocess(self, image: np.ndarray) -> np.ndarray:
        return preprocess(image, self.image_size, self.mean, self.std, self.keep_ratio, self.color)

    def export_module(self, model: nn.Module) -> nn.Module:
        return _ClsInference(model)

    def onnx_output_names(self) -> Sequence[str]:
        head = self.cfg.model.get("head") or {}
        return ["logits", "embedding"] if head.get("type") in ("cosface", "arcface") else ["logits"]

    def onnx_metadata(self) -> dict[str, Any]:
        d = self.cfg.data
        return {"task": "cls", "input_size": list(d.image_size), "mean": list(d.mean), "std": list(d.std),
                "keep_ratio": self.keep_ratio, "classes": self.classes, "color": self.color, "layout": "NCHW"}


class _ClsInference(nn.Module):
    """Keeps only the inference branch: logits (scaled cosines for margin heads) and, for those, the embedding."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(image)
        return (out["logits"], out["embedding"]) if "embedding" in out else (out["logits"],)
