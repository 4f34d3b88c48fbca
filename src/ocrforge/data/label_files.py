"""``path<TAB>label`` files, the common currency of OCR datasets (PaddleOCR, MMOCR, this project)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..errors import DataError
from ..text_files import control_character, iter_lines


def read_label_file(path: str | Path, data_root: str | Path | None = None,
                    skips: Counter | None = None) -> list[tuple[str, str]]:
    """Parse ``path<TAB>label`` lines; image paths are resolved against ``data_root`` (default: the file's folder).

    The file is read by the rules of ``text_files`` (UTF-8 or a BOM-marked UTF-16/32, LF or CRLF; anything else is
    a DataError naming the line). Blank lines are ignored; these lines are counted in ``skips`` by reason:
    ``malformed_line`` (no tab, or an empty path), ``carriage_return`` (a CR inside the line: mixed line ends, where
    splitting would have cut the label short) and ``control_character`` (NUL or another control character, which
    no path or label holds; a NUL would also fail in the image reader).
    """
    file = Path(path)
    if not file.is_file():
        raise DataError(f"label file not found: {file}")
    root = Path(data_root) if data_root is not None else file.parent
    if not root.is_dir():
        raise DataError(f"data root not found: {root} (for label file {file})")
    skips = Counter() if skips is None else skips
    entries = []
    for _, line in iter_lines(file, "label file"):
        bad = control_character(line)
        image, sep, label = line.partition("\t")
        if bad is not None:
            skips["carriage_return" if bad == "\r" else "control_character"] += 1
        elif not line.strip():
            continue
        elif not sep or not image.strip():
            skips["malformed_line"] += 1
        else:
            entries.append((str(root / image.strip()), label))
    return entries
