"""DBNet post-processing: probability map -> text polygons with scores, in original image coordinates.

numpy/OpenCV/pyclipper only, no torch: it also runs on the pure ONNX Runtime path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from ....data.geometry import offset_polygon, order_quad, polygon_area, polygon_perimeter
from ....registry import DET_POSTPROCESSORS


def _mean_inside(prob_map: np.ndarray, polygon: np.ndarray) -> float:
    """Mean probability over the pixels inside ``polygon``, rasterised over its bounding rectangle only."""
    height, width = prob_map.shape
    x, y, w, h = cv2.boundingRect(polygon.astype(np.float32))
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    if x0 >= x1 or y0 >= y1:
        return 0.0
    mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    cv2.fillPoly(mask, [np.rint(polygon - (x0, y0)).astype(np.int32)], 1)
    return cv2.mean(prob_map[y0:y1, x0:x1], mask)[0]


@DET_POSTPROCESSORS.register()
@dataclass
class DBPostProcess:
    """Binarise, find contours, score, unclip.

    ``box_type``: "quad" returns min-area rectangles (4 points clockwise from the top-left, ICDAR 2015 style);
    "poly" returns the simplified contour grown back, for curved text.

    ``score_mode`` (a region's score is its mean probability, kept if >= ``box_thresh``):
    "fast" averages over the quad (or simplified polygon) that is returned — cheap, but a curved or slanted
    region's rectangle takes in background and scores lower; "slow" averages over the exact contour of the
    region, which is what the network predicted (slightly slower, fairer to curved text).
    """

    thresh: float = 0.3  # binarisation of the probability map
    box_thresh: float = 0.6  # minimum mean probability inside a box
    max_candidates: int = 1000
    unclip_ratio: float = 1.5
    min_size: float = 3
    box_type: Literal["quad", "poly"] = "quad"
    score_mode: Literal["fast", "slow"] = "fast"

    def __post_init__(self) -> None:
        if self.box_type not in ("quad", "poly"):
            raise ValueError(f"box_type must be 'quad' or 'poly', got {self.box_type!r}")
        if self.score_mode not in ("fast", "slow"):
            raise ValueError(f"score_mode must be 'fast' or 'slow', got {self.score_mode!r}")

    def decode(self, outputs: Mapping[str, np.ndarray], scale: tuple[float, float] = (1.0, 1.0)) -> list[dict]:
        """One image's inference outputs (``{"prob": (1, h, w)}``) -> detections (see ``__call__``)."""
        return self(outputs["prob"][0], scale)

    def __call__(self, prob_map: np.ndarray, scale: tuple[float, float] = (1.0, 1.0)) -> list[dict]:
        """Detections of one (h, w) probability map as ``{"points": (N, 2) float32, "score": float}``.

        ``scale`` = (original width / map width, original height / map height): points are map coordinates
        times ``scale``, clipped to the original image: 0 .. size - 1, size = map size x scale, rounded.
        """
        prob_map = np.asarray(prob_map, dtype=np.float32)
        bitmap = (prob_map > self.thresh).astype(np.uint8)
        contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        if len(contours) > self.max_candidates:  # keep the largest regions, not whichever OpenCV listed first
            areas = np.array([cv2.contourArea(contour) for contour in contours])
            contours = [contours[i] for i in np.argsort(-areas, kind="stable")[:self.max_candidates]]
        height, width = prob_map.shape
        original_max = (round(width * scale[0]) - 1, round(height * scale[1]) - 1)
        results = []
        for contour in contours:
            found = self._quad(prob_map, contour) if self.box_type == "quad" else self._polygon(prob_map, contour)
            if found is None:
                continue
            polygon, score = found
            polygon = np.clip(polygon * np.asarray(scale, dtype=np.float64), 0, original_max).astype(np.float32)
            results.append({"points": polygon, "score": score})
        return results

    def _score(self, prob_map: np.ndarray, contour: np.ndarray, region: np.ndarray) -> float:
        return _mean_inside(prob_map, contour.reshape(-1, 2) if self.score_mode == "slow" else region)

    def _unclip(self, polygon: np.ndarray) -> list[np.ndarray]:
        """Grow a shrunk region back by D' = A * unclip_ratio / L (the inverse of the training shrink)."""
        area, perimeter = polygon_area(polygon), polygon_perimeter(polygon)
        if area <= 0 or perimeter <= 0:
            return []
        return offset_polygon(polygon, area * self.unclip_ratio / perimeter)

    def _quad(self, prob_map: np.ndarray, contour: np.ndarray) -> tuple[np.ndarray, float] | None:
        rect = cv2.minAreaRect(contour)
        if min(rect[1]) < self.min_size:
            return None
        box = cv2.boxPoints(rect)
        score = self._score(prob_map, contour, box)
        if not score >= self.box_thresh:  # also drops a NaN score
            return None
        grown = self._unclip(box)
        if len(grown) != 1:
            return None
        rect = cv2.minAreaRect(grown[0])
        if min(rect[1]) < self.min_size + 2:
            return None
        return order_quad(cv2.boxPoints(rect)), score

    def _polygon(self, prob_map: np.ndarray, contour: np.ndarray) -> tuple[np.ndarray, float] | None:
        epsilon = 0.002 * cv2.arcLength(contour, closed=True)
        simplified = cv2.approxPolyDP(contour, epsilon, closed=True).reshape(-1, 2)
        if len(simplified) < 4:
            return None
        score = self._score(prob_map, contour, simplified)
        if not score >= self.box_thresh:  # also drops a NaN score
            return None
        grown = self._unclip(simplified)
        if len(grown) != 1:  # a self-touching contour grows into pieces: no single polygon to return
            return None
        if min(cv2.minAreaRect(grown[0])[1]) < self.min_size + 2:
            return None
        return grown[0], score
