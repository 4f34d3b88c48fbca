"""Detection labels -> recognition data: one perspective-rectified crop per readable word, plus ``labels.txt``."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from ...errors import DataError
from ...text_files import control_character
from ..images import SampleSkipped, read_image
from .det_labels import read_det_dataset, region_quad

# A crop of 2+ characters this much taller than wide is text rotated by ~90 degrees: turn it counter-clockwise, as
# PaddleOCR's get_rotate_crop_image does, so the recogniser sees horizontal text (a lone character may be tall).
TALL_RATIO = 1.5


def crop_quad(image: np.ndarray, quad: np.ndarray) -> np.ndarray | str:
    """Warp the ordered quad to an upright rectangle; a skip reason instead for a degenerate or outside quad."""
    edges = np.linalg.norm(quad - np.roll(quad, -1, axis=0), axis=1)  # top, right, bottom, left
    if edges.min() < 1.0 or abs(cv2.contourArea(quad)) < 1.0:
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


def write_image(path: Path, image: np.ndarray) -> None:
    """PNG via imencode + tofile: works for non-ASCII paths, unlike cv2.imwrite."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise DataError(f"could not encode {path}")
    data.tofile(str(path))


def _safe_stem(stem: str) -> str:
    # Tabs and control characters (line breaks, NUL ...) would break the label file or be skipped when it is read.
    return re.sub(r"[\x00-\x1f\x7f-\x9f]", "_", stem)


def det_to_crops(fmt: str, images_dir: str | Path, labels: str | Path, out: str | Path) -> dict:
    """Write ``<out>/crops/<image>_<k>.png`` and ``<out>/labels.txt`` (``crops/<name>.png<TAB>text``).

    Skipped and counted: don't-care regions, empty or multi-line texts or ones with other control characters,
    degenerate polygons, polygons outside the image, unreadable or missing images (with their regions). Crops
    turned by 90 degrees are counted as ``rotated``.
    """
    skips: Counter = Counter()
    samples = read_det_dataset(fmt, images_dir, labels, skips)
    out_dir = Path(out)
    (out_dir / "crops").mkdir(parents=True, exist_ok=True)
    lines, used_stems, rotated, regions_total = [], set(), 0, 0
    for number, sample in enumerate(samples):
        regions_total += len(sample.regions)
        readable = [r for r in sample.regions if not r.ignore]
        skips["dont_care"] += len(sample.regions) - len(readable)
        if not readable:
            continue
        try:
            image = read_image(sample.image)
        except SampleSkipped as exc:
            skips[exc.reason] += 1
            skips["region_without_image"] += len(readable)
            continue
        stem = _safe_stem(sample.image.stem)
        stem = f"{stem}-{number}" if stem in used_stems else stem  # same name in two folders (PaddleOCR lists)
        used_stems.add(stem)
        for k, region in enumerate(readable):
            if not region.text.strip():
                skips["empty_text"] += 1
                continue
            bad = control_character(region.text)
            if bad is not None:  # read_label_file would skip the line (or cut it at a line break)
                skips["newline_in_text" if bad in "\r\n" else "control_character"] += 1
                continue
            quad = region_quad(region.points)
            crop = crop_quad(image, quad) if quad is not None else "degenerate_polygon"
            if isinstance(crop, str):
                skips[crop] += 1
                continue
            if len(region.text) > 1 and crop.shape[0] >= TALL_RATIO * crop.shape[1]:
                crop = np.ascontiguousarray(np.rot90(crop))
                rotated += 1
            name = f"crops/{stem}_{k:03d}.png"
            write_image(out_dir / name, crop)
            lines.append(f"{name}\t{region.text}\n")
    if not lines:
        raise DataError(f"no word crops from {labels} (skipped: {dict(skips) or 'none'})")
    with open(out_dir / "labels.txt", "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(lines)
    return {"images": len(samples), "regions": regions_total, "crops": len(lines), "rotated": rotated,
            "skipped": dict(sorted(skips.items())), "labels": str(out_dir / "labels.txt")}
