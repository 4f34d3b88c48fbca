"""timm backbones by name; weights only from timm's cache or a local file, with a clear error when offline."""

from __future__ import annotations

import difflib
from typing import Any

import timm
from torch import nn

from ..errors import ConfigError


def create_timm_backbone(name: str, pretrained: bool = False, pretrained_path: str | None = None,
                         **kwargs: Any) -> nn.Module:
    """Any timm model by name; ``pretrained_path`` loads a local weight file instead of downloading."""
    if not timm.is_model(name):
        hint = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        raise ConfigError(f"unknown timm backbone '{name}'" + (f"; did you mean: {', '.join(hint)}?" if hint else ""))
    overlay = {"file": pretrained_path} if pretrained_path else None
    try:
        return timm.create_model(name, pretrained=pretrained or bool(pretrained_path),
                                 pretrained_cfg_overlay=overlay, **kwargs)
    except (OSError, RuntimeError) as exc:
        if not (pretrained or pretrained_path):
            raise
        raise RuntimeError(
            f"could not load pretrained weights for '{name}' ({exc.__class__.__name__}: {exc}). Without network "
            "access set pretrained_path to a local weight file, or pretrained: false."
        ) from None
