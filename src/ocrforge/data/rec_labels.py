"""Recognition label files: several ``path<TAB>label`` files mixed with per-file sampling ratios.

Ratios follow PaddleOCR's ``ratio_list``: 0.5 keeps a seeded random half of a file, 1 keeps it all; unlike
PaddleOCR, a ratio above 1 repeats the file (2.5 = every sample twice plus a seeded random half), which is how a
small set is up-weighted against a large one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError
from .label_files import read_label_file


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
                    seed: int = 0) -> tuple[list[tuple[str, str]], Counter]:
    """All usable ``(image path, label)`` pairs of ``label_files`` after sampling, and the skips by reason.

    Paths are resolved against ``data_root`` (default: each file's folder). Skip reasons: those of
    ``read_label_file`` (``malformed_line``, ``carriage_return``, ``control_character``), ``empty_label`` (nothing
    but whitespace), ``label_too_long`` (more than ``max_length`` characters). Ratios
    apply to the usable lines of each file; the draw depends only on ``seed`` and the file's position.
    """
    if not label_files:
        raise DataError("no recognition label files given")
    skips: Counter = Counter()
    samples: list[tuple[str, str]] = []
    for position, (file, ratio) in enumerate(zip(label_files, _ratios(ratios, len(label_files)))):
        usable = []
        for path, label in read_label_file(file, data_root, skips):
            if not label.strip():
                skips["empty_label"] += 1
            elif max_length is not None and len(label) > max_length:
                skips["label_too_long"] += 1
            else:
                usable.append((path, label))
        samples += sample_by_ratio(usable, ratio, np.random.default_rng([seed, position]))
    return samples, skips
