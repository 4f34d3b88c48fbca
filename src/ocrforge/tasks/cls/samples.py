"""Classification samples: raw images -> (augmented) uint8 tensors at the model's input size, in DataLoader workers."""

from __future__ import annotations

from typing import Any

from ...data.collate import chw_tensor
from ..base import TaskSamples
from .inference import fit


class ClsSamples(TaskSamples):
    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.raw[index]
        image = self.augmented(sample["image"])
        fitted = fit(image, self.task.image_size, self.task.keep_ratio, self.task.fill)
        return {"image": chw_tensor(fitted), "label": sample["label"],
                "index": index, "path": sample["path"]}
