"""Classifier = a backbone giving pooled features (any timm model, or a registered one) + a registered head."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from ...errors import ConfigError
from ...models import ppocr_mobilenetv3 as _ppocr_mobilenetv3  # noqa: F401  (registers PaddleOCR's cls backbone)
from ...models.backbones import create_timm_backbone
from ...registry import BACKBONES, HEADS, MODELS
from . import heads as _heads  # noqa: F401  (registers the built-in heads)


@MODELS.register("Classifier")
class Classifier(nn.Module):
    """``backbone`` is a timm model name, or a ``{type: …}`` mapping naming a registered backbone that returns pooled
    [B, num_features] features (``ppocr_mobilenetv3_small``, PaddleOCR's text-line orientation network)."""

    config_children: ClassVar[dict[str, str]] = {"head": "head"}
    config_injected = ("num_classes",)

    def __init__(self, num_classes: int, backbone: str | dict[str, Any] = "lcnet_050", pretrained: bool = False,
                 pretrained_path: str | None = None, head: dict[str, Any] | None = None, drop_rate: float = 0.0,
                 backbone_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        if isinstance(backbone, Mapping):
            timm_only = {"pretrained": pretrained, "pretrained_path": pretrained_path, "drop_rate": drop_rate,
                         "backbone_kwargs": backbone_kwargs}
            if any(timm_only.values()):
                raise ConfigError(f"model.{', model.'.join(k for k, v in timm_only.items() if v)}: only for timm "
                                  f"backbones; a registered backbone takes its arguments in model.backbone "
                                  f"(dropout: model.head.dropout)")
            self.backbone = BACKBONES.build(dict(backbone))
        else:
            self.backbone = create_timm_backbone(backbone, pretrained, pretrained_path, num_classes=0,
                                                 drop_rate=drop_rate, **(backbone_kwargs or {}))
        spec = dict(head or {"type": "linear"})
        # Some timm models (lcnet, mobilenetv3) add a conv head after pooling: its width is head_hidden_size.
        width = getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features
        self.head = HEADS.build(spec, in_features=width, num_classes=num_classes)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return self.head(self.backbone(images), labels)
