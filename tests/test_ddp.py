"""Real two-process DDP on CPU (gloo), launched the way a user launches it: one CLI call with two devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from conftest import tiny_cls_config

from ocrforge.tasks.cls.synth import SynthOrientationDataset

pytestmark = pytest.mark.slow  # two training processes each


def _ddp_train(cfg: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("OCRFORGE_RUN_DIR", None)
    # timeout: a rank waiting forever in a collective is exactly the failure this guards against
    return subprocess.run([sys.executable, "-m", "ocrforge.cli", "train", str(cfg)], capture_output=True, text=True,
                          env=env, timeout=240)


def test_ddp_two_cpu_processes_share_one_run_and_exact_metrics(tmp_path: Path) -> None:
    ddp = {"max_epochs": 2, "progress_bar": False, "accelerator": "cpu", "devices": 2, "strategy": "ddp"}
    done = _ddp_train(tiny_cls_config(tmp_path, train=ddp, ema={"enabled": True}))
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = (tmp_path / "work_dirs" / "tests").glob("tiny_*")  # one folder for both ranks
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] == 4  # 48 samples / 2 ranks / batch 16 = 2 steps an epoch
    assert metrics["final"]["val/num_samples"] == 24.0  # every validation sample exactly once, no padding copies


def test_ddp_survives_a_batch_that_is_empty_on_one_rank(tmp_path: Path) -> None:
    """Batch size 1 over a folder with corrupt files: some steps have nothing to train on one rank only
    (64 px inputs: BatchNorm needs more than one value per channel at the last stage)."""
    root = tmp_path / "images"
    data = SynthOrientationDataset(8, mode="line", seed=5)
    for i in range(8):
        folder = root / data.classes[data[i]["label"]]
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i}.png"), data[i]["image"][:, :, ::-1])
    for name in ("0", "180"):
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "zz_corrupt.png").write_bytes(b"not an image")
    spec = {"type": "ImageFolder", "root": str(root), "batch_size": 1, "num_workers": 0}
    ddp = {"max_epochs": 1, "progress_bar": False, "accelerator": "cpu", "devices": 2, "strategy": "ddp"}
    done = _ddp_train(tiny_cls_config(tmp_path, train=ddp, data={"image_size": [64, 64], "train": spec,
                                                                   "val": spec}))
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = (tmp_path / "work_dirs" / "tests").glob("tiny_*")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] == 5  # 10 files over 2 ranks
    # both corrupt files counted, whichever rank read them
    assert metrics["skipped_samples"]["while_loading"] == {"train": {"unreadable_image": 2},
                                                           "val": {"unreadable_image": 2}}
