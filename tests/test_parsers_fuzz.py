"""Property-based tests: every parser, fed random bytes, wrong delimiters, BOMs, CR/CRLF line ends, NUL bytes, huge
lines and other encodings, ends in a counted skip or the project's own error (OcrforgeError) naming the file, and
never in any other exception. Nothing may vanish either: every non-blank line is a sample or a counted skip.

Kept fast (the whole file runs in about 15 s on 2 cores): few examples per property, no deadline, no network.
"""

from __future__ import annotations

import codecs
import os
import re
import struct
import tempfile
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocrforge.config import load_config
from ocrforge.data.charset import build_charset, read_dict_file
from ocrforge.data.converters.char_folders import convert_char_folders
from ocrforge.data.converters.det_labels import read_icdar2015_dataset, read_paddle_det
from ocrforge.data.converters.to_lmdb import labels_to_lmdb
from ocrforge.data.images import SampleSkipped
from ocrforge.data.label_files import read_label_file
from ocrforge.data.lmdb_store import LmdbReader, LmdbWriter
from ocrforge.data.rec_labels import read_rec_labels
from ocrforge.errors import ConfigError, DataError
from ocrforge.tasks.cls.datasets import LabelFileDataset
from ocrforge.text_files import control_character

pytestmark = pytest.mark.slow  # property-based: 60 generated inputs a test

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])

# Characters that break naive parsers, mixed with ordinary ones.
TRICKY = ["\t", "\r", "\n", "\r\n", "\x00", " ", ",", ";", "|", "\ufeff", "\u2028", "\x85", "\x1c", "é", "紅", "🇯🇵",
          "###", "\\", '"', "[", "]", "{", "}"]
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252", "gb18030"]
DELIMITERS = ["\t", " ", ",", ";", "|", "\t\t", ""]
LINE_ENDS = ["\n", "\r\n", "\r"]

field_text = st.lists(st.sampled_from(TRICKY) | st.text(max_size=4), max_size=6).map("".join)
huge_line = st.integers(50_000, 300_000).map(lambda n: "img.png\t" + "x" * n)


@st.composite
def text_file(draw: st.DrawFn, fields: int = 2) -> bytes:
    """Raw bytes of a would-be line file: random bytes, or lines of fields joined by a random delimiter, with a
    random line end, maybe a huge line, in a random encoding (with or without a BOM)."""
    if draw(st.integers(0, 5)) == 0:
        return draw(st.binary(max_size=400))
    lines = draw(st.lists(st.lists(field_text, min_size=1, max_size=fields + 1), max_size=8))
    delimiter, end = draw(st.sampled_from(DELIMITERS)), draw(st.sampled_from(LINE_ENDS))
    body = [delimiter.join(fields_) for fields_ in lines]
    if draw(st.integers(0, 7)) == 0:
        body.insert(draw(st.integers(0, len(body))), draw(huge_line))
    text = end.join(body) + draw(st.sampled_from(["", end]))
    return text.encode(draw(st.sampled_from(ENCODINGS)), errors="replace")


def _decodes(data: bytes) -> str | None:
    """The text a file holds by the project's rules (UTF-8 with or without BOM, UTF-16/32 with BOM), or None."""
    for bom, codec in ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
                       (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
                       (codecs.BOM_UTF16_BE, "utf-16-be"), (b"", "utf-8")):
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(codec)
            except UnicodeDecodeError:
                return None
    raise AssertionError("unreachable: the empty BOM matches")


def _lines(text: str) -> list[str]:
    """Lines split at LF only, one CR before it dropped (the documented rules), the end's empty piece left out."""
    pieces = text.split("\n")
    if pieces[-1] == "":
        pieces.pop()
    return [p[:-1] if p.endswith("\r") else p for p in pieces]


def _assert_names_file_and_line(error: Exception, file: Path) -> None:
    message = str(error)
    assert str(file) in message, message
    assert re.search(r"line \d+", message), message


def _fresh_dir(root: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=root))


