"""Detection labels -> recognition data: one perspective-rectified crop per readable word, plus ``labels.txt``."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from ...errors import DataError
from ...text_files import control_character
from ..geometry import crop_quad, region_quad, turn_upright
from ..images import SampleSkipped, read_image
from .det_labels import read_det_dataset


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
            if len(region.text) > 1:  # a lone character may be tall
                crop, turned = turn_upright(crop)
                rotated += turned
            name = f"crops/{stem}_{k:03d}.png"
            write_image(out_dir / name, crop)
            lines.append(f"{name}\t{region.text}\n")
    if not lines:
        raise DataError(f"no word crops from {labels} (skipped: {dict(skips) or 'none'})")
    with open(out_dir / "labels.txt", "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(lines)
    return {"images": len(samples), "regions": regions_total, "crops": len(lines), "rotated": rotated,
            "skipped": dict(sorted(skips.items())), "labels": str(out_dir / "labels.txt")}
