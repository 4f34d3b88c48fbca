"""PaddleOCR's MobileNetV3 "small" (``rec_mobilenet_v3``) as its 0/180 text-line classifier ch_ppocr_mobile_v2.0_cls
uses it (scale 0.35), for ocrforge's ``Classifier``.

Nothing in this network was re-parameterised: every layer is conv (no bias) + BatchNorm (+ ReLU or hard-swish), and
the shipped ONNX files keep the BatchNorms, so this is also its training form. timm's ``mobilenetv3_small_*`` cannot
express it exactly: timm's first block has no 1x1 expansion (Paddle's has one at ratio 1), timm's strides are square
(Paddle's (2, 1) halve height only and keep a line's width), timm's SE gate is hard-sigmoid with slope 1/6 and rounds
its reduced width to multiples of 8 (Paddle: slope 0.2, exactly a quarter), and timm pools before a 1x1 conv head
where Paddle ends with conv 1x1 + hard-swish, a 2x2 max-pool and then the global average.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import make_divisible
from torch import nn

from ..registry import CLS_BACKBONES
from .layers import SqueezeExcite, conv_norm_act

# PaddleOCR's "small" table at scale 1: (kernel, expanded channels, out channels, squeeze-excite, activation,
# stride). With the stem's stride 2 a 48-high line leaves the blocks at height 2 and width /2.
_SMALL = (
    (3, 16, 16, True, "relu", (2, 1)),
    (3, 72, 24, False, "relu", (2, 1)),
    (3, 88, 24, False, "relu", 1),
    (5, 96, 40, True, "hardswish", (2, 1)),
    (5, 240, 40, True, "hardswish", 1),
    (5, 240, 40, True, "hardswish", 1),
    (5, 120, 48, True, "hardswish", 1),
    (5, 144, 48, True, "hardswish", 1),
    (5, 288, 96, True, "hardswish", (2, 1)),
    (5, 576, 96, True, "hardswish", 1),
    (5, 576, 96, True, "hardswish", 1),
)
_STEM, _LAST = 16, 576
_ACTIVATIONS = {"relu": nn.ReLU, "hardswish": nn.Hardswish}


class InvertedResidual(nn.Module):
    """1x1 expand, depthwise k x k at the stride, optional SE (hard-sigmoid slope 0.2), linear 1x1 projection; the
    input is added back when the stride is 1 and the widths agree (Paddle compares the stride to 1, so a tuple
    stride never has the shortcut)."""

    def __init__(self, cin: int, mid: int, cout: int, kernel: int, stride: int | tuple[int, int], se: bool,
                 act: str) -> None:
        super().__init__()
        self.expand = conv_norm_act(cin, mid, 1, act=_ACTIVATIONS[act])
        self.depthwise = conv_norm_act(mid, mid, kernel, stride, groups=mid, act=_ACTIVATIONS[act])
        self.se = SqueezeExcite(mid, slope=0.2) if se else nn.Identity()
        self.project = conv_norm_act(mid, cout, 1, act=None)
        self.shortcut = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + y if self.shortcut else y


@CLS_BACKBONES.register(aliases=("ppocr_mobilenetv3_small",))
class PPOCRMobileNetV3Small(nn.Module):
    """[B, 3, H, W] -> pooled [B, num_features] (200 at scale 0.35): stem conv 3x3 s2 + BN + hard-swish, eleven
    inverted residuals, conv 1x1 + BN + hard-swish, 2x2 max-pool, global average (PaddleOCR's ClsHead averages
    there before its Linear, which is ocrforge's ``linear`` head)."""

    def __init__(self, scale: float = 0.35, in_channels: int = 3) -> None:
        super().__init__()
        width = make_divisible(_STEM * scale, 8)
        self.stem = conv_norm_act(in_channels, width, 3, 2, act=nn.Hardswish)
        blocks = []
        for kernel, mid, cout, se, act, stride in _SMALL:
            out = make_divisible(cout * scale, 8)
            blocks.append(InvertedResidual(width, make_divisible(mid * scale, 8), out, kernel, stride, se, act))
            width = out
        self.blocks = nn.Sequential(*blocks)
        self.num_features = make_divisible(_LAST * scale, 8)
        self.last = conv_norm_act(width, self.num_features, 1, act=nn.Hardswish)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.last(self.blocks(self.stem(images)))
        return F.max_pool2d(x, 2).mean(dim=(2, 3))
