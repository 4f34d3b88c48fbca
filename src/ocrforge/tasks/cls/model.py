"""Classifier = any timm backbone (pooled features) + a registered head."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ...models.backbones import create_timm_backbone
from ...registry import HEADS, MODELS
from . import heads as _heads  # noqa: F401  (registers the built-in heads)


@MODELS.register("Classifier")
class Classifier(nn.Module):
    config_children: ClassVar[dict[str, str]] = {"head": "head"}
    config_injected = ("num_classes",)

    def __init__(self, num_classes: int, backbone: str = "lcnet_050", pretrained: bool = False,
                 pretrained_path: str | None = None, head: dict[str, Any] | None = None, drop_rate: float = 0.0,
                 backbone_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.backbone = create_timm_backbone(backbone, pretrained, pretrained_path, num_classes=0,
                                             drop_rate=drop_rate, **(backbone_kwargs or {}))
        spec = dict(head or {"type": "linear"})
        # Some timm models (lcnet, mobilenetv3) add a conv head after pooling: its width is head_hidden_size.
        width = getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features
        self.head = HEADS.build(spec, in_features=width, num_classes=num_classes)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return self.head(self.backbone(images), labels)
