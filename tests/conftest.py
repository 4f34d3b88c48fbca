"""Shared fixtures: tiny configs on the built-in synthetic data, so every test runs in seconds on a CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def tiny_cls_config(tmp_path: Path, **sections) -> Path:
    """A 2-class text-line orientation config: 32x32 inputs, 48 training samples, no workers."""
    cfg = {
        "task": "cls",
        "project": "tests",
        "exp_name": "tiny",
        "work_dir": str(tmp_path / "work_dirs"),
        "model": {"type": "Classifier", "backbone": "lcnet_050", "head": {"type": "linear"}},
        "data": {
            "image_size": [32, 32],
            "train": {"type": "SynthOrientation", "mode": "line", "num_samples": 48, "seed": 0,
                      "batch_size": 16, "num_workers": 0},
            "val": {"type": "SynthOrientation", "mode": "line", "num_samples": 24, "seed": 1,
                    "batch_size": 24, "num_workers": 0},
        },
        "optimizer": {"type": "adamw", "lr": 0.003},
        "scheduler": {"type": "cosine", "warmup_steps": 1},
        "train": {"max_epochs": 1, "progress_bar": False, "log_every_n_steps": 1},
        "logging": {"tensorboard": True, "csv": True},
    }
    return write_config(tmp_path / "tiny.yaml", cfg, sections)


def synth_words(num_samples: int, seed: int, batch_size: int = 16, max_len: int = 10) -> dict:
    """A split of rendered words (``SynthWordsSource``) loaded without workers."""
    return {"type": "SynthWordsSource", "num_samples": num_samples, "seed": seed, "max_len": max_len,
            "batch_size": batch_size, "num_workers": 0}


def tiny_rec_config(tmp_path: Path, **sections) -> Path:
    """A CTC recogniser (CRNN at 1/8 width, one 16-wide BiLSTM) on synthetic words: 32x96 crops, printable + space,
    32 training samples, one epoch."""
    cfg = {
        "task": "rec", "project": "tests", "exp_name": "rec", "work_dir": str(tmp_path / "work_dirs"),
        "model": {"type": "Recognizer", "backbone": {"type": "CRNNBackbone", "width": 0.125},
                  "neck": {"type": "BiLSTMNeck", "hidden": 16}, "head": {"type": "CTCHead"}},
        "data": {"image_size": [32, 96], "max_text_length": 12,
                 "charset": {"dict": "printable", "use_space_char": True, "oov": "skip"},
                 "train": synth_words(32, seed=0), "val": synth_words(16, seed=1)},
        "optimizer": {"type": "adamw", "lr": 0.003},
        "train": {"max_epochs": 1, "progress_bar": False, "log_every_n_steps": 1},
    }
    return write_config(tmp_path / "rec.yaml", cfg, sections)


def synth_pages(num_samples: int, seed: int, batch_size: int, side: int = 192) -> dict:
    """A split of ``side`` x ``side`` synthetic pages with word boxes (``SynthPagesDataset``) loaded without workers."""
    return {"type": "SynthPagesDataset", "height": side, "width": side, "num_samples": num_samples, "seed": seed,
            "batch_size": batch_size, "num_workers": 0}


def tiny_det_config(tmp_path: Path, **sections) -> Path:
    """DBNet on lcnet_050 with a 32-wide FPN on synthetic pages: 128x128 training crops, 8 training pages, one
    epoch; validation at 192 px."""
    cfg = {
        "task": "det", "project": "tests", "exp_name": "det", "work_dir": str(tmp_path / "work_dirs"),
        "model": {"type": "DBNet", "backbone": {"type": "TimmFeaturePyramid", "name": "lcnet_050"},
                  "neck": {"type": "DBFPN", "channels": 32}},
        "data": {"image_size": [128, 128], "eval_resize": {"limit_side_len": 192, "limit_type": "max"},
                 "train": synth_pages(8, seed=0, batch_size=4), "val": synth_pages(4, seed=1, batch_size=2)},
        "optimizer": {"type": "adamw", "lr": 0.003},
        "train": {"max_epochs": 1, "progress_bar": False, "log_every_n_steps": 1},
    }
    return write_config(tmp_path / "det.yaml", cfg, sections)


# Sections that switch the file loggers off (for runs whose logs no test reads).
QUIET = {"logging": {"tensorboard": False, "csv": False}}


def write_config(path: Path, cfg: dict, sections: dict) -> Path:
    """``cfg`` with each of ``sections`` merged one level deep (a dict updates, anything else replaces), as YAML."""
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return path


def assert_same_training_state(expected: dict, got: dict, label: str = "") -> None:
    """Two checkpoints hold the same step, weights, EMA weights and optimiser state, bit for bit."""
    import torch

    assert got["global_step"] == expected["global_step"], label
    for section in ("state_dict", "ema_state_dict"):
        for key, value in expected[section].items():
            assert torch.equal(value, got[section][key]), f"{label}: {section}[{key}]"
    for (_, a), (_, b) in zip(sorted(expected["optimizer_states"][0]["state"].items()),
                              sorted(got["optimizer_states"][0]["state"].items()), strict=True):
        for name in a:
            assert torch.equal(torch.as_tensor(a[name]), torch.as_tensor(b[name])), f"{label}: optimiser {name}"


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    return tiny_cls_config(tmp_path)


@pytest.fixture
def one_torch_thread():
    """Tiny models: a second intra-op thread costs more than it saves on a shared CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
