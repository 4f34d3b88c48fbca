"""Bad input as a new user makes it: corrupt images, unknown labels, missing paths, typo'd keys."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from conftest import tiny_cls_config

from ocrforge.cli import main
from ocrforge.tasks.cls.synth import SynthOrientationDataset


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
