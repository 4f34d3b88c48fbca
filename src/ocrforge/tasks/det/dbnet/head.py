"""DBNet = timm backbone (strides 4-32) + FPN neck (optionally DBNet++'s adaptive scale fusion) + DB head.

The head predicts a probability map and a threshold map at input resolution; their differentiable binarisation
(the "approximate binary map") is a training signal only. Inference and export use the probability map alone.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from ....registry import DET_HEADS, DET_MODELS
from ..model import DetectionModel


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


@DET_HEADS.register(aliases=("db_head",))
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


@DET_MODELS.register()
class DBNet(DetectionModel):
    """``forward(images, with_threshold)``: training and validation need the threshold branch (for the loss);
    inference and export skip it."""

    default_parts: ClassVar[dict[str, dict]] = {"backbone": {"type": "TimmFeaturePyramid"},
                                                 "neck": {"type": "DBFPN"}, "head": {"type": "DBHead"}}
    family_defaults: ClassVar[dict[str, dict]] = {"targets": {"type": "DBTargets"},
                                                   "postprocess": {"type": "DBPostProcess"},
                                                   "loss": {"type": "DBLoss"}}
    inference_outputs: ClassVar[dict[str, str]] = {"prob": "text probability per input pixel, [N, 1, H, W]"}

    def forward(self, images: torch.Tensor, with_threshold: bool = True) -> dict[str, torch.Tensor]:
        return self.head(self.features(images), with_threshold)

    def forward_inference(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self(images, with_threshold=False)
