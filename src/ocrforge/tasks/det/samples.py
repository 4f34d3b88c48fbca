"""Detection samples: raw pages -> uint8 image + the family's target maps, all in DataLoader workers; and their
collate function."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ...data.collate import COUNT_KEY, chw_tensor
from ...data.images import device_decodable_jpeg, pad_batch
from ..base import TaskSamples
from .augment import DetAugment, halved_shape
from .device_augment import EncodedImage
from .inference import resize_for_inference

if TYPE_CHECKING:
    from .task import DetectionTask


class DetSamples(TaskSamples):
    """Raw pages -> uint8 image + target maps (``task.targets``, in the dtypes its ``maps`` declare).

    Training: augmentation to a fixed ``image_size`` crop. Evaluation: the inference resize (aspect kept, sides
    multiples of 32); ground truth stays in original pixels for the metric.
    """

    def __init__(self, raw: Dataset, task: DetectionTask, train: bool) -> None:
        super().__init__(raw, task, None)
        self.train = train
        self.augmenter = DetAugment(task.augment_config, size=task.cfg.data.image_size) if train else None

    def __getitem__(self, index: int) -> dict[str, Any]:
        counts: Counter = Counter()
        if self.augmenter is not None and self.task.augment_config.on_device:
            out = self._for_device(index, counts)
            out[COUNT_KEY] = {k: v for k, v in counts.items() if v}
            return out
        sample = self.raw[index]
        image, polygons, ignore = sample["image"], sample["polygons"], sample["ignore"]
        original = image.shape[:2]
        out: dict[str, Any] = {"index": index, "path": sample["path"], "size": original}
        if self.augmenter is not None:
            rng = np.random.default_rng(np.random.randint(2**31))  # np.random is seeded per (seed, epoch, index)
            image, polygons, ignore = self.augmenter(image, polygons, ignore, rng, counts)
        else:
            image = resize_for_inference(image, **self.task.eval_resize)
            scale = np.float32([image.shape[1] / original[1], image.shape[0] / original[0]])
            polygons = [p * scale for p in polygons]
            out.update(gt_polygons=sample["polygons"], gt_ignore=sample["ignore"])
        targets = self.task.targets
        maps = targets(polygons, ignore, image.shape[0], image.shape[1], counts)
        out.update(image=chw_tensor(image), targets=_travel(maps, targets.maps),
                   **{COUNT_KEY: {k: v for k, v in counts.items() if v}})
        return out

    def _for_device(self, index: int, counts: Counter) -> dict[str, Any]:
        """The sample as ``data.augment.on_device`` sends it: its source (the part of the image the warp reads as
        HWC uint8, or with ``decode_on_device`` the undecoded JPEG file where the device can decode it), the warp,
        the maps drawn here and the inputs of those the family draws on the device (if it can)."""
        encoded = self._encoded(index)
        sample = encoded[0] if encoded is not None else self.raw[index]
        rng = np.random.default_rng(np.random.randint(2**31))  # drawn after loading, as the CPU path does
        if encoded is not None:
            height, width = encoded[1]
            plan = self.augmenter.plan((height, width), sample["polygons"], sample["ignore"], rng, counts)
            halved = halved_shape((height, width), plan.halvings)
            source = EncodedImage(sample["data"], plan.halvings, sample["path"])
            warp = plan.device_warp((0, 0), (halved[1], halved[0]))
        else:
            height, width = sample["image"].shape[:2]
            plan = self.augmenter.plan((height, width), sample["polygons"], sample["ignore"], rng, counts)
            part, warp = plan.for_device(sample["image"])
            source = torch.from_numpy(np.ascontiguousarray(part))
        targets = self.task.targets
        out_h, out_w = self.augmenter.size
        if hasattr(targets, "host_part"):
            maps, device_inputs = targets.host_part(plan.polygons, plan.ignore, out_h, out_w, counts)
        else:
            maps, device_inputs = targets(plan.polygons, plan.ignore, out_h, out_w, counts), {}
        return {"index": index, "path": sample["path"], "size": (height, width), "image": source,
                "warp": {k: torch.from_numpy(v) for k, v in warp.items()},
                "targets": _travel(maps, targets.maps),
                "device_targets": {k: torch.from_numpy(v) for k, v in device_inputs.items()}}

    def _encoded(self, index: int) -> tuple[dict[str, Any], tuple[int, int]] | None:
        """The undecoded sample and its (H, W) where ``decode_on_device`` is on, the dataset can give its file and
        the device can decode it (a baseline JPEG in grey or colour, no EXIF rotation); else None."""
        if not self.task.augment_config.decode_on_device or not hasattr(self.raw, "encoded_sample"):
            return None
        sample = self.raw.encoded_sample(index)
        shape = device_decodable_jpeg(sample["data"])
        return (sample, shape) if shape is not None else None


def _travel(maps: dict[str, np.ndarray], dtypes: dict[str, type]) -> dict[str, torch.Tensor]:
    """The maps in their travel dtypes (no copy where a family draws them in those already)."""
    return {k: torch.from_numpy(np.asarray(maps[k], dtype=dtypes[k])) for k in maps if k in dtypes}


def collate_det(samples: list[dict]) -> dict:
    """Images and each target map padded at the bottom/right to the largest in the batch. Maps are (H, W) or
    (C, H, W); padding is 0, which every family's masks read as "not learnt from". Samples for the device
    (``"warp"`` in them) keep their sources as a list (HWC uint8 tensors, or JPEG files as numpy arrays, which
    stay on the host to be decoded on the device), their warps stacked and their device inputs (rows per sample)
    padded with zero rows."""
    on_device = "warp" in samples[0]
    images = [s["image"] for s in samples] if on_device else torch.from_numpy(
        pad_batch([s["image"].numpy() for s in samples]))
    targets = {}
    for key, first in samples[0]["targets"].items():
        maps = [s["targets"][key].numpy() for s in samples]
        padded = pad_batch([m.reshape(-1, *m.shape[-2:]) for m in maps])
        targets[key] = torch.from_numpy(padded.reshape(len(maps), *first.shape[:-2], *padded.shape[-2:]))
    batch = {"image": images, "targets": targets,
             "index": torch.tensor([s["index"] for s in samples]), "path": [s["path"] for s in samples],
             "size": [tuple(s["size"]) for s in samples]}
    if on_device:
        batch["warp"] = {k: torch.stack([s["warp"][k] for s in samples]) for k in samples[0]["warp"]}
        batch["device_targets"] = {k: _pad_rows([s["device_targets"][k] for s in samples])
                                   for k in samples[0]["device_targets"]}
    if "gt_polygons" in samples[0]:
        batch["gt_polygons"] = [s["gt_polygons"] for s in samples]
        batch["gt_ignore"] = [s["gt_ignore"] for s in samples]
    return batch


def _pad_rows(rows: list[torch.Tensor]) -> torch.Tensor:
    """(B, max N, K) from per-sample (N, K) tensors, padded with zero rows."""
    batch = rows[0].new_zeros((len(rows), max(max(len(r) for r in rows), 1), rows[0].shape[1]))
    for out, r in zip(batch, rows):
        out[: len(r)] = r
    return batch