# --------------------------------------------------------------------------------------------------- label files
@FUZZ
@given(data=text_file())
def test_label_file_never_crashes_and_accounts_for_every_line(tmp_path: Path, data: bytes) -> None:
    file = tmp_path / "labels.txt"
    file.write_bytes(data)
    skips: Counter = Counter()
    text = _decodes(data)
    try:
        entries = read_label_file(file, tmp_path, skips)
    except DataError as exc:
        assert text is None, f"decodable file refused: {exc}"
        _assert_names_file_and_line(exc, file)
        return
    assert text is not None
    lines = _lines(text)
    counted = [line for line in lines if line.strip() or control_character(line)]
    assert len(entries) + sum(skips.values()) == len(counted)  # nothing dropped silently
    for path, label in entries:
        assert control_character(path) is None and control_character(label) is None
        # the whole label, never cut at a CR or a NUL
        assert any(line.endswith("\t" + label) and line.partition("\t")[2] == label for line in lines)


@FUZZ
@given(files=st.lists(text_file(), min_size=1, max_size=3), max_length=st.none() | st.integers(0, 5),
       ratio=st.floats(0, 3))
def test_rec_labels_with_ratios_never_crash(tmp_path: Path, files: list[bytes], max_length: int | None,
                                            ratio: float) -> None:
    paths = []
    for i, data in enumerate(files):
        paths.append(tmp_path / f"rec{i}.txt")
        paths[-1].write_bytes(data)
    try:
        samples, skips = read_rec_labels(paths, tmp_path, ratio, max_length=max_length)
    except DataError as exc:
        assert any(str(p) in str(exc) for p in paths)
        return
    assert all(label.strip() and (max_length is None or len(label) <= max_length) for _, label in samples)
    assert all(v > 0 for v in skips.values())


@FUZZ
@given(files=st.lists(text_file(), min_size=1, max_size=2), classes=st.none() | st.just(["down", "up"]))
def test_classification_label_files_never_crash_nor_make_blank_classes(tmp_path: Path, files: list[bytes],
                                                                       classes: list[str] | None) -> None:
    paths = []
    for i, data in enumerate(files):
        paths.append(str(tmp_path / f"cls{i}.txt"))
        Path(paths[-1]).write_bytes(data)
    try:
        discovered = LabelFileDataset.discover_classes(paths)
        dataset = LabelFileDataset(paths, classes=classes or discovered)
    except DataError as exc:
        assert any(p in str(exc) for p in paths)
        return
    assert all(name and name == name.strip() for name in discovered)  # no '' class, no 'down ' beside 'down'
    assert len(dataset) >= 1 and all(0 <= label < len(classes or discovered) for _, label in dataset.samples)


# --------------------------------------------------------------------------------------------------- dictionaries
@FUZZ
@given(data=text_file(fields=0))
def test_dictionary_never_crashes_and_keeps_one_class_per_line(tmp_path: Path, data: bytes) -> None:
    file = tmp_path / "dict.txt"
    file.write_bytes(data)
    text = _decodes(data)
    try:
        chars = read_dict_file(file)
    except DataError as exc:
        assert str(file) in str(exc)
        if text is None:
            _assert_names_file_and_line(exc, file)
        return
    assert text is not None
    assert chars == _lines(text)  # class ids follow the file's lines exactly, as PaddleOCR reads them
    assert all(entry and control_character(entry) is None for entry in chars)


@FUZZ
@given(data=text_file(), include_space=st.booleans(), lowercase=st.booleans())
def test_dict_build_never_crashes(tmp_path: Path, data: bytes, include_space: bool, lowercase: bool) -> None:
    file = tmp_path / "labels.txt"
    file.write_bytes(data)
    stats: Counter = Counter()
    try:
        chars, counts = build_charset([file], lowercase=lowercase, include_space=include_space, stats=stats)
    except DataError as exc:
        assert str(file) in str(exc)
        return
    assert chars and len(set(chars)) == len(chars) and all(control_character(c) is None for c in chars)
    assert stats["labels"] >= 1 and sum(counts.values()) >= len(chars)


# ------------------------------------------------------------------------------------------------------ detection
@FUZZ
@given(gt_files=st.lists(text_file(fields=9), min_size=1, max_size=3))
def test_icdar2015_never_crashes(tmp_path: Path, gt_files: list[bytes]) -> None:
    root = _fresh_dir(tmp_path)
    (root / "images").mkdir()
    (root / "gt").mkdir()
    for i, data in enumerate(gt_files):
        (root / "images" / f"img_{i}.jpg").write_bytes(b"")  # images are only listed here, never read
        (root / "gt" / f"gt_img_{i}.txt").write_bytes(data)
    skips: Counter = Counter()
    try:
        samples = read_icdar2015_dataset(root / "images", root / "gt", skips)
    except DataError as exc:
        assert str(root) in str(exc)
        return
    # one GT file is one image: each is a sample or a counted undecodable file
    assert len(samples) + skips["undecodable_label_file"] == len(gt_files)
    for sample in samples:
        assert all(r.points.shape[1] == 2 and np.isfinite(r.points).all() for r in sample.regions)


