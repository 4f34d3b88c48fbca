"""``path<TAB>label`` files, the common currency of OCR datasets (PaddleOCR, MMOCR, this project)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..errors import DataError


def read_label_file(path: str | Path, data_root: str | Path | None = None,
                    skips: Counter | None = None) -> list[tuple[str, str]]:
    """Parse ``path<TAB>label`` lines; image paths are resolved against ``data_root`` (default: the file's folder).

    Lines without a tab or with an empty path are counted in ``skips['malformed_line']``; blank lines are ignored.
    """
    file = Path(path)
    if not file.is_file():
        raise DataError(f"label file not found: {file}")
    root = Path(data_root) if data_root is not None else file.parent
    if not root.is_dir():
        raise DataError(f"data root not found: {root} (for label file {file})")
    entries = []
    with open(file, encoding="utf-8-sig") as handle:
        for line in handle:
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            image, sep, label = line.partition("\t")
            if not sep or not image.strip():
                if skips is not None:
                    skips["malformed_line"] += 1
                continue
            entries.append((str(root / image.strip()), label))
    return entries
