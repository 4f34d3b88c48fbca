"""PSENet-lite = timm backbone (strides 4-32) + FPN neck + a head predicting n kernel maps.

Map 0 is the text region, maps 1..n-1 the same regions shrunk ever further: the smallest kernels keep words that
touch apart, and post-processing grows them back (progressive scale expansion). Training and inference read the
same maps.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ....models.layers import conv_norm_act
from ....registry import DET_HEADS, DET_MODELS
from ..model import DetectionModel


@DET_HEADS.register()
class PSEHead(nn.Module):
    """conv 3x3 -> BN -> ReLU -> conv 1x1 to ``kernel_num`` maps at stride 4, upsampled bilinearly to the input
    resolution; sigmoid probabilities under ``kernels``."""

    config_injected = ("in_channels",)

    def __init__(self, in_channels: int, kernel_num: int = 7, hidden: int = 128) -> None:
        super().__init__()
        if kernel_num < 2:
            raise ValueError(f"kernel_num must be at least 2 (the text map and one kernel), got {kernel_num}")
        self.fuse = conv_norm_act(in_channels, hidden)
        self.classify = nn.Conv2d(hidden, kernel_num, 1)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = F.interpolate(self.classify(self.fuse(features)), scale_factor=4.0, mode="bilinear",
                               align_corners=False)
        return {"kernels": torch.sigmoid(logits)}


@DET_MODELS.register()
class PSENet(DetectionModel):
    default_parts: ClassVar[dict[str, dict]] = {"backbone": {"type": "TimmFeaturePyramid"},
                                                 "neck": {"type": "DBFPN"}, "head": {"type": "PSEHead"}}
    family_defaults: ClassVar[dict[str, dict]] = {"targets": {"type": "PSETargets"},
                                                   "postprocess": {"type": "PSEPostProcess"},
                                                   "loss": {"type": "PSELoss"}}
    inference_outputs: ClassVar[dict[str, str]] = {
        "kernels": "per input pixel, [N, n, H, W]: text probability (channel 0), then ever smaller kernels'"}
