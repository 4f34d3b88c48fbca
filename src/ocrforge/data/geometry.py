"""Polygon geometry shared by label conversion, detection targets and post-processing, and the OCR pipeline: quad
ordering, area and perimeter, offsetting (DB's shrink and unclip) and perspective crops of text regions.

numpy, OpenCV and pyclipper only, no torch: post-processing and the OCR pipeline also run on the ONNX Runtime path.
Pixel coordinates follow OpenCV: pixel (x, y) is the point (x, y).
"""

from __future__ import annotations

import cv2
import numpy as np
import pyclipper

# pyclipper works on integers: offsets run on coordinates in 1/16 pixel, and cv2.fillPoly reads the same fixed-point
# numbers through its ``shift`` argument, so sub-pixel geometry survives both steps.
FIXED_POINT_SHIFT = 4
FIXED_POINT_SCALE = 1 << FIXED_POINT_SHIFT
# A crop of 2+ characters this much taller than wide is text rotated by ~90 degrees: turn it counter-clockwise, as
# PaddleOCR's get_rotate_crop_image does, so the recogniser sees horizontal text (a lone character may be tall).
TALL_RATIO = 1.5


def order_quad(points: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """Four points clockwise on screen (y down), starting from the vertex nearest ``start`` (default: the
    top-left one, smallest x + y).

    Annotators (ICDAR 2015, PPOCRLabel) put the text's own top-left first, so passing the annotated first point
    keeps words tilted past 45 degrees or upside down readable; a purely geometric top-left would flip those.
    """
    centre = points.mean(axis=0)
    angles = np.arctan2(points[:, 1] - centre[1], points[:, 0] - centre[0])
    ordered = points[np.argsort(angles, kind="stable")]  # increasing angle is clockwise when y points down
    first = (np.argmin(ordered.sum(axis=1)) if start is None
             else np.argmin(np.linalg.norm(ordered - start, axis=1)))
    return np.roll(ordered, -int(first), axis=0).astype(np.float32)


def region_quad(points: np.ndarray, annotated: bool = True) -> np.ndarray | None:
    """The quad to rectify: the polygon itself if it has 4 points, its min-area rectangle if more, None if fewer;
    ordered clockwise from the corner nearest the first point of an ``annotated`` polygon (annotators start at the
    text's own top-left), else from the geometric top-left (a detector's polygon starts anywhere)."""
    if len(points) < 4:
        return None
    quad = cv2.boxPoints(cv2.minAreaRect(points.astype(np.float32))) if len(points) > 4 else points
    return order_quad(np.asarray(quad, dtype=np.float32), start=points[0] if annotated else None)


def polygon_area(polygon: np.ndarray) -> float:
    """The area enclosed by a closed polygon ((N, 2) points), whichever way it runs."""
    return abs(cv2.contourArea(np.asarray(polygon, dtype=np.float32)))


def polygon_perimeter(polygon: np.ndarray) -> float:
    """The length of a closed polygon's boundary."""
    return cv2.arcLength(np.asarray(polygon, dtype=np.float32), closed=True)


def offset_polygon(polygon: np.ndarray, distance: float) -> list[np.ndarray]:
    """Grow (``distance`` > 0) or shrink (< 0) a closed polygon by ``distance`` pixels with round joins.

    Returns float32 (M, 2) paths in pixels: usually one; a shrink may split a non-convex polygon into several
    pieces or make it vanish (empty list).
    """
    offset = pyclipper.PyclipperOffset(arc_tolerance=0.25 * FIXED_POINT_SCALE)  # arcs within 1/4 pixel
    offset.AddPath(np.rint(polygon * FIXED_POINT_SCALE).astype(np.int64).tolist(), pyclipper.JT_ROUND,
                   pyclipper.ET_CLOSEDPOLYGON)
    paths = offset.Execute(distance * FIXED_POINT_SCALE)
    return [np.array(path, dtype=np.float32) * (1.0 / FIXED_POINT_SCALE) for path in paths if len(path) >= 3]


def crop_quad(image: np.ndarray, quad: np.ndarray) -> np.ndarray | str:
    """Warp the ordered quad to an upright rectangle; a skip reason instead for a degenerate or outside quad."""
    edges = np.linalg.norm(quad - np.roll(quad, -1, axis=0), axis=1)  # top, right, bottom, left
    if edges.min() < 1.0 or polygon_area(quad) < 1.0:
        return "degenerate_polygon"
    height, width = image.shape[:2]
    if quad[:, 0].max() < 0 or quad[:, 1].max() < 0 or quad[:, 0].min() >= width or quad[:, 1].min() >= height:
        return "polygon_outside_image"
    crop_w = round(max(edges[0], edges[2]))
    crop_h = round(max(edges[1], edges[3]))
    target = np.float32([[0, 0], [crop_w, 0], [crop_w, crop_h], [0, crop_h]])
    matrix = cv2.getPerspectiveTransform(quad, target)
    return cv2.warpPerspective(image, matrix, (crop_w, crop_h), flags=cv2.INTER_CUBIC,
                               borderMode=cv2.BORDER_REPLICATE)


def turn_upright(crop: np.ndarray) -> tuple[np.ndarray, bool]:
    """``crop`` turned counter-clockwise by 90 degrees when it is ``TALL_RATIO`` times taller than wide (a vertical
    line of text), and whether it was turned."""
    if crop.shape[0] >= TALL_RATIO * crop.shape[1]:
        return np.ascontiguousarray(np.rot90(crop)), True
    return crop, False
