"""PSENet-lite end to end: kernel targets on hand-made polygons, progressive scale expansion on hand-drawn maps, a
tiny model training on CPU, ONNX export and ONNX Runtime parity (maps and polygons) at two input sizes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import shapely
import torch
from conftest import write_config
from omegaconf import OmegaConf

from ocrforge.cli import main
from ocrforge.config import load_config
from ocrforge.engine.module import build_task
from ocrforge.errors import ConfigError
from ocrforge.export.onnx_export import export_onnx
from ocrforge.runners.predict import infer, load_backend, predict
from ocrforge.tasks.det import inference as det_inference
from ocrforge.tasks.det.psenet.loss import PSELoss, ohem_mask
from ocrforge.tasks.det.psenet.postprocess import PSEPostProcess, expand_labels
from ocrforge.tasks.det.psenet.targets import PSETargets
from ocrforge.tasks.det.synth_pages import SynthPagesDataset


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.float32([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = shapely.Polygon(a), shapely.Polygon(b)
    return a.intersection(b).area / a.union(b).area


def psenet_config(tmp_path: Path, **sections) -> Path:
    page = {"type": "SynthPagesDataset", "height": 192, "width": 192, "num_workers": 0}
    cfg = {
        "task": "det", "project": "tests", "exp_name": "pse", "work_dir": str(tmp_path / "work_dirs"),
        "model": {"type": "PSENet", "backbone": {"type": "TimmFeaturePyramid", "name": "lcnet_050"},
                  "neck": {"type": "DBFPN", "channels": 32}, "head": {"type": "PSEHead", "kernel_num": 3,
                                                                     "hidden": 16},
                  "targets": {"type": "PSETargets", "kernel_num": 3, "min_ratio": 0.5, "min_text_size": 4}},
        "data": {"image_size": [128, 128], "eval_resize": {"limit_side_len": 192, "limit_type": "max"},
                 "augment": {"scale": [1.0, 1.5], "rotation": 0},
                 "train": {**page, "num_samples": 8, "seed": 0, "batch_size": 4},
                 "val": {**page, "num_samples": 4, "seed": 1, "batch_size": 2}},
        "optimizer": {"type": "AdamW", "lr": 0.005},
        "train": {"max_epochs": 6, "check_val_every_n_epoch": 6, "progress_bar": False, "log_every_n_steps": 1},
    }
    return write_config(tmp_path / "pse.yaml", cfg, sections)


# ----------------------------------------------------------------------------------------------------- targets
def test_kernels_shrink_in_order_at_psenet_ratios_and_dont_care_is_masked():
    word, dont_care = _rect(20, 20, 100, 50), _rect(120, 20, 150, 50)
    counts: Counter = Counter()
    targets = PSETargets(kernel_num=4, min_ratio=0.4)
    out = targets([word, dont_care], [False, True], 80, 160, counts)
    kernels, mask = out["kernel_maps"], out["training_mask"]
    assert kernels.shape == (4, 80, 160) and mask.shape == (80, 160)
    assert np.allclose(targets.ratios(), [1.0, 0.8, 0.6, 0.4])
    areas = kernels.sum(axis=(1, 2))
    assert np.all(np.diff(areas) < 0)  # every kernel smaller than the one before
    assert np.all(kernels[1:] <= kernels[:-1])  # and inside it
    for kernel, ratio in zip(kernels, targets.ratios(), strict=True):
        distance = 80 * 30 * (1 - ratio**2) / 220  # D = A(1 - r²)/L
        rows, cols = np.nonzero(kernel)
        assert abs(np.ptp(cols) - (80 - 2 * distance)) <= 1.5 and abs(np.ptp(rows) - (30 - 2 * distance)) <= 1.5
    # the don't-care word: out of the loss, in no kernel
    assert mask[20:51, 120:151].max() == 0 and kernels[:, 20:51, 120:151].max() == 0
    assert mask[:, :110].min() == 1 and counts == {"dont_care": 1}


def test_thin_and_vanishing_regions_are_masked_and_counted():
    counts: Counter = Counter()
    thin = _rect(10, 10, 60, 13)  # 3 px high
    out = PSETargets(min_text_size=4)([thin, _rect(10, 30, 60, 60)], [False, False], 80, 80, counts)
    assert counts == {"too_small": 1}
    assert out["training_mask"][10:14, 10:61].max() == 0 and out["kernel_maps"][:, 10:14].max() == 0
    counts.clear()
    sliver = _rect(10, 40, 30, 40.02)  # 1/50 px high: its kernels vanish at pyclipper's 1/16 px
    out = PSETargets(min_text_size=0)([sliver], [False], 80, 80, counts)
    assert counts == {"shrink_failed": 1} and out["kernel_maps"].max() == 0


# ---------------------------------------------------------------------------------------------- post-processing
def _two_touching_words() -> tuple[list[np.ndarray], np.ndarray]:
    """Two words whose text regions touch (one blob in the text map), drawn as the targets draw them."""
    words = [_rect(10, 20, 70, 44), _rect(71, 22, 150, 46)]
    maps = PSETargets(kernel_num=5, min_ratio=0.4, min_text_size=0)(words, [False, False], 72, 160)["kernel_maps"]
    return words, np.where(maps > 0, 0.95, 0.05).astype(np.float32)


def test_expansion_recovers_two_words_that_touch_in_the_text_map():
    words, maps = _two_touching_words()
    assert cv2.connectedComponents((maps[0] > 0.5).astype(np.uint8))[0] == 2  # background + one blob
    found = PSEPostProcess(min_score=0.9)(maps)
    assert len(found) == 2
    for word, region in zip(words, sorted(found, key=lambda r: r["points"][:, 0].min()), strict=True):
        assert region["points"].shape == (4, 2) and _iou(word, region["points"]) > 0.85
        assert region["score"] == pytest.approx(0.95)
    polygons = PSEPostProcess(box_type="poly")(maps, scale=(2.0, 2.0))
    assert len(polygons) == 2
    for word, region in zip(words, sorted(polygons, key=lambda r: r["points"][:, 0].min()), strict=True):
        assert _iou(word * 2, region["points"]) > 0.85  # mapped to the original image's pixels


def test_expansion_stays_inside_the_allowed_pixels_and_splits_between_seeds():
    labels = np.zeros((5, 12), np.uint16)
    labels[2, 1], labels[2, 10] = 1, 2
    allowed = np.ones((5, 12), bool)
    allowed[:, 6] = False  # a wall: neither seed crosses it
    grown = expand_labels(labels, allowed)
    assert (grown[:, :6] == 1).all() and (grown[:, 7:] == 2).all() and (grown[:, 6] == 0).all()


def test_filters_small_and_unsure_regions():
    _, maps = _two_touching_words()
    maps[:, 60:70, 140:143] = 0.95  # a 3x10 speck, in every kernel
    assert len(PSEPostProcess(min_score=0.9, min_area=16)(maps)) == 3
    assert len(PSEPostProcess(min_score=0.9, min_area=40)(maps)) == 2
    assert PSEPostProcess(min_score=0.99)(maps) == []
    assert PSEPostProcess()(np.zeros((3, 32, 32), np.float32)) == []
    with pytest.raises(ValueError, match="box_type"):
        PSEPostProcess(box_type="circle")


# ------------------------------------------------------------------------------------------------------ loss
def test_ohem_keeps_every_positive_and_three_times_as_many_hardest_negatives():
    gt = torch.zeros(1, 4, 8)
    gt[0, 0, :2] = 1  # 2 positives
    score = torch.linspace(0, 1, 32).reshape(1, 4, 8)
    mask = torch.ones(1, 4, 8)
    mask[0, 3, 7] = 0  # the highest score: not learnt from
    selected = ohem_mask(score, gt, mask, negative_ratio=3.0)
    assert selected.sum() == 2 + 6 and selected[0, 0, :2].all() and selected[0, 3, 7] == 0
    assert selected[0, 3, 1:7].all()  # the 6 highest-scoring negatives inside the mask
    empty = ohem_mask(score, torch.zeros_like(gt), mask, 3.0)
    assert torch.equal(empty, mask)  # no positive: the whole mask


def test_head_and_targets_must_agree_on_the_kernel_count():
    batch = {"targets": {"kernel_maps": torch.zeros(1, 4, 8, 8, dtype=torch.uint8),
                         "training_mask": torch.ones(1, 8, 8, dtype=torch.uint8)}}
    with pytest.raises(ConfigError, match="kernel_num"):
        PSELoss()({"kernels": torch.rand(1, 3, 8, 8)}, batch)


# --------------------------------------------------------------------------------------------- training, export
@pytest.mark.slow
def test_tiny_model_learns_on_cpu(tmp_path: Path):
    cfg = load_config(psenet_config(tmp_path))
    task = build_task(cfg)
    torch.manual_seed(0)
    model, loss_fn = task.build_model(), task.build_loss()
    dataset = task.build_dataset("train")
    batch = task.collate([dataset[i] for i in range(4)])
    optimiser = torch.optim.AdamW(model.parameters(), lr=0.005)
    losses = []
    for _ in range(12):
        loss = loss_fn(task.forward_train(model, batch), batch)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss))
    assert np.isfinite(losses).all() and losses[-1] < 0.8 * losses[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny PSENet trained a few steps, calibrated, exported; pages of two sizes to run it on."""
    tmp = tmp_path_factory.mktemp("psenet")
    assert main(["train", str(psenet_config(tmp))]) == 0
    (run,) = (tmp / "work_dirs" / "tests").glob("pse_2*")
    pages = SynthPagesDataset(num_samples=2, seed=7, height=192, width=192)
    images = tmp / "images"
    images.mkdir()
    for i, width in enumerate((192, 150)):  # two input sizes: 192x192 and 192x160 after the resize
        cv2.imwrite(str(images / f"page_{i}.png"), pages[i]["image"][:, :width, ::-1])
    ckpt = _calibrated(run / "checkpoints" / "last.ckpt", pages[0]["image"], tmp / "calibrated.ckpt")
    onnx_path = tmp / "pse.onnx"
    report = export_onnx(ckpt, onnx_path)
    assert max(report["max_abs_diff"].values()) <= 1e-4
    return {"tmp": tmp, "ckpt": ckpt, "onnx": onnx_path, "images": images}


