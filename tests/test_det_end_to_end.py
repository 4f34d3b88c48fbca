"""Detection through the CLI and API: synthetic pages and ICDAR-format files, train/test/export/predict, and the full
OCR pipeline on PyTorch checkpoints and on ONNX Runtime only."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import tiny_cls_config, write_config

from ocrforge.cli import main
from ocrforge.data.converters.det_labels import TextRegion, write_icdar2015
from ocrforge.errors import ConfigError
from ocrforge.export.onnx_export import export_onnx
from ocrforge.runners.ocr import OcrPipeline, reading_order
from ocrforge.runners.predict import infer, load_backend, predict
from ocrforge.tasks.det import inference as det_inference
from ocrforge.tasks.det.metric import evaluate_image
from ocrforge.tasks.det.synth_pages import SynthPagesDataset

pytestmark = pytest.mark.slow  # trains a detector, exports it, runs the CLI


def det_config(tmp_path: Path, **sections) -> Path:
    page = {"type": "SynthPages", "height": 192, "width": 192, "num_workers": 0}
    cfg = {
        "task": "det", "project": "tests", "exp_name": "det", "work_dir": str(tmp_path / "work_dirs"),
        "model": {"type": "DBNet", "backbone": {"type": "timm_det", "name": "lcnet_050"},
                  "neck": {"type": "db_fpn", "channels": 32}},
        "data": {"image_size": [128, 128], "eval_resize": {"limit_side_len": 192, "limit_type": "max"},
                 "train": {**page, "num_samples": 8, "seed": 0, "batch_size": 4},
                 "val": {**page, "num_samples": 4, "seed": 1, "batch_size": 2}},
        "optimizer": {"type": "adamw", "lr": 0.003},
        "train": {"max_epochs": 1, "progress_bar": False, "log_every_n_steps": 1},
    }
    return write_config(tmp_path / "det.yaml", cfg, sections)


def rec_config(tmp_path: Path) -> Path:
    cfg = {
        "task": "rec", "project": "tests", "exp_name": "rec", "work_dir": str(tmp_path / "work_dirs"),
        "model": {"type": "Recognizer", "backbone": {"type": "crnn_vgg", "width": 0.125},
                  "neck": {"type": "bilstm", "hidden": 16}, "head": {"type": "ctc"}},
        "data": {"image_size": [32, 96], "max_text_length": 12, "charset": {"dict": "printable"},
                 "train": {"type": "SynthWords", "num_samples": 16, "seed": 0, "max_len": 10, "batch_size": 16,
                           "num_workers": 0}},
        "train": {"max_epochs": 1, "progress_bar": False},
    }
    return write_config(tmp_path / "rec.yaml", cfg, {})


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny detector and one tiny recogniser, trained once for the module's tests."""
    tmp = tmp_path_factory.mktemp("det_e2e")
    assert main(["train", str(det_config(tmp))]) == 0
    assert main(["train", str(rec_config(tmp))]) == 0
    assert main(["train", str(tiny_cls_config(tmp))]) == 0  # text-line orientation: classes 0 and 180
    (det_run,) = (tmp / "work_dirs" / "tests").glob("det_2*")
    (rec_run,) = (tmp / "work_dirs" / "tests").glob("rec_2*")
    (cls_run,) = (tmp / "work_dirs" / "tests").glob("tiny_2*")
    return {"tmp": tmp, "det_run": det_run, "det": det_run / "checkpoints" / "last.ckpt",
            "rec": rec_run / "checkpoints" / "last.ckpt", "cls": cls_run / "checkpoints" / "last.ckpt"}


def test_train_writes_detection_metrics(trained: dict[str, Path]) -> None:
    metrics = json.loads((trained["det_run"] / "metrics.json").read_text())
    final = metrics["final"]
    for key in ("val/precision", "val/recall", "val/hmean", "val/loss"):
        assert key in final and np.isfinite(final[key])
    assert 0.0 <= final["val/hmean"] <= 1.0
    assert list((trained["det_run"] / "tensorboard").rglob("events.out.tfevents.*"))


