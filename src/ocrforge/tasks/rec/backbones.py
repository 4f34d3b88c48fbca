"""Recognition backbones: images [B, 3, H, W] -> feature sequences [B, C, W'] (height pooled away).

OCR backbones keep horizontal resolution (strides (2, 1) late in the network) so that one output frame covers about
four input columns: CTC needs at least one frame per character plus one between repeated characters.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from ...models.backbones import TimmFeatures
from ...models.layers import conv_norm_act, squeeze_excite_gate
from ...registry import REC_BACKBONES


class _SequenceBackbone(nn.Module, ABC):
    """Shared tail: average the remaining height into one row, giving [B, C, W']."""

    out_channels: int
    width_stride: int = 4

    @abstractmethod
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, C, H', W'] with W' = W / width_stride."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images).mean(dim=2)


@REC_BACKBONES.register(aliases=("crnn_vgg",))
class CRNNBackbone(_SequenceBackbone):
    """CRNN's VGG-style CNN (Shi et al. 2015): four poolings, the last two only in height. ``width`` scales the
    channels (0.5 trains comfortably on a CPU)."""

    def __init__(self, width: float = 1.0, in_channels: int = 3) -> None:
        super().__init__()
        c = [max(8, int(v * width)) for v in (64, 128, 256, 256, 512, 512, 512)]
        self.body = nn.Sequential(
            conv_norm_act(in_channels, c[0]), nn.MaxPool2d(2, 2),
            conv_norm_act(c[0], c[1]), nn.MaxPool2d(2, 2),
            conv_norm_act(c[1], c[2]), conv_norm_act(c[2], c[3]), nn.MaxPool2d((2, 1), (2, 1)),
            conv_norm_act(c[3], c[4]), conv_norm_act(c[4], c[5]), nn.MaxPool2d((2, 1), (2, 1)),
            conv_norm_act(c[5], c[6]),
        )
        self.out_channels = c[6]

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)


class _DepthwiseSeparable(nn.Module):
    """PP-LCNet block: depthwise conv (+ optional squeeze-excitation) then pointwise conv, hard-swish."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int | tuple[int, int], se: bool) -> None:
        super().__init__()
        self.dw = conv_norm_act(cin, cin, kernel, stride, groups=cin, act=nn.Hardswish)
        self.se = squeeze_excite_gate(cin) if se else None
        self.pw = conv_norm_act(cin, cout, 1, act=nn.Hardswish)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dw(x)
        if self.se is not None:
            x = x * self.se(x)
        return self.pw(x)


# (kernel, output channels at scale 1, stride, squeeze-excitation) per block; strides (2, 1) keep the width.
_LCNET_REC_BLOCKS = (
    (3, 32, 1, False),
    (3, 64, (2, 2), False), (3, 64, 1, False),
    (3, 128, (2, 1), False), (3, 128, 1, False),
    (3, 256, (2, 1), False), (5, 256, 1, False), (5, 256, 1, False), (5, 256, 1, False),
    (5, 512, (2, 1), True), (5, 512, 1, True),
)


@REC_BACKBONES.register(aliases=("lcnet_rec",))
class LCNetRecBackbone(_SequenceBackbone):
    """PP-LCNet with recognition strides (the PP-OCR mobile recogniser's backbone): height /32, width /4."""

    def __init__(self, scale: float = 0.5, in_channels: int = 3) -> None:
        super().__init__()
        def ch(v: int) -> int:
            return max(8, int(v * scale + 4) // 8 * 8)

        layers: list[nn.Module] = [conv_norm_act(in_channels, ch(16), 3, 2, act=nn.Hardswish)]
        cin = ch(16)
        for kernel, cout, stride, se in _LCNET_REC_BLOCKS:
            layers.append(_DepthwiseSeparable(cin, ch(cout), kernel, stride, se))
            cin = ch(cout)
        self.body = nn.Sequential(*layers)
        self.out_channels = cin

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)


@REC_BACKBONES.register(aliases=("timm_rec",))
class TimmRecBackbone(TimmFeatures):
    """Any timm CNN through ``features_only``, taking the stage whose width stride is 4 or 8 and pooling height:
    general-purpose backbones downsample width as much as height, so only early stages keep enough frames."""

    def __init__(self, name: str = "resnet18", pretrained: bool = False, pretrained_path: str | None = None,
                 width_stride: int = 8) -> None:
        super().__init__(name, [width_stride], pretrained, pretrained_path)
        self.out_channels = self.channels[0]
        self.width_stride = width_stride

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return super().forward(images)[0].mean(dim=2)  # as every sequence backbone: height averaged away
