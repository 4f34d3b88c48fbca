"""Detection pictures: ground truth in green (don't-care in grey), predictions in red, counts in a header bar."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

GREEN, GREY, RED = (0, 200, 0), (150, 150, 150), (230, 0, 0)


def _lines(image: np.ndarray, polygons: list, colour: tuple[int, int, int], thickness: int) -> None:
    for points in polygons:
        pts = np.round(np.asarray(points, dtype=np.float32)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(image, [pts], isClosed=True, color=colour, thickness=thickness, lineType=cv2.LINE_AA)


def draw_detections(image: np.ndarray, prediction: dict) -> np.ndarray:
    """RGB picture of one image's ground truth and predictions, with a header: matched / GT / predictions."""
    canvas = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 600))
    gts, ignore = prediction.get("gt_polygons", []), prediction.get("gt_ignore", [])
    _lines(canvas, [g for g, dc in zip(gts, ignore, strict=True) if dc], GREY, thickness)
    _lines(canvas, [g for g, dc in zip(gts, ignore, strict=True) if not dc], GREEN, thickness)
    _lines(canvas, prediction["polygons"], RED, thickness)
    parts = [f"GT (green) {prediction.get('num_gt', len(gts))}", f"pred (red) {prediction.get('num_pred', '-')}",
             f"matched {prediction.get('matched', '-')}"]
    # One line when it fits the image's width, else one line per count (narrow crops keep every number readable).
    lines = ["  ".join(parts)]
    if cv2.getTextSize(lines[0], cv2.FONT_HERSHEY_SIMPLEX, 0.55, 1)[0][0] > canvas.shape[1] - 12:
        lines = parts
    header = np.full((8 + 20 * len(lines), canvas.shape[1], 3), 255, dtype=np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(header, line, (6, 20 + 20 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([header, canvas], axis=0)


def save_detection_pictures(predictions: list[dict], image_of: Callable[[dict], np.ndarray],
                            out_dir: str | Path) -> list[Path]:
    """One JPEG per test image, named after the image (index-prefixed so names never collide)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for pred in predictions:
        picture = draw_detections(image_of(pred), pred)
        path = out / f"{pred['index']:05d}_{Path(str(pred['path'])).stem[:60]}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        written.append(path)
    return written
