"""DBNet training targets: shrink map/mask and threshold map/mask, computed per sample in DataLoader workers, or
all but the threshold map there and that one batched on the training device (``device_targets``).

numpy/OpenCV/pyclipper only, no torch (the device part imports it when called). Pixel coordinates follow OpenCV:
pixel (x, y) is the point (x, y), so a polygon edge on integer coordinates passes through pixel centres.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, NamedTuple

import cv2
import numpy as np

from ....data.geometry import offset_polygon, polygon_perimeter
from ....registry import DET_TARGETS
from ..regions import fill_polygons, learnable_regions, thickness

if TYPE_CHECKING:
    import torch

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


class BorderJob(NamedTuple):
    """One polygon's part of the threshold map: the pixels of ``box`` (x0, y0, x1, y1, clipped to the image) within
    ``distance`` of an edge of ``polygon``."""

    polygon: np.ndarray
    box: tuple[int, int, int, int]
    distance: float


def _border_box(dilated: Sequence[np.ndarray], height: int, width: int) -> tuple[int, int, int, int] | None:
    """The dilated polygon's bounding box clipped to the image (pixels outside the dilation are farther than the
    distance, so they get 0 anyway); None if it is empty."""
    x, y, w, h = cv2.boundingRect(np.concatenate(dilated))
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def _draw_border(canvas: np.ndarray, job: BorderJob) -> None:
    """canvas = max(canvas, 1 - min(d / distance, 1)) over the job's box, d = a pixel's distance to the nearest
    edge of its polygon."""
    x0, y0, x1, y1 = job.box
    polygon = job.polygon
    xs = np.arange(x0, x1, dtype=np.float32)
    ends = np.concatenate((polygon[1:], polygon[:1]))
    rows = max(1, DISTANCE_CHUNK // (len(polygon) * len(xs)))
    for top in range(y0, y1, rows):  # blocks of rows keep the (edges, rows, columns) temporaries small
        bottom = min(top + rows, y1)
        nearest2 = _nearest_squared_distance(xs, np.arange(top, bottom, dtype=np.float32), polygon, ends)
        closeness = np.sqrt(nearest2, out=nearest2)
        closeness *= -1.0 / job.distance
        closeness += 1.0
        region = canvas[top:bottom, x0:x1]
        np.maximum(region, closeness, out=region)  # negative beyond the distance: never raises the canvas


def _binary_maps(polygons: Sequence[np.ndarray], ignore: Sequence[bool], height: int, width: int,
                 shrink_ratio: float, min_text_size: int, counts: Counter, dtype: type
                 ) -> tuple[dict[str, np.ndarray], list[BorderJob]]:
    """The shrink map and mask and the threshold mask of one sample, and the border each polygon adds to the
    threshold map (drawn by the caller: here on the CPU, or batched on a device)."""
    shrink_map = np.zeros((height, width), dtype=dtype)
    shrink_mask = np.ones((height, width), dtype=dtype)
    threshold_mask = np.zeros((height, width), dtype=dtype)
    jobs = []
    for region in learnable_regions(polygons, ignore, height, width, counts, shrink_mask):
        polygon = region.polygon
        distance = region.area * (1.0 - shrink_ratio**2) / polygon_perimeter(polygon)
        dilated = offset_polygon(polygon, distance)
        if dilated:
            fill_polygons(threshold_mask, dilated, 1.0)
            box = _border_box(dilated, height, width)
            if box is not None:
                jobs.append(BorderJob(polygon, box, distance))
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
    return {"shrink_map": shrink_map, "shrink_mask": shrink_mask, "threshold_mask": threshold_mask}, jobs


def _threshold_map(jobs: Sequence[BorderJob], height: int, width: int, thresh_min: float,
                   thresh_max: float) -> np.ndarray:
    threshold_map = np.zeros((height, width), dtype=np.float32)
    for job in jobs:
        _draw_border(threshold_map, job)
    threshold_map *= thresh_max - thresh_min  # scaled in place: one less 2-D array per sample
    threshold_map += thresh_min
    return threshold_map


def border_edges(jobs: Sequence[BorderJob]) -> np.ndarray:
    """(E, 9) float32 rows, one per polygon edge: start x, y, end x, y, 1 / distance, box x0, y0, x1, y1: the
    threshold map's input for ``device_targets.threshold_map``."""
    rows = []
    for job in jobs:
        polygon = job.polygon.astype(np.float32)
        ends = np.concatenate((polygon[1:], polygon[:1]))
        extra = np.float32([1.0 / job.distance, *job.box])
        rows.append(np.hstack([polygon, ends, np.broadcast_to(extra, (len(polygon), 5))]))
    return np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, 9), np.float32)


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
    dtype: type = np.float32,
) -> dict[str, np.ndarray]:
    """DB targets of one sample as (height, width) arrays: the binary ones of ``dtype``, the threshold map float32.

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
    maps, jobs = _binary_maps(polygons, ignore, height, width, shrink_ratio, min_text_size, counts, dtype)
    maps["threshold_map"] = _threshold_map(jobs, height, width, thresh_min, thresh_max)
    return {key: maps[key] for key in ("shrink_map", "shrink_mask", "threshold_map", "threshold_mask")}


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
        """The maps in their travel dtypes (``maps``), drawn straight in them."""
        out = make_db_targets(polygons, ignore, height, width, self.shrink_ratio, self.thresh_min, self.thresh_max,
                              self.min_text_size, counts, dtype=np.uint8)
        out["threshold_map"] = out["threshold_map"].astype(np.float16)
        return out

    def host_part(self, polygons: Sequence[np.ndarray], ignore: Sequence[bool], height: int, width: int,
                  counts: Counter | None = None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """For targets finished on the training device: the binary maps (uint8) and, instead of the threshold
        map, its polygon edges (``border_edges``), which ``device_part`` turns into the map for a whole batch."""
        counts = Counter() if counts is None else counts
        maps, jobs = _binary_maps(polygons, ignore, height, width, self.shrink_ratio, self.min_text_size, counts,
                                  np.uint8)
        return maps, {"border_edges": border_edges(jobs)}

    def device_part(self, maps: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]) -> None:
        """Adds ``threshold_map`` (float32, on the maps' device) to a batch's ``maps`` from its ``inputs``."""
        from .device_targets import threshold_map

        height, width = maps["shrink_map"].shape[-2:]
        maps["threshold_map"] = threshold_map(inputs["border_edges"], height, width, self.thresh_min,
                                              self.thresh_max)
