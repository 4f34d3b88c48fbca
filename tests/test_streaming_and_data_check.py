"""``predict`` / ``ocr`` over a folder stream their rows (to ``--out`` or stdout) as images are done and show
progress; ``data check`` says which samples are bad: label file and line, image path, LMDB record (issue 11, 6)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import tiny_cls_config, tiny_det_config, tiny_rec_config

from ocrforge.cli import main
from ocrforge.data.lmdb_store import LmdbWriter
from ocrforge.runners import ocr as ocr_runner
from ocrforge.runners import predict as predict_runner
from ocrforge.runners import progress as progress_module
from ocrforge.runners.predict import predict


def _png(path: Path, size: tuple[int, int] = (32, 96)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((*size, 3), 230, np.uint8)
    cv2.putText(image, "ab", (4, size[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (20, 20, 20), 2)
    cv2.imencode(".png", image)[1].tofile(str(path))
    return path


def _folder(root: Path, count: int = 5) -> list[Path]:
    return [_png(root / f"{i}.png") for i in range(count)]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


# --- predict / ocr: streamed rows, progress, Ctrl-C ----------------------------------------------------------------
@pytest.fixture
def fake_predict_backend(monkeypatch: pytest.MonkeyPatch) -> dict:
    """No model: each batch decodes to one row per image; the second batch looks at what ``--out`` holds by then
    and is interrupted (Ctrl-C) or fails."""
    state: dict = {"batches": 0, "out": None, "seen": None, "stop": KeyboardInterrupt}

    def infer(processing, run, meta, images):
        state["batches"] += 1
        if state["batches"] == 2:
            state["seen"] = _lines(state["out"]) if state["out"] else None
            raise state["stop"]()
        return [{"label": "x", "score": 1.0} for _ in images]

    monkeypatch.setattr(predict_runner, "load_backend", lambda model, device: (None, {"task": "cls"}))
    monkeypatch.setattr(predict_runner, "infer", infer)
    return state


def test_predict_writes_each_batch_before_the_next_and_reports_progress(
        tmp_path: Path, fake_predict_backend: dict, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    files = _folder(tmp_path / "images")
    out = fake_predict_backend["out"] = tmp_path / "out" / "preds.jsonl"
    fake_predict_backend["stop"] = RuntimeError
    monkeypatch.setattr(progress_module, "PROGRESS_EVERY_S", 0.0)
    with pytest.raises(RuntimeError):
        predict("model.onnx", [tmp_path / "images"], out=out, batch_size=2)
    first = [str(f) for f in files[:2]]
    assert [row["path"] for row in fake_predict_backend["seen"]] == first  # on disk while batch 2 ran
    assert [row["path"] for row in _lines(out)] == first
    # stderr is no terminal here: no bar, a count line instead
    assert "predict: 2/5 images" in capsys.readouterr().err


@pytest.mark.parametrize("to_file", [True, False])
def test_predict_cli_streams_rows_and_ctrl_c_keeps_them(tmp_path: Path, fake_predict_backend: dict, to_file: bool,
                                                        capsys: pytest.CaptureFixture) -> None:
    files = _folder(tmp_path / "images")
    out = tmp_path / "preds.jsonl"
    fake_predict_backend["out"] = out if to_file else None
    argv = ["predict", "model.onnx", str(tmp_path / "images"), "--batch-size", "2", "--no-progress"]
    assert main(argv + (["--out", str(out)] if to_file else [])) == 130
    captured = capsys.readouterr()
    rows = _lines(out) if to_file else [json.loads(line) for line in captured.out.splitlines()]
    assert [row["path"] for row in rows] == [str(f) for f in files[:2]]
    if to_file:
        assert len(fake_predict_backend["seen"]) == 2 and captured.out == ""
    assert "predict: interrupted after 2 of 5 images" in captured.err


@pytest.mark.parametrize("to_file", [True, False])
def test_ocr_streams_each_image_and_ctrl_c_keeps_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      to_file: bool, capsys: pytest.CaptureFixture) -> None:
    files = _folder(tmp_path / "images", 4)
    (tmp_path / "images" / "0_broken.png").write_bytes(b"not a png")  # sorted second: skipped, counted as done
    out = tmp_path / "ocr.jsonl"
    seen: list = []

    class FakePipeline:
        def __init__(self, *args: object, **kwargs: object) -> None:
            self.calls = 0

        def __call__(self, image: np.ndarray) -> dict:
            self.calls += 1
            if self.calls == 3:
                seen.append(_lines(out) if to_file else None)
                raise KeyboardInterrupt
            return {"height": image.shape[0], "width": image.shape[1], "words": [], "dropped": {}}

    monkeypatch.setattr(ocr_runner, "OcrPipeline", FakePipeline)
    argv = ["ocr", str(tmp_path / "images"), "--det", "det.onnx", "--rec", "rec.onnx", "--no-progress"]
    assert main(argv + (["--out", str(out)] if to_file else [])) == 130
    captured = capsys.readouterr()
    rows = _lines(out) if to_file else [json.loads(line) for line in captured.out.splitlines()]
    assert [row["path"] for row in rows] == [str(f) for f in files[:2]]
    if to_file:
        assert [row["path"] for row in seen[0]] == [str(f) for f in files[:2]]  # flushed as each image was done
    assert "ocr: interrupted after 3 of 5 images" in captured.err  # the unreadable file counts as done


# --- data check: which samples, where -----------------------------------------------------------------------------
def _rec_config(tmp_path: Path, train: dict) -> Path:
    return tiny_rec_config(tmp_path, data={"train": {**train, "batch_size": 4, "num_workers": 0}, "val": None})


def _check(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[dict, str]:
    capsys.readouterr()
    assert main(["data", "check", *argv]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def test_data_check_lists_bad_rec_lines_and_missing_images(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for i in range(3):
        _png(tmp_path / "crops" / f"{i}.png")
    labels = tmp_path / "train.txt"
    labels.write_text("crops/0.png\tab\n"
                      "no tab on this line\n"
                      "crops/1.png\tab\n"
                      "crops/ghost.png\tboo\n"
                      "crops/2.png\t   \n"
                      "another line without a tab\n", encoding="utf-8")
    cfg = _rec_config(tmp_path, {"type": "RecLabelFile", "label_files": [str(labels)]})
    report, err = _check([str(cfg)], capsys)
    train = report["train"]
    assert train["usable"] == 2
    indexing = train["examples"]["while_indexing"]
    assert indexing["malformed_line"] == [{"label_file": str(labels), "line": 2},
                                          {"label_file": str(labels), "line": 6}]
    assert indexing["empty_label"] == [{"label_file": str(labels), "line": 5, "path": str(tmp_path / "crops/2.png")}]
    (ghost,) = train["examples"]["while_loading"]["missing_image"]
    assert ghost["label_file"] == str(labels) and ghost["line"] == 4 and ghost["gt"] == "boo"
    assert ghost["path"] == str(tmp_path / "crops" / "ghost.png")
    assert f"{labels}:2" in err and f"{labels}:6" in err
    assert f"{labels}:4  {tmp_path / 'crops' / 'ghost.png'}" in err and "train: 2 usable, 4 skipped" in err

    report, err = _check([str(cfg), "--show", "1"], capsys)
    assert len(report["train"]["examples"]["while_indexing"]["malformed_line"]) == 1
    assert f"{labels}:2" in err and f"{labels}:6" not in err and "... and 1 more" in err


def test_data_check_names_lmdb_records(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    good = cv2.imencode(".png", np.full((32, 96, 3), 200, np.uint8))[1].tobytes()
    with LmdbWriter(tmp_path / "lmdb") as writer:
        writer.add(good, "ab")
        writer.add(b"not an image", "cd")
    cfg = _rec_config(tmp_path, {"type": "RecLMDB", "roots": [str(tmp_path / "lmdb")]})
    report, err = _check([str(cfg)], capsys)
    (bad,) = report["train"]["examples"]["while_loading"]["unreadable_image"]
    assert bad["path"].endswith("lmdb#2") and bad["gt"] == "cd"
    assert "lmdb#2" in err


def test_data_check_lists_cls_and_det_samples_with_their_lines(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    for name in ("a", "b"):
        _png(tmp_path / "images" / f"{name}.png", (32, 32))
    labels = tmp_path / "cls.txt"
    labels.write_text("images/a.png\t0\nimages/b.png\tsideways\nimages/gone.png\t180\n", encoding="utf-8")
    spec = {"type": "ClsLabelFile", "label_files": [str(labels)], "batch_size": 4, "num_workers": 0}
    cfg = tiny_cls_config(tmp_path, data={"image_size": [32, 32], "classes": ["0", "180"], "train": spec,
                                          "val": None})
    report, _ = _check([str(cfg)], capsys)
    examples = report["train"]["examples"]
    assert examples["while_indexing"]["label_not_in_classes"] == [
        {"path": str(tmp_path / "images" / "b.png"), "label": "sideways", "label_file": str(labels), "line": 2}]
    (gone,) = examples["while_loading"]["missing_image"]
    assert (gone["label_file"], gone["line"], gone["gt"]) == (str(labels), 3, "180")

    _png(tmp_path / "pages" / "p.png", (64, 64))
    quad = json.dumps([{"transcription": "ab", "points": [[4, 4], [40, 4], [40, 20], [4, 20]]}])
    det_labels = tmp_path / "det.txt"
    det_labels.write_text(f"p.png\t{quad}\np.png\tnot json\nabsent.png\t{quad}\n", encoding="utf-8")
    det_cfg = tiny_det_config(tmp_path, data={
        "image_size": [64, 64], "val": None, "train": {"type": "DetPaddle", "label_files": [str(det_labels)],
                                                     "data_dir": str(tmp_path / "pages"), "batch_size": 2,
                                                     "num_workers": 0}})
    report, err = _check([str(det_cfg)], capsys)
    examples = report["train"]["examples"]
    assert examples["while_indexing"]["bad_line"] == [{"label_file": str(det_labels), "line": 2}]
    (absent,) = examples["while_loading"]["missing_image"]
    assert (absent["label_file"], absent["line"]) == (str(det_labels), 3)
    assert f"{det_labels}:3  {tmp_path / 'pages' / 'absent.png'}" in err
