"""DBNet training targets: shrink map/mask and threshold map/mask, computed per sample in DataLoader workers.

numpy/OpenCV/pyclipper only, no torch. Pixel coordinates follow OpenCV: pixel (x, y) is the point (x, y), so a
polygon edge on integer coordinates passes through pixel centres.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

from ....data.geometry import offset_polygon, polygon_perimeter
from ....registry import DET_TARGETS
from ..regions import fill_polygons, learnable_regions, thickness

# Elements of the (edges, rows, columns) distance temporaries per block: 128 KB of float32 stays in cache and under
# glibc's mmap threshold (bigger temporaries measured 2-3x slower per element).
DISTANCE_CHUNK = 1 << 15


def _nearest_squared_distance(xs: np.ndarray, ys: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """(H, W) squared distance from each pixel of the grid ``xs`` x ``ys`` to the nearest of the segments
    ``starts[i]``-``ends[i]``, vectorised over (segments, rows, columns) in each segment's own frame."""
    segment = ends - starts
    length = np.sqrt((segment**2).sum(axis=1))
    unit = segment / np.maximum(length, 1e-6)[:, None]  # a zero-length edge (repeated vertex) is a point
    ux, uy = unit[:, 0, None, None], unit[:, 1, None, None]
    dx = xs[None, None, :] - starts[:, 0, None, None]  # (E, 1, W): pixel minus segment start
    dy = ys[None, :, None] - starts[:, 1, None, None]  # (E, H, 1)
    along = dx * ux + dy * uy  # (E, H, W): position along the segment's line
    across = dy * ux - dx * uy  # (E, H, W): signed distance from that line
    along -= np.clip(along, 0.0, length[:, None, None])  # how far past either end of the segment
    along *= along
    across *= across
    along += across
    return along.min(axis=0)


def _draw_border(canvas: np.ndarray, polygon: np.ndarray, dilated: Sequence[np.ndarray], distance: float) -> None:
    """canvas = max(canvas, 1 - min(d / distance, 1)), d = a pixel's distance to the nearest edge of ``polygon``,
    over the dilated polygon's bounding box clipped to the image (pixels outside the dilation are farther than
    ``distance``, so they get 0 anyway)."""
    height, width = canvas.shape
    x, y, w, h = cv2.boundingRect(np.concatenate(dilated))
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    if x0 >= x1 or y0 >= y1:
        return
    xs = np.arange(x0, x1, dtype=np.float32)
    ends = np.concatenate((polygon[1:], polygon[:1]))
    rows = max(1, DISTANCE_CHUNK // (len(polygon) * len(xs)))
    for top in range(y0, y1, rows):  # blocks of rows keep the (edges, rows, columns) temporaries small
        bottom = min(top + rows, y1)
        nearest2 = _nearest_squared_distance(xs, np.arange(top, bottom, dtype=np.float32), polygon, ends)
        closeness = np.sqrt(nearest2, out=nearest2)
        closeness *= -1.0 / distance
        closeness += 1.0
        region = canvas[top:bottom, x0:x1]
        np.maximum(region, closeness, out=region)  # negative beyond the distance: never raises the canvas


def make_db_targets(
    polygons: Sequence[np.ndarray],
    ignore: Sequence[bool],
    height: int,
    width: int,
    shrink_ratio: float = 0.4,
    thresh_min: float = 0.3,
    thresh_max: float = 0.7,
    min_text_size: int = 8,
    counts: Counter | None = None,
) -> dict[str, np.ndarray]:
    """DB targets of one sample as float32 (height, width) arrays.

    - ``shrink_map``: 1 inside each text polygon shrunk by D = A(1 - r²)/L (A area, L perimeter, r = shrink_ratio);
    - ``shrink_mask``: 0 over polygons not to learn from, 1 elsewhere; each polygon left out is counted once in
      ``counts`` by reason: those of ``learnable_regions``, ``too_small`` (thinner than ``min_text_size``),
      ``shrink_failed``;
    - ``threshold_map``: thresh_min + (thresh_max - thresh_min) * (1 - min(d / D, 1)), d = distance to the nearest
      polygon edge, max over polygons; drawn for every polygon that is not don't-care, degenerate or outside
      (too-small ones included: their edges are still real);
    - ``threshold_mask``: 1 inside the same polygons dilated by D, else 0.

    Polygons partly outside the image are shrunk and dilated whole and drawn clipped to the image.
    """
    counts = Counter() if counts is None else counts
    shrink_map = np.zeros((height, width), dtype=np.float32)
    shrink_mask = np.ones((height, width), dtype=np.float32)
    border = np.zeros((height, width), dtype=np.float32)
    threshold_mask = np.zeros((height, width), dtype=np.float32)
    for region in learnable_regions(polygons, ignore, height, width, counts, shrink_mask):
        polygon = region.polygon
        distance = region.area * (1.0 - shrink_ratio**2) / polygon_perimeter(polygon)
        dilated = offset_polygon(polygon, distance)
        if dilated:
            fill_polygons(threshold_mask, dilated, 1.0)
            _draw_border(border, polygon, dilated, distance)
        if thickness(region) < min_text_size:
            counts["too_small"] += 1
            fill_polygons(shrink_mask, [polygon], 0.0)
            continue
        shrunk = offset_polygon(polygon, -distance)
        if shrunk:
            fill_polygons(shrink_map, shrunk, 1.0)
        else:
            counts["shrink_failed"] += 1
            fill_polygons(shrink_mask, [polygon], 0.0)
    threshold_map = border  # scaled in place: one less 2-D array per sample
    threshold_map *= thresh_max - thresh_min
    threshold_map += thresh_min
    return {"shrink_map": shrink_map, "shrink_mask": shrink_mask, "threshold_map": threshold_map,
            "threshold_mask": threshold_mask}


@DET_TARGETS.register()
@dataclass
class DBTargets:
    """``make_db_targets`` with its parameters bound, for config wiring and DataLoader workers (picklable)."""

    shrink_ratio: float = 0.4
    thresh_min: float = 0.3
    thresh_max: float = 0.7
    min_text_size: int = 8  # polygons whose shorter side is smaller are masked out of the loss

    # The maps as they travel from the workers (the task's collate pads them with 0, "not learnt from"): binary maps
    # as uint8 and the threshold map as float16, ~3x fewer bytes for a 640x640 batch of 16 than float32 (also
    # through pinned memory); the loss computes in fp32.
    maps: ClassVar[dict[str, type]] = {"shrink_map": np.uint8, "shrink_mask": np.uint8,
                                       "threshold_map": np.float16, "threshold_mask": np.uint8}

    def __post_init__(self) -> None:
        if not 0.0 < self.shrink_ratio < 1.0:
            raise ValueError(f"shrink_ratio must be in (0, 1), got {self.shrink_ratio}")
        if not 0.0 <= self.thresh_min < self.thresh_max <= 1.0:
            raise ValueError(f"need 0 <= thresh_min < thresh_max <= 1, got {self.thresh_min}, {self.thresh_max}")

    def __call__(self, polygons: Sequence[np.ndarray], ignore: Sequence[bool], height: int, width: int,
                 counts: Counter | None = None) -> dict[str, np.ndarray]:
        return make_db_targets(polygons, ignore, height, width, self.shrink_ratio, self.thresh_min, self.thresh_max,
                               self.min_text_size, counts)
