"""Engine behaviour: EMA, top-k checkpoints, pre-emption, load-from reports, LR scaling, AMP, non-finite losses."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import tiny_cls_config

from ocrforge.cli import main
from ocrforge.config import load_config
from ocrforge.registry import LOSSES
from ocrforge.runners.evaluate import module_from_checkpoint
from ocrforge.runners.train import train


def _ckpt(path: str | Path) -> dict:
    return torch.load(path, weights_only=False)


@pytest.mark.parametrize("enabled", [True, False])
def test_ema_on_off(tmp_path: Path, enabled: bool) -> None:
    cfg = load_config(tiny_cls_config(tmp_path, ema={"enabled": enabled, "decay": 0.5}))
    result = train(cfg)
    ckpt = _ckpt(result.last_checkpoint)
    assert ("ema_state_dict" in ckpt) is enabled
    module, _ = module_from_checkpoint(result.last_checkpoint)
    weights = module.model.state_dict()
    raw = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}
    key = "backbone.conv_stem.weight"
    if enabled:
        assert not torch.equal(ckpt["ema_state_dict"][key], raw[key]), "EMA weights should lag the raw weights"
        assert torch.equal(weights[key], ckpt["ema_state_dict"][key]), "inference must use the EMA weights"
    else:
        assert torch.equal(weights[key], raw[key])


def test_top_k_keeps_the_best_by_monitor(tmp_path: Path) -> None:
    cfg = load_config(tiny_cls_config(tmp_path, checkpoint={"monitor": "val/loss", "mode": "min", "save_top_k": 2},
                                      train={"max_epochs": 4, "progress_bar": False}))
    result = train(cfg)
    kept = sorted(p.name for p in (result.run_dir / "checkpoints").glob("epoch=*.ckpt"))
    assert len(kept) == 2 and (result.run_dir / "checkpoints" / "last.ckpt").is_file()
    rows = list(csv.DictReader(open(result.run_dir / "csv" / "version_0" / "metrics.csv")))
    losses = {int(r["epoch"]): float(r["val/loss"]) for r in rows if r.get("val/loss")}
    best_two = sorted(losses, key=losses.get)[:2]
    assert sorted(int(name.split("-")[0].split("=")[1]) for name in kept) == sorted(best_two)
    for name in kept:  # the metric value in the file name is the logged one
        epoch = int(name.split("-")[0].split("=")[1])
        assert name.endswith(f"val_loss={losses[epoch]:.4f}.ckpt")
    assert result.metrics["best"]["score"] == pytest.approx(min(losses.values()), abs=1e-6)


def test_sigterm_saves_last_checkpoint_and_resume_continues(tmp_path: Path) -> None:
    cfg = tiny_cls_config(tmp_path, train={"max_epochs": 1000, "progress_bar": False})
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ocrforge.cli", "train", str(cfg)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    deadline = time.time() + 120
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("epoch 2/") or time.time() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=120)
    output = "".join(lines) + rest
    assert proc.returncode == 0, output
    assert "SIGTERM: saved" in output
    (last,) = (tmp_path / "work_dirs" / "tests").glob("tiny_*/checkpoints/last.ckpt")
    stopped_at = _ckpt(last)["global_step"]
    assert stopped_at >= 6
    assert main(["train", str(cfg), "--resume", str(last), "-o", f"train.max_epochs={stopped_at // 3 + 1}"]) == 0
    assert _ckpt(last)["global_step"] > stopped_at


def test_load_from_reports_shape_mismatch(tmp_path: Path) -> None:
    source = train(load_config(tiny_cls_config(tmp_path / "a")))  # 2 classes (line orientation)
    page = tiny_cls_config(tmp_path / "b")
    target = load_config(page, ["data.train.mode=page", "data.val.mode=page"])  # 4 classes
    result = train(target, load_from=source.last_checkpoint)
    report = json.loads((result.run_dir / "load_from_report.json").read_text())
    assert any(k.startswith("head.fc.weight") for k in report["shape_mismatched"])
    assert "backbone.conv_stem.weight" in report["loaded"]
    assert report["missing"] == [] and report["unexpected"] == []


def test_auto_scale_lr(tmp_path: Path) -> None:
    cfg = load_config(tiny_cls_config(tmp_path, auto_scale_lr={"base_batch_size": 64}))
    result = train(cfg, auto_scale_lr=True)  # batch 16 on 1 device: lr x 0.25
    base_lrs = _ckpt(result.last_checkpoint)["lr_schedulers"][0]["base_lrs"]
    assert base_lrs[0] == pytest.approx(0.003 * 16 / 64)


def test_amp_picks_bf16_on_cpu(tmp_path: Path) -> None:
    result = train(load_config(tiny_cls_config(tmp_path)), amp=True)
    assert result.metrics["precision"] == "bf16-mixed"
    assert torch.isfinite(torch.tensor(result.metrics["final"]["train/loss_epoch"]))


@LOSSES.register("test_nan_on_even_steps")
class _NanOnEvenSteps(torch.nn.Module):
    def __init__(self, always: bool = False) -> None:
        super().__init__()
        self.always, self.calls = always, 0

    def forward(self, outputs: dict, batch: dict) -> dict:
        loss = torch.nn.functional.cross_entropy(outputs["logits"], batch["label"])
        self.calls += 1
        if self.training and (self.always or self.calls % 2 == 0):
            loss = loss * float("nan")
        return {"loss": loss}


class _InitialWeights(L.Callback):
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.state = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}


def test_nonfinite_losses_are_skipped_not_trained_on(tmp_path: Path) -> None:
    cfg = load_config(tiny_cls_config(tmp_path, loss={"type": "test_nan_on_even_steps", "always": True}))
    initial = _InitialWeights()
    result = train(cfg, callbacks=[initial])
    final = _ckpt(result.last_checkpoint)["state_dict"]
    params = dict(module_from_checkpoint(result.last_checkpoint)[0].model.named_parameters())
    for key in params:  # BatchNorm statistics move in the forward pass; the weights must not
        assert torch.equal(final[f"model.{key}"], initial.state[key]), key
    assert result.metrics["final"]["train/nonfinite_losses"] == 3.0


def test_finite_steps_still_train_between_nonfinite_ones(tmp_path: Path) -> None:
    cfg = load_config(tiny_cls_config(tmp_path, loss={"type": "test_nan_on_even_steps"}))
    initial = _InitialWeights()
    result = train(cfg, callbacks=[initial])
    final = _ckpt(result.last_checkpoint)["state_dict"]
    assert not torch.equal(final["model.head.fc.weight"], initial.state["head.fc.weight"])
    assert all(torch.isfinite(v).all() for v in final.values() if v.is_floating_point())


def test_persistent_nonfinite_losses_stop_with_a_clear_error(tmp_path: Path) -> None:
    cfg = load_config(tiny_cls_config(tmp_path, loss={"type": "test_nan_on_even_steps", "always": True},
                                      train={"max_nonfinite_steps": 1, "progress_bar": False}))
    with pytest.raises(FloatingPointError, match="consecutive non-finite losses"):
        train(cfg)


def test_optional_loggers_write_offline(tmp_path: Path) -> None:
    """W&B offline and an MLflow file store (optional extras; skipped where they are not installed)."""
    pytest.importorskip("wandb")
    pytest.importorskip("mlflow")
    cfg = load_config(tiny_cls_config(tmp_path, logging={"wandb": {"enabled": True, "offline": True},
                                                         "mlflow": {"enabled": True}}))
    result = train(cfg)
    assert list((result.run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    metrics = list((result.run_dir / "mlruns").glob("*/*/metrics/val/acc"))
    assert metrics and metrics[0].read_text().strip()