paddle_payload = st.recursive(
    st.none() | st.booleans() | st.integers(-10 ** 400, 10 ** 400) | st.floats() | field_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["points", "transcription", "x"]),
                                                                inner, max_size=3),
    max_leaves=12)


@st.composite
def paddle_file(draw: st.DrawFn) -> bytes:
    """PaddleOCR det lines with random JSON-ish payloads (huge integers, deep nesting, wrong shapes) or junk."""
    import json

    if draw(st.booleans()):
        return draw(text_file())
    lines = []
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.integers(0, 3))
        if kind == 0:
            payload = json.dumps(draw(paddle_payload), ensure_ascii=draw(st.booleans()))
        elif kind == 1:
            payload = "[" * draw(st.integers(1, 20_000)) + "]" * draw(st.integers(0, 3))
        elif kind == 2:
            digits = "9" * draw(st.integers(300, 6000))
            payload = f'[{{"transcription": "a", "points": [[{digits}, 1], [2, 3], [4, 5]]}}]'
        else:
            payload = draw(field_text)
        lines.append(f"{draw(field_text)}{draw(st.sampled_from(DELIMITERS))}{payload}")
    end = draw(st.sampled_from(LINE_ENDS))
    return end.join(lines).encode(draw(st.sampled_from(ENCODINGS)), errors="replace")


@FUZZ
@given(data=paddle_file())
def test_paddle_det_never_crashes(tmp_path: Path, data: bytes) -> None:
    file = tmp_path / "det.txt"
    file.write_bytes(data)
    skips: Counter = Counter()
    try:
        samples = read_paddle_det(file, tmp_path, skips)
    except DataError as exc:
        _assert_names_file_and_line(exc, file)
        return
    for sample in samples:
        assert control_character(str(sample.image)) is None  # a NUL path would fail in a DataLoader worker
        assert all(np.isfinite(r.points).all() and isinstance(r.text, str) for r in sample.regions)


# ----------------------------------------------------------------------------------------------------------- LMDB
def _png(value: int = 9) -> bytes:
    return cv2.imencode(".png", np.full((8, 8, 3), value, np.uint8))[1].tobytes()