def _calibrated(ckpt: Path, image: np.ndarray, out: Path) -> Path:
    """The checkpoint with its kernels made nested level sets of its text map, as a trained PSENet's are: a few
    steps leave the maps unrelated (even anti-correlated), so seeds would fall outside the text. Map c becomes the
    text map shifted so that it is 0.5 at the text logits' (85 + 5c)th percentile on ``image``."""
    run, meta = load_backend(ckpt)
    text = run(det_inference.prepare(image, meta)[None])["kernels"][0, 0].astype(np.float64)
    levels = np.quantile(np.log(text / (1 - text)), [0.85, 0.9, 0.95])
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
    state = checkpoint["state_dict"]
    weight, bias = state["model.head.classify.weight"], state["model.head.classify.bias"]
    state["model.head.classify.weight"] = weight[:1].expand_as(weight).clone()
    state["model.head.classify.bias"] = bias[0] - torch.from_numpy(levels).to(bias.dtype)
    torch.save(checkpoint, out)
    return out


def _threshold_between_values(maps: list[np.ndarray], margin: float) -> float:
    """A threshold near 0.5 that no map value lies within ``margin`` of: backends that differ by less binarise
    every map alike there."""
    values = np.unique(np.concatenate([m.ravel() for m in maps]))
    band = values[(values >= 0.48) & (values <= 0.52)]
    gaps = np.diff(band)
    widest = int(np.argmax(gaps))
    assert gaps[widest] > 2 * margin, "no clear threshold: the maps are too dense"
    return float((band[widest] + band[widest + 1]) / 2)


