"""PP-OCR's detection necks as PaddleOCR ships them: ``rse_fpn`` (PP-OCRv4/v5 mobile; RSEFPN) and ``replk_fpn``
(PP-OCRv6 small; RepLKFPN in its fused form). Their head is ``db_head`` with ``deconv_bias`` (v4/v5) or
``norm: false`` (v6).

Every lateral and output conv is followed by a residual squeeze-excite, ``x + x * hsigmoid(SE(x))``, with Paddle's
hard sigmoid of slope 0.2. Levels are merged top-down by nearest x2 upsampling, each output is upsampled to stride 4
and the four are concatenated (coarsest first).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...models.layers import SqueezeExcite
from ...registry import DET_NECKS


class _ResidualSE(nn.Module):
    """``conv`` then ``x + x * gate(x)`` (PaddleOCR's RSELayer with shortcut)."""

    def __init__(self, conv: nn.Module, channels: int) -> None:
        super().__init__()
        self.conv = conv
        self.se = SqueezeExcite(channels, slope=0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return x + self.se(x)


class _PPOCRFPN(nn.Module):
    config_injected = ("in_channels",)

    def __init__(self, in_channels: list[int], out_channels: int, output_conv) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(_ResidualSE(nn.Conv2d(c, out_channels, 1, bias=False), out_channels)
                                     for c in in_channels)
        self.output = nn.ModuleList(_ResidualSE(output_conv(out_channels), out_channels // 4) for _ in in_channels)
        self.out_channels = out_channels

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        # Coarsest level first everywhere, as PaddleOCR computes it: graph order and forward order then agree.
        laterals = [conv(f) for conv, f in zip(list(self.lateral)[::-1], features[::-1], strict=True)]
        merged = [laterals[0]]
        for lateral in laterals[1:]:
            merged.append(lateral + F.interpolate(merged[-1], scale_factor=2.0, mode="nearest"))
        outputs = [conv(x) for conv, x in zip(list(self.output)[::-1], merged, strict=True)]  # strides 32..4
        last = len(outputs) - 1
        return torch.cat([F.interpolate(x, scale_factor=float(2 ** (last - i)), mode="nearest") if i < last else x
                          for i, x in enumerate(outputs)], dim=1)


@DET_NECKS.register(aliases=("rse_fpn",))
class RSEFPN(_PPOCRFPN):
    """Lateral 1x1 convs (no bias) and 3x3 output convs to ``out_channels // 4``, each with a residual SE."""

    def __init__(self, in_channels: list[int], out_channels: int = 96) -> None:
        super().__init__(in_channels, out_channels,
                         lambda c: nn.Conv2d(c, c // 4, 3, padding=1, bias=False))


@DET_NECKS.register(aliases=("replk_fpn",))
class RepLKFPN(_PPOCRFPN):
    """RSEFPN with large-kernel outputs: a depthwise ``kernel`` x ``kernel`` conv (with bias: its re-parameterised
    branches folded in) then a 1x1 conv to ``out_channels // 4``."""

    def __init__(self, in_channels: list[int], out_channels: int = 96, kernel: int = 7) -> None:
        super().__init__(in_channels, out_channels,
                         lambda c: nn.Sequential(nn.Conv2d(c, c, kernel, padding=kernel // 2, groups=c),
                                                 nn.Conv2d(c, c // 4, 1, bias=False)))
