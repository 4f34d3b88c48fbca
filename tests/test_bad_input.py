"""Bad input as a new user makes it: corrupt images, unknown labels, missing paths, typo'd keys, bad bytes in text
files, damaged LMDBs, out-of-range config values; evaluation that must not drop what it cannot load."""

from __future__ import annotations

import codecs
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from conftest import tiny_cls_config

from ocrforge.cli import main
from ocrforge.data.charset import build_charset, read_dict_file
from ocrforge.data.converters.det_labels import read_paddle_det
from ocrforge.data.images import SampleSkipped
from ocrforge.data.label_files import read_label_file
from ocrforge.data.lmdb_store import LmdbReader, LmdbWriter
from ocrforge.data.rec_labels import read_rec_labels
from ocrforge.errors import DataError
from ocrforge.tasks.cls.datasets import LabelFileDataset
from ocrforge.tasks.cls.synth import SynthOrientationDataset
from ocrforge.tasks.rec.metric import RecognitionMetric


def _image_folder(root: Path, per_class: int = 6) -> None:
    data = SynthOrientationDataset(4 * per_class, mode="line", seed=3)
    counts = {"0": 0, "180": 0}
    for i in range(len(data)):
        sample = data[i]
        name = data.classes[sample["label"]]
        if counts[name] >= per_class:
            continue
        counts[name] += 1
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i}.jpg"), sample["image"][:, :, ::-1])


