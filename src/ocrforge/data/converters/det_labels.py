"""Detection label formats read into one type (and written back): ICDAR 2015 txt and PaddleOCR det label files.

Every unusable line or region is counted in a ``skips`` Counter by reason; nothing is dropped silently.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from ...text_files import control_character, iter_lines
from ..geometry import region_quad
from ..images import IMAGE_SUFFIXES
from ..skips import count_skip

ICDAR_DONT_CARE = frozenset({"###"})
PADDLE_DONT_CARE = frozenset({"###", "*"})
DET_FORMATS = ("icdar2015", "paddle")


@dataclass
class TextRegion:
    """One annotated polygon: ``points`` (N x 2 float32, as annotated), its text, and whether it is don't-care."""

    points: np.ndarray
    text: str
    ignore: bool = False


@dataclass
class DetSample:
    image: Path
    regions: list[TextRegion]
    # Where the sample was annotated (``label_file``, and ``line`` for PaddleOCR files), for listing skips.
    origin: dict[str, Any] = field(default_factory=dict, compare=False)


def _points(values: Iterable) -> np.ndarray | None:
    """N x 2 float32 points from numbers, or None if any value is not a finite number."""
    try:
        array = np.asarray([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON integer beyond float's range
        return None
    if array.size < 2 or array.size % 2:
        return None
    with np.errstate(over="ignore"):  # checked in float32 below: 1e300 is finite only in float64
        points = array.reshape(-1, 2).astype(np.float32)
    return points if np.isfinite(points).all() else None


# ---------------------------------------------------------------------------------------------------- ICDAR 2015
def parse_icdar2015_line(line: str) -> TextRegion | None:
    """``x1,y1,x2,y2,x3,y3,x4,y4,transcription``; the transcription may itself hold commas. None if malformed."""
    fields = line.split(",", 8)
    if len(fields) != 9:
        return None
    points = _points(f.strip() for f in fields[:8])
    if points is None:
        return None
    text = fields[8]
    return TextRegion(points, text, text in ICDAR_DONT_CARE)


def read_icdar2015(path: str | Path, skips: Counter) -> list[TextRegion]:
    """One ICDAR 2015 GT file (UTF-8, optional BOM, LF or CRLF; see ``text_files``); bad lines are counted as
    ``bad_line``. A file that does not decode raises DataError naming the line."""
    regions = []
    for number, line in iter_lines(path, "ICDAR 2015 label file"):
        if not line.strip():
            continue
        region = parse_icdar2015_line(line)
        if region is None:
            count_skip(skips, "bad_line", label_file=str(path), line=number)
        else:
            regions.append(region)
    return regions


def read_icdar2015_dataset(images_dir: str | Path, labels: str | Path, skips: Counter,
                           stems: set[str] | None = None) -> list[DetSample]:
    """Pair ``gt_<name>.txt`` (a folder of them, or one file) with ``<images_dir>/<name>.<image suffix>``;
    ``stems`` keeps only those image names (a split of one folder).

    GT files whose image is absent are counted as ``missing_image`` (with their regions as ``region_without_image``),
    files that do not decode (see ``text_files``) as ``undecodable_label_file``, images of a GT folder without a GT
    file as ``image_without_label``.
    """
    images, label_path = Path(images_dir), Path(labels)
    if not images.is_dir():
        raise DataError(f"image folder not found: {images}")
    if label_path.is_dir():
        gt_files = sorted(label_path.glob("*.txt"))
    elif label_path.is_file():
        gt_files = [label_path]
    else:
        raise DataError(f"ICDAR 2015 labels not found: {label_path}")
    if not gt_files:
        raise DataError(f"no .txt label files in {label_path}")
    by_stem = {p.stem: p for p in sorted(images.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    if label_path.is_dir():
        labelled = {gt.stem.removeprefix("gt_") for gt in gt_files}
        for stem, image in by_stem.items():
            if stem not in labelled and (stems is None or stem in stems):
                count_skip(skips, "image_without_label", path=str(image))
    if stems is not None:
        gt_files = [gt for gt in gt_files if gt.stem.removeprefix("gt_") in stems]
    samples = []
    for gt in gt_files:
        origin = {"label_file": str(gt)}
        try:
            regions = read_icdar2015(gt, skips)
        except DataError as exc:  # one image's GT: a sample-level problem, counted like the others
            count_skip(skips, "undecodable_label_file", **origin, detail=str(exc))
            continue
        stem = gt.stem[3:] if gt.stem.startswith("gt_") else gt.stem
        if stem not in by_stem:
            count_skip(skips, "missing_image", **origin)
            count_skip(skips, "region_without_image", len(regions), **origin)
            continue
        samples.append(DetSample(by_stem[stem], regions, origin))
    return samples


def write_icdar2015(regions: Sequence[TextRegion], path: str | Path, skips: Counter) -> None:
    """Quadrilaterals only: a polygon of more than 4 points is written as its min-area rectangle (counted as
    ``polygon_to_quad``); don't-care regions become ``###``. Written with a BOM, as the original files are."""
    lines = []
    for region in regions:
        points = region.points
        if len(points) > 4:
            skips["polygon_to_quad"] += 1
            points = region_quad(points)  # ordered from the corner nearest the annotated start: readable crops
        elif len(points) < 4:
            skips["degenerate_polygon"] += 1
            continue
        if "\n" in region.text or "\r" in region.text:
            skips["newline_in_text"] += 1
            continue
        coords = ",".join(str(round(float(v))) for v in points.reshape(-1))
        lines.append(f"{coords},{'###' if region.ignore else region.text}\n")
    with open(path, "w", encoding="utf-8-sig", newline="\n") as handle:
        handle.writelines(lines)


# ------------------------------------------------------------------------------------------------------ PaddleOCR
def parse_paddle_regions(payload: str, skips: Counter, origin: dict[str, Any] | None = None) -> list[TextRegion] | None:
    """The JSON list of one PaddleOCR det line; None if it is not a JSON list, bad items count as ``bad_region``
    (located by ``origin``, the line's file and number)."""
    try:
        items = json.loads(payload)
    except (ValueError, RecursionError):  # bad JSON, an integer of over 4300 digits, nesting deeper than the stack
        return None
    if not isinstance(items, list):
        return None
    regions = []
    for item in items:
        raw = item.get("points") if isinstance(item, dict) else None
        text = item.get("transcription") if isinstance(item, dict) else None
        points = _points(v for pair in raw for v in pair) if isinstance(raw, list) and all(
            isinstance(p, list) and len(p) == 2 for p in raw) else None
        if points is None or not isinstance(text, str):
            count_skip(skips, "bad_region", **(origin or {}))
            continue
        regions.append(TextRegion(points, text, text in PADDLE_DONT_CARE))
    return regions


def read_paddle_det(path: str | Path, images_dir: str | Path, skips: Counter) -> list[DetSample]:
    """``image path<TAB>[{"transcription": ..., "points": [[x, y], ...]}, ...]``; paths relative to ``images_dir``
    (PaddleOCR's ``data_dir``). Lines without a tab or with bad JSON are counted as ``bad_line``, lines with a
    control character in the image path (NUL, a lone CR ...) as ``control_character``. The file is read by the
    rules of ``text_files``: one that does not decode raises DataError naming the line."""
    file, root = Path(path), Path(images_dir)
    if not file.is_file():
        raise DataError(f"PaddleOCR det label file not found: {file}")
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    samples = []
    for number, line in iter_lines(file, "PaddleOCR det label file"):  # split at LF only: U+2028 may be in a text
        if not line.strip():
            continue
        origin = {"label_file": str(file), "line": number}
        image, sep, payload = line.partition("\t")
        if control_character(image) is not None:
            count_skip(skips, "control_character", **origin)
            continue
        regions = parse_paddle_regions(payload, skips, origin) if sep and image.strip() else None
        if regions is None:
            count_skip(skips, "bad_line", **origin)
            continue
        samples.append(DetSample(root / image.strip(), regions, origin))
    return samples


def paddle_line(image: str, regions: Sequence[TextRegion]) -> str:
    items = [{"transcription": "###" if r.ignore else r.text,
              "points": [[_number(x), _number(y)] for x, y in r.points.tolist()]} for r in regions]
    return f"{image}\t{json.dumps(items, ensure_ascii=False)}\n"


def _number(value: float) -> int | float:
    # Integer coordinates stay integers in the JSON, as PaddleOCR's own files have them.
    return int(value) if math.isclose(value, round(value)) else round(value, 2)


# ------------------------------------------------------------------------------------------------------- both ways
def read_det_dataset(fmt: str, images_dir: str | Path, labels: str | Path, skips: Counter) -> list[DetSample]:
    if fmt == "icdar2015":
        return read_icdar2015_dataset(images_dir, labels, skips)
    if fmt == "paddle":
        return read_paddle_det(labels, images_dir, skips)
    raise DataError(f"unknown detection label format '{fmt}' (choose from {', '.join(DET_FORMATS)})")


def convert_det_labels(src: str, dst: str, images_dir: str | Path, labels: str | Path,
                       out: str | Path) -> dict:
    """Rewrite detection labels in another format; images are not copied. ``paddle`` output is one label file with
    paths relative to ``images_dir``; ``icdar2015`` output is a folder of ``gt_<image stem>.txt``."""
    if src == dst:
        raise DataError(f"--from and --to are both '{src}'")
    skips: Counter = Counter()
    samples = read_det_dataset(src, images_dir, labels, skips)
    if not samples:
        raise DataError(f"no labelled images in {labels} read as {src} (skipped: {dict(skips) or 'none'})")
    root, target = Path(images_dir).resolve(), Path(out)
    if dst == "icdar2015" and target.exists() and not target.is_dir():
        raise DataError(f"--out {target} is a file; ICDAR 2015 labels are written as a folder of gt_*.txt")
    if dst == "paddle":
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "w", encoding="utf-8", newline="\n") as handle:
            for sample in samples:
                path = sample.image.resolve()
                handle.write(paddle_line(path.relative_to(root).as_posix() if path.is_relative_to(root)
                                         else str(path), sample.regions))
    elif dst == "icdar2015":
        target.mkdir(parents=True, exist_ok=True)
        seen: set[str] = set()
        for sample in samples:
            if sample.image.stem in seen:
                # ICDAR pairs GT and image by name only; a second image of the same name cannot be told apart.
                skips["duplicate_image_name"] += 1
                continue
            seen.add(sample.image.stem)
            write_icdar2015(sample.regions, target / f"gt_{sample.image.stem}.txt", skips)
    else:
        raise DataError(f"unknown detection label format '{dst}' (choose from {', '.join(DET_FORMATS)})")
    return {"images": len(samples), "regions": sum(len(s.regions) for s in samples), "skipped": dict(skips)}
