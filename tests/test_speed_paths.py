"""The training-speed paths keep results: the fused EMA equals timm's ModelEmaV3, CPU AdamW is torch's own, the
loss check reads the right flag, reduced JPEG decoding keeps the height asked for, parallel synthetic export writes
the same LMDB, and bench can measure the model alone."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import lmdb
import numpy as np
import pytest
import torch
from conftest import tiny_cls_config, tiny_rec_config
from omegaconf import OmegaConf
from PIL import Image
from timm.utils import ModelEmaV3
from torch import nn

from ocrforge.config import load_config
from ocrforge.data.images import decode_image, device_decodable_jpeg, jpeg_height
from ocrforge.data.synth_text.export import export_synth_rec
from ocrforge.engine import module as module_lib
from ocrforge.engine.callbacks import ModelEma
from ocrforge.engine.optim import adamw
from ocrforge.runners.bench import bench


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))


@pytest.mark.parametrize("warmup", [True, False])
def test_fused_ema_equals_timm_model_ema_v3(warmup: bool) -> None:
    model = _net()
    ours, timm_ema = ModelEma(model, decay=0.99, warmup=warmup), ModelEmaV3(model, decay=0.99, use_warmup=warmup)
    for step in range(1, 8):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model.train()(torch.randn(2, 3, 8, 8))  # moves the BatchNorm statistics and its integer counter
        ours.update(model, step)
        timm_ema.update(model, step=step)
    expected = timm_ema.module.state_dict()
    for key, value in ours.module.state_dict().items():
        assert torch.equal(value, expected[key]), key
    assert ours.module.state_dict()["1.num_batches_tracked"] == 7
    assert [ours.decay_at(s) for s in range(0, 20000, 7)] == [timm_ema.get_decay(s) for s in range(0, 20000, 7)]


def test_adamw_on_cpu_is_torchs_default_bit_for_bit() -> None:
    a, b = _net(), _net()
    ours = adamw(a.named_parameters(), lr=0.01, weight_decay=0.05)
    plain = torch.optim.AdamW([{"params": [p for p in b.parameters() if p.ndim > 1], "weight_decay": 0.05},
                               {"params": [p for p in b.parameters() if p.ndim <= 1], "weight_decay": 0.0}], lr=0.01)
    assert not ours.defaults["fused"] and not ours._step_supports_amp_scaling
    x = torch.randn(4, 3, 8, 8)
    for _ in range(3):
        for model, optimizer in ((a, ours), (b, plain)):
            model(x).square().mean().backward()
            optimizer.step()
            optimizer.zero_grad()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_finite_flag_reads_the_loss_it_was_given() -> None:
    flag = module_lib.FiniteFlag()
    for value, finite in ((1.5, True), (float("nan"), False), (float("inf"), False), (0.0, True)):
        flag.queue(torch.tensor(value, requires_grad=True) * 2)
        assert flag.read() is finite


@pytest.mark.parametrize("bucketed", [True, False])
def test_bucketed_training_compiles_with_dynamic_shapes(bucketed: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    model = _net()
    monkeypatch.setattr(model, "compile", lambda **kwargs: calls.append(kwargs))
    cfg = OmegaConf.create({"data": {"train": {"type": "RecLMDB", "roots": ["x"], "bucket_by_length": bucketed}}})
    module_lib.compile_for_training(model, cfg)
    assert calls == [{"dynamic": True if bucketed else None}]


def _jpeg(height: int, width: int, progressive: bool = False) -> bytes:
    image = cv2.GaussianBlur((np.random.default_rng(0).random((height, width, 3)) * 255).astype(np.uint8), (0, 0), 2)
    flags = [cv2.IMWRITE_JPEG_QUALITY, 90, cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)]
    return cv2.imencode(".jpg", image, flags)[1].tobytes()


def test_reduced_jpeg_decode_stays_at_least_as_tall_as_asked() -> None:
    data = _jpeg(200, 600)
    assert jpeg_height(data) == 200 and jpeg_height(np.frombuffer(data, np.uint8)) == 200
    assert jpeg_height(_jpeg(90, 40, progressive=True)) == 90
    reduced = decode_image(data, min_height=48)  # 1/4 gives 50 rows, 1/8 would give 25
    expected = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_COLOR_4), cv2.COLOR_BGR2RGB)
    assert reduced.shape == (50, 150, 3) and np.array_equal(reduced, expected)
    assert decode_image(data, min_height=101).shape == (200, 600, 3)  # half would be too short
    assert decode_image(data).shape == (200, 600, 3)
    png = cv2.imencode(".png", np.zeros((200, 60, 3), np.uint8))[1].tobytes()
    assert jpeg_height(png) is None and decode_image(png, min_height=32).shape == (200, 60, 3)


def test_jpegs_a_gpu_decodes_as_opencv_does_are_told_apart() -> None:
    """``device_decodable_jpeg``: sizes of baseline grey or colour JPEGs; None where a device decoder would differ
    from cv2.imdecode or fail (progressive, CMYK, 12-bit, an EXIF rotation, not a JPEG)."""
    image = Image.fromarray(np.zeros((40, 60, 3), np.uint8))

    def encoded(picture: Image.Image, **options) -> np.ndarray:
        out = io.BytesIO()
        picture.save(out, options.pop("format", "JPEG"), **options)
        return np.frombuffer(out.getvalue(), np.uint8)

    rotated, upright = Image.Exif(), Image.Exif()
    rotated[0x0112], upright[0x0112] = 6, 1
    assert device_decodable_jpeg(encoded(image)) == (40, 60)
    assert device_decodable_jpeg(encoded(image.convert("L"))) == (40, 60)
    assert device_decodable_jpeg(encoded(image, exif=upright)) == (40, 60)
    twelve_bit = encoded(image).copy()
    frame = bytes(twelve_bit).index(b"\xff\xc0")
    twelve_bit[frame + 4] = 12  # the frame's sample precision
    for other in (encoded(image, exif=rotated), encoded(image, progressive=True), encoded(image.convert("CMYK")),
                  encoded(image, format="PNG"), np.zeros(0, np.uint8), twelve_bit):
        assert device_decodable_jpeg(other) is None


def test_training_splits_decode_recognition_crops_at_the_input_height(tmp_path: Path) -> None:
    """Tall stored crops decode reduced for training (the task's default), in full for evaluation, and as the
    config says when it sets ``decode_height``."""
    crop = np.zeros((200, 600, 3), np.uint8)
    cv2.putText(crop, "word", (20, 150), cv2.FONT_HERSHEY_SIMPLEX, 5, (255, 255, 255), 12)
    (tmp_path / "crop.jpg").write_bytes(cv2.imencode(".jpg", crop)[1].tobytes())
    (tmp_path / "labels.txt").write_text("crop.jpg\tword\n")
    split = {"type": "RecLabelFileDataset", "label_files": [str(tmp_path / "labels.txt")], "batch_size": 1}

    def heights(**train_options) -> tuple[int, int]:
        cfg = load_config(tiny_rec_config(tmp_path, data={"train": {**split, **train_options}, "val": split}))
        task = module_lib.build_task(cfg)
        return tuple(task.raw_dataset(name)[0]["image"].shape[0] for name in ("train", "val"))

    assert heights() == (50, 200)  # 1/4 of 200 stays >= the model's 32; validation reads the file in full
    assert heights(decode_height=None) == (200, 200)
    assert heights(decode_height=100) == (100, 200)


@pytest.mark.slow
def test_parallel_synthetic_export_writes_the_same_lmdb(tmp_path: Path) -> None:
    reports = [export_synth_rec(tmp_path / f"w{workers}", 300, seed=3, lmdb=True, workers=workers)
               for workers in (1, 2)]
    records = []
    for workers in (1, 2):
        with lmdb.open(str(tmp_path / f"w{workers}"), readonly=True, lock=False) as env, env.begin() as txn:
            records.append(list(txn.cursor()))
    assert len(records[0]) == 601 and records[0] == records[1]
    assert reports[0]["stats"] == reports[1]["stats"] and reports[1]["workers"] == 2


@pytest.mark.slow
def test_bench_can_measure_the_model_alone(tmp_path: Path) -> None:
    report = bench(load_config(tiny_cls_config(tmp_path)), steps=2, warmup_steps=1, device="cpu", parts=("model",))
    assert "data" not in report and "end_to_end" not in report
    assert report["model"]["samples_per_s"] > 0 and report["model"]["peak_memory_mb_per_sample"] is None
