"""Folder-per-character recognition sets (the layout of PaddleOCR's PP-OCRv5 fine-tuning guide) -> ``path<TAB>char``
train/val lists, dictionary and stats.

Input: ``<data_dir>/<id>/<char>_<n>.png``, ``samples.csv`` (a header row naming at least a path column and a char
or id column, in any order; paths relative to the folder holding ``data_dir``, e.g. ``binarized_data/5378/紅_26.png``)
and ``id2char.json`` (``{"5378": "紅", ...}``). The label of a sample is ``id2char[id]``. Both files are read by
the rules of ``text_files`` (UTF-8 or BOM-marked UTF-16/32; a file that does not decode is a DataError naming the
line).

Rows that cannot be trusted are dropped and counted (``bad_row``: wrong field count, an empty or control character
in a used field, a field over the csv module's size limit; ``missing_file``, ``unknown_id``,
``char_id_mismatch``, ``folder_id_mismatch``, ``duplicate_path``); file names that do not follow ``<char>_<n>.<ext>``
are counted but kept (names are often mangled by archive encodings, as in that guide's sets; the id is
authoritative).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ...errors import DataError
from ...text_files import control_character, read_text
from ..charset import sort_by_frequency, write_dict_file
from ..images import IMAGE_SUFFIXES

PATH_COLUMNS = ("path", "image", "image_path", "img_path", "file", "filename")
CHAR_COLUMNS = ("char", "character", "label", "text")
ID_COLUMNS = ("id", "char_id", "label_id", "class_id")
DROPPED = ("bad_row", "missing_file", "unknown_id", "char_id_mismatch", "folder_id_mismatch", "duplicate_path")
KEPT_WITH_WARNING = ("odd_file_name", "file_name_char_mismatch")
OTHER = ("bad_id2char_entry", "files_not_in_csv")
_FILE_NAME = re.compile(r"^(?P<char>.+)_(?P<n>\d+)$")
_EXAMPLES = 5


class _Problems:
    """Counts by category plus the first few examples of each, for the printed summary and the stats file."""

    def __init__(self) -> None:
        self.counts: Counter = Counter({name: 0 for name in DROPPED + KEPT_WITH_WARNING + OTHER})
        self.examples: dict[str, list[str]] = defaultdict(list)

    def add(self, category: str, detail: str, amount: int = 1) -> None:
        self.counts[category] += amount
        if len(self.examples[category]) < _EXAMPLES:
            self.examples[category].append(detail)


def _norm_id(value: str) -> str:
    """'0042' and '42' name the same id: folder names and JSON keys are often padded differently. Leading zeros
    are stripped as text: int() fails on digits such as '²' and on more than 4300 of them."""
    value = value.strip()
    return (value.lstrip("0") or "0") if value.isascii() and value.isdigit() else value


def load_id2char(path: str | Path, problems: _Problems) -> dict[str, str]:
    file = Path(path)
    if not file.is_file():
        raise DataError(f"id2char file not found: {file}")
    try:
        raw = json.loads(read_text(file, "id2char file"))
    except json.JSONDecodeError as exc:
        raise DataError(f"id2char file {file}, line {exc.lineno}, column {exc.colno}: not JSON: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:  # an integer of over 4300 digits; nesting deeper than the stack
        raise DataError(f"id2char file {file}: not usable JSON: {str(exc)[:200]}") from None
    if not isinstance(raw, dict):
        raise DataError(f"{file} must hold a JSON object mapping id -> character, not {type(raw).__name__}")
    mapping = {}
    for key, value in raw.items():
        if not isinstance(value, str) or not value.strip() or control_character(value) or "\t" in value:
            problems.add("bad_id2char_entry", f"{key!r}: {value!r}")
        else:
            mapping[_norm_id(str(key))] = value
    return mapping


def _find_column(header: list[str], names: tuple[str, ...]) -> int | None:
    lowered = [h.strip().lower() for h in header]
    return next((lowered.index(n) for n in names if n in lowered), None)


def _resolve(raw: str, data_dir: Path) -> Path | None:
    # Backslashes come from CSVs written on Windows; relative paths are tried against the data dir's parent
    # (the documented layout) and the data dir itself.
    path = Path(raw.replace("\\", "/"))
    candidates = [path] if path.is_absolute() else [data_dir.parent / path, data_dir / path]
    return next((Path(os.path.abspath(c)) for c in candidates if c.is_file()), None)


def _rows(reader: Iterator[list[str]], problems: _Problems) -> Iterator[list[str] | None]:
    """The CSV's rows; None for one the csv module refuses (a field over its size limit), counted as ``bad_row``."""
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problems.add("bad_row", f"line {reader.line_num}: {exc}")
            yield None


