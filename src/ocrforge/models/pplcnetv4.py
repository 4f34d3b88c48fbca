"""PP-LCNetV4 (PaddleOCR's PP-OCRv6 small backbone) in its deploy form, for recognition and detection.

PaddleOCR trains every conv as conv + BN and each stride-1 depthwise conv as a three-branch RepDW (k x k, 1 x 1
and identity, each with BN); the shipped ONNX files hold only the re-parameterised result, one conv with bias per
layer, so that is the form written here (the branches cannot be recovered from the fused weights). Unlike
PP-LCNetV3 there is no learnable affine and no hard-swish: the stem uses ReLU, the blocks exact (erf) GELU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import DET_BACKBONES, REC_BACKBONES
from .layers import SqueezeExcite

# A block is (in channels, out channels, stride, squeeze-excite); a stage is a tuple of blocks.
Stage = tuple[tuple[int, int, int | tuple[int, int], bool], ...]

# Recognition: the (2, 1) strides halve height only, so a 48-high line leaves the stages at height 3, width /4.
_REC_SMALL: tuple[Stage, ...] = (
    ((96, 96, 1, True),),
    ((96, 96, 1, False), (96, 96, 1, False)),
    ((96, 192, (2, 1), False), (192, 192, 1, True), (192, 192, 1, False), (192, 192, 1, True),
     (192, 192, 1, False), (192, 192, 1, True), (192, 192, 1, False)),
    ((192, 384, (2, 1), False), (384, 384, 1, True), (384, 384, 1, False)),
)
# Detection: each stage after the first halves both axes; the four stage outputs are strides 4, 8, 16, 32.
_DET_SMALL: tuple[Stage, ...] = (
    ((48, 48, 1, True), (48, 48, 1, False)),
    ((48, 96, 2, False), (96, 96, 1, True), (96, 96, 1, False)),
    ((96, 192, 2, False), (192, 192, 1, True), (192, 192, 1, False), (192, 192, 1, True), (192, 192, 1, False)),
    ((192, 384, 2, False), (384, 384, 1, True), (384, 384, 1, False)),
)


class StemBlock(nn.Module):
    """Stride-4 stem: conv 3x3 s2, then [2x2 max-pool | conv 2x2 -> conv 2x2] concatenated, conv 3x3 s2, conv 1x1;
    every conv is followed by ReLU. The 2x2 layers pad right/bottom by one (Paddle's ``SAME``)."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int) -> None:
        super().__init__()
        self.stem1 = nn.Conv2d(in_channels, mid_channels, 3, 2, 1)
        self.stem2a = nn.Conv2d(mid_channels, mid_channels // 2, 2)
        self.stem2b = nn.Conv2d(mid_channels // 2, mid_channels, 2)
        self.stem3 = nn.Conv2d(mid_channels * 2, mid_channels, 3, 2, 1)
        self.stem4 = nn.Conv2d(mid_channels, out_channels, 1)

    @staticmethod
    def _pad(x: torch.Tensor, value: float = 0.0) -> torch.Tensor:
        return F.pad(x, (0, 1, 0, 1), value=value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem1(x))
        branch = F.relu(self.stem2b(self._pad(F.relu(self.stem2a(self._pad(x))))))
        pooled = F.max_pool2d(self._pad(x, float("-inf")), 2, 1)
        x = F.relu(self.stem3(torch.cat([pooled, branch], dim=1)))
        return F.relu(self.stem4(x))


class LCNetV4Block(nn.Module):
    """Token mixer ``depthwise conv (-> SE)``, then channel mixer ``1x1 expand -> GELU -> 1x1``; the residual
    wraps the channel mixer only, when the stride is 1 and the channels are unchanged."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int | tuple[int, int], se: bool,
                 expand_ratio: int = 2) -> None:
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, kernel, stride, (kernel - 1) // 2, groups=cin)
        self.se = SqueezeExcite(cin) if se else nn.Identity()
        self.expand = nn.Conv2d(cin, cin * expand_ratio, 1)
        self.compress = nn.Conv2d(cin * expand_ratio, cout, 1)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.se(self.dw(x))
        y = self.compress(F.gelu(self.expand(x)))
        return x + y if self.residual else y


class PPLCNetV4(nn.Module):
    """:class:`StemBlock` then the stages of :class:`LCNetV4Block`."""

    def __init__(self, stages: tuple[Stage, ...], stem_channels: tuple[int, int], in_channels: int = 3,
                 kernel: int = 3, expand_ratio: int = 2) -> None:
        super().__init__()
        self.stem = StemBlock(in_channels, *stem_channels)
        self.stages = nn.ModuleList(
            nn.Sequential(*[LCNetV4Block(cin, cout, kernel, s, se, expand_ratio) for cin, cout, s, se in stage])
            for stage in stages)
        self.stage_channels = [stage[-1][1] for stage in stages]


@REC_BACKBONES.register(aliases=("pplcnetv4_rec",))
class PPLCNetV4Rec(PPLCNetV4):
    """Recognition form: [B, 3, 48, W] -> [B, 384, 1, W/8] (average pool 3x2 after height /16, width /4)."""

    def __init__(self, in_channels: int = 3, stem_channels: tuple[int, int] = (48, 96),
                 stages: tuple[Stage, ...] = _REC_SMALL, kernel: int = 3, expand_ratio: int = 2) -> None:
        super().__init__(stages, stem_channels, in_channels, kernel, expand_ratio)
        self.out_channels: int = self.stage_channels[-1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stem(images)
        for stage in self.stages:
            x = stage(x)
        return F.avg_pool2d(x, (3, 2))


@DET_BACKBONES.register(aliases=("pplcnetv4_det",))
class PPLCNetV4Det(PPLCNetV4):
    """Detection form: the four stage outputs (48, 96, 192, 384 channels at strides 4, 8, 16, 32)."""

    def __init__(self, in_channels: int = 3, stem_channels: tuple[int, int] = (24, 48),
                 stages: tuple[Stage, ...] = _DET_SMALL, kernel: int = 3, expand_ratio: int = 2) -> None:
        super().__init__(stages, stem_channels, in_channels, kernel, expand_ratio)
        self.out_channels: list[int] = list(self.stage_channels)
        self.strides = [4, 8, 16, 32]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(images)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features