@pytest.mark.slow
def test_corrupt_jpeg_in_image_folder_is_a_counted_skip(tmp_path: Path) -> None:
    root = tmp_path / "images"
    _image_folder(root)
    (root / "0" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF truncated")
    spec = {"type": "ImageFolder", "root": str(root), "batch_size": 8, "num_workers": 0}
    cfg = tiny_cls_config(tmp_path, data={"image_size": [32, 32], "train": spec, "val": spec})
    assert main(["train", str(cfg)]) == 0
    (run,) = (tmp_path / "work_dirs" / "tests").glob("tiny_*")
    metrics = json.loads((run / "metrics.json").read_text())
    # the corrupt file is in both splits: counted once per split (the sanity check does not count)
    assert metrics["skipped_samples"]["while_loading"] == {"train": {"unreadable_image": 1},
                                                           "val": {"unreadable_image": 1}}
    classes = (run / "config.yaml").read_text()
    assert "- '0'" in classes and "- '180'" in classes

    assert main(["data", "check", str(cfg)]) == 0


def test_data_check_reports_skips(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "images"
    _image_folder(root, per_class=2)
    (root / "180" / "broken.png").write_bytes(b"not a png")
    labels = tmp_path / "labels.txt"
    lines = [f"{p.relative_to(tmp_path)}\t{p.parent.name}" for p in sorted(root.rglob("*.*"))]
    lines += ["images/0/x.jpg\tupside-down", "no tab on this line", ""]
    labels.write_text("\n".join(lines), encoding="utf-8")
    spec = {"type": "ClsLabelFile", "label_files": [str(labels)], "batch_size": 4, "num_workers": 0}
    cfg = tiny_cls_config(tmp_path, data={"image_size": [32, 32], "classes": ["0", "180"], "train": spec})
    capsys.readouterr()
    assert main(["data", "check", str(cfg)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["train"]["usable"] == 4
    assert report["train"]["skipped_while_loading"] == {"unreadable_image": 1}
    assert report["train"]["skipped_while_indexing"] == {"malformed_line": 1, "label_not_in_classes": 1}


def test_missing_data_path_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = {"type": "ImageFolder", "root": str(tmp_path / "nowhere"), "batch_size": 8, "num_workers": 0}
    cfg = tiny_cls_config(tmp_path, data={"image_size": [32, 32], "train": spec, "val": None})
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "image folder not found" in err and "nowhere" in err and "Traceback" not in err


def test_typo_in_config_key_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = tiny_cls_config(tmp_path)
    cfg.write_text(cfg.read_text().replace("max_epochs:", "max_epoch:"))
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert str(cfg) in err and "train.max_epoch" in err and "did you mean 'max_epochs'" in err
    assert main(["train", str(cfg).replace("tiny", "absent")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_unreadable_checkpoint_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"garbage")
    assert main(["export", str(bad)]) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err


# --- bad bytes in text inputs (issue 10, item 4) -------------------------------------------------------------------
def _png_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imencode(".png", np.full((8, 24, 3), 200, np.uint8))[1].tofile(str(path))
    return path


@pytest.mark.parametrize("command", ["dict", "to-lmdb"])
def test_non_utf8_label_file_is_an_error_naming_file_and_line(tmp_path: Path, command: str,
                                                              capsys: pytest.CaptureFixture) -> None:
    _png_file(tmp_path / "a.png")
    labels = tmp_path / "labels.txt"
    labels.write_bytes("a.png\tok\na.png\tcafé\n".encode("latin-1"))
    argv = (["dict", "build", str(labels), "--out", str(tmp_path / "d.txt")] if command == "dict" else
            ["convert", "to-lmdb", str(labels), "--out", str(tmp_path / "lmdb")])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"label file {labels}, line 2, column 10: not UTF-8 (byte 0xe9)" in err and "Traceback" not in err
    assert not (tmp_path / "lmdb").exists() and not (tmp_path / "d.txt").exists()


def test_bom_crlf_and_utf16_label_files_read_the_same(tmp_path: Path) -> None:
    text = "a.png\tnaïve 紅\nb.png\tx y\n"
    expected = [(str(tmp_path / "a.png"), "naïve 紅"), (str(tmp_path / "b.png"), "x y")]
    for encoding, ending in (("utf-8", "\n"), ("utf-8-sig", "\r\n"), ("utf-16", "\r\n"), ("utf-16-be", "\n")):
        file = tmp_path / f"{encoding}.txt"
        data = text.replace("\n", ending).encode(encoding)
        file.write_bytes(codecs.BOM_UTF16_BE + data if encoding == "utf-16-be" else data)
        skips: Counter = Counter()
        assert read_label_file(file, skips=skips) == expected, encoding
        assert not skips


def test_lone_cr_in_a_label_is_counted_never_cut(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_bytes(b"a.png\tab\rcd\nb.png\tkept\r\n")  # CRLF ends the second line: accepted
    samples, skips = read_rec_labels([labels])
    assert samples == [(str(tmp_path / "b.png"), "kept")]  # never ('a.png', 'ab')
    assert skips == Counter(carriage_return=1)
    stats: Counter = Counter()
    assert build_charset([labels], stats=stats)[0] == ["e", "k", "p", "t"]
    assert stats == Counter(labels=1, carriage_return=1)


def test_nul_in_image_path_is_a_counted_skip(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _png_file(tmp_path / "ok.png")
    labels = tmp_path / "labels.txt"
    labels.write_bytes(b"o\x00k.png\tnul\nok.png\tgood\n")
    assert main(["convert", "to-lmdb", str(labels), "--out", str(tmp_path / "lmdb")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["samples"] == 1 and report["skipped"] == {"control_character": 1}
    reader = LmdbReader(tmp_path / "lmdb")
    assert reader.get(0)[1] == "good"
    reader.close()

    det = tmp_path / "det.txt"
    det.write_bytes(b'o\x00k.png\t[{"transcription": "a", "points": [[0, 0], [4, 0], [4, 4]]}]\n'
                    b'ok.png\t[{"transcription": "b", "points": [[0, 0], [4, 0], [4, 4]]}]\n')
    skips: Counter = Counter()
    assert [s.image.name for s in read_paddle_det(det, tmp_path, skips)] == ["ok.png"]
    assert skips == Counter(control_character=1)


def test_empty_or_padded_class_labels_do_not_make_classes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("a.png\tup\nb.png\tdown \nc.png\t\nd.png\t  \ne.png\tdown\n", encoding="utf-8")
    assert LabelFileDataset.discover_classes([str(labels)]) == ["down", "up"]  # was ['', 'down', 'up']
    with caplog.at_level("WARNING", logger="ocrforge"):
        dataset = LabelFileDataset([str(labels)])
    assert [label for _, label in dataset.samples] == [1, 0, 0]
    assert dataset.skipped_at_init == Counter(empty_label=2)
    assert "1 class names had surrounding whitespace" in caplog.text


def test_dictionary_with_a_lone_cr_or_bad_bytes_names_the_line(tmp_path: Path) -> None:
    file = tmp_path / "dict.txt"
    file.write_bytes(b"a\nb\rc\nd\r\n")  # universal newlines would give a, b, c, d: ids shifted from PaddleOCR's
    with pytest.raises(DataError, match=r"line 2: 'b\\rc' holds the control character U\+000D"):
        read_dict_file(file)
    file.write_bytes("a\n紅\nb".encode("gbk"))
    with pytest.raises(DataError, match=rf"dictionary {re.escape(str(file))}, line 2, column 1: not UTF-8"):
        read_dict_file(file)
    file.write_bytes("a\r\n紅\n \n".encode("utf-16"))
    assert read_dict_file(file) == ["a", "紅", " "]


# --- LMDB (item 5) ------------------------------------------------------------------------------------------------
def _lmdb(folder: Path, count: int = 40) -> Path:
    png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    with LmdbWriter(folder) as writer:
        for i in range(count):
            writer.add(png * 30, f"w{i}")  # several pages per record: a file of many pages
    return folder


def test_truncated_lmdb_is_refused_before_it_is_mapped(tmp_path: Path) -> None:
    good = (_lmdb(tmp_path / "good") / "data.mdb").read_bytes()
    for name, size in (("half", len(good) // 2), ("pages", len(good) - 4096), ("one_page", 4096)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "data.mdb").write_bytes(good[:size])
    # In a child process: a regression would die of SIGBUS there instead of taking pytest with it.
    script = ("import sys\nfrom ocrforge.data.lmdb_store import LmdbReader\nfrom ocrforge.errors import DataError\n"
              "for folder in sys.argv[1:]:\n"
              "    try:\n        LmdbReader(folder)\n    except DataError as exc:\n        print(exc)\n")
    done = subprocess.run([sys.executable, "-c", script, *(str(tmp_path / n) for n in ("half", "pages", "one_page"))],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    half, pages, one_page = done.stdout.splitlines()
    assert f"{tmp_path / 'half' / 'data.mdb'} is truncated" in half
    assert "truncated" in pages and f"but the database uses {len(good)} bytes" in pages
    assert "less than its two 4096-byte meta pages" in one_page


def test_empty_and_negative_count_lmdb_are_clear_errors(tmp_path: Path) -> None:
    import lmdb

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "data.mdb").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty \(0 bytes\)"):
        LmdbReader(tmp_path / "empty")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "data.mdb").write_bytes(b"image path\tlabel\n" * 1000)
    with pytest.raises(DataError, match="not an LMDB data file"):
        LmdbReader(tmp_path / "text")
    for count, message in ((b"-5", "'num-samples' is -5, not a count"), (b"500", "holds only 81 keys"),
                           (b"five", "not a number")):
        folder = _lmdb(tmp_path / count.decode())
        with lmdb.open(str(folder)) as env, env.begin(write=True) as txn:
            txn.put(b"num-samples", count)
        with pytest.raises(DataError, match=message):
            LmdbReader(folder)


def test_damaged_lmdb_page_is_a_counted_skip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lmdb

    from ocrforge.data import lmdb_store

    reader = LmdbReader(_lmdb(tmp_path / "db", count=3))

    class DamagedEnvironment:  # what LMDB raises for a B-tree page that does not parse
        def begin(self) -> DamagedEnvironment:
            return self

        def __enter__(self) -> DamagedEnvironment:
            return self

        def __exit__(self, *_: object) -> None:
            return None

        def get(self, key: bytes) -> bytes:
            raise lmdb.CorruptedError("mdb_get: MDB_CORRUPTED: Located page was wrong type")

    monkeypatch.setattr(lmdb_store, "_environment", lambda path: DamagedEnvironment())
    with pytest.raises(SampleSkipped) as skipped:
        reader.get(1)
    assert skipped.value.reason == "corrupt_record" and "[2]" in str(skipped.value)
    assert reader.label_lengths().tolist() == [0, 0, 0]
    monkeypatch.undo()
    reader.close()


# --- config ranges (item 6) ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("key, value, message", [
    ("data.train.batch_size", 0, "must be at least 1, got 0"),
    ("data.train.num_workers", -1, "must be at least 0, got -1"),
    ("train.val_check_interval", 0, "must be above 0"),
    ("optimizer.lr", -1, "must be a finite number above 0, got -1"),
])
def test_out_of_range_values_are_config_errors_naming_file_and_key(tmp_path: Path, key: str, value: int,
                                                                   message: str,
                                                                   capsys: pytest.CaptureFixture) -> None:
    cfg = tiny_cls_config(tmp_path)
    section, *rest = key.split(".")
    loaded = yaml.safe_load(cfg.read_text())
    node = loaded[section]
    for part in rest[:-1]:
        node = node[part]
    node[rest[-1]] = value
    cfg.write_text(yaml.safe_dump(loaded))
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"{cfg}: {key}: {message}" in err and "Traceback" not in err
    assert main(["train", str(tiny_cls_config(tmp_path)), "-o", f"{key}={value}"]) == 2
    assert f"command line (-o): {key}: {message}" in capsys.readouterr().err


@pytest.mark.slow
def test_val_check_interval_beyond_an_epoch_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = tiny_cls_config(tmp_path)  # 48 training samples in batches of 16: 3 batches an epoch
    assert main(["train", str(cfg), "-o", "train.val_check_interval=4"]) == 2
    err = capsys.readouterr().err
    assert "train.val_check_interval: 4 training batches, but an epoch has only 3" in err and "Traceback" not in err
    assert main(["train", str(cfg), "-o", "train.val_check_interval=3"]) == 0


# --- evaluation never drops a sample (item 7) ---------------------------------------------------------------------
@pytest.mark.slow
def test_unloadable_test_sample_counts_as_wrong_and_is_listed(tmp_path: Path) -> None:
    root = tmp_path / "images"
    _image_folder(root, per_class=3)
    (root / "180" / "broken.png").write_bytes(b"not a png")
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"{p.relative_to(tmp_path)}\t{p.parent.name}\n" for p in sorted(root.rglob("*.*"))))
    spec = {"type": "ClsLabelFile", "label_files": [str(labels)], "batch_size": 4, "num_workers": 0}
    cfg = tiny_cls_config(tmp_path, data={"image_size": [32, 32], "classes": ["0", "180"], "train": spec,
                                          "val": spec})
    assert main(["train", str(cfg)]) == 0
    (run,) = (tmp_path / "work_dirs" / "tests").glob("tiny_2*")
    assert json.loads((run / "metrics.json").read_text())["final"]["val/num_samples"] == 7  # validation: the same

    assert main(["test", str(cfg), str(run / "checkpoints" / "last.ckpt"), "--save-preds"]) == 0
    (out,) = (tmp_path / "work_dirs" / "tests").glob("tiny_test_*")
    result = json.loads((out / "metrics.json").read_text())
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [row["index"] for row in rows] == list(range(7))  # every sample, in dataset order, none swapped
    broken = rows[6]
    assert broken["path"].endswith("broken.png") and broken["gt"] == "180" and broken["correct"] is False
    assert broken["skipped"] == "unreadable_image"
    assert [item["path"] for item in result["unevaluated_samples"]] == [broken["path"]]
    right = sum(row["gt"] == row["label"] for row in rows[:6])
    assert result["metrics"]["num_samples"] == 7 and result["metrics"]["num_unevaluated"] == 1
    assert result["metrics"]["acc"] == pytest.approx(right / 7)  # not right / 6
    confusion = json.loads((out / "confusion_matrix.json").read_text())["matrix"]
    assert result["metrics"]["class_acc/180"] == pytest.approx(confusion[1][1] / 4)  # 3 loaded + 1 unloadable


def test_recognition_metric_counts_unevaluated_samples_as_wrong() -> None:
    metric = RecognitionMetric(lambda outputs: outputs["texts"])
    metric.update({"texts": ["abc", "xy"]}, {"text": ["abc", "xz"]})
    metric.count_unevaluated([{"index": 2, "skipped": "unreadable_image", "gt": "wxyz"}, {"index": 3}])
    scores = metric.compute()
    assert float(scores["acc"]) == pytest.approx(1 / 4) and float(scores["num_samples"]) == 4
    assert float(scores["norm_edit_dis"]) == pytest.approx(1 - (0 + 0.5 + 1 + 1) / 4)
    assert float(scores["char_recall"]) == pytest.approx(4 / (3 + 2 + 4))
    assert float(scores["num_unevaluated"]) == 2