def read_samples(data_dir: Path, samples_csv: Path, id2char: dict[str, str],
                 problems: _Problems) -> tuple[list[tuple[Path, str]], int, set[Path]]:
    """Usable ``(absolute image path, label)`` rows of the CSV, the number of data rows, every existing file named."""
    if not samples_csv.is_file():
        raise DataError(f"samples CSV not found: {samples_csv}")
    seen: set[Path] = set()
    mentioned: set[Path] = set()
    kept, rows = [], 0
    # Decoded whole (a CSV field may hold a line break), then split by the csv module's own rules.
    reader = csv.reader(io.StringIO(read_text(samples_csv, "samples CSV"), newline=""))
    header = next((r for r in _rows(reader, problems) if r is not None and any(f.strip() for f in r)), None)
    if header is None:
        raise DataError(f"{samples_csv} is empty")
    path_col, char_col, id_col = (_find_column(header, n) for n in (PATH_COLUMNS, CHAR_COLUMNS, ID_COLUMNS))
    if path_col is None or (char_col is None and id_col is None):
        raise DataError(f"{samples_csv}: header {str(header)[:200]} needs a path column ({'/'.join(PATH_COLUMNS)}) "
                        f"and a char ({'/'.join(CHAR_COLUMNS)}) or id ({'/'.join(ID_COLUMNS)}) column")
    for row in _rows(reader, problems):
        if row is not None and not any(f.strip() for f in row):
            continue
        rows += 1
        if row is None:
            continue  # a row the csv module refused, counted by _rows
        where = f"line {reader.line_num}: {','.join(row)[:200]}"
        used = [c for c in (path_col, char_col, id_col) if c is not None]
        if len(row) != len(header) or any(not row[c].strip() or control_character(row[c]) for c in used):
            problems.add("bad_row", where)
            continue
        path = _resolve(row[path_col].strip(), data_dir)
        if path is None:
            problems.add("missing_file", where)
            continue
        mentioned.add(path)
        # Without an id column the folder name is the id.
        sample_id = _norm_id(row[id_col] if id_col is not None else path.parent.name)
        label = id2char.get(sample_id)
        if label is None:
            problems.add("unknown_id", where)
            continue
        if char_col is not None and row[char_col].strip() != label:
            problems.add("char_id_mismatch", f"{where} (id2char says {label!r})")
            continue
        if id_col is not None and _norm_id(path.parent.name) != sample_id:
            problems.add("folder_id_mismatch", where)
            continue
        if path in seen:
            problems.add("duplicate_path", where)
            continue
        seen.add(path)
        match = _FILE_NAME.match(path.stem)
        if match is None or path.suffix.lower() not in IMAGE_SUFFIXES:
            problems.add("odd_file_name", where)
        elif match["char"] != label:
            problems.add("file_name_char_mismatch", f"{where} (label {label!r})")
        kept.append((path, label))
    return kept, rows, mentioned


