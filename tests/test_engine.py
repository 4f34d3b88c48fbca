"""Engine behaviour: EMA, top-k checkpoints, pre-emption, load-from reports, LR scaling, AMP, non-finite losses."""

from __future__ import annotations

import csv
import json
import os
import signal
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import tiny_cls_config

from ocrforge.config import load_config
from ocrforge.engine import trainer as trainer_module
from ocrforge.engine.loading import module_from_checkpoint
from ocrforge.engine.trainer import resolve_precision
from ocrforge.export.onnx_export import export_onnx
from ocrforge.registry import CLS_LOSSES
from ocrforge.runners.train import train

pytestmark = pytest.mark.slow  # nearly every test trains


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
    for name in kept:  # epoch, step and the logged metric value are in the file name
        epoch = int(name.split("-")[0].split("=")[1])
        assert name == f"epoch={epoch}-step={3 * (epoch + 1)}-val_loss={losses[epoch]:.4f}.ckpt"
    assert result.metrics["best"]["score"] == pytest.approx(min(losses.values()), abs=1e-6)


class _SigtermAt(L.Callback):
    """Sends this process a real SIGTERM after training batch ``step`` (or inside validation), as SLURM would."""

    def __init__(self, step: int | None = None, in_validation: bool = False) -> None:
        self.step, self.in_validation = step, in_validation

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if self.step is not None and trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)

    def on_validation_batch_end(self, trainer: L.Trainer, *args) -> None:
        if self.in_validation and not trainer.sanity_checking:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_mid_epoch_then_resume_is_exact(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """SIGTERM after step 2 of a 3-step epoch saves last.ckpt; --resume finishes bit-identical to an
    uninterrupted run and keeps writing the same last.ckpt."""
    cfg_path = tiny_cls_config(tmp_path, ema={"enabled": True, "decay": 0.9},
                               train={"max_epochs": 2, "progress_bar": False})
    cfg_path.write_text(cfg_path.read_text().replace("num_workers: 0", "num_workers: 1"))
    straight = train(load_config(cfg_path, ["exp_name=straight"]))
    with pytest.raises(SystemExit):
        train(load_config(cfg_path, ["exp_name=stopped"]), callbacks=[_SigtermAt(step=2)])
    assert "SIGTERM: saved" in caplog.text
    (last,) = (tmp_path / "work_dirs" / "tests").glob("stopped_*/checkpoints/last.ckpt")
    assert _ckpt(last)["global_step"] == 2
    resumed = train(load_config(cfg_path, ["exp_name=stopped"]), resume=True)
    assert Path(resumed.last_checkpoint) == last
    ca, cb = _ckpt(straight.last_checkpoint), _ckpt(last)
    assert ca["global_step"] == cb["global_step"] == 6
    for key in ca["state_dict"]:
        assert torch.equal(ca["state_dict"][key], cb["state_dict"][key]), key
    for key in ca["ema_state_dict"]:
        assert torch.equal(ca["ema_state_dict"][key], cb["ema_state_dict"][key]), key
    assert not list(last.parent.glob("last-v*.ckpt"))


def test_sigterm_during_validation_saves_trained_not_ema_weights(tmp_path: Path) -> None:
    cfg = load_config(tiny_cls_config(tmp_path, ema={"enabled": True, "decay": 0.5}))
    with pytest.raises(SystemExit):
        train(cfg, callbacks=[_SigtermAt(in_validation=True)])
    (last,) = (tmp_path / "work_dirs" / "tests").glob("tiny_*/checkpoints/last.ckpt")
    ckpt = _ckpt(last)
    key = "backbone.conv_stem.weight"
    assert not torch.equal(ckpt["state_dict"][f"model.{key}"], ckpt["ema_state_dict"][key])


def test_max_steps_mid_epoch_saves_the_final_step(tmp_path: Path) -> None:
    cfg = load_config(tiny_cls_config(tmp_path, train={"max_epochs": 5, "max_steps": 4, "progress_bar": False}))
    result = train(cfg)
    assert _ckpt(result.last_checkpoint)["global_step"] == 4


def test_resume_without_path_stays_within_the_experiment(tmp_path: Path) -> None:
    cfg_path = tiny_cls_config(tmp_path)
    train(load_config(cfg_path, ["exp_name=first"]))
    train(load_config(cfg_path, ["exp_name=other"]))  # newer, but another experiment
    resumed = train(load_config(cfg_path, ["exp_name=first", "train.max_epochs=2"]), resume=True)
    assert resumed.run_dir.name.startswith("first_")
    assert list(resumed.run_dir.glob("config_resume_*.yaml")) and (resumed.run_dir / "config.yaml").is_file()


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


def test_amp_picks_bf16_on_a_cpu_with_native_bf16(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trainer_module, "cpu_has_fast_bf16", lambda: True)  # fp32 where bf16 is only emulated
    result = train(load_config(tiny_cls_config(tmp_path)), amp=True)
    assert result.metrics["precision"] == "bf16-mixed"
    assert torch.isfinite(torch.tensor(result.metrics["final"]["train/loss_epoch"]))


@CLS_LOSSES.register("test_nan_on_even_steps")
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


class _BatchRecorder(L.Callback):
    def __init__(self) -> None:
        self.indices: list[list[int]] = []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: dict, idx: int) -> None:
        self.indices.append(batch["index"].tolist())


