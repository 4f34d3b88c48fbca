"""Classification task: wires datasets, model, loss, metric, pictures and export together for the engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import Dataset

from ...config.schema import model_spec, split_data_spec
from ...errors import ConfigError
from ...registry import CLS_DATASETS, CLS_HEADS, CLS_MODELS, TASKS
from ..base import Task
from . import datasets as _datasets  # noqa: F401  (registers the datasets)
from . import heads as _heads  # noqa: F401  (registers the heads)
from . import loss as _loss  # noqa: F401  (registers the loss)
from . import model as _model  # noqa: F401  (registers the model)
from . import synth as _synth  # noqa: F401  (registers the synthetic dataset)
from .export import ClsExport
from .inference import decode, mean_colour
from .metric import ClassificationMetric
from .samples import ClsSamples
from .schema import ClsDataSchema
from .visualize import save_confusion_matrix, save_prediction_grids


@TASKS.register("cls")
class ClassificationTask(Task):
    name = "cls"
    data_schema = ClsDataSchema
    export_class = ClsExport
    inference_module = "ocrforge.tasks.cls.inference"

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
                dataset_cls = CLS_DATASETS.get(spec.pop("type"))
                return list(dataset_cls.discover_classes(**spec))
        raise ValueError("data.classes is empty and no data split is configured to discover classes from")

    # --- building -------------------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        return CLS_MODELS.build(model_spec(OmegaConf.to_container(self.cfg.model)), num_classes=len(self.classes))

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
        from ...registry import CLS_LOSSES

        spec = OmegaConf.to_container(self.cfg.loss) if self.cfg.get("loss") else {"type": "CrossEntropyLoss"}
        return CLS_LOSSES.build(spec)

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

    def head_class(self) -> type:
        """The registered class of ``model.head`` (what it exports); a linear head for models that name none."""
        head = self.cfg.model.get("head") or {"type": "LinearHead"}
        return CLS_HEADS.get(head["type"])
