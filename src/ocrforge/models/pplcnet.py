"""PP-LCNetV3 (PaddleOCR's PP-OCRv4/v5 mobile backbone) in its deploy form, for recognition and detection.

PaddleOCR trains each layer as several conv+BN branches and ships them re-parameterised into one conv with bias;
the pip-shipped ONNX files hold only that fused form, so this is the form written here (the branches cannot be
recovered from the fused weights). A deploy layer is ``conv(bias) -> affine`` then, unless its stride is 2,
``hard-swish -> affine``, where ``affine`` is PP-LCNetV3's learnable scalar scale and shift.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import make_divisible  # PaddleOCR's channel rounding too: nearest multiple, at most 10 % below
from torch import nn

from ..registry import DET_BACKBONES, REC_BACKBONES
from .layers import SqueezeExcite, conv_norm_act


class LearnableAffine(nn.Module):
    """``scale * x + bias`` with one learnable scalar each (PP-LCNetV3's LearnableAffineBlock)."""

    def __init__(self, scale: float = 1.0, bias: float = 0.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([scale]))
        self.bias = nn.Parameter(torch.tensor([bias]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x + self.bias


class RepConvLayer(nn.Module):
    """A fused (deploy-form) LearnableRepLayer: conv with bias, affine, then hard-swish and affine unless the
    stride is the integer 2 (Paddle compares the stride to 2, so the tuple strides of recognition keep it)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int | tuple[int, int] = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups)
        self.affine = LearnableAffine()
        self.activated = stride != 2
        self.act_affine = LearnableAffine() if self.activated else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.affine(self.conv(x))
        return self.act_affine(F.hardswish(x)) if self.act_affine is not None else x


class LCNetV3Block(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int | tuple[int, int], se: bool) -> None:
        super().__init__()
        self.dw = RepConvLayer(cin, cin, kernel, stride, groups=cin)
        self.se = SqueezeExcite(cin) if se else nn.Identity()
        self.pw = RepConvLayer(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.se(self.dw(x)))


# Per stage: (kernel, in channels, out channels at scale 1, stride, squeeze-excite). Recognition strides keep width
# /8 overall ((2, 1) halves height only, (1, 2) width only); detection halves both at each stage (strides 4..32).
_REC_STAGES = (
    ((3, 16, 32, 1, False),),
    ((3, 32, 64, 1, False), (3, 64, 64, 1, False)),
    ((3, 64, 128, (2, 1), False), (3, 128, 128, 1, False)),
    ((3, 128, 256, (1, 2), False), (5, 256, 256, 1, False), (5, 256, 256, 1, False), (5, 256, 256, 1, False),
     (5, 256, 256, 1, False)),
    ((5, 256, 512, (2, 1), True), (5, 512, 512, 1, True), (5, 512, 512, (2, 1), False), (5, 512, 512, 1, False)),
)
_DET_STAGES = (
    ((3, 16, 32, 1, False),),
    ((3, 32, 64, 2, False), (3, 64, 64, 1, False)),
    ((3, 64, 128, 2, False), (3, 128, 128, 1, False)),
    ((3, 128, 256, 2, False), (5, 256, 256, 1, False), (5, 256, 256, 1, False), (5, 256, 256, 1, False),
     (5, 256, 256, 1, False)),
    ((5, 256, 512, 2, True), (5, 512, 512, 1, True), (5, 512, 512, 1, False), (5, 512, 512, 1, False)),
)
# Detection reduces each returned stage with a 1x1 conv to these channels (times the scale).
_DET_OUT_CHANNELS = (16, 24, 56, 480)


class PPLCNetV3(nn.Module):
    """Stem conv 3x3 s2 + BN (no activation), then five stages of :class:`LCNetV3Block`."""

    def __init__(self, scale: float, stages: tuple, in_channels: int = 3) -> None:
        super().__init__()
        self.stem = conv_norm_act(in_channels, make_divisible(16 * scale, 16), 3, 2, act=None)
        self.stages = nn.ModuleList(
            nn.Sequential(*[LCNetV3Block(make_divisible(cin * scale, 16), make_divisible(cout * scale, 16), k, s, se)
                            for k, cin, cout, s, se in stage])
            for stage in stages)
        self.stage_channels = [make_divisible(stage[-1][2] * scale, 16) for stage in stages]


@REC_BACKBONES.register(aliases=("pplcnetv3_rec",))
class PPLCNetV3Rec(PPLCNetV3):
    """Recognition form: [B, 3, 48, W] -> [B, C, 1, W/8] (average pool 3x2 after height /16, width /4)."""

    def __init__(self, scale: float = 0.95, in_channels: int = 3) -> None:
        super().__init__(scale, _REC_STAGES, in_channels)
        self.out_channels = self.stage_channels[-1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stem(images)
        for stage in self.stages:
            x = stage(x)
        return F.avg_pool2d(x, (3, 2))


@DET_BACKBONES.register(aliases=("pplcnetv3_det",))
class PPLCNetV3Det(PPLCNetV3):
    """Detection form: the last four stages (strides 4, 8, 16, 32), each reduced by a 1x1 conv with bias."""

    def __init__(self, scale: float = 0.75, in_channels: int = 3) -> None:
        super().__init__(scale, _DET_STAGES, in_channels)
        self.out_channels = [int(c * scale) for c in _DET_OUT_CHANNELS]
        self.reduce = nn.ModuleList(nn.Conv2d(cin, cout, 1)
                                    for cin, cout in zip(self.stage_channels[1:], self.out_channels, strict=True))
        self.strides = [4, 8, 16, 32]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.stages[0](self.stem(images))
        features = []
        for stage in self.stages[1:]:
            x = stage(x)
            features.append(x)
        return [conv(f) for conv, f in zip(self.reduce, features, strict=True)]
