"""Recognition label files: several ``path<TAB>label`` files mixed with per-file sampling ratios.

Ratios follow PaddleOCR's ``ratio_list``: 0.5 keeps a seeded random half of a file, 1 keeps it all; unlike
PaddleOCR, a ratio above 1 repeats the file (2.5 = every sample twice plus a seeded random half), which is how a
small set is up-weighted against a large one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError
from .label_files import read_label_lines
from .skips import LineOrigins, SkipCounter, count_skip


def _ratios(ratios: float | Sequence[float] | None, count: int) -> list[float]:
    if ratios is None:
        return [1.0] * count
    values = [float(ratios)] * count if isinstance(ratios, (int, float)) else [float(r) for r in ratios]
    if len(values) != count:
        raise DataError(f"{len(values)} sampling ratios for {count} label files; give one per file or a single one")
    if any(not np.isfinite(r) or r < 0 for r in values):
        raise DataError(f"sampling ratios must be finite and >= 0, got {values}")
    return values


def sample_by_ratio(items: Sequence, ratio: float, rng: np.random.Generator) -> list:
    """``int(ratio)`` full copies in order, then ``round(frac * len)`` items drawn without replacement."""
    whole, frac = divmod(ratio, 1.0)
    picked = list(items) * int(whole)
    extra = round(frac * len(items))
    if extra:
        chosen = np.sort(rng.permutation(len(items))[:extra])  # sorted: file order kept, easier to inspect
        picked += [items[i] for i in chosen]
    return picked


def read_rec_labels(label_files: Sequence[str | Path], data_root: str | Path | None = None,
                    ratios: float | Sequence[float] | None = None, max_length: int | None = None,
                    seed: int = 0, origins: LineOrigins | None = None) -> tuple[list[tuple[str, str]], SkipCounter]:
    """All usable ``(image path, label)`` pairs of ``label_files`` after sampling, and the skips by reason (with
    the file and line of the first ones); ``origins``, if given, receives the file and line of every sample.

    Paths are resolved against ``data_root`` (default: each file's folder). Skip reasons: those of
    ``read_label_file`` (``malformed_line``, ``carriage_return``, ``control_character``), ``empty_label`` (nothing
    but whitespace), ``label_too_long`` (more than ``max_length`` characters). Ratios
    apply to the usable lines of each file; the draw depends only on ``seed`` and the file's position.
    """
    if not label_files:
        raise DataError("no recognition label files given")
    skips = SkipCounter()
    samples: list[tuple[str, str]] = []
    for position, (file, ratio) in enumerate(zip(label_files, _ratios(ratios, len(label_files)))):
        usable, lines = [], []
        for line, path, label in read_label_lines(file, data_root, skips):
            if not label.strip():
                count_skip(skips, "empty_label", label_file=str(file), line=line, path=path)
            elif max_length is not None and len(label) > max_length:
                count_skip(skips, "label_too_long", label_file=str(file), line=line, path=path)
            else:
                usable.append((path, label))
                lines.append(line)
        # Indices are drawn, not the pairs themselves: the same draw picks each sample's line number too.
        picked = sample_by_ratio(range(len(usable)), ratio, np.random.default_rng([seed, position]))
        samples += [usable[i] for i in picked]
        if origins is not None:
            origins.extend(str(file), [lines[i] for i in picked])
    return samples, skips
