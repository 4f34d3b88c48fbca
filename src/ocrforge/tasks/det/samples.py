"""Detection samples: raw pages -> uint8 image + the family's target maps, all in DataLoader workers; and their
collate function."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ...data.collate import COUNT_KEY, chw_tensor
from ...data.images import pad_batch
from ..base import TaskSamples
from .augment import DetAugment
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
        targets = self.task.targets
        maps = targets(polygons, ignore, image.shape[0], image.shape[1], counts)
        out = {"image": chw_tensor(image),
               "targets": {k: torch.from_numpy(maps[k].astype(dtype)) for k, dtype in targets.maps.items()},
               "index": index,
               "path": sample["path"], "size": original, COUNT_KEY: {k: v for k, v in counts.items() if v}}
        if not self.train:
            out.update(gt_polygons=sample["polygons"], gt_ignore=sample["ignore"])
        return out


def collate_det(samples: list[dict]) -> dict:
    """Images and each target map padded at the bottom/right to the largest in the batch. Maps are (H, W) or
    (C, H, W); padding is 0, which every family's masks read as "not learnt from"."""
    images = pad_batch([s["image"].numpy() for s in samples])
    targets = {}
    for key, first in samples[0]["targets"].items():
        maps = [s["targets"][key].numpy() for s in samples]
        padded = pad_batch([m.reshape(-1, *m.shape[-2:]) for m in maps])
        targets[key] = torch.from_numpy(padded.reshape(len(maps), *first.shape[:-2], *padded.shape[-2:]))
    batch = {"image": torch.from_numpy(images), "targets": targets,
             "index": torch.tensor([s["index"] for s in samples]), "path": [s["path"] for s in samples],
             "size": [tuple(s["size"]) for s in samples]}
    if "gt_polygons" in samples[0]:
        batch["gt_polygons"] = [s["gt_polygons"] for s in samples]
        batch["gt_ignore"] = [s["gt_ignore"] for s in samples]
    return batch
