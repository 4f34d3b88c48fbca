"""PP-OCR's detection neck and head as PaddleOCR ships them: ``rse_fpn`` (PP-OCRv4/v5 mobile; RSEFPN),
``replk_fpn`` (PP-OCRv6 small; RepLKFPN in its fused form) and ``ppocr_db_head``.

Every lateral and output conv is followed by a residual squeeze-excite, ``x + x * hsigmoid(SE(x))``, with Paddle's
hard sigmoid of slope 0.2. Levels are merged top-down by nearest x2 upsampling, each output is upsampled to stride 4
and the four are concatenated (coarsest first).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...models.pplcnet import SqueezeExcite
from ...registry import HEADS, NECKS


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
        # PaddleOCR's order (coarsest lateral first), so that graph order and forward order agree when importing.
        laterals = [conv(f) for conv, f in reversed(list(zip(self.lateral, features, strict=True)))][::-1]
        merged = [laterals[-1]]
        for lateral in reversed(laterals[:-1]):
            merged.insert(0, lateral + F.interpolate(merged[0], scale_factor=2.0, mode="nearest"))
        outputs = [conv(x) for conv, x in reversed(list(zip(self.output, merged, strict=True)))]
        # outputs: stride 32, 16, 8, 4
        scaled = [F.interpolate(x, scale_factor=float(2 ** (3 - i)), mode="nearest") if i < 3 else x
                  for i, x in enumerate(outputs)]
        return torch.cat(scaled, dim=1)


@NECKS.register("rse_fpn")
class RSEFPN(_PPOCRFPN):
    """Lateral 1x1 convs (no bias) and 3x3 output convs to ``out_channels // 4``, each with a residual SE."""

    def __init__(self, in_channels: list[int], out_channels: int = 96) -> None:
        super().__init__(in_channels, out_channels,
                         lambda c: nn.Conv2d(c, c // 4, 3, padding=1, bias=False))


@NECKS.register("replk_fpn")
class RepLKFPN(_PPOCRFPN):
    """RSEFPN with large-kernel outputs: a depthwise ``kernel`` x ``kernel`` conv (with bias: its re-parameterised
    branches folded in) then a 1x1 conv to ``out_channels // 4``."""

    def __init__(self, in_channels: list[int], out_channels: int = 96, kernel: int = 7) -> None:
        super().__init__(in_channels, out_channels,
                         lambda c: nn.Sequential(nn.Conv2d(c, c, kernel, padding=kernel // 2, groups=c),
                                                 nn.Conv2d(c, c // 4, 1, bias=False)))


class _Branch(nn.Module):
    """conv 3x3 -> (BN) -> ReLU -> transposed conv x2 -> (BN) -> ReLU -> transposed conv x2 to one channel; with
    ``norm: false`` the BNs are folded into the preceding conv's bias (PP-OCRv6's shipped form)."""

    def __init__(self, channels: int, norm: bool) -> None:
        super().__init__()
        mid = channels // 4
        self.conv1 = nn.Conv2d(channels, mid, 3, padding=1, bias=not norm)
        self.bn1 = nn.BatchNorm2d(mid) if norm else nn.Identity()
        self.conv2 = nn.ConvTranspose2d(mid, mid, 2, stride=2)
        self.bn2 = nn.BatchNorm2d(mid) if norm else nn.Identity()
        self.conv3 = nn.ConvTranspose2d(mid, 1, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.conv3(x)


@HEADS.register("ppocr_db_head")
class PPOCRDBHead(nn.Module):
    """PaddleOCR's DBHead: ``binarize`` (the probability map; the only branch in the shipped files) and ``thresh``
    (training only; the importer initialises it from ``binarize``). Same outputs as ``db_head``."""

    config_injected = ("in_channels",)

    def __init__(self, in_channels: int, k: float = 50.0, norm: bool = True) -> None:
        super().__init__()
        self.binarize = _Branch(in_channels, norm)
        self.thresh = _Branch(in_channels, norm)
        self.k = k

    def forward(self, features: torch.Tensor, with_threshold: bool = True) -> dict[str, torch.Tensor]:
        prob = torch.sigmoid(self.binarize(features))
        if not with_threshold:
            return {"prob": prob}
        thresh = torch.sigmoid(self.thresh(features))
        return {"prob": prob, "thresh": thresh, "binary": torch.sigmoid(self.k * (prob - thresh))}
