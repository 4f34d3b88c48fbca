"""Checkpoint writing (atomic) and reading (weights-only loads with a report, inference models)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn

from ..errors import CheckpointError
from ..registry import ALL_REGISTRIES


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


def require_matching_weights(report: dict[str, list[str]], source: str | Path, hint: str) -> None:
    """Fail when not one tensor of ``source`` fitted the model by name and shape (another task's or another
    architecture's checkpoint, a foreign ``.pth``): training would silently start from scratch. ``hint`` says how
    to accept that anyway."""
    if report["loaded"]:
        return
    offered = len(report["unexpected"]) + len(report["shape_mismatched"])
    shapes = f", {len(report['shape_mismatched'])} with a matching name but another shape" \
        if report["shape_mismatched"] else ""
    raise CheckpointError(f"{source}: none of its {offered} tensors fits the model by name and shape{shapes} "
                          f"({len(report['missing']) + len(report['shape_mismatched'])} model tensors left as "
                          f"built); is it a checkpoint of another task or model? {hint}")


def _differing_keys(stored: Any, config: Any, path: str) -> list[str]:
    """Dotted keys whose values differ between two config sections (mappings compared key by key)."""
    if isinstance(stored, dict) and isinstance(config, dict):
        return [d for k in sorted(set(stored) | set(config), key=str)
                for d in _differing_keys(stored.get(k), config.get(k), f"{path}.{k}")]
    return [] if stored == config else [f"{path}: {stored!r} in the checkpoint, {config!r} in the config"]


_RESUME_AGAIN = ("; --resume continues a run with the config it trained with (start a new run from its weights "
                 "with --load-from)")


def check_resumable(checkpoint: dict[str, Any], path: str | Path, config: dict[str, Any]) -> None:
    """Raise CheckpointError when ``--resume`` of ``checkpoint`` with ``config`` cannot continue that run: weights
    only, another task, another optimizer or scheduler type (their saved states do not load into each other: e.g.
    ``KeyError: 'lr_lambdas'``). Checked before a model is built or a run folder touched."""
    if "loops" not in checkpoint or "optimizer_states" not in checkpoint:
        raise CheckpointError(f"--resume {path}: holds weights only, no training state to continue; "
                              "start a new run from it with --load-from")
    stored = (checkpoint.get("hyper_parameters") or {}).get("config")
    if stored is None:
        return
    if stored.get("task") != config.get("task"):
        raise CheckpointError(f"--resume {path}: a '{stored.get('task')}' checkpoint, but the config is for "
                              f"'{config.get('task')}'{_RESUME_AGAIN}")
    for section in ("optimizer", "scheduler"):
        was, now = (stored.get(section) or {}).get("type"), (config.get(section) or {}).get("type")
        if ALL_REGISTRIES[section].canonical(was) != ALL_REGISTRIES[section].canonical(now):  # old names too
            raise CheckpointError(f"--resume {path}: trained with {section} '{was}', the config has '{now}'; "
                                  f"a saved {section} state cannot continue in another type{_RESUME_AGAIN}")


def check_resumable_weights(checkpoint: dict[str, Any], path: str | Path, config: dict[str, Any],
                            module_state: dict[str, torch.Tensor]) -> None:
    """Raise CheckpointError when the saved weights do not fit, by name and shape, the module that ``config``
    built (its ``state_dict()``): Lightning's strict load would fail later with "Missing key(s)"."""
    saved = checkpoint.get("state_dict", {})
    missing = [k for k in module_state if k not in saved]
    unexpected = [k for k in saved if k not in module_state]
    reshaped = [k for k in module_state if k in saved and tuple(saved[k].shape) != tuple(module_state[k].shape)]
    if not (missing or unexpected or reshaped):
        return
    parts = [f"{len(v)} {name} (e.g. {v[0]})" for name, v in
             (("missing", missing), ("unexpected", unexpected), ("of another shape", reshaped)) if v]
    stored = (checkpoint.get("hyper_parameters") or {}).get("config")
    diff = _differing_keys(stored.get("model"), config.get("model"), "model") if stored else []
    because = f"; the model config differs: {'; '.join(diff[:3])}" if diff else ""
    raise CheckpointError(f"--resume {path}: its weights do not fit the model of this config: "
                          f"{', '.join(parts)}{because}{_RESUME_AGAIN}")
