"""PSENet post-processing: kernel maps -> text polygons with scores, by progressive scale expansion.

The smallest kernel separates words that touch in the text map; its connected components are the seeds, and each
seed grows, one kernel at a time, into the pixels of the next larger one, ending with the text map itself. Growth
runs in waves over the whole map (one OpenCV dilation per wave), not pixel by pixel.

numpy/OpenCV only, no torch: it also runs on the pure ONNX Runtime path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from ....data.geometry import order_quad
from ....registry import DET_POSTPROCESSORS

# 4-connected growth, as PSENet's breadth-first search.
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
_MAX_LABELS = np.iinfo(np.uint16).max  # cv2.dilate takes uint16 labels, not int32


def expand_labels(labels: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Grow the labelled regions of ``labels`` (uint16, 0 = none) into the ``allowed`` pixels, one 4-connected step
    per wave, until no free allowed pixel touches a region. Labelled pixels never change; a free pixel that two
    regions reach in the same wave goes to the higher label (the breadth-first search takes whichever it queued
    first)."""
    labels = labels.copy()
    free = allowed & (labels == 0)
    while True:
        grown = cv2.dilate(labels, _CROSS)
        taken = free & (grown > 0)
        if not taken.any():
            return labels
        labels[taken] = grown[taken]
        free &= ~taken


@DET_POSTPROCESSORS.register()
@dataclass
class PSEPostProcess:
    """Binarise the maps, seed from the smallest kernel, expand kernel by kernel, score and filter the regions.

    ``kernel_maps`` (n, h, w): index 0 is the text map, then ever smaller kernels (the head's ``kernels`` output).
    A kernel counts only inside the text map. ``box_type``: "quad" returns each region's min-area rectangle (4
    points clockwise from the top-left), "poly" its outer contour, simplified.
    """

    thresh: float = 0.5  # binarisation of the text map and of every kernel
    min_kernel_area: int = 5  # seeds (components of the smallest kernel) with fewer pixels are noise
    min_area: int = 16  # regions with fewer pixels after expansion are dropped
    min_score: float = 0.85  # minimum mean text probability over a region
    max_candidates: int = 1000  # the largest seeds are kept
    box_type: Literal["quad", "poly"] = "quad"

    def __post_init__(self) -> None:
        if self.box_type not in ("quad", "poly"):
            raise ValueError(f"box_type must be 'quad' or 'poly', got {self.box_type!r}")
        if not 0.0 < self.thresh < 1.0:
            raise ValueError(f"thresh must be in (0, 1), got {self.thresh}")
        if not 1 <= self.max_candidates <= _MAX_LABELS:
            raise ValueError(f"max_candidates must be in [1, {_MAX_LABELS}], got {self.max_candidates}")

    def decode(self, outputs: Mapping[str, np.ndarray], scale: tuple[float, float] = (1.0, 1.0)) -> list[dict]:
        """One image's inference outputs (``{"kernels": (n, h, w)}``) -> detections (see ``__call__``)."""
        return self(outputs["kernels"], scale)

    def __call__(self, kernel_maps: np.ndarray, scale: tuple[float, float] = (1.0, 1.0)) -> list[dict]:
        """Detections of one image as ``{"points": (N, 2) float32, "score": float}``; ``scale`` = (original width /
        map width, original height / map height): points are map coordinates times ``scale``, clipped to the
        original image."""
        maps = np.asarray(kernel_maps, dtype=np.float32)
        if maps.ndim != 3:
            raise ValueError(f"kernel maps must be (n, h, w), got shape {maps.shape}")
        binary = maps > self.thresh
        binary[1:] &= binary[0]
        labels = self._seeds(binary[-1])
        for kernel in binary[-2::-1]:  # the next larger kernel, ..., the text map
            labels = expand_labels(labels, kernel)
        return self._regions(labels, maps[0], scale)

    def _seeds(self, kernel: np.ndarray) -> np.ndarray:
        """Components of the smallest kernel, the small ones dropped, the largest ``max_candidates`` numbered
        1..k by decreasing area."""
        count, components, stats, _ = cv2.connectedComponentsWithStats(kernel.astype(np.uint8), connectivity=4)
        areas = stats[1:, cv2.CC_STAT_AREA]
        kept = [i for i in np.argsort(-areas, kind="stable") if areas[i] >= self.min_kernel_area]
        lookup = np.zeros(count, dtype=np.uint16)
        lookup[np.asarray(kept[: self.max_candidates], dtype=np.int64) + 1] = np.arange(
            1, min(len(kept), self.max_candidates) + 1)
        return lookup[components]

    def _regions(self, labels: np.ndarray, text_prob: np.ndarray, scale: tuple[float, float]) -> list[dict]:
        ys, xs = np.nonzero(labels)
        ids = labels[ys, xs].astype(np.int64)
        count = int(labels.max()) + 1
        areas = np.bincount(ids, minlength=count)
        scores = np.bincount(ids, weights=text_prob[ys, xs], minlength=count) / np.maximum(areas, 1)
        order = np.argsort(ids, kind="stable")
        points = np.stack([xs, ys], axis=1)[order].astype(np.float32)
        starts = np.searchsorted(ids[order], np.arange(count + 1))
        height, width = labels.shape
        original_max = (round(width * scale[0]) - 1, round(height * scale[1]) - 1)
        results = []
        for label in range(1, count):
            if areas[label] < self.min_area or not scores[label] >= self.min_score:  # also drops a NaN score
                continue
            pixels = points[starts[label] : starts[label + 1]]
            polygon = order_quad(cv2.boxPoints(cv2.minAreaRect(pixels))) if self.box_type == "quad" \
                else _outline(pixels)
            if polygon is None:
                continue
            polygon = np.clip(polygon * np.asarray(scale, dtype=np.float64), 0, original_max).astype(np.float32)
            results.append({"points": polygon, "score": float(scores[label])})
        return results


def _outline(pixels: np.ndarray) -> np.ndarray | None:
    """The outer contour of a region given by its pixels, simplified (None when fewer than 3 points remain)."""
    x0, y0 = pixels.min(axis=0).astype(np.int64)
    x1, y1 = pixels.max(axis=0).astype(np.int64)
    mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), dtype=np.uint8)
    mask[pixels[:, 1].astype(np.int64) - y0, pixels[:, 0].astype(np.int64) - x0] = 1
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contour = max(contours, key=cv2.contourArea)
    simplified = cv2.approxPolyDP(contour, 0.002 * cv2.arcLength(contour, closed=True), closed=True).reshape(-1, 2)
    return None if len(simplified) < 3 else (simplified + np.array([x0, y0])).astype(np.float32)
