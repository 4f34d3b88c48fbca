"""Detection task: wires the datasets, the model family (its targets built in DataLoader workers, its loss and
post-processor), the hmean-IoU metric, pictures and export together for the engine."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import Dataset

from ...config.schema import model_spec
from ...errors import ConfigError
from ...registry import DET_LOSSES, DET_MODELS, DET_POSTPROCESSORS, DET_TARGETS, TASKS, Registry
from ..base import Task
from .augment import DetAugmentConfig
from .device_augment import warp_batch
from .export import DetExport
from .inference import detect_image, resized_shape
from .metric import DetectionMetric, evaluate_image
from .model import network_spec
from .samples import DetSamples, collate_det
from .schema import DetDataSchema
from .visualize import save_detection_pictures


@TASKS.register("det")
class DetectionTask(Task):
    name = "det"
    data_schema = DetDataSchema
    export_class = DetExport
    inference_module = "ocrforge.tasks.det.inference"

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__(cfg)
        d = cfg.data
        self.eval_resize = dict(OmegaConf.to_container(d.eval_resize))
        if self.eval_resize["limit_type"] not in ("min", "max"):
            raise ConfigError(f"data.eval_resize.limit_type must be 'min' or 'max', not "
                              f"'{self.eval_resize['limit_type']}'")
        if int(self.eval_resize["limit_side_len"]) < 32:
            raise ConfigError("data.eval_resize.limit_side_len must be at least 32")
        if any(int(v) % 32 for v in d.image_size):
            raise ConfigError(f"data.image_size {list(d.image_size)} must be multiples of 32 (the models' stride)")
        try:
            self.augment_config = DetAugmentConfig(**OmegaConf.to_container(d.augment))
        except ValueError as exc:
            raise ConfigError(f"data.augment: {exc}") from None
        self.model_class = DET_MODELS.get(cfg.model.type)
        if not all(hasattr(self.model_class, a) for a in ("family_defaults", "inference_outputs", "forward_inference")):
            raise ConfigError(f"model.type {cfg.model.type}: a detection model declares its family_defaults, "
                              f"inference_outputs and forward_inference (subclass "
                              f"ocrforge.tasks.det.model.DetectionModel)")
        self._warned_device_augment_on_cpu = False
        self.targets = self._family_member(DET_TARGETS, "targets")
        self.postprocess = self._family_member(DET_POSTPROCESSORS, "postprocess")

    def _family_member(self, registry: Registry, key: str) -> Any:
        """``model.targets`` / ``model.postprocess`` built. ``data.targets`` / ``data.postprocess`` (their place
        before they moved next to the head, without a type) merge into them, on the family's default type where
        the model names none; the effective config, and so every new checkpoint, has them in the new place."""
        spec, where = self.family_spec(key), f"model.{key}"
        legacy = self.cfg.data.get(key)
        if legacy:
            spec, where = {**spec, **OmegaConf.to_container(legacy)}, f"data.{key} (now model.{key})"
            self.cfg.model[key], self.cfg.data[key] = spec, None
        try:
            return registry.build(spec)
        except ValueError as exc:  # a value the constructor rejects (ConfigError too: arguments that do not fit)
            raise ConfigError(f"{where}: {exc}") from None

    def family_spec(self, key: str) -> dict[str, Any]:
        """``model.targets``, ``model.postprocess`` or ``loss`` as configured, else the model family's default."""
        given = self.cfg.get("loss") if key == "loss" else self.cfg.model.get(key)
        if given:
            return OmegaConf.to_container(given)
        default = self.model_class.family_defaults.get(key)
        if default is None:
            where = "loss" if key == "loss" else f"model.{key}"
            raise ConfigError(f"{where}: model {self.cfg.model.type} has no default {key}; name one ({{type: ...}})")
        return dict(default)

    # --- building -------------------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        return DET_MODELS.build(network_spec(model_spec(OmegaConf.to_container(self.cfg.model))))

    def build_dataset(self, split: str) -> Dataset | None:
        raw = self.raw_dataset(split)
        return None if raw is None else DetSamples(raw, self, train=split == "train")

    def collate(self, samples: list[dict]) -> dict:
        return collate_det(samples)

    def build_loss(self) -> nn.Module:
        return DET_LOSSES.build(self.family_spec("loss"))

    def build_metric(self) -> DetectionMetric:
        return DetectionMetric(self.predict_polygons)

    def default_monitor(self) -> tuple[str, str]:
        return "val/hmean", "max"

    # --- running --------------------------------------------------------------------------------------------
    def forward_train(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        """With ``data.augment.on_device`` the batch holds the source image parts and their warps: the images are
        made here, and the family's device part of the targets is added to ``batch["targets"]`` for the loss."""
        if "warp" not in batch:
            return super().forward_train(model, batch)
        return model(self.normalise(self.augment_on_device(batch)))

    def augment_on_device(self, batch: dict) -> torch.Tensor:
        """The batch's images (float, 0-255) and its device-made targets, in fp32 whatever the autocast around
        (autocast would run the colour matrix product in bf16: a grey level off at 255)."""
        size = tuple(int(v) for v in self.cfg.data.image_size)
        device = batch["warp"]["inverse"].device
        if device.type != "cuda" and not self._warned_device_augment_on_cpu:
            self._warned_device_augment_on_cpu = True
            warnings.warn("data.augment.on_device in a run on the CPU: the batched augmentation then takes the "
                          "model's cores, and DB's threshold map is not compiled there (seconds a batch at 640x640). "
                          "It is meant for GPU training; leave it off on the CPU.", stacklevel=2)
        with torch.autocast(device.type, enabled=False):
            images, unreadable = warp_batch(batch["image"], batch["warp"], size, self.augment_config.pad_value)
            if batch["device_targets"]:
                self.targets.device_part(batch["targets"], batch["device_targets"])
        for index in unreadable:  # no image: nothing of the sample is learnt from (every family's masks read 0 so)
            for maps in batch["targets"].values():
                maps[index] = 0
        return images

    def forward_eval(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        """Each input size runs on its own, unpadded: padding would change the maps near the border, and a score
        would depend on the other images of its batch (``predict`` and ``ocr`` never pad either)."""
        images = self.model_input(batch)
        shapes = [resized_shape(*size, **self.eval_resize) for size in batch["size"]]
        if all(shape == tuple(images.shape[2:]) for shape in shapes):
            return model(images)
        outputs: dict[str, torch.Tensor] = {}
        for shape in dict.fromkeys(shapes):
            rows = [i for i, s in enumerate(shapes) if s == shape]
            part = model(images[rows, :, : shape[0], : shape[1]])
            for key, value in part.items():
                if key not in outputs:
                    outputs[key] = value.new_zeros((len(shapes), value.shape[1], *images.shape[2:]))
                outputs[key][rows, :, : shape[0], : shape[1]] = value
        return outputs

    def detect(self, outputs: dict[str, torch.Tensor], batch: dict) -> list[list[dict]]:
        maps = {name: outputs[name].float().cpu().numpy() for name in self.model_class.inference_outputs}
        meta = self.inference_meta()
        return [detect_image({name: m[i] for name, m in maps.items()}, size, meta, self.postprocess)
                for i, size in enumerate(batch["size"])]

    def predict_polygons(self, outputs: dict[str, torch.Tensor], batch: dict) -> list[list[np.ndarray]]:
        return [[r["points"] for r in found] for found in self.detect(outputs, batch)]

    def predictions(self, outputs: dict[str, torch.Tensor], batch: dict) -> list[dict]:
        results = []
        for found, gts, ignore, index, path in zip(self.detect(outputs, batch), batch["gt_polygons"],
                                                   batch["gt_ignore"], batch["index"].tolist(), batch["path"],
                                                   strict=True):
            counts = evaluate_image(gts, ignore, [r["points"] for r in found])
            results.append({"path": path, "index": index,
                            "polygons": [_rounded(r["points"]) for r in found],
                            "scores": [round(float(r["score"]), 4) for r in found],
                            "gt_polygons": [_rounded(g) for g in gts], "gt_ignore": list(ignore),
                            "num_gt": counts.num_gt, "num_pred": counts.num_pred, "matched": counts.matched,
                            "pred_ignored": list(counts.pred_ignored)})
        return results

    def save_test_artifacts(self, metrics: dict, predictions: list[dict], out_dir: Path,
                            show_dir: Path | None) -> None:
        if show_dir is not None:
            raw = self.raw_dataset("test")
            save_detection_pictures(predictions, lambda p: raw[p["index"]]["image"], show_dir)

    def inference_meta(self) -> dict[str, Any]:
        """Preprocessing and the post-processor (``{"type", **arguments}``) of the numpy/ONNX path."""
        d = self.cfg.data
        spec = self.family_spec("postprocess")
        return {"limit_side_len": int(self.eval_resize["limit_side_len"]), "limit_type": self.eval_resize["limit_type"],
                "mean": list(d.mean), "std": list(d.std), "color": self.color,
                # post-processors are dataclasses of their arguments: defaults included
                "postprocess": {"type": DET_POSTPROCESSORS.canonical(spec["type"]),
                                **dataclasses.asdict(self.postprocess)}}


def _rounded(points: np.ndarray) -> list:
    return np.round(np.asarray(points, dtype=np.float64), 1).tolist()  # float64: 116.2 stays 116.2 in JSON