def _icdar_folder(root: Path, count: int = 3) -> tuple[Path, Path]:
    """Synthetic pages written in ICDAR 2015 layout, one don't-care region per image, plus one broken line."""
    images, labels = root / "images", root / "gt"
    images.mkdir(parents=True)
    labels.mkdir()
    pages = SynthPagesDataset(num_samples=count, seed=5, height=192, width=192)
    for i in range(count):
        page = pages[i]
        cv2.imwrite(str(images / f"img_{i}.jpg"), page["image"][:, :, ::-1])
        regions = [TextRegion(p, t, ignore=k == 0) for k, (p, t) in enumerate(zip(page["polygons"], page["texts"],
                                                                                  strict=True))]
        problems: Counter = Counter()
        write_icdar2015(regions, labels / f"gt_img_{i}.txt", problems)
        assert not problems
    with open(labels / "gt_img_0.txt", "a", encoding="utf-8-sig") as handle:
        handle.write("1,2,3,oops\r\n")
    return images, labels


def test_test_on_icdar_files_writes_predictions_and_pictures(trained: dict[str, Path]) -> None:
    tmp = trained["tmp"]
    images, labels = _icdar_folder(tmp / "icdar")
    show = tmp / "show"
    cfg = det_config(tmp, data={"image_size": [128, 128], "eval_resize": {"limit_side_len": 192, "limit_type": "max"},
                                "test": {"type": "DetIcdar2015", "images_dir": str(images), "labels": str(labels),
                                         "batch_size": 2, "num_workers": 0}})
    assert main(["test", str(cfg), str(trained["det"]), "--save-preds", "--show-dir", str(show)]) == 0
    (test_run,) = (tmp / "work_dirs" / "tests").glob("det_test_*")
    result = json.loads((test_run / "metrics.json").read_text())
    assert set(result["metrics"]) >= {"precision", "recall", "hmean"}
    assert result["skipped_samples"]["while_indexing"] == {"bad_line": 1}
    rows = [json.loads(line) for line in (test_run / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    for row in rows:
        # the metric's per-image counts: the don't-care region is not counted as ground truth
        assert row["num_gt"] == len(row["gt_polygons"]) - 1
        assert row["matched"] <= min(row["num_gt"], row["num_pred"])
    assert len(list(show.glob("*.jpg"))) == 3


@pytest.fixture(scope="module")
def smooth_det(trained: dict[str, Path]) -> Path:
    """The tiny detector with each transposed conv's kernel averaged: a barely trained DB head paints a 4x4
    checkerboard, whose isolated pixels make poor regions to compare; averaged, the map follows the image in
    4x4 blocks."""
    checkpoint = torch.load(trained["det"], map_location="cpu", weights_only=False)
    state = checkpoint["state_dict"]
    for key in ("model.head.probability.1.weight", "model.head.probability.4.weight"):
        state[key] = state[key].mean(dim=(2, 3), keepdim=True).expand_as(state[key]).clone()
    path = trained["tmp"] / "smooth_det.ckpt"
    torch.save(checkpoint, path)
    return path


def _adaptive_postprocess(model: Path, image: np.ndarray) -> dict:
    """A threshold at the 85th percentile of a barely trained detector's map, so that it finds regions."""
    run, meta = load_backend(model)
    level = float(np.quantile(run(det_inference.prepare(image, meta)[None])["prob"], 0.85))
    return {"thresh": level, "box_thresh": 0.0, "min_size": 1}


def _same_regions(a: list, b: list) -> list[tuple[int, int]]:
    """One-to-one pairs of polygons covering the same region (IoU > 0.9) and at most 1 px apart.

    The back-ends differ by ~1e-7 in probability. A barely trained map varies by only ~1e-3 over the image, so a
    few pixels sit that close to any threshold and specks appear or merge; regions never move. (Trained models agree
    exactly: 200/200 ICDAR images gave identical words, benchmarks/results/ocr_icdar2015_val_h200_2026-11-22.json.)
    """
    pairs = evaluate_image([np.asarray(p, np.float32) for p in a], [False] * len(a),
                           [np.asarray(p, np.float32) for p in b], iou_threshold=0.9).pairs
    return [(i, j) for i, j in pairs if np.asarray(a[i]).shape == np.asarray(b[j]).shape
            and np.abs(np.asarray(a[i]) - np.asarray(b[j])).max() <= 1.0]


def test_export_parity_and_backends_agree(trained: dict[str, Path], smooth_det: Path) -> None:
    tmp = trained["tmp"]
    onnx_path = tmp / "det.onnx"
    report = export_onnx(smooth_det, onnx_path)
    assert max(report["max_abs_diff"].values()) <= 1e-4
    images, _ = _icdar_folder(tmp / "predict_pages", count=2)
    image = cv2.imread(str(images / "img_0.jpg"))[:, :, ::-1].copy()
    wide = np.ascontiguousarray(image[:, :150])  # another input size: dynamic height/width
    post = _adaptive_postprocess(smooth_det, image)
    found = {}
    for name, model in (("torch", smooth_det), ("onnx", onnx_path)):
        run, meta = load_backend(model)
        meta = {**meta, "postprocess": {**meta["postprocess"], **post}}
        found[name] = infer(det_inference, run, meta, [image, wide, image])
    assert found["torch"][0] == found["torch"][2]  # batched with another size: results do not depend on it
    for a, b in zip(found["torch"], found["onnx"], strict=True):
        assert len(a["polygons"]) > 0
        pairs = _same_regions(a["polygons"], b["polygons"])
        assert len(pairs) >= 0.8 * max(len(a["polygons"]), len(b["polygons"]))
    rows = predict(onnx_path, [images])["predictions"]  # the CLI's path, on files
    assert [Path(r["path"]).name for r in rows] == ["img_0.jpg", "img_1.jpg"]


def test_evaluation_of_mixed_sizes_matches_predict(trained: dict[str, Path], smooth_det: Path) -> None:
    # Images of two sizes in one evaluation batch: each must be scored as predict sees it alone (no padding).
    tmp = trained["tmp"]
    images, labels = _icdar_folder(tmp / "mixed", count=2)
    narrow = cv2.imread(str(images / "img_1.jpg"))[:, :136]
    cv2.imwrite(str(images / "img_1.jpg"), narrow)
    image = cv2.imread(str(images / "img_0.jpg"))[:, :, ::-1].copy()
    post = _adaptive_postprocess(smooth_det, image)
    cfg = det_config(tmp, exp_name="mixed", model={"postprocess": {"type": "DBPostProcess", **post}}, data={
        "test": {"type": "DetIcdar2015", "images_dir": str(images), "labels": str(labels), "batch_size": 2,
                 "num_workers": 0}})
    assert main(["test", str(cfg), str(smooth_det), "--save-preds"]) == 0
    (run,) = (tmp / "work_dirs" / "tests").glob("mixed_test_*")
    rows = {Path(r["path"]).name: r for r in map(json.loads, (run / "predictions.jsonl").read_text().splitlines())}
    run_fn, meta = load_backend(smooth_det)
    meta = {**meta, "postprocess": {**meta["postprocess"], **post}}
    for name in ("img_0.jpg", "img_1.jpg"):
        alone = infer(det_inference, run_fn, meta, [cv2.imread(str(images / name))[:, :, ::-1].copy()])[0]
        assert rows[name]["polygons"] == alone["polygons"]
    assert len(rows["img_0.jpg"]["polygons"]) > 0


def test_ocr_pipeline_torch_and_onnx_agree_without_torch(trained: dict[str, Path], smooth_det: Path) -> None:
    tmp = trained["tmp"]
    det_onnx, rec_onnx = tmp / "p_det.onnx", tmp / "p_rec.onnx"
    export_onnx(smooth_det, det_onnx)
    export_onnx(trained["rec"], rec_onnx)
    images, _ = _icdar_folder(tmp / "ocr_pages", count=2)
    image = cv2.imread(str(images / "img_0.jpg"))[:, :, ::-1].copy()
    post = _adaptive_postprocess(smooth_det, image)
    a = OcrPipeline(smooth_det, trained["rec"], drop_score=0.0, det_postprocess=post)(image)
    b = OcrPipeline(det_onnx, rec_onnx, drop_score=0.0, det_postprocess=post)(image)
    assert len(a["words"]) > 0
    pairs = _same_regions([w["polygon"] for w in a["words"]], [w["polygon"] for w in b["words"]])
    assert len(pairs) >= 0.8 * max(len(a["words"]), len(b["words"]))
    assert sum(a["words"][i]["text"] == b["words"][j]["text"] for i, j in pairs) >= 0.9 * len(pairs)
    out, show = tmp / "ocr.jsonl", tmp / "ocr_show"
    code = subprocess.run(
        [sys.executable, "-c",
         "import sys; from ocrforge.cli import main; code = main(sys.argv[1:]); "
         "assert 'torch' not in sys.modules, 'torch was imported on the ONNX path'; sys.exit(code)",
         "ocr", str(images), "--det", str(det_onnx), "--rec", str(rec_onnx), "--out", str(out), "--show-dir",
         str(show), "--drop-score", "0", "--det-thresh", str(post["thresh"]), "--det-box-thresh",
         str(post["box_thresh"])],
        capture_output=True, text=True, timeout=120)
    assert code.returncode == 0, code.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and all({"path", "words", "height", "width"} <= set(r) for r in rows)
    # the CLI sets thresh and box_thresh (min_size stays the model's): the same pipeline in this process
    cli = {k: post[k] for k in ("thresh", "box_thresh")}
    expected = OcrPipeline(det_onnx, rec_onnx, drop_score=0.0, det_postprocess=cli)(image)
    assert [w["text"] for w in rows[0]["words"]] == [w["text"] for w in expected["words"]]
    assert len(list(show.glob("*.jpg"))) == 2


def test_ocr_with_line_orientation_classifier(trained: dict[str, Path], smooth_det: Path) -> None:
    image = SynthPagesDataset(num_samples=1, seed=5, height=192, width=192)[0]["image"]
    post = _adaptive_postprocess(smooth_det, image)
    plain = OcrPipeline(smooth_det, trained["rec"], drop_score=0.0, det_postprocess=post)(image)
    # cls_threshold 0 turns every crop the classifier calls 180; the recogniser then reads the turned crop.
    oriented = OcrPipeline(smooth_det, trained["rec"], trained["cls"], drop_score=0.0, cls_threshold=0.0,
                           det_postprocess=post)(image)
    assert len(oriented["words"]) == len(plain["words"]) > 0
    assert all(w["angle"] in (0, 180) and 0.5 <= w["cls_score"] <= 1.0 for w in oriented["words"])
    for a, b in zip(plain["words"], oriented["words"], strict=True):
        assert a["polygon"] == b["polygon"]  # orientation changes the crop, never the detection


def test_ocr_rejects_a_model_of_the_wrong_task(trained: dict[str, Path], tmp_path: Path) -> None:
    assert main(["ocr", str(trained["tmp"]), "--det", str(trained["rec"]), "--rec", str(trained["rec"])]) == 2
    page_cfg = tiny_cls_config(tmp_path, data={"train": {"type": "SynthOrientation", "mode": "page",
                                                         "num_samples": 16, "seed": 0, "batch_size": 16,
                                                         "num_workers": 0}, "val": None})
    assert main(["train", str(page_cfg)]) == 0
    (page_ckpt,) = (tmp_path / "work_dirs" / "tests").glob("tiny_2*/checkpoints/last.ckpt")
    with pytest.raises(ConfigError, match="'0' and '180'"):
        OcrPipeline(trained["det"], trained["rec"], page_ckpt)


def test_reading_order_lines_then_left_to_right() -> None:
    def box(x: float, y: float, w: float = 20, h: float = 10) -> np.ndarray:
        return np.float32([[x, y], [x + w, y], [x + w, y + h], [x, y + h]])

    # two lines, the second word of line 1 slightly lower; given shuffled
    boxes = [box(60, 42), box(10, 2), box(35, 4), box(10, 40)]
    assert reading_order(boxes) == [1, 2, 3, 0]
    assert reading_order([]) == []
