"""Detection task: pages -> augmented crops + DB targets (in workers), DBNet, DB loss, hmean-IoU, pictures, export."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import Dataset

from ...config.schema import LoaderSchema, image_size_field, model_spec, registry_node
from ...data.collate import COUNT_KEY, chw_tensor
from ...data.images import pad_batch
from ...errors import ConfigError
from ...registry import LOSSES, MODELS, TASKS
from ..base import Task, TaskSamples
from . import datasets as _datasets  # noqa: F401  (registers the datasets)
from . import loss as _loss  # noqa: F401  (registers the loss)
from . import model as _model  # noqa: F401  (registers the model)
from .augment import DetAugment, DetAugmentConfig
from .inference import polygons_from_prob, prepare, resize_for_inference, resized_shape
from .metric import DetectionMetric, evaluate_image
from .postprocess import DBPostProcess
from .targets import DBTargets
from .visualize import save_detection_pictures

# Binary maps travel as uint8 and the threshold map as float16: a 640x640 batch of 16 moves ~3x fewer bytes from
# the workers (and through pinned memory); the loss computes in fp32.
TARGET_DTYPES = {"shrink_map": np.uint8, "shrink_mask": np.uint8, "threshold_map": np.float16,
                 "threshold_mask": np.uint8}


@dataclass
class EvalResizeSchema:
    # Validation/test/inference size: the shorter ('min') or longer ('max') side becomes limit_side_len (x32).
    limit_side_len: int = 736
    limit_type: str = "min"


@dataclass
class TargetsSchema:
    shrink_ratio: float = 0.4
    thresh_min: float = 0.3
    thresh_max: float = 0.7
    min_text_size: int = 8  # polygons whose shorter side is smaller are masked out of the loss


@dataclass
class PostprocessSchema:
    thresh: float = 0.3  # binarisation of the probability map
    box_thresh: float = 0.6  # minimum mean probability inside a box
    max_candidates: int = 1000
    unclip_ratio: float = 1.5
    min_size: int = 3
    box_type: str = "quad"  # quad | poly
    score_mode: str = "fast"  # fast | slow


@dataclass
class DetDataSchema:
    image_size: list[int] = image_size_field([640, 640])  # training crop [H, W]
    color: str = "RGB"  # channel order the model reads: RGB, or BGR (models imported from PaddleOCR)
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    augment: DetAugmentConfig = field(default_factory=DetAugmentConfig)
    eval_resize: EvalResizeSchema = field(default_factory=EvalResizeSchema)
    targets: TargetsSchema = field(default_factory=TargetsSchema)
    postprocess: PostprocessSchema = field(default_factory=PostprocessSchema)
    train: dict[str, Any] | None = registry_node("dataset", extra=LoaderSchema)
    val: dict[str, Any] | None = registry_node("dataset", extra=LoaderSchema)
    test: dict[str, Any] | None = registry_node("dataset", extra=LoaderSchema)


class DetSamples(TaskSamples):
    """Raw pages -> uint8 image + DB target maps, all in DataLoader workers.

    Training: augmentation to a fixed ``image_size`` crop. Evaluation: the inference resize (aspect kept, sides
    multiples of 32); ground truth stays in original pixels for the metric.
    """

    def __init__(self, raw: Dataset, task: DetectionTask, train: bool) -> None:
        super().__init__(raw, task, None)
        self.train = train
        self.augmenter = DetAugment(task.augment_config, size=task.cfg.data.image_size) if train else None

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.raw[index]
        counts: Counter = Counter()
        image, polygons, ignore = sample["image"], sample["polygons"], sample["ignore"]
        original = image.shape[:2]
        if self.augmenter is not None:
            rng = np.random.default_rng(np.random.randint(2**31))  # np.random is seeded per (seed, epoch, index)
            image, polygons, ignore = self.augmenter(image, polygons, ignore, rng, counts)
        else:
            image = resize_for_inference(image, **self.task.eval_resize)
            scale = np.float32([image.shape[1] / original[1], image.shape[0] / original[0]])
            polygons = [p * scale for p in polygons]
        targets = self.task.targets(polygons, ignore, image.shape[0], image.shape[1], counts)
        out = {"image": chw_tensor(image),
               "targets": {k: torch.from_numpy(targets[k].astype(dtype)) for k, dtype in TARGET_DTYPES.items()},
               "index": index,
               "path": sample["path"], "size": original, COUNT_KEY: {k: v for k, v in counts.items() if v}}
        if not self.train:
            out.update(gt_polygons=sample["polygons"], gt_ignore=sample["ignore"])
        return out


@TASKS.register("det")
class DetectionTask(Task):
    name = "det"
    data_schema = DetDataSchema

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__(cfg)
        d = cfg.data
        self.eval_resize = dict(OmegaConf.to_container(d.eval_resize))
        if self.eval_resize["limit_type"] not in ("min", "max"):
            raise ConfigError(f"data.eval_resize.limit_type must be 'min' or 'max', not "
                              f"'{self.eval_resize['limit_type']}'")
        if any(int(v) % 32 for v in d.image_size):
            raise ConfigError(f"data.image_size {list(d.image_size)} must be multiples of 32 (DBNet's stride)")
        post = OmegaConf.to_container(d.postprocess)
        if post["box_type"] not in ("quad", "poly") or post["score_mode"] not in ("fast", "slow"):
            raise ConfigError("data.postprocess.box_type must be quad|poly and score_mode fast|slow")
        self.postprocess_cfg = post
        if int(self.eval_resize["limit_side_len"]) < 32:
            raise ConfigError("data.eval_resize.limit_side_len must be at least 32")
        try:
            self.targets = DBTargets(**OmegaConf.to_container(d.targets))
        except ValueError as exc:
            raise ConfigError(f"data.targets: {exc}") from None
        try:
            self.augment_config = DetAugmentConfig(**OmegaConf.to_container(d.augment))
        except ValueError as exc:
            raise ConfigError(f"data.augment: {exc}") from None
        self._postprocess = DBPostProcess(**post)

    # --- building -------------------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        return MODELS.build(model_spec(OmegaConf.to_container(self.cfg.model)))

    def build_dataset(self, split: str) -> Dataset | None:
        raw = self.raw_dataset(split)
        return None if raw is None else DetSamples(raw, self, train=split == "train")

    def collate(self, samples: list[dict]) -> dict:
        images = pad_batch([s["image"].numpy() for s in samples])
        targets = {k: torch.from_numpy(pad_batch([s["targets"][k][None].numpy() for s in samples])[:, 0])
                   for k in TARGET_DTYPES}  # padding is 0 in every mask: padded pixels never reach the loss
        batch = {"image": torch.from_numpy(images), "targets": targets,
                 "index": torch.tensor([s["index"] for s in samples]), "path": [s["path"] for s in samples],
                 "size": [tuple(s["size"]) for s in samples]}
        if "gt_polygons" in samples[0]:
            batch["gt_polygons"] = [s["gt_polygons"] for s in samples]
            batch["gt_ignore"] = [s["gt_ignore"] for s in samples]
        return batch

    def build_loss(self) -> nn.Module:
        spec = OmegaConf.to_container(self.cfg.loss) if self.cfg.get("loss") else {"type": "db"}
        return LOSSES.build(spec)

    def build_metric(self) -> DetectionMetric:
        return DetectionMetric(self.predict_polygons)

    def default_monitor(self) -> tuple[str, str]:
        return "val/hmean", "max"

    # --- running --------------------------------------------------------------------------------------------
    def forward_train(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        return model(self.model_input(batch), with_threshold=True)

    def forward_eval(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        """Each input size runs on its own, unpadded: padding would change the maps near the border, and a score
        would depend on the other images of its batch (``predict`` and ``ocr`` never pad either)."""
        images = self.model_input(batch)
        shapes = [resized_shape(*size, **self.eval_resize) for size in batch["size"]]
        if all(shape == tuple(images.shape[2:]) for shape in shapes):
            return model(images, with_threshold=True)
        outputs: dict[str, torch.Tensor] = {}
        for shape in dict.fromkeys(shapes):
            rows = [i for i, s in enumerate(shapes) if s == shape]
            part = model(images[rows, :, : shape[0], : shape[1]], with_threshold=True)
            for key, value in part.items():
                if key not in outputs:
                    outputs[key] = value.new_zeros((len(shapes), value.shape[1], *images.shape[2:]))
                outputs[key][rows, :, : shape[0], : shape[1]] = value
        return outputs

    def detect(self, outputs: dict[str, torch.Tensor], batch: dict) -> list[list[dict]]:
        probs = outputs["prob"].float().cpu().numpy()[:, 0]
        return [polygons_from_prob(prob, size, self.inference_meta(), self._postprocess)
                for prob, size in zip(probs, batch["size"], strict=True)]

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

    # --- inference and export -------------------------------------------------------------------------------
    def inference_meta(self) -> dict[str, Any]:
        d = self.cfg.data
        return {"limit_side_len": int(self.eval_resize["limit_side_len"]), "limit_type": self.eval_resize["limit_type"],
                "mean": list(d.mean), "std": list(d.std), "color": self.color,
                "postprocess": dict(self.postprocess_cfg)}

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        return prepare(image, self.inference_meta())

    def export_module(self, model: nn.Module) -> nn.Module:
        return _DetInference(model)

    def onnx_output_names(self) -> Sequence[str]:
        return ["prob"]

    def onnx_dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {"image": {0: "batch", 2: "height", 3: "width"}, "prob": {0: "batch", 2: "height", 3: "width"}}

    def onnx_metadata(self) -> dict[str, Any]:
        return {"task": "det", **self.inference_meta(), "stride": 32, "layout": "NCHW",
                "outputs_meaning": {"prob": "text probability per input pixel, [N, 1, H, W]"}}


def _rounded(points: np.ndarray) -> list:
    return np.round(np.asarray(points, dtype=np.float64), 1).tolist()  # float64: 116.2 stays 116.2 in JSON


class _DetInference(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.model(image, with_threshold=False)["prob"],)
