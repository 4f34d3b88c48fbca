"""What every family's target builder shares: which annotated regions to learn from, and sub-pixel filling.

A region is left out (counted in ``counts`` by reason) when it is ``degenerate_polygon`` (wrong shape, NaN, < 3
points, zero area), ``outside_image`` (it gives nothing) or ``dont_care``; where it can be drawn, it is also zeroed in
the loss mask. A family then applies its own size and shrink checks (``thickness``) to the regions left.

numpy/OpenCV only, no torch (targets are built in DataLoader workers).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import cv2
import numpy as np

from ...data.geometry import FIXED_POINT_SCALE, FIXED_POINT_SHIFT, polygon_area

# A coordinate beyond this is garbage (and its fixed-point value would overflow the int32 points of cv2.fillPoly).
MAX_COORDINATE = 1e6


def fill_polygons(canvas: np.ndarray, paths: Sequence[np.ndarray], value: float) -> None:
    """Fill the pixels inside ``paths`` (sub-pixel vertices) with ``value``; pieces of one polygon must not overlap
    (cv2.fillPoly fills several paths even-odd)."""
    fixed = [np.rint(path * FIXED_POINT_SCALE).astype(np.int32) for path in paths]
    cv2.fillPoly(canvas, fixed, value, lineType=cv2.LINE_8, shift=FIXED_POINT_SHIFT)


class Region(NamedTuple):
    polygon: np.ndarray  # (N, 2) float32 pixels
    area: float
    visible: tuple[int, int]  # width and height of its bounding box inside the image


def learnable_regions(polygons: Sequence[np.ndarray], ignore: Sequence[bool], height: int, width: int,
                      counts: Counter, mask: np.ndarray) -> Iterator[Region]:
    """The regions of one (height, width) sample to learn from; the others are counted and zeroed in ``mask``."""
    for raw, dont_care in zip(polygons, ignore, strict=True):
        try:
            polygon = np.asarray(raw, dtype=np.float32)
        except (TypeError, ValueError):  # ragged or non-numeric points
            polygon = np.empty((0, 2), dtype=np.float32)
        # one comparison rejects NaN, inf and garbage coordinates (NaN < x is False)
        if polygon.ndim != 2 or polygon.shape[1] != 2 or len(polygon) < 2 or not np.abs(polygon).max() < MAX_COORDINATE:
            counts["degenerate_polygon"] += 1  # nothing drawable: no pixel to mask
            continue
        area = polygon_area(polygon)
        if len(polygon) < 3 or area < 1e-3:
            counts["degenerate_polygon"] += 1
            fill_polygons(mask, [polygon], 0.0)  # collinear points: mask the line the annotator drew
            continue
        x, y, w, h = cv2.boundingRect(polygon)  # the pixels it spans
        visible = (min(x + w, width) - max(x, 0), min(y + h, height) - max(y, 0))
        if visible[0] <= 0 or visible[1] <= 0:
            counts["outside_image"] += 1
            continue
        if dont_care:
            counts["dont_care"] += 1
            fill_polygons(mask, [polygon], 0.0)
            continue
        yield Region(polygon, area, visible)


def thickness(region: Region) -> float:
    """The shorter side of the region's min-area rectangle, or of its visible part when the image cuts it (a sliver
    at the border is too thin to learn from, as in DBNet)."""
    return min(*cv2.minAreaRect(region.polygon)[1], *region.visible)
