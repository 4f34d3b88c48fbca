"""Checkpoint writing (atomic) and reading (weights-only loads with a report, inference models)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn

from ..errors import CheckpointError


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to ``<name>.tmp`` then rename: a kill mid-write never leaves a truncated ``last.ckpt``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if "://" in str(path):  # remote stores (s3://, gs://) have their own commit semantics
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"checkpoint not found: {file}")
    try:
        # Our checkpoints hold the config, counters and RNG states next to tensors: not weights-only.
        return torch.load(file, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {file}: {exc.__class__.__name__}: {exc}") from None


def model_state(checkpoint: dict[str, Any], use_ema: bool = True) -> dict[str, torch.Tensor]:
    """Weights of the task model (``model.`` prefix stripped); the EMA weights when the run kept them."""
    if use_ema and "ema_state_dict" in checkpoint:
        return dict(checkpoint["ema_state_dict"])
    state = checkpoint.get("state_dict", checkpoint)
    return {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")} or dict(state)


def load_weights_report(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    """Load what fits; return missing, unexpected and shape-mismatched keys (mismatched ones are left as built)."""
    own = model.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    usable = {k: v for k, v in state.items() if k not in mismatched}
    result = model.load_state_dict(usable, strict=False)
    return {
        "loaded": sorted(k for k in usable if k in own),
        "missing": sorted(k for k in result.missing_keys if k not in mismatched),
        "unexpected": sorted(result.unexpected_keys),
        "shape_mismatched": [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                             for k in sorted(mismatched)],
    }
