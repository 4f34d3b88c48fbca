"""The whole classification loop through the CLI: train -> resume -> test -> export -> predict (PyTorch and ONNX)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import onnx
import pytest
import torch
from conftest import tiny_cls_config

from ocrforge.cli import main
from ocrforge.config import load_config
from ocrforge.runners.train import train
from ocrforge.tasks.cls.synth import SynthOrientationDataset

pytestmark = pytest.mark.slow  # full train / resume / test / export / predict loops


def _run_dirs(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "work_dirs" / "tests").glob("tiny_2*"))


def _write_images(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    data = SynthOrientationDataset(count, mode="line", seed=7)
    paths = []
    for i in range(count):
        path = folder / f"img_{i}.png"
        cv2.imwrite(str(path), data[i]["image"][:, :, ::-1])
        paths.append(path)
    return paths


def test_train_resume_test_export_predict(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = tiny_cls_config(tmp_path, ema={"enabled": True, "decay": 0.9})
    assert main(["train", str(cfg)]) == 0
    (run,) = _run_dirs(tmp_path)
    for name in ("config.yaml", "env.json", "metrics.json", "checkpoints/last.ckpt"):
        assert (run / name).is_file(), name
    env = json.loads((run / "env.json").read_text())
    assert env["packages"]["torch"] and "git_commit" in env and env["seed"] == 42
    assert list((run / "tensorboard").rglob("events.out.tfevents.*")), "no TensorBoard event file"
    assert (run / "csv" / "version_0" / "metrics.csv").is_file()
    assert list((run / "checkpoints").glob("epoch=0-step=3-val_acc=*.ckpt"))
    first = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    steps_per_epoch = first["global_step"]
    assert steps_per_epoch == 3  # 48 samples / batch 16

    # --resume with no path continues the newest run in its own folder, to the new max_epochs.
    assert main(["train", str(cfg), "--resume", "-o", "train.max_epochs=2"]) == 0
    assert _run_dirs(tmp_path) == [run], "a resumed run must not open a new run folder"
    resumed = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert resumed["global_step"] == 2 * steps_per_epoch
    # where the next run's data starts
    assert resumed["TaskDataModule"] == {"epoch": 2, "batches_done": 0, "world_size": 1}
    assert "ema_state_dict" in resumed
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["best"]["monitor"] == "val/acc"
    best = metrics["best"]["checkpoint"]

    # test: metrics, predictions, confusion matrix, pictures
    show = tmp_path / "show"
    assert main(["test", str(cfg), best, "--save-preds", "--show-dir", str(show)]) == 0
    (test_dir,) = sorted((tmp_path / "work_dirs" / "tests").glob("tiny_test_*"))
    result = json.loads((test_dir / "metrics.json").read_text())
    assert 0.0 <= result["metrics"]["acc"] <= 1.0 and result["metrics"]["num_samples"] == 24
    preds = [json.loads(line) for line in (test_dir / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 24 and {p["gt"] for p in preds} <= {"0", "180"}
    accuracy = np.mean([p["label"] == p["gt"] for p in preds])
    assert accuracy == pytest.approx(result["metrics"]["acc"])
    assert (test_dir / "confusion_matrix.png").stat().st_size > 1000
    assert list(show.glob("predictions_*.png"))

    # export: ONNX Runtime parity, metadata with everything a consumer needs
    onnx_path = tmp_path / "model.onnx"
    assert main(["export", best, "--out", str(onnx_path)]) == 0
    parity = json.loads(onnx_path.with_suffix(".parity.json").read_text())
    assert parity["max_abs_diff"]["logits"] < 1e-4
    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    info = json.loads(meta["ocrforge"])
    assert info["classes"] == ["0", "180"] and info["input_size"] == [32, 32] and info["mean"] == [0.5] * 3

    # predict: checkpoint and ONNX agree; a corrupt file is counted, not fatal
    images = tmp_path / "images"
    _write_images(images, 5)
    (images / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    capsys.readouterr()
    out_ckpt, out_onnx = tmp_path / "p_ckpt.jsonl", tmp_path / "p_onnx.jsonl"
    assert main(["predict", best, str(images), "--out", str(out_ckpt)]) == 0
    assert "skipped {'unreadable_image': 1}" in capsys.readouterr().err
    assert main(["predict", str(onnx_path), str(images), "--out", str(out_onnx)]) == 0
    a = [json.loads(x) for x in out_ckpt.read_text().splitlines()]
    b = [json.loads(x) for x in out_onnx.read_text().splitlines()]
    assert len(a) == len(b) == 5
    for x, y in zip(a, b, strict=True):
        assert x["path"] == y["path"] and x["label"] == y["label"]
        assert x["score"] == pytest.approx(y["score"], abs=1e-5)


class _StopAfterFirstEpoch(L.Callback):
    """Simulates a crash right after the end-of-epoch checkpoint of epoch 0 was written."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == 1:
            raise KeyboardInterruptLike("stop")


class KeyboardInterruptLike(RuntimeError):
    """Stands for the crash; raised from inside Lightning's loop."""


def test_resume_is_exact(tmp_path: Path) -> None:
    """A 2-epoch run stopped after epoch 1 and resumed ends bit-identical to the same run left alone:
    weights, optimiser moments and EMA (workers on, so the sampler and per-sample seeding are exercised)."""
    cfg_path = tiny_cls_config(tmp_path, ema={"enabled": True, "decay": 0.9},
                               train={"max_epochs": 2, "progress_bar": False})
    cfg_path.write_text(cfg_path.read_text().replace("num_workers: 0", "num_workers: 1"))
    straight = train(load_config(cfg_path, ["exp_name=straight"]))
    with pytest.raises(KeyboardInterruptLike):
        train(load_config(cfg_path, ["exp_name=split"]), callbacks=[_StopAfterFirstEpoch()])
    (split_ckpt,) = (tmp_path / "work_dirs" / "tests").glob("split_*/checkpoints/last.ckpt")
    assert torch.load(split_ckpt, weights_only=False)["global_step"] == 3
    resumed = train(load_config(cfg_path, ["exp_name=split"]), resume=str(split_ckpt))
    ca = torch.load(straight.last_checkpoint, weights_only=False)
    cb = torch.load(resumed.last_checkpoint, weights_only=False)
    assert ca["global_step"] == cb["global_step"] == 6
    for key in ca["state_dict"]:
        assert torch.equal(ca["state_dict"][key], cb["state_dict"][key]), key
    for key in ca["ema_state_dict"]:
        assert torch.equal(ca["ema_state_dict"][key], cb["ema_state_dict"][key]), key
    sa, sb = ca["optimizer_states"][0]["state"], cb["optimizer_states"][0]["state"]
    assert all(torch.equal(sa[k]["exp_avg"], sb[k]["exp_avg"]) for k in sa)
