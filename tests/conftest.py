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