@pytest.mark.slow
def test_onnx_runtime_agrees_with_pytorch_at_two_sizes(trained: dict[str, Path]) -> None:
    torch_run, meta = load_backend(trained["ckpt"])
    onnx_run, onnx_meta = load_backend(trained["onnx"])
    assert onnx_meta["postprocess"]["type"] == "PSEPostProcess" and onnx_meta["outputs"] == ["kernels"]
    images = [cv2.imread(str(p))[:, :, ::-1].copy() for p in sorted(trained["images"].iterdir())]
    prepared = [det_inference.prepare(image, meta)[None] for image in images]
    assert {p.shape for p in prepared} == {(1, 3, 192, 192), (1, 3, 192, 160)}
    maps = []
    for x in prepared:
        a, b = torch_run(x)["kernels"], onnx_run(x)["kernels"]
        assert a.shape == b.shape == (1, 3, *x.shape[2:])
        difference = float(np.abs(a - b).max())
        assert difference <= 1e-4
        maps += [a, b]
    # At a threshold farther from every value than the backends differ, both give the same polygons.
    post = {"thresh": _threshold_between_values(maps, difference), "min_score": 0.0, "min_area": 1,
            "min_kernel_area": 1}
    found = {name: infer(det_inference, run, {**m, "postprocess": {**m["postprocess"], **post}}, images)
             for name, run, m in (("torch", torch_run, meta), ("onnx", onnx_run, onnx_meta))}
    assert sum(len(r["polygons"]) for r in found["torch"]) > 0
    for a, b in zip(found["torch"], found["onnx"], strict=True):
        assert a["polygons"] == b["polygons"]
        assert np.allclose(a["scores"], b["scores"], atol=1e-4)
    rows = predict(trained["onnx"], [trained["images"]], progress=False)["predictions"]  # the CLI's path
    assert [Path(r["path"]).name for r in rows] == ["page_0.png", "page_1.png"]
    assert all(set(r) >= {"polygons", "scores"} for r in rows)


@pytest.mark.slow
def test_checkpoint_config_keeps_the_family_next_to_the_head(trained: dict[str, Path]) -> None:
    stored = torch.load(trained["ckpt"], map_location="cpu", weights_only=False)["hyper_parameters"]["config"]
    assert stored["model"]["targets"]["type"] == "PSETargets" and stored["data"]["targets"] is None
    task = build_task(OmegaConf.create(stored))
    assert task.exporter().output_names() == ["kernels"]
    assert type(task.build_loss()).__name__ == "PSELoss"  # the family's default: the config names no loss
