"""``path<TAB>label`` files, the common currency of OCR datasets (PaddleOCR, MMOCR, this project)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..errors import DataError
from ..text_files import control_character, iter_lines
from .skips import count_skip


def read_label_file(path: str | Path, data_root: str | Path | None = None,
                    skips: Counter | None = None) -> list[tuple[str, str]]:
    """``(image path, label)`` of every usable line of :func:`read_label_lines`."""
    return [(image, label) for _, image, label in read_label_lines(path, data_root, skips)]


def read_label_lines(path: str | Path, data_root: str | Path | None = None,
                     skips: Counter | None = None) -> list[tuple[int, str, str]]:
    """Parse ``path<TAB>label`` lines into ``(1-based line number, image path, label)``; image paths are resolved
    against ``data_root`` (default: the file's folder).

    The file is read by the rules of ``text_files`` (UTF-8 or a BOM-marked UTF-16/32, LF or CRLF; anything else is
    a DataError naming the line). Blank lines are ignored; these lines are counted in ``skips`` by reason:
    ``malformed_line`` (no tab, or an empty path), ``carriage_return`` (a CR inside the line: mixed line ends, where
    splitting would have cut the label short) and ``control_character`` (NUL or another control character, which
    no path or label holds; a NUL would also fail in the image reader). A :class:`SkipCounter` also gets the file
    and line of each.
    """
    file = Path(path)
    if not file.is_file():
        raise DataError(f"label file not found: {file}")
    root = Path(data_root) if data_root is not None else file.parent
    if not root.is_dir():
        raise DataError(f"data root not found: {root} (for label file {file})")
    skips = Counter() if skips is None else skips
    entries = []
    for number, line in iter_lines(file, "label file"):
        bad = control_character(line)
        image, sep, label = line.partition("\t")
        if bad is not None:
            count_skip(skips, "carriage_return" if bad == "\r" else "control_character", label_file=str(file),
                       line=number)
        elif not line.strip():
            continue
        elif not sep or not image.strip():
            count_skip(skips, "malformed_line", label_file=str(file), line=number)
        else:
            entries.append((number, str(root / image.strip()), label))
    return entries
