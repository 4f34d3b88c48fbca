"""Classifier = a backbone giving pooled features (any timm model, or a registered one) + a registered head."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ...errors import ConfigError
from ...models import ppocr_mobilenetv3 as _ppocr_mobilenetv3  # noqa: F401  (registers PaddleOCR's cls backbone)
from ...models.backbones import create_timm_backbone
from ...registry import CLS_BACKBONES, CLS_HEADS, CLS_MODELS
from . import heads as _heads  # noqa: F401  (registers the built-in heads)


@CLS_BACKBONES.register("TimmClassifierBackbone")
def timm_classifier_backbone(name: str = "lcnet_050", pretrained: bool = False, pretrained_path: str | None = None,
                             drop_rate: float = 0.0, **timm_kwargs: Any) -> nn.Module:
    """Any timm model by name without its classifier: images -> pooled [B, num_features] features. ``timm_kwargs``
    go to ``timm.create_model`` (``drop_path_rate`` …). The timm model itself is the backbone, so its state-dict
    keys are timm's, as under the short form ``backbone: <name>``."""
    return create_timm_backbone(name, pretrained, pretrained_path, num_classes=0, drop_rate=drop_rate, **timm_kwargs)


@CLS_MODELS.register()
class Classifier(nn.Module):
    """``backbone`` is a ``{type: …}`` mapping naming a registered backbone that returns pooled [B, num_features]
    features: ``TimmClassifierBackbone`` (``name``, ``pretrained``, ``drop_rate``, timm's own arguments) or
    ``ppocr_mobilenetv3_small`` (PaddleOCR's text-line orientation network). A bare timm model name is short for
    the first, with ``pretrained``, ``pretrained_path``, ``drop_rate`` and ``backbone_kwargs`` at model level."""

    # The registry of each child and the arguments this model passes it (checked by config validation).
    config_children: ClassVar[dict[str, tuple[str, tuple[str, ...]]]] = {
        "head": ("cls.head", ("in_features", "num_classes"))}
    config_injected = ("num_classes",)

    def __init__(self, num_classes: int, backbone: str | dict[str, Any] = "lcnet_050", pretrained: bool = False,
                 pretrained_path: str | None = None, head: dict[str, Any] | None = None, drop_rate: float = 0.0,
                 backbone_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        short_form = {"pretrained": pretrained, "pretrained_path": pretrained_path, "drop_rate": drop_rate,
                      "backbone_kwargs": backbone_kwargs}
        if isinstance(backbone, str):
            backbone = {"type": "TimmClassifierBackbone", "name": backbone, "pretrained": pretrained,
                        "pretrained_path": pretrained_path, "drop_rate": drop_rate, **(backbone_kwargs or {})}
        elif any(short_form.values()):
            raise ConfigError(f"model.{', model.'.join(k for k, v in short_form.items() if v)}: only with a timm "
                              f"model name as model.backbone; a backbone mapping takes its arguments inside "
                              f"model.backbone (dropout: model.head.dropout)")
        self.backbone = CLS_BACKBONES.build(dict(backbone))
        spec = dict(head or {"type": "LinearHead"})
        # Some timm models (lcnet, mobilenetv3) add a conv head after pooling: its width is head_hidden_size.
        width = getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features
        self.head = CLS_HEADS.build(spec, in_features=width, num_classes=num_classes)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return self.head(self.backbone(images), labels)
