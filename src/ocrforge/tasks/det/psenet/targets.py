"""PSENet training targets: the text map, its shrunk kernels and the training mask, per sample in DataLoader workers.

numpy/OpenCV/pyclipper only, no torch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ....data.geometry import offset_polygon, polygon_perimeter
from ....registry import DET_TARGETS
from ..regions import fill_polygons, learnable_regions, thickness


@DET_TARGETS.register()
@dataclass
class PSETargets:
    """``kernel_maps`` (kernel_num, H, W): map 0 is 1 inside every text polygon, map i inside each polygon shrunk
    at ratio r_i = 1 - (1 - min_ratio) * i / (kernel_num - 1) by D_i = A (1 - r_i²) / L (A area, L perimeter), as
    PSENet; ``training_mask`` (H, W): 0 over the regions not to learn from, 1 elsewhere.

    Left out and counted in ``counts``: the regions ``learnable_regions`` rejects, ``too_small`` ones (thinner than
    ``min_text_size``) and ``shrink_failed`` ones (whose smallest kernel vanishes).
    """

    kernel_num: int = 7
    min_ratio: float = 0.4
    min_text_size: int = 8

    # The maps as they travel from the workers (and how the task's collate pads them: with 0, "not learnt from").
    maps: ClassVar[dict[str, type]] = {"kernel_maps": np.uint8, "training_mask": np.uint8}

    def __post_init__(self) -> None:
        if self.kernel_num < 2:
            raise ValueError(f"kernel_num must be at least 2 (the text map and one kernel), got {self.kernel_num}")
        if not 0.0 < self.min_ratio < 1.0:
            raise ValueError(f"min_ratio must be in (0, 1), got {self.min_ratio}")

    def ratios(self) -> np.ndarray:
        """The shrink ratio of each map, 1 (the text map) down to ``min_ratio``."""
        return 1.0 - (1.0 - self.min_ratio) * np.arange(self.kernel_num) / (self.kernel_num - 1)

    def __call__(self, polygons: Sequence[np.ndarray], ignore: Sequence[bool], height: int, width: int,
                 counts: Counter | None = None) -> dict[str, np.ndarray]:
        counts = Counter() if counts is None else counts
        kernel_maps = np.zeros((self.kernel_num, height, width), dtype=np.float32)
        training_mask = np.ones((height, width), dtype=np.float32)
        for region in learnable_regions(polygons, ignore, height, width, counts, training_mask):
            if thickness(region) < self.min_text_size:
                counts["too_small"] += 1
                fill_polygons(training_mask, [region.polygon], 0.0)
                continue
            perimeter = polygon_perimeter(region.polygon)
            kernels = [offset_polygon(region.polygon, -region.area * (1.0 - r**2) / perimeter) if r < 1.0
                       else [region.polygon] for r in self.ratios()]
            if not kernels[-1]:
                counts["shrink_failed"] += 1
                fill_polygons(training_mask, [region.polygon], 0.0)
                continue
            for kernel_map, paths in zip(kernel_maps, kernels, strict=True):
                fill_polygons(kernel_map, paths, 1.0)
        return {"kernel_maps": kernel_maps, "training_mask": training_mask}
