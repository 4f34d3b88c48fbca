"""Python API helpers that have no CLI command of their own: a model built from a config, or loaded from a
checkpoint (the job of MyOCR's ModelLoader)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from torch import nn

from .engine.loading import module_from_checkpoint
from .engine.module import build_task, load_pretrained


def build_model(cfg: DictConfig) -> nn.Module:
    """The task model described by ``cfg``: randomly initialised, or filled from ``model.pretrained`` (a .pth state
    dict, an ocrforge .ckpt or a PP-OCR model name; the loaded / missing / shape-mismatched tensors are logged)."""
    task = build_task(cfg)
    model = task.build_model()
    load_pretrained(task, model)
    return model


def load_checkpoint(path: str | Path, use_ema: bool = True) -> nn.Module:
    """The trained model of a checkpoint in eval mode, EMA weights when the run kept them."""
    module, _ = module_from_checkpoint(path, use_ema=use_ema)
    return module.model.eval()
