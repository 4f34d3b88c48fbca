"""Character dictionaries for recognition: label text <-> class ids, with an explicit out-of-dictionary policy.

Class ids: 0 is the CTC blank, the dictionary's characters follow in file order (1..N), the optional space comes
after them, and ``<unk>`` (only with ``oov="unknown"``) is last. Keeping file order means a PaddleOCR dictionary
gives the same class ids as PaddleOCR, so its pretrained heads line up.
"""

from __future__ import annotations

import logging
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import DataError
from ..text_files import control_character, iter_lines
from .label_files import read_label_file

log = logging.getLogger("ocrforge")

BLANK = 0
UNKNOWN_TOKEN = "<unk>"
# Decoding <unk> yields one replacement character, so edit distances stay per character.
UNKNOWN_TEXT = "\ufffd"
OOV_POLICIES = ("error", "skip", "unknown")

_PRINTABLE = string.digits + string.ascii_letters + string.punctuation
# "lowercase" is digits + a-z: the usual case-insensitive English set (PaddleOCR's default when no dict is given).
BUILTIN_CHARSETS: dict[str, str] = {
    "digits": string.digits,
    "lowercase": string.digits + string.ascii_lowercase,
    "printable": _PRINTABLE,
    "printable_space": _PRINTABLE + " ",
}


def read_dict_file(path: str | Path) -> list[str]:
    """One character per line (UTF-8, a BOM is ignored; see ``text_files``); only the line end (LF or CRLF) is
    stripped, so ' ' is the space. Lines are split at LF only, as PaddleOCR does, so class ids match its own; an
    empty line or one holding a control character (a lone CR, NUL ...) is an error naming the line."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"dictionary file not found: {file}")
    chars, problems, multi = [], [], []
    for number, entry in iter_lines(file, "dictionary"):
        bad = control_character(entry)
        if not entry:
            problems.append(f"line {number}: {entry!r} is 0 code points, expected 1")
        elif bad is not None:
            problems.append(f"line {number}: {entry[:20]!r} holds the control character U+{ord(bad):04X}"
                            + (" (a CR that does not end the line: mixed line ends?)" if bad == "\r" else ""))
        elif len(entry) > 1:
            multi.append(entry)
        chars.append(entry)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... ({len(problems)} in all)" if len(problems) > 5 else "")
        raise DataError(f"dictionary {file}: {shown}")
    if not chars:
        raise DataError(f"dictionary {file} is empty")
    if multi:
        # Kept so that class ids match the file (PaddleOCR's PP-OCRv5 dictionary has flag emoji of two code
        # points); labels are encoded one code point at a time, so these classes can be predicted, never trained.
        log.warning("dictionary %s: %d entries of several code points (decoded, never matched in labels): %s",
                    file, len(multi), " ".join(multi[:10]))
    return chars


class Charset:
    """Maps label text to class ids (0 = CTC blank) and back.

    ``oov`` decides what happens to a label with characters outside the dictionary: ``error`` stops, ``skip``
    drops the sample, ``unknown`` maps them to ``<unk>`` (an extra last class). ``lowercase`` folds labels before
    lookup (the dictionary itself is used as given).
    """

    def __init__(self, chars: Iterable[str], use_space_char: bool = False, lowercase: bool = False,
                 oov: str = "error", name: str = "") -> None:
        if oov not in OOV_POLICIES:
            raise DataError(f"unknown out-of-dictionary policy '{oov}' (choose from {', '.join(OOV_POLICIES)})")
        self.name, self.lowercase, self.oov = name, lowercase, oov
        self.chars: list[str] = list(chars)
        if any(not c for c in self.chars):
            raise DataError(f"charset {name or ''}: empty entry")
        if use_space_char and " " not in self.chars:
            self.chars.append(" ")
        self._index: dict[str, int] = {}
        duplicates = []
        for i, char in enumerate(self.chars, start=1):
            if char in self._index:
                duplicates.append(char)
            else:
                self._index[char] = i
        if duplicates:
            # Kept (class ids must match the file for pretrained heads) but never silent: the later copies are unused.
            log.warning("charset %s: %d duplicate entries (first occurrence used): %s", name, len(duplicates),
                        "".join(duplicates[:20]))
        self.duplicates = duplicates
        self.unknown_id: int | None = len(self.chars) + 1 if oov == "unknown" else None

    @classmethod
    def from_file(cls, path: str | Path, **kwargs) -> Charset:
        return cls(read_dict_file(path), name=str(path), **kwargs)

    @classmethod
    def builtin(cls, name: str, **kwargs) -> Charset:
        if name not in BUILTIN_CHARSETS:
            raise DataError(f"unknown built-in charset '{name}' (known: {', '.join(BUILTIN_CHARSETS)})")
        return cls(BUILTIN_CHARSETS[name], name=name, **kwargs)

    @classmethod
    def load(cls, spec: str | Path, **kwargs) -> Charset:
        """A built-in name (``digits``, ``lowercase``, ``printable``, ``printable_space``) or a dictionary file."""
        return cls.builtin(str(spec), **kwargs) if str(spec) in BUILTIN_CHARSETS else cls.from_file(spec, **kwargs)

    @property
    def tokens(self) -> list[str]:
        """Class names by id: blank, the characters, then ``<unk>`` when enabled."""
        return ["<blank>", *self.chars] + ([UNKNOWN_TOKEN] if self.unknown_id is not None else [])

    @property
    def num_classes(self) -> int:
        return len(self.chars) + 1 + (self.unknown_id is not None)

    def __contains__(self, char: str) -> bool:
        return char in self._index

    def normalize(self, text: str) -> str:
        return text.lower() if self.lowercase else text

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` (after case folding); out-of-dictionary characters map to ``<unk>`` or raise DataError."""
        ids = []
        for char in self.normalize(text):
            index = self._index.get(char, self.unknown_id)
            if index is None:
                raise DataError(f"character {char!r} of label {text!r} is not in the dictionary {self.name}")
            ids.append(index)
        return ids

    def encode_label(self, text: str, counts: Counter) -> list[int] | str:
        """Apply the policies to one label: the ids, or the reason to skip the sample.

        Every effect lands in ``counts``: ``case_folded`` labels, ``empty_label``, ``out_of_dict_label`` (labels
        with foreign characters), ``out_of_dict_char`` (those characters), ``mapped_to_unknown`` (characters).
        The ``error`` policy counts, then raises DataError.
        """
        normalized = self.normalize(text)
        if normalized != text:
            counts["case_folded"] += 1
        if not normalized:
            counts["empty_label"] += 1
            return "empty_label"
        foreign = [c for c in normalized if c not in self._index]
        if not foreign:
            return [self._index[c] for c in normalized]
        counts["out_of_dict_label"] += 1
        counts["out_of_dict_char"] += len(foreign)
        if self.oov == "error":
            raise DataError(f"label {text!r} has characters not in the dictionary {self.name}: "
                            f"{''.join(sorted(set(foreign)))!r} (set oov to 'skip' or 'unknown' to continue)")
        if self.oov == "skip":
            return "out_of_dict"
        counts["mapped_to_unknown"] += len(foreign)
        return self.encode(normalized)

    def decode(self, ids: Iterable[int], collapse_repeats: bool = False) -> str:
        """Text of ``ids``; blanks are dropped. ``collapse_repeats`` merges runs first (greedy CTC decoding)."""
        out, previous = [], None
        for raw in ids:
            index = int(raw)
            if not 0 <= index < self.num_classes:
                raise ValueError(f"class id {index} outside 0..{self.num_classes - 1}")
            if collapse_repeats and index == previous:
                continue
            previous = index
            if index == BLANK:
                continue
            out.append(UNKNOWN_TEXT if index == self.unknown_id else self.chars[index - 1])
        return "".join(out)

    def __repr__(self) -> str:
        return f"Charset({self.name or 'custom'}, {len(self.chars)} chars, oov={self.oov})"


