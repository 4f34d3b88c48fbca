"""Python API helpers that have no CLI command of their own (seed 000's ModelLoader use)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from torch import nn

from .engine.module import build_task
from .runners.evaluate import module_from_checkpoint


def build_model(cfg: DictConfig) -> nn.Module:
    """The task model described by ``cfg`` (randomly initialised, or as ``pretrained`` says)."""
    return build_task(cfg).build_model()


def load_checkpoint(path: str | Path, use_ema: bool = True) -> nn.Module:
    """The trained model of a checkpoint in eval mode, EMA weights when the run kept them."""
    module, _ = module_from_checkpoint(path, use_ema=use_ema)
    return module.model.eval()
