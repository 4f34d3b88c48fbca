"""DBNet = timm backbone (strides 4-32) + FPN neck (optionally DBNet++'s adaptive scale fusion) + DB head.

The head predicts a probability map and a threshold map at input resolution; their differentiable binarisation
(the "approximate binary map") is a training signal only. Inference and export use the probability map alone.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ...models import pplcnet as _pplcnet  # noqa: F401  (registers PP-LCNet backbones)
from ...models import pplcnetv4 as _pplcnetv4  # noqa: F401  (registers PP-LCNetV4 backbones)
from ...models.backbones import create_timm_backbone
from ...registry import BACKBONES, HEADS, MODELS, NECKS
from . import ppocr_fpn as _ppocr_fpn  # noqa: F401  (registers PP-OCR's necks)


def _conv_bn_relu(cin: int, cout: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


@BACKBONES.register("timm_det")
class TimmFeaturePyramid(nn.Module):
    """Any timm CNN through ``features_only``, returning the stages of the requested strides (default 4, 8, 16, 32):
    resnet18/50, mobilenetv3_large_100, lcnet_050/100 and most other timm CNNs have them."""

    def __init__(self, name: str = "resnet18", pretrained: bool = False, pretrained_path: str | None = None,
                 strides: tuple[int, ...] | list[int] = (4, 8, 16, 32)) -> None:
        super().__init__()
        probe = create_timm_backbone(name, False, features_only=True)
        reductions = probe.feature_info.reduction()
        missing = [s for s in strides if s not in reductions]
        if missing:
            raise ValueError(f"timm model '{name}' has feature strides {reductions}; strides {missing} are missing")
        indices = tuple(reductions.index(s) for s in strides)
        self.body = create_timm_backbone(name, pretrained, pretrained_path, features_only=True, out_indices=indices)
        self.out_channels: list[int] = list(self.body.feature_info.channels())
        self.strides = list(strides)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.body(images)


class ScaleSpatialAttention(nn.Module):
    """DBNet++'s adaptive scale fusion: one attention weight per scale and pixel, from channel and spatial context."""

    def __init__(self, channels: int, num_scales: int) -> None:
        super().__init__()
        self.fuse = _conv_bn_relu(channels, channels)
        self.channel_wise = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, channels // 4, 1, bias=False),
                                          nn.ReLU(inplace=True), nn.Conv2d(channels // 4, channels, 1, bias=False),
                                          nn.Sigmoid())
        self.spatial_wise = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, bias=False), nn.ReLU(inplace=True),
                                          nn.Conv2d(1, 1, 1, bias=False), nn.Sigmoid())
        self.scale_wise = nn.Sequential(nn.Conv2d(channels, num_scales, 1, bias=False), nn.Sigmoid())

    def forward(self, scales: list[torch.Tensor]) -> torch.Tensor:
        fused = self.fuse(torch.cat(scales, dim=1))
        context = self.channel_wise(fused) + fused
        context = self.spatial_wise(context.mean(dim=1, keepdim=True)) + context
        weights = self.scale_wise(context)
        return torch.cat([weights[:, i : i + 1] * s for i, s in enumerate(scales)], dim=1)


@NECKS.register("db_fpn")
class DBFPN(nn.Module):
    """Top-down FPN; every level is smoothed to ``channels // 4``, upsampled to stride 4 and concatenated."""

    config_injected = ("in_channels",)

    def __init__(self, in_channels: list[int], channels: int = 256, asf: bool = False) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1, bias=False) for c in in_channels)
        self.smooth = nn.ModuleList(nn.Conv2d(channels, channels // 4, 3, padding=1, bias=False)
                                    for _ in in_channels)
        self.asf = ScaleSpatialAttention(channels // 4 * len(in_channels), len(in_channels)) if asf else None
        self.out_channels = channels // 4 * len(in_channels)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        laterals = [conv(f) for conv, f in zip(self.lateral, features, strict=True)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:],
                                                              mode="nearest")
        size = laterals[0].shape[-2:]
        scales = [F.interpolate(conv(x), size=size, mode="nearest") if i else conv(x)
                  for i, (conv, x) in enumerate(zip(self.smooth, laterals, strict=True))]
        return self.asf(scales) if self.asf is not None else torch.cat(scales, dim=1)


def _upsampling_branch(channels: int, norm: bool = True, deconv_bias: bool = False) -> nn.Sequential:
    """conv 3x3 -> two stride-2 transposed convs: stride-4 features to a full-resolution one-channel map.

    PaddleOCR's DB head gives the first transposed conv a bias before its BN (``deconv_bias``); its fused form
    (PP-OCRv6) has no BN at all (``norm: false``: biases instead, Identity where the BNs were, same keys)."""
    mid = channels // 4

    def norm_layer() -> nn.Module:
        return nn.BatchNorm2d(mid) if norm else nn.Identity()

    return nn.Sequential(nn.Sequential(nn.Conv2d(channels, mid, 3, padding=1, bias=not norm), norm_layer(),
                                       nn.ReLU(inplace=True)),
                         nn.ConvTranspose2d(mid, mid, 2, stride=2, bias=deconv_bias or not norm),
                         norm_layer(), nn.ReLU(inplace=True),
                         nn.ConvTranspose2d(mid, 1, 2, stride=2))


@HEADS.register("db_head")
class DBHead(nn.Module):
    """Probability and threshold maps; ``binary = sigmoid(k (P - T))`` (differentiable binarisation) in training.
    ``norm`` / ``deconv_bias`` select PaddleOCR's variants (see ``_upsampling_branch``)."""

    config_injected = ("in_channels",)

    def __init__(self, in_channels: int, k: float = 50.0, norm: bool = True, deconv_bias: bool = False) -> None:
        super().__init__()
        self.probability = _upsampling_branch(in_channels, norm, deconv_bias)
        self.threshold = _upsampling_branch(in_channels, norm, deconv_bias)
        self.k = k

    def forward(self, features: torch.Tensor, with_threshold: bool = True) -> dict[str, torch.Tensor]:
        prob = torch.sigmoid(self.probability(features))
        if not with_threshold:
            return {"prob": prob}
        thresh = torch.sigmoid(self.threshold(features))
        return {"prob": prob, "thresh": thresh, "binary": torch.sigmoid(self.k * (prob - thresh))}


@MODELS.register("DBNet")
class DBNet(nn.Module):
    """``forward(images, with_threshold)``: training and validation need the threshold branch (for the loss);
    inference and export skip it."""

    config_children: ClassVar[dict[str, str]] = {"backbone": "backbone", "neck": "neck", "head": "head"}

    def __init__(self, backbone: dict[str, Any] | None = None, neck: dict[str, Any] | None = None,
                 head: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.backbone = BACKBONES.build(dict(backbone or {"type": "timm_det"}))
        self.neck = NECKS.build(dict(neck or {"type": "db_fpn"}), in_channels=self.backbone.out_channels)
        self.head = HEADS.build(dict(head or {"type": "db_head"}), in_channels=self.neck.out_channels)

    def forward(self, images: torch.Tensor, with_threshold: bool = True) -> dict[str, torch.Tensor]:
        return self.head(self.neck(self.backbone(images)), with_threshold)
