"""Exact resume from every checkpoint a run writes, and a last.ckpt that is never stale."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import assert_same_training_state, tiny_cls_config

from ocrforge.config import load_config
from ocrforge.runners.train import train


class _KeepEveryCheckpoint(L.Callback):
    """A copy of each distinct checkpoint the run writes, named by step and by where it was written."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.seen = folder, set()
        folder.mkdir(parents=True)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        batch_loop = trainer.fit_loop.epoch_loop.batch_progress.current
        where = "validation" if trainer.validating else (
            "epoch_end" if batch_loop.completed == trainer.num_training_batches else "mid_epoch")
        key = (trainer.global_step, where)
        if key not in self.seen:
            self.seen.add(key)
            torch.save(checkpoint, self.folder / f"step{trainer.global_step:02d}_{where}.ckpt")


@pytest.mark.slow
@pytest.mark.parametrize(("workers", "validation"), [(2, {"val_check_interval": 0.5}),
                                                     (0, {"check_val_every_n_epoch": 2})])
def test_resume_from_every_checkpoint_a_run_writes_is_exact(tmp_path: Path, workers: int, validation: dict) -> None:
    """Validation twice an epoch (the second at the epoch's last batch), or every other epoch, and a last.ckpt every
    3 steps: resuming from any checkpoint -- mid-epoch, at an epoch end, written in a validation -- ends with the
    uninterrupted run's weights, EMA and optimiser state."""
    cfg_path = tiny_cls_config(
        tmp_path, ema={"enabled": True, "decay": 0.9}, checkpoint={"save_top_k": -1, "every_n_steps": 3},
        train={"max_epochs": 3, "progress_bar": False, **validation})
    text = cfg_path.read_text().replace("num_samples: 48", "num_samples: 64")  # 4 batches an epoch
    cfg_path.write_text(text.replace("num_workers: 0", f"num_workers: {workers}"))
    keep = _KeepEveryCheckpoint(tmp_path / "written")
    straight = train(load_config(cfg_path, ["exp_name=straight"]), callbacks=[keep])
    expected = torch.load(straight.last_checkpoint, weights_only=False)
    kinds = {where for _, where in keep.seen}
    assert {"mid_epoch", "validation"} <= kinds and len(keep.seen) >= 6, kinds
    for ckpt in sorted(keep.folder.glob("*.ckpt")):
        if torch.load(ckpt, weights_only=False)["global_step"] == expected["global_step"]:
            continue  # the finished run: nothing left to train
        resumed = train(load_config(cfg_path, [f"exp_name=from_{ckpt.stem}"]), resume=str(ckpt))
        assert_same_training_state(expected, torch.load(resumed.last_checkpoint, weights_only=False), ckpt.name)


class _LastCheckpointStep(L.Callback):
    """After each validation and optimiser step: the step the run's last.ckpt holds."""

    def __init__(self) -> None:
        self.after_validation: list[tuple[int, int]] = []
        self.after_step: list[tuple[int, int]] = []

    @staticmethod
    def _last_step(trainer: L.Trainer) -> int:
        path = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
        return torch.load(path, weights_only=False)["global_step"] if path.is_file() else -1

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.after_validation.append((trainer.global_step, self._last_step(trainer)))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, idx) -> None:
        self.after_step.append((trainer.global_step, self._last_step(trainer)))


@pytest.mark.slow
def test_last_checkpoint_follows_every_validation_and_interval_while_the_metric_plateaus(tmp_path: Path) -> None:
    """With lr ~0 the monitored accuracy never improves, so top-k writes once; last.ckpt still moves on at every
    validation and every checkpoint.every_n_steps."""
    cfg_path = tiny_cls_config(tmp_path, optimizer={"type": "adamw", "lr": 1e-12},
                               checkpoint={"save_top_k": 1, "every_n_steps": 2},
                               train={"max_epochs": 3, "progress_bar": False})
    probe = _LastCheckpointStep()
    result = train(load_config(cfg_path), callbacks=[probe])
    assert len(list((result.run_dir / "checkpoints").glob("epoch=*.ckpt"))) == 1
    assert [step for step, _ in probe.after_validation] == [3, 6, 9]
    assert all(last == step for step, last in probe.after_validation)
    # An epoch's last batch (every 3rd) is saved after its validation instead.
    assert all(last == step for step, last in probe.after_step if step % 2 == 0 and step % 3)
    assert all(step - last <= 2 for step, last in probe.after_step if step >= 2)  # at most one interval behind


@pytest.mark.slow
def test_unfinished_checkpoint_writes_are_removed_when_the_run_resumes(tmp_path: Path) -> None:
    cfg_path = tiny_cls_config(tmp_path)
    first = train(load_config(cfg_path))
    folder = first.run_dir / "checkpoints"
    for name in ("last.ckpt.tmp", "epoch=0-step=3-val_acc=0.5000.ckpt.tmp"):
        (folder / name).write_bytes(b"half a checkpoint")
    train(load_config(cfg_path, ["train.max_epochs=2"]), resume=first.last_checkpoint)
    assert not list(folder.glob("*.tmp"))
    assert torch.load(folder / "last.ckpt", weights_only=False)["global_step"] == 6


def test_non_positive_checkpoint_intervals_are_config_errors(tmp_path: Path) -> None:
    from ocrforge.errors import ConfigError

    with pytest.raises(ConfigError, match=r"checkpoint\.every_n_steps"):
        train(load_config(tiny_cls_config(tmp_path, checkpoint={"every_n_steps": 0})))


def _csv_losses(run_dir: Path) -> dict[int, str]:
    import csv

    (metrics,) = run_dir.glob("csv/version_*/metrics.csv")
    rows = [r for r in csv.DictReader(metrics.open()) if r.get("train/loss_step")]
    steps = [int(r["step"]) for r in rows]
    assert len(steps) == len(set(steps)), "a step logged twice"
    return {int(r["step"]): r["train/loss_step"] for r in rows}


@pytest.mark.slow
def test_a_resumed_run_continues_one_tensorboard_and_csv_log(tmp_path: Path) -> None:
    """A session 'killed' at step 7 whose last.ckpt is from step 4, resumed: one version folder per logger, and the
    CSV reads as the uninterrupted run's (steps 5-7 logged again, not twice)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg_path = tiny_cls_config(tmp_path, checkpoint={"every_n_steps": 2}, train={"max_epochs": 3})
    keep = _KeepEveryCheckpoint(tmp_path / "written")
    run = train(load_config(cfg_path), callbacks=[keep]).run_dir
    straight = _csv_losses(run)
    assert len(straight) == 9
    (run / "checkpoints" / "last.ckpt").write_bytes((keep.folder / "step04_mid_epoch.ckpt").read_bytes())
    train(load_config(cfg_path), resume=str(run / "checkpoints" / "last.ckpt"))
    assert [p.name for p in (run / "tensorboard").iterdir()] == ["version_0"]
    assert [p.name for p in (run / "csv").iterdir()] == ["version_0"]
    assert _csv_losses(run) == straight
    events = EventAccumulator(str(run / "tensorboard" / "version_0"))
    events.Reload()
    steps = [e.step for e in events.Scalars("train/loss_step")]
    assert sorted(set(steps)) == sorted(straight) and len(steps) == len(straight)