def test_resume_after_max_steps_mid_epoch_trains_the_rest_of_that_epoch(tmp_path: Path) -> None:
    """Stopping at max_steps mid-epoch and resuming without it sees exactly the batches of one uninterrupted run
    (Lightning alone would count the cut epoch as done and skip its rest)."""
    cfg_path = tiny_cls_config(tmp_path, train={"max_epochs": 2, "progress_bar": False})
    straight, first, rest = _BatchRecorder(), _BatchRecorder(), _BatchRecorder()
    train(load_config(cfg_path, ["exp_name=straight"]), callbacks=[straight])
    stopped = train(load_config(cfg_path, ["exp_name=stopped", "train.max_steps=2"]), callbacks=[first])
    assert _ckpt(stopped.last_checkpoint)["global_step"] == 2
    resumed = train(load_config(cfg_path, ["exp_name=stopped"]), resume=True, callbacks=[rest])
    assert _ckpt(resumed.last_checkpoint)["global_step"] == 6
    assert len(straight.indices) == 6 and first.indices + rest.indices == straight.indices


def test_channels_last_training_feeds_nhwc_inputs_and_its_checkpoint_exports(tmp_path: Path) -> None:
    cfg = load_config(tiny_cls_config(tmp_path, train={"max_epochs": 1, "progress_bar": False,
                                                       "channels_last": True}))
    layouts: list[bool] = []

    class _Probe(L.Callback):
        def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: dict,
                                 idx: int) -> None:
            weight = pl_module.model.backbone.conv_stem.weight
            layouts.append(pl_module.task.model_input(batch).is_contiguous(memory_format=torch.channels_last)
                           and weight.is_contiguous(memory_format=torch.channels_last))

    result = train(cfg, callbacks=[_Probe()])
    assert layouts == [True] * 3
    report = export_onnx(result.last_checkpoint, tmp_path / "cl.onnx")
    assert max(report["max_abs_diff"].values()) < 1e-4


def test_auto_precision_is_bf16_only_on_a_gpu_that_has_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(tiny_cls_config(tmp_path))
    assert cfg.train.precision == "auto"
    for cuda, bf16, accelerator, expected in [(False, False, "auto", "32"), (True, True, "auto", "bf16-mixed"),
                                              (True, False, "auto", "32"), (True, True, "cpu", "32")]:
        monkeypatch.setattr(torch.cuda, "is_available", lambda cuda=cuda: cuda)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda bf16=bf16: bf16)
        cfg.train.accelerator = accelerator
        assert resolve_precision(cfg) == expected, (cuda, bf16, accelerator)
    cfg.train.precision = "16-mixed"
    assert resolve_precision(cfg) == "16-mixed"


@pytest.mark.parametrize("norm_eval", [True, False])
def test_norm_eval_keeps_batchnorm_statistics_through_training_and_validation(tmp_path: Path,
                                                                              norm_eval: bool) -> None:
    from ocrforge.engine.checkpoint import read_checkpoint

    cfg = load_config(tiny_cls_config(tmp_path), [f"train.norm_eval={str(norm_eval).lower()}", "train.max_epochs=2",
                                                  "ema.enabled=false"])
    result = train(cfg)
    fresh = module_from_checkpoint(result.last_checkpoint)[0].task.build_model().state_dict()
    trained = {k.removeprefix("model."): v for k, v in read_checkpoint(result.last_checkpoint)["state_dict"].items()}
    stats = [k for k in fresh if k.endswith("running_var")]
    assert stats
    unchanged = all(torch.equal(trained[k], fresh[k]) for k in stats)
    assert unchanged == norm_eval  # two epochs with a validation between them: frozen only with norm_eval
    weights = [k for k in fresh if k.endswith("weight") and fresh[k].ndim == 4]
    assert any(not torch.equal(trained[k], fresh[k]) for k in weights)  # the weights trained either way