@pytest.fixture(scope="module")
def good_lmdb(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    folder = tmp_path_factory.mktemp("lmdb") / "good"
    with LmdbWriter(folder) as writer:
        for i in range(60):
            writer.add(_png(i) * 40, f"w{i}")  # ~12 KB a record: overflow pages, a file of many pages
    return (folder / "data.mdb").read_bytes()


def _read_all(folder: Path) -> int:
    """Open and read every record the way training does; returns how many loaded."""
    reader = LmdbReader(folder)
    loaded = 0
    reader.label_lengths()
    for i in range(len(reader)):
        try:
            reader.get(i)
            loaded += 1
        except SampleSkipped:
            pass
    reader.close()
    return loaded


# Byte offsets in a meta page of the fields fuzzed below. Damage to the B-tree pages themselves is not fuzzed: a
# corrupted node size makes LMDB itself read past the end of the file (SIGBUS) and no header check can see that.
META_FIELD_BYTES = [*range(16, 24), *range(32, 44), *range(136, 152)]


@FUZZ
@given(data=st.data())
def test_damaged_lmdb_header_or_size_is_refused_before_mapping(tmp_path: Path, good_lmdb: bytes,
                                                               data: st.DataObject) -> None:
    """Truncated, zero-length, padded or random files and damaged meta pages: a DataError, never SIGBUS."""
    kind = data.draw(st.sampled_from(["truncate", "random", "append", "meta"]))
    if kind == "truncate":
        content = good_lmdb[:data.draw(st.integers(0, len(good_lmdb) - 1))]
    elif kind == "random":
        content = data.draw(st.binary(max_size=9000))
    elif kind == "append":
        content = good_lmdb + data.draw(st.binary(min_size=1, max_size=5000))
    else:  # the meta fields the check and LMDB's open rely on: magic, version, map size, page size, last page, txn
        damaged = bytearray(good_lmdb)
        for _ in range(data.draw(st.integers(1, 4))):
            at = data.draw(st.sampled_from([0, 4096])) + data.draw(st.sampled_from(META_FIELD_BYTES))
            damaged[at] = data.draw(st.integers(0, 255))
        content = bytes(damaged)
    folder = _fresh_dir(tmp_path)
    (folder / "data.mdb").write_bytes(content)
    try:
        loaded = _read_all(folder)
    except DataError as exc:
        assert str(folder) in str(exc)
        return
    # only a whole file (possibly with a harmless change to a meta page, or whole pages appended) opens
    assert kind in ("meta", "append") and len(content) >= len(good_lmdb) and loaded <= 60


@FUZZ
@given(count=st.binary(max_size=12) | st.integers(-10, 10 ** 6).map(lambda n: str(n).encode()),
       labels=st.lists(st.binary(max_size=20), min_size=1, max_size=4),
       images=st.lists(st.binary(max_size=50) | st.just(_png()), min_size=1, max_size=4))
def test_lmdb_records_and_num_samples(tmp_path: Path, count: bytes, labels: list[bytes],
                                      images: list[bytes]) -> None:
    """``num-samples`` of any bytes (-5, huge, not a number); labels not UTF-8; images not decodable."""
    import lmdb

    folder = _fresh_dir(tmp_path)
    env = lmdb.open(str(folder), map_size=1 << 22)
    with env.begin(write=True) as txn:
        txn.put(b"num-samples", count)
        for i, (label, image) in enumerate(zip(labels, images), 1):
            txn.put(b"label-%09d" % i, label)
            txn.put(b"image-%09d" % i, image)
    env.close()
    try:
        loaded = _read_all(folder)
    except DataError as exc:
        assert str(folder) in str(exc) and "num-samples" in str(exc)
        return
    assert loaded <= min(len(labels), len(images))


# ---------------------------------------------------------------------------------------------------- converters
@FUZZ
@given(data=text_file())
def test_to_lmdb_never_crashes(tmp_path: Path, data: bytes) -> None:
    root = _fresh_dir(tmp_path)
    (root / "ok.png").write_bytes(_png())
    labels = root / "labels.txt"
    labels.write_bytes(b"ok.png\tgood\n" + data)  # one good sample, then anything
    try:
        report = labels_to_lmdb([labels], root / "out", data_root=root)
    except DataError as exc:
        _assert_names_file_and_line(exc, labels)
        return
    assert report["samples"] >= 1 and report["samples"] + sum(report["skipped"].values()) >= report["listed"]
    reader = LmdbReader(root / "out")
    assert len(reader) == report["samples"]
    reader.close()


@st.composite
def char_folder_inputs(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(samples.csv, id2char.json) bytes: sensible rows mixed with junk, wrong delimiters, NUL, huge fields."""
    import json

    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    rows = [delimiter.join(draw(st.sampled_from([["path", "char", "id"], ["id", "path"], ["image", "label"],
                                                 ["x", "y"]])))]
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.integers(0, 3))
        if kind == 0:
            n = draw(st.integers(0, 2))
            rows.append(delimiter.join([f"data/1/a_{n}.png", "a", draw(st.sampled_from(["1", "01", "²", "9" * 5000]))]))
        elif kind == 1:
            rows.append(delimiter.join(draw(st.lists(field_text, max_size=4))))
        elif kind == 2:
            rows.append("data/1/a_0.png," + "x" * draw(st.integers(140_000, 200_000)) + ",1")
        else:
            rows.append('"unterminated' + draw(field_text))
    csv_bytes = draw(st.sampled_from(LINE_ENDS)).join(rows).encode(draw(st.sampled_from(ENCODINGS)),
                                                                   errors="replace")
    mapping = draw(st.sampled_from([{"1": "a"}, {"01": "a", "2": ""}, {"1": "a\x00"}, [1, 2], "x", None]))
    raw_json = json.dumps(mapping) if draw(st.integers(0, 4)) else draw(st.sampled_from(
        ["[" * 50_000, '{"1": ' + "9" * 5000 + "}", "{bad json", ""]))
    return csv_bytes, raw_json.encode(draw(st.sampled_from(ENCODINGS)), errors="replace")


@FUZZ
@given(inputs=char_folder_inputs())
def test_char_folders_never_crash(tmp_path: Path, inputs: tuple[bytes, bytes]) -> None:
    root = _fresh_dir(tmp_path)
    for n in range(3):
        (root / "data" / "1").mkdir(parents=True, exist_ok=True)
        cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tofile(str(root / "data" / "1" / f"a_{n}.png"))
    (root / "samples.csv").write_bytes(inputs[0])
    (root / "id2char.json").write_bytes(inputs[1])
    try:
        stats = convert_char_folders(root / "data", root / "samples.csv", root / "id2char.json", root / "out")
    except DataError as exc:
        assert str(root) in str(exc)
        return
    assert stats["samples"] + sum(stats["problems"][k] for k in ("bad_row", "missing_file", "unknown_id",
                                                                  "char_id_mismatch", "folder_id_mismatch",
                                                                  "duplicate_path")) == stats["rows"]


# -------------------------------------------------------------------------------------------------------- configs
BASE_CONFIG = {"task": "cls", "model": {"type": "Classifier", "backbone": "lcnet_050"}, "optimizer": {"type": "adamw"},
               "data": {"train": {"type": "SynthOrientation", "num_samples": 8}}}
NUMERIC_KEYS = ["data.train.batch_size", "data.train.num_workers", "data.train.prefetch_factor", "train.max_epochs",
                "train.val_check_interval", "train.limit_train_batches", "train.accumulate_grad_batches",
                "train.log_every_n_steps", "optimizer.lr", "optimizer.weight_decay", "ema.decay",
                "checkpoint.save_top_k", "train.gradient_clip_val"]
numbers = st.integers(-3, 3) | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [0, -1, 1e309, "1", "x", None, True, [1], {"a": 1}])


@FUZZ
@given(key=st.sampled_from(NUMERIC_KEYS), value=numbers)
def test_config_values_out_of_range_are_config_errors(tmp_path: Path, key: str, value: object) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(BASE_CONFIG))
    try:
        cfg = load_config(path, [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip()}"])
    except ConfigError as exc:
        assert key in str(exc) and "command line (-o)" in str(exc)
        return
    loaded = cfg
    for part in key.split("."):
        loaded = loaded[part]
    # accepted values are the sensible ones
    if key in ("data.train.batch_size", "train.accumulate_grad_batches", "train.log_every_n_steps"):
        assert loaded >= 1
    if key in ("optimizer.lr", "train.val_check_interval"):
        assert loaded > 0 and np.isfinite(loaded)


override_key = st.lists(st.sampled_from(["data", "train", "image_size", "0", "-1", "7", "x", "type", "model", "lr",
                                         "optimizer", "custom_imports", ""]) | field_text,
                        min_size=1, max_size=4).map(".".join)
override_value = field_text | st.sampled_from(["[[[", "{a: 1", "${x}", "null", "[1, 2]", "[5]", "''", "[..x]"])
override = st.tuples(st.sampled_from(["", "+"]), override_key, st.sampled_from(["=", ""]), override_value).map(
    "".join)


@FUZZ
@given(data=text_file() | st.binary(max_size=300), overrides=st.lists(override, max_size=3))
def test_config_files_and_overrides_of_any_bytes_are_config_errors(tmp_path: Path, data: bytes,
                                                                    overrides: list[str]) -> None:
    for path, content in ((tmp_path / "junk.yaml", data),
                          (tmp_path / "base.yaml", yaml.safe_dump({**BASE_CONFIG, "data": {
                              **BASE_CONFIG["data"], "image_size": [32, 32]}}).encode())):
        path.write_bytes(content)
        try:
            load_config(path, overrides)
        except ConfigError as exc:
            assert str(path) in str(exc) or "command line (-o)" in str(exc) or "custom_imports" in str(exc)


def test_meta_page_offsets_match_lmdb(good_lmdb: bytes) -> None:
    """The header check reads LMDB's meta layout by offset; this pins the layout to the installed library."""
    magic, psize = struct.unpack_from("<I", good_lmdb, 16)[0], struct.unpack_from("<I", good_lmdb, 40)[0]
    last = max(struct.unpack_from("<Q", good_lmdb, at + 136)[0] for at in (0, psize))
    assert magic == 0xBEEFC0DE and psize == os.sysconf("SC_PAGE_SIZE") and (last + 1) * psize == len(good_lmdb)