def sort_by_frequency(counts: Counter) -> list[str]:
    """Most frequent first, ties by code point, so the same labels always give the same dictionary."""
    return sorted(counts, key=lambda c: (-counts[c], ord(c)))


def build_charset(label_files: Sequence[str | Path], lowercase: bool = False, include_space: bool = False,
                  stats: Counter | None = None) -> tuple[list[str], Counter]:
    """Characters of every label in ``path<TAB>label`` files, sorted by frequency, and their counts.

    The space is left out unless ``include_space`` (train with ``use_space_char`` instead, as PaddleOCR does); its
    count stays in the returned counts. ``stats`` receives ``labels``, ``empty_label`` and the skips of
    ``read_label_file`` (``malformed_line``, ``carriage_return``, ``control_character``).
    """
    stats = Counter() if stats is None else stats
    counts: Counter = Counter()
    for file in label_files:
        for _, label in read_label_file(file, skips=stats):
            text = label.lower() if lowercase else label
            if not text:
                stats["empty_label"] += 1
                continue
            stats["labels"] += 1
            counts.update(text)
    if not counts:
        raise DataError(f"no labels found in {', '.join(map(str, label_files))}")
    chars = [c for c in sort_by_frequency(counts) if include_space or c != " "]
    return chars, counts


def write_dict_file(chars: Sequence[str], path: str | Path) -> None:
    bad = [c for c in chars if not c or control_character(c)]  # each would not read back as itself
    if bad:
        raise DataError(f"cannot write {bad[:10]!r} to a one-character-per-line dictionary")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(f"{c}\n" for c in chars)
