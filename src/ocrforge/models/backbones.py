"""timm backbones by name (weights only from timm's cache or a local file, with a clear error when offline) and the
one adapter that turns a timm model into the feature maps of chosen strides."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import timm
import torch
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


class TimmFeatures(nn.Module):
    """A timm model through ``features_only``: the feature maps of ``strides`` (in that order), with their
    ``channels``; detection takes four (4 to 32), recognition one early stage (width stride 4 or 8).

    Built once, with timm's default stages, when those end at the deepest stride asked for (as DBNet's 4-32 do);
    timm's feature models hold no stage after the last one they return, and neither do their checkpoints, so a
    request that stops earlier is built with just its stages (a second build, since timm tells a model's strides
    only once it exists). ``self.body`` is timm's model either way: its state-dict keys are timm's.
    """

    def __init__(self, name: str, strides: Sequence[int], pretrained: bool = False,
                 pretrained_path: str | None = None) -> None:
        super().__init__()
        body = create_timm_backbone(name, pretrained, pretrained_path, features_only=True)
        stages = body.feature_info.info  # every stage, whichever ones the model returns
        reductions = [stage["reduction"] for stage in stages]
        missing = [s for s in strides if s not in reductions]
        if missing:
            raise ConfigError(f"timm model '{name}' has feature strides {reductions}; strides {missing} are missing")
        wanted = [reductions.index(s) for s in strides]
        returned = list(body.feature_info.out_indices)
        if max(wanted) != max(returned) or not set(wanted) <= set(returned):
            returned = sorted(set(wanted))
            body = create_timm_backbone(name, pretrained, pretrained_path, features_only=True,
                                        out_indices=tuple(returned))
        self.body = body
        self.picks = [returned.index(i) for i in wanted]  # positions in the body's outputs
        self.channels: list[int] = [stages[i]["num_chs"] for i in wanted]
        self.strides = list(strides)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        features = self.body(images)
        return [features[i] for i in self.picks]