def split_per_char(samples: list[tuple[Path, str]], train_ratio: float,
                   seed: int) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """Seeded split within each character, so every character with 2+ samples is in train and val keeps the ratio;
    the fractional part of each character's val share is rounded at random, so the overall ratio holds."""
    rng = np.random.default_rng(seed)
    by_char: dict[str, list[tuple[Path, str]]] = defaultdict(list)
    for sample in samples:
        by_char[sample[1]].append(sample)
    train, val = [], []
    for char in sorted(by_char):
        group = sorted(by_char[char])
        share = len(group) * (1.0 - train_ratio)
        n_val = min(int(share) + int(rng.random() < share - int(share)), len(group) - 1)
        order = rng.permutation(len(group))
        val += [group[i] for i in order[:n_val]]
        train += [group[i] for i in order[n_val:]]
    return sorted(train), sorted(val)


def convert_char_folders(data_dir: str | Path, samples_csv: str | Path, id2char_json: str | Path, out: str | Path,
                         train_ratio: float = 0.9, seed: int = 0) -> dict:
    """Write ``train_list.txt``, ``val_list.txt``, ``custom_dict.txt`` and ``dataset_stats.json`` under ``out``.

    List paths are relative to the folder holding ``data_dir`` (use it as the data root when training).
    """
    if not 0.0 < train_ratio <= 1.0:
        raise DataError(f"train ratio must be in (0, 1], got {train_ratio}")
    root = Path(os.path.abspath(data_dir))
    if not root.is_dir():
        raise DataError(f"data dir not found: {data_dir}")
    problems = _Problems()
    id2char = load_id2char(id2char_json, problems)
    samples, rows, mentioned = read_samples(root, Path(samples_csv), id2char, problems)
    unlisted = [p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p not in mentioned]
    if unlisted:
        problems.add("files_not_in_csv", str(unlisted[0]), len(unlisted))
    if not samples:
        found = {k: v for k, v in problems.counts.items() if v}
        raise DataError(f"no usable samples in {samples_csv} ({rows} rows; problems: {found})")
    train, val = split_per_char(samples, train_ratio, seed)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, part in (("train_list.txt", train), ("val_list.txt", val)):
        with open(out_dir / name, "w", encoding="utf-8", newline="\n") as handle:
            handle.writelines(f"{_relative(p, root.parent)}\t{label}\n" for p, label in part)
    char_counts = Counter(c for _, label in samples for c in label)
    write_dict_file(sort_by_frequency(char_counts), out_dir / "custom_dict.txt")
    per_label = Counter(label for _, label in samples)
    stats = {
        "rows": rows, "samples": len(samples), "train": len(train), "val": len(val), "chars": len(char_counts),
        "samples_per_char": {"min": min(per_label.values()), "max": max(per_label.values()),
                             "mean": round(len(samples) / len(per_label), 2)},
        "chars_without_val_sample": len(per_label) - len({label for _, label in val}),
        "data_root": str(root.parent), "train_ratio": train_ratio, "seed": seed,
        "problems": dict(problems.counts), "problem_examples": dict(problems.examples),
        "outputs": {n: str(out_dir / n) for n in ("train_list.txt", "val_list.txt", "custom_dict.txt")},
    }
    with open(out_dir / "dataset_stats.json", "w", encoding="utf-8") as handle:
        json.dump(stats, handle, ensure_ascii=False, indent=2)
    return stats


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def summarize(stats: dict) -> str:
    """Human-readable report of a conversion, problems first so they are not missed."""
    lines = [f"{stats['rows']} rows -> {stats['samples']} samples ({stats['train']} train, {stats['val']} val), "
             f"{stats['chars']} characters, {stats['samples_per_char']['min']}-{stats['samples_per_char']['max']} "
             "samples per character"]
    for category in DROPPED + KEPT_WITH_WARNING + OTHER:
        count = stats["problems"].get(category, 0)
        if count:
            effect = "dropped" if category in DROPPED else "kept" if category in KEPT_WITH_WARNING else "noted"
            lines.append(f"  {category}: {count} ({effect}), e.g. {stats['problem_examples'][category][0]}")
    lines.append(f"wrote {', '.join(stats['outputs'].values())}; train with data root {stats['data_root']}")
    return "\n".join(lines)
