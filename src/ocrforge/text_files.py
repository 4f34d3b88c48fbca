"""One set of rules for every text file the project reads: label files, dictionaries, file lists, CSV, JSON, configs.

Encoding: UTF-8, with or without a BOM; UTF-16 or UTF-32 only when a BOM says so. Those are decoded rather than
refused: Windows PowerShell's ``>`` and Notepad's "Unicode" write UTF-16 LE with a BOM, and the BOM makes the
encoding certain, so refusing would only send the user to a converter. Anything that does not decode is a
DataError naming the file, the 1-based line and the offending byte; nothing is guessed (a Latin-1 file decoded
as such would silently change every accented label).

Lines end at LF; one CR right before it (CRLF, Windows) is dropped. A CR anywhere else stays in its line for the
caller to count or refuse: splitting there, as Python's universal newlines do, would train ``ab\\rcd`` as ``ab``
and shift every later line of a dictionary by one (PaddleOCR splits at LF only, so its class ids would no longer
line up).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from pathlib import Path

from .errors import DataError

# (BOM, codec of the bytes after it); UTF-32 LE's BOM begins with UTF-16 LE's, so it is tested first.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8"),
         (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
# C0 and C1 control characters except TAB (the field separator): none belongs in a path, label or dictionary entry.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def _encoding(head: bytes) -> tuple[str, int]:
    """(codec, BOM length) from a file's first bytes; UTF-8 without a BOM by default."""
    return next(((codec, len(bom)) for bom, codec in _BOMS if head.startswith(bom)), ("utf-8", 0))


def _strip_line_end(line: str) -> str:
    line = line[:-1] if line.endswith("\n") else line
    return line[:-1] if line.endswith("\r") else line


def _decode(body: bytes, codec: str, file: Path, what: str, first_line: int = 1) -> str:
    """``body`` (BOM removed) decoded; an error names the 1-based line and column of the first bad byte."""
    try:
        return body.decode(codec)
    except UnicodeDecodeError as exc:
        before = body[:exc.start].decode(codec)  # decodes: the error is the first bad byte
        line = first_line + before.count("\n")
        column = len(before) - (before.rfind("\n") + 1) + 1
        raise DataError(f"{what} {file}, line {line}, column {column}: not {codec.upper()} (byte "
                        f"0x{body[exc.start]:02x}); save the file as UTF-8, e.g. with iconv -f <its encoding> "
                        "-t utf-8") from None


def read_text(path: str | Path, what: str) -> str:
    """The whole file as text (BOM removed, line ends untouched) under the rules above; ``what`` names the file's
    role in error messages (e.g. ``"id2char file"``)."""
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {what} {file}: {exc.strerror}") from None
    codec, bom = _encoding(data[:4])
    return _decode(data[bom:], codec, file, what)


def iter_lines(path: str | Path, what: str) -> Iterator[tuple[int, str]]:
    """``(1-based line number, line without its line end)`` for every line, blank ones included; UTF-8 files are
    streamed, so a large label file is never held in memory twice."""
    file = Path(path)
    try:
        handle = open(file, "rb")  # closed by the with below; open errors get their own message
    except OSError as exc:
        raise DataError(f"cannot read {what} {file}: {exc.strerror}") from None
    with handle:
        codec, bom = _encoding(handle.read(4))
        handle.seek(bom)
        if codec != "utf-8":
            lines = _decode(handle.read(), codec, file, what).split("\n")
            if lines[-1] == "":
                lines.pop()  # the final line end ends a line; it does not start one
            for number, line in enumerate(lines, 1):
                yield number, _strip_line_end(line)
            return
        for number, raw in enumerate(handle, 1):
            yield number, _strip_line_end(_decode(raw, codec, file, what, first_line=number))


def control_character(text: str) -> str | None:
    """The first control character of ``text`` other than TAB, or None."""
    found = _CONTROL.search(text)
    return found.group() if found else None
