"""Training-run defects a new user hit (issue 11): --amp on a CPU that only emulates bf16, --load-from files that
fit nothing, --resume with another length / task / scheduler, image_size shapes, failed-run folders, and which
limit ended a run."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from conftest import QUIET, REPO, tiny_cls_config

from ocrforge.config import load_config
from ocrforge.engine import trainer as trainer_module
from ocrforge.errors import CheckpointError, ConfigError
from ocrforge.runners.train import train

# No loggers, no progress bar: each run below is a few seconds on 2 cores.


def _config(tmp_path: Path, **train_section) -> Path:
    return tiny_cls_config(tmp_path, train={"max_epochs": 1, "progress_bar": False, "log_every_n_steps": 1,
                                            **train_section}, **QUIET)


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


def _runs(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "work_dirs" / "tests").glob("*"))


@pytest.fixture(scope="module")
def onecycle_run(tmp_path_factory: pytest.TempPathFactory):
    """A OneCycle cls run stopped by max_steps=2 in the first of 5 three-batch epochs (shared: copy to resume it)."""
    tmp = tmp_path_factory.mktemp("onecycle")
    path = tiny_cls_config(tmp, train={"max_epochs": 5, "max_steps": 2, "progress_bar": False}, **QUIET)
    cfg = yaml.safe_load(path.read_text())
    cfg["scheduler"] = {"type": "onecycle"}  # replaces the tiny config's cosine (whose warmup_steps it lacks)
    path.write_text(yaml.safe_dump(cfg))
    return path, train(load_config(path))


# --- --amp on a CPU without native bf16 ------------------------------------------------------------------------
@pytest.mark.slow
def test_amp_on_a_cpu_without_native_bf16_trains_in_fp32_and_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(trainer_module, "cpu_has_fast_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger="ocrforge"):
        result = train(load_config(_config(tmp_path, max_steps=1, limit_val_batches=0)), amp=True)
    assert result.metrics["precision"] in ("32", "32-true")
    assert json.loads((result.run_dir / "env.json").read_text())["precision"] == "32"
    (message,) = [r.getMessage() for r in caplog.records if "--amp" in r.getMessage()]
    assert "no native bf16" in message and "fp32" in message and "train.precision=bf16-mixed" in message


def test_amp_keeps_bf16_on_a_cpu_that_has_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(trainer_module, "cpu_has_fast_bf16", lambda: True)
    assert trainer_module.resolve_precision(load_config(_config(tmp_path)), amp=True) == "bf16-mixed"


# --- --load-from a file that fits nothing ----------------------------------------------------------------------
@pytest.mark.slow
def test_load_from_a_file_that_fits_no_tensor_fails_before_any_folder_unless_partial(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.pth"
    torch.save({"encoder.layer1.weight": torch.zeros(3, 3), "head.fc.weight": torch.zeros(7, 5)}, foreign)
    cfg_path = _config(tmp_path, max_steps=1, limit_val_batches=0)
    with pytest.raises(CheckpointError, match=r"foreign\.pth: none of its 2 tensors fits the model.*"
                                              r"1 with a matching name but another shape.*--load-from-partial"):
        train(load_config(cfg_path), load_from=str(foreign))
    assert _runs(tmp_path) == []
    result = train(load_config(cfg_path, ["load_from_partial=true"]), load_from=str(foreign))
    report = json.loads((result.run_dir / "load_from_report.json").read_text())
    assert report["loaded"] == [] and report["unexpected"] == ["encoder.layer1.weight"]


# --- --resume with a longer OneCycle run -----------------------------------------------------------------------
@pytest.mark.slow
def test_resume_with_a_larger_max_steps_extends_the_onecycle_schedule(onecycle_run, tmp_path: Path) -> None:
    path, first = onecycle_run
    assert first.metrics["stopped_by"] == "max_steps"
    copy = tmp_path / first.run_dir.name
    shutil.copytree(first.run_dir, copy)
    resumed = train(load_config(path, ["train.max_steps=5"]), resume=str(copy / "checkpoints" / "last.ckpt"))
    assert resumed.run_dir == copy and resumed.metrics["global_step"] == 5
    state = torch.load(resumed.last_checkpoint, weights_only=False)["lr_schedulers"][0]
    assert state["total_steps"] == 5 and state["_schedule_phases"][-1]["end_step"] == 4


# --- --resume with another task, scheduler or model ------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(("config", "overrides", "error"), [
    ("configs/rec/crnn_synth.yaml", [], r"a 'cls' checkpoint, but the config is for 'rec'"),
    ("configs/det/dbnet_r18_synth.yaml", [], r"a 'cls' checkpoint, but the config is for 'det'"),
    (None, ["scheduler.type=cosine"], r"trained with scheduler 'onecycle', the config has 'cosine'"),
    (None, ["optimizer.type=sgd"], r"trained with optimizer 'adamw', the config has 'sgd'"),
    (None, ["model.backbone=lcnet_075"], r"weights do not fit the model of this config: .*"
                                         r"model\.backbone: 'lcnet_050' in the checkpoint, 'lcnet_075' in the config"),
])
def test_resume_of_an_incompatible_checkpoint_fails_before_touching_its_folder(
        onecycle_run, config: str | None, overrides: list[str], error: str) -> None:
    path, first = onecycle_run
    config_path = REPO / config if config else path
    before = _files(first.run_dir)
    cfg = load_config(config_path, [f"work_dir={first.run_dir.parent.parent.parent}", "project=tests", *overrides])
    with pytest.raises(CheckpointError, match=error):
        train(cfg, resume=first.last_checkpoint)
    assert _files(first.run_dir) == before
    assert sorted(p.name for p in first.run_dir.parent.iterdir()) == [first.run_dir.name]


def test_resume_of_a_weights_only_file_says_to_use_load_from(tmp_path: Path) -> None:
    weights = tmp_path / "weights.pth"
    torch.save({"backbone.conv_stem.weight": torch.zeros(1)}, weights)
    with pytest.raises(CheckpointError, match=r"weights only.*--load-from"):
        train(load_config(_config(tmp_path)), resume=str(weights))
    assert _runs(tmp_path) == []


# --- data.image_size -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", ["[64]", "[32, 32, 3]", "[0, 32]"])
def test_image_size_that_is_not_height_width_is_a_config_error(tmp_path: Path, size: str) -> None:
    with pytest.raises(ConfigError, match=r"-o.*: data\.image_size: must be \[height, width\], two positive "):
        load_config(_config(tmp_path), [f"data.image_size={size}"])
    rec = REPO / "configs/rec/crnn_synth.yaml"
    with pytest.raises(ConfigError, match=r"data\.image_size: must be \[height, width\]"):
        load_config(rec, [f"work_dir={tmp_path}", f"data.image_size={size}"])


# --- the folder of a run that ended ----------------------------------------------------------------------------
class _FailAtStart(L.Callback):
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        raise RuntimeError("disk on fire")


class _SigtermAfterFirstStep(L.Callback):
    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.slow
def test_a_failed_or_interrupted_run_folder_says_so_in_status_json(tmp_path: Path) -> None:
    cfg_path = _config(tmp_path, limit_val_batches=0)
    with pytest.raises(RuntimeError, match="disk on fire"):
        train(load_config(cfg_path, ["exp_name=failed"]), callbacks=[_FailAtStart()])
    (failed,) = _runs(tmp_path)
    status = json.loads((failed / "status.json").read_text())
    assert status == {"status": "failed", "error": "RuntimeError: disk on fire", "global_step": 0}
    with pytest.raises(SystemExit):
        train(load_config(cfg_path, ["exp_name=stopped"]), callbacks=[_SigtermAfterFirstStep()])
    (stopped,) = (tmp_path / "work_dirs" / "tests").glob("stopped_*")
    status = json.loads((stopped / "status.json").read_text())
    assert status["status"] == "interrupted" and status["stopped_by"] == "signal" and status["global_step"] == 1


# --- which limit stopped the run -------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_run_says_when_max_epochs_ends_it_before_max_steps(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        result = train(load_config(_config(tmp_path, max_steps=20, limit_val_batches=0)))
    assert result.metrics["global_step"] == 3 and result.metrics["stopped_by"] == "max_epochs"
    assert json.loads((result.run_dir / "metrics.json").read_text())["stopped_by"] == "max_epochs"
    assert json.loads((result.run_dir / "status.json").read_text())["status"] == "finished"
    assert "training stopped: max_epochs=1 reached at step 3, before max_steps=20" in caplog.text
