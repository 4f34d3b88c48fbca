"""Length-bucketed recognition batches: the sampler's epoch/rank/resume contract, crops kept at their own width and
padded per batch exactly like ``resize_pad``, CTC checked at the crop's width, and a training run through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import write_config

from ocrforge.cli import main
from ocrforge.config import load_config
from ocrforge.data.collate import SKIP_KEY
from ocrforge.data.synth_text import SynthWordsDataset
from ocrforge.engine.data import build_dataloader
from ocrforge.engine.module import build_task
from ocrforge.engine.samplers import EpochIndexSampler, LengthBucketBatchSampler
from ocrforge.errors import ConfigError
from ocrforge.tasks.rec.inference import resize_pad

LENGTHS = np.random.default_rng(0).integers(1, 25, size=203)


def _epoch(sampler: LengthBucketBatchSampler) -> list[list[int]]:
    return [[index for _, index in batch] for batch in sampler]


def test_every_sample_once_per_epoch_with_less_spread_than_random_batches():
    sampler = LengthBucketBatchSampler(LENGTHS, 8, pool_batches=5, seed=1)
    first = _epoch(sampler)
    sampler.set_epoch(1)  # as Lightning does before each epoch
    second = _epoch(sampler)
    for batches in (first, second):
        assert sorted(i for b in batches for i in b) == list(range(len(LENGTHS)))
        assert len(batches) == len(sampler) == 26
    assert first != second  # a new order each epoch
    assert first == _epoch(LengthBucketBatchSampler(LENGTHS, 8, pool_batches=5, seed=1))  # and the same per seed
    spread = np.mean([np.ptp(LENGTHS[b]) for b in first])
    shuffled = np.random.default_rng(2).permutation(len(LENGTHS))
    random_spread = np.mean([np.ptp(LENGTHS[shuffled[i:i + 8]]) for i in range(0, len(LENGTHS), 8)])
    assert spread < random_spread / 3


def test_ranks_get_equal_disjoint_shares_and_resume_skips_what_was_trained():
    ranks = [_epoch(LengthBucketBatchSampler(LENGTHS, 8, num_replicas=2, rank=r, drop_last=True, seed=3))
             for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 12 and all(len(b) == 8 for r in ranks for b in r)
    seen = [i for r in ranks for b in r for i in b]
    assert len(seen) == len(set(seen))
    padded = [_epoch(LengthBucketBatchSampler(LENGTHS, 8, num_replicas=2, rank=r, seed=3)) for r in range(2)]
    assert len(padded[0]) == len(padded[1]) == 13
    assert {i for r in padded for b in r for i in b} == set(range(len(LENGTHS)))

    full = LengthBucketBatchSampler(LENGTHS, 8, seed=4)
    epochs = [list(full)]
    full.set_epoch(1)
    epochs.append(list(full))
    resumed = LengthBucketBatchSampler(LENGTHS, 8, seed=4, start_epoch=1, skip_batches=5)
    assert list(resumed) == epochs[1][5:]
    resumed.set_epoch(2)
    assert list(resumed) == list(LengthBucketBatchSampler(LENGTHS, 8, seed=4, start_epoch=2))


@pytest.mark.parametrize("eager", [True, False])
def test_a_run_saved_at_an_epochs_last_batch_resumes_at_the_next_epoch(eager: bool) -> None:
    """Saved in a validation at the last batch, the epoch is open with all its batches done. With workers
    Lightning iterates that finished epoch once more before its set_epoch calls (eager), without them it does not:
    either way the next epoch trained is the next one, whole."""
    for make in (lambda **kw: LengthBucketBatchSampler(LENGTHS, 8, seed=5, **kw),
                 lambda **kw: EpochIndexSampler(range(203), num_replicas=1, rank=0, seed=5,
                                                skip=kw.pop("skip_batches"), **kw)):
        resumed = make(start_epoch=1, skip_batches=len(make(start_epoch=1, skip_batches=0)))
        if eager:
            assert list(resumed) == []
        resumed.set_epoch(1)
        resumed.set_epoch(2)
        assert list(resumed) == list(make(start_epoch=2, skip_batches=0))


def _label_file(folder: Path, count: int, seed: int) -> Path:
    folder.mkdir(parents=True)
    data = SynthWordsDataset(count, seed, charset="printable", max_len=12)
    lines = []
    for i in range(count):
        sample = data[i]
        cv2.imwrite(str(folder / f"{i}.png"), sample["image"][:, :, ::-1])
        lines.append(f"{i}.png\t{sample['label']}")
    cv2.imwrite(str(folder / "narrow.png"), np.full((32, 12, 3), 200, np.uint8))
    lines.append("narrow.png\tabcdefghij")  # fits a max-width crop's frames, not its own 12 px
    (folder / "labels.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder / "labels.txt"


def _config(tmp_path: Path, bucket: bool = True, train_type: str = "RecLabelFile", **train_settings) -> Path:
    train = ({"type": "RecLabelFile", "label_files": [str(_label_file(tmp_path / "train", 40, 0))]}
             if train_type == "RecLabelFile" else {"type": "SynthWords", "num_samples": 16})
    cfg = {
        "task": "rec", "project": "tests", "exp_name": "bucketed", "work_dir": str(tmp_path / "work_dirs"),
        "model": {"type": "Recognizer", "backbone": {"type": "crnn_vgg", "width": 0.125},
                  "neck": {"type": "bilstm", "hidden": 16}, "head": {"type": "ctc"}},
        "data": {"image_size": [32, 160], "max_text_length": 12, "charset": {"dict": "printable"},
                 "train": {**train, "batch_size": 8, "num_workers": 0, "bucket_by_length": bucket},
                 "val": {"type": "SynthWords", "num_samples": 8, "seed": 1, "max_len": 8, "batch_size": 8,
                         "num_workers": 0}},
        "optimizer": {"type": "adamw", "lr": 0.003},
        "train": {"max_epochs": 2, "progress_bar": False, "log_every_n_steps": 1, **train_settings},
    }
    return write_config(tmp_path / "rec.yaml", cfg, {})


@pytest.mark.slow
def test_bucketed_batches_pad_each_crop_like_resize_pad_and_count_labels_too_long_for_the_crop(tmp_path):
    task = build_task(load_config(_config(tmp_path)))
    task.build_model()
    loader = build_dataloader(task, "train", training=True)
    raw = task.raw_dataset("train")
    widths, skipped = set(), {}
    for batch in loader:
        images = batch["image"].numpy()
        widths.add(images.shape[3])
        for key, value in batch[SKIP_KEY].items():
            skipped[key] = skipped.get(key, 0) + value
        for row, index in zip(images, batch["index"].tolist(), strict=True):
            expected, _ = resize_pad(raw[index]["image"], 32, 160, pad_to=images.shape[3])
            np.testing.assert_array_equal(row.transpose(1, 2, 0), expected)
    assert skipped == {"label_too_long_for_crop_width": 1}
    assert len(widths) > 1 and min(widths) < 160 and all(w % 8 == 0 for w in widths)


@pytest.mark.slow
def test_bucketed_training_runs_and_synthetic_words_are_refused_clearly(tmp_path):
    cfg = _config(tmp_path)
    assert main(["train", str(cfg)]) == 0
    (run,) = (tmp_path / "work_dirs" / "tests").glob("bucketed_2*")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["skipped_samples"]["while_loading"]["train"] == {"label_too_long_for_crop_width": 1}  # last epoch
    synth = build_task(load_config(_config(tmp_path / "synth", train_type="SynthWords")))
    with pytest.raises(ConfigError, match="bucket_by_length"):
        build_dataloader(synth, "train", training=True)


@pytest.mark.slow
def test_bucketed_batches_under_two_process_ddp(tmp_path):
    """41 crops in batches of 8 = 6 batches, 3 per rank: both ranks must agree on the count or DDP hangs."""
    cfg = _config(tmp_path, accelerator="cpu", devices=2, strategy="ddp", max_epochs=1)
    env = {k: v for k, v in os.environ.items() if k != "OCRFORGE_RUN_DIR"}
    done = subprocess.run([sys.executable, "-m", "ocrforge.cli", "train", str(cfg)], capture_output=True, text=True,
                          env=env, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = (tmp_path / "work_dirs" / "tests").glob("bucketed_2*")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] == 3 and metrics["final"]["val/num_samples"] == 8.0
