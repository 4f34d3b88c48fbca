"""PP-OCR's SVTR necks as PaddleOCR ships them: ``ppocr_svtr`` (PP-OCRv4/v5 mobile, EncoderWithSVTR) and
``ppocr_light_svtr`` (PP-OCRv6 small, EncoderWithLightSVTR). Both take the backbone's [B, C, 1, T] map and return
[B, T, D] frames for the CTC head.

PaddleOCR's optional "guide" (the neck's input detached from the backbone) is not reproduced: with it the CTC
gradient into the backbone is exactly zero, and fine-tuning needs that gradient.
"""

from __future__ import annotations

import torch
from torch import nn

from ...models.layers import SelfAttention, conv_norm_act
from ...registry import REC_NECKS


def _conv_bn_swish(cin: int, cout: int, kernel: tuple[int, int] = (1, 1), groups: int = 1) -> nn.Sequential:
    return conv_norm_act(cin, cout, kernel, groups=groups, act=nn.SiLU)


class _MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.dropout(nn.functional.silu(self.fc1(x)))))


class SVTRBlock(nn.Module):
    """Pre-norm transformer block (Paddle's ``prenorm=False``): x + attn(LN(x)), then x + MLP(LN(x)), Swish MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = SelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = _MLP(dim, int(dim * mlp_ratio), dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _to_frames(x: torch.Tensor) -> torch.Tensor:
    """[B, C, 1, T] -> [B, T, C] (PaddleOCR's Im2Seq: the height must already be 1)."""
    return x.squeeze(2).transpose(1, 2)


@REC_NECKS.register(aliases=("ppocr_svtr",))
class PPOCRSVTRNeck(nn.Module):
    """Reduce (conv 1x3 C -> C/8, 1x1 -> hidden), ``depth`` SVTR blocks, LayerNorm, 1x1 back to C, concat with the
    neck's input, conv 1x3 2C -> C/8, 1x1 -> ``dims``."""

    config_injected = ("in_channels",)

    def __init__(self, in_channels: int, dims: int = 120, hidden_dims: int = 120, depth: int = 2, heads: int = 8,
                 mlp_ratio: float = 2.0, kernel_size: tuple[int, int] | list[int] = (1, 3),
                 dropout: float = 0.0) -> None:
        super().__init__()
        kernel = (int(kernel_size[0]), int(kernel_size[1]))
        self.conv1 = _conv_bn_swish(in_channels, in_channels // 8, kernel)
        self.conv2 = _conv_bn_swish(in_channels // 8, hidden_dims)
        self.blocks = nn.ModuleList(SVTRBlock(hidden_dims, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(hidden_dims, eps=1e-6)
        self.conv3 = _conv_bn_swish(hidden_dims, in_channels)
        self.conv4 = _conv_bn_swish(2 * in_channels, in_channels // 8, kernel)
        self.conv1x1 = _conv_bn_swish(in_channels // 8, dims)
        self.out_channels = dims

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = self.conv2(self.conv1(features))
        height = z.shape[2]
        seq = z.flatten(2).transpose(1, 2)
        for block in self.blocks:
            seq = block(seq)
        z = self.norm(seq).transpose(1, 2).unflatten(2, (height, -1))
        z = torch.cat([features, self.conv3(z)], dim=1)
        return _to_frames(self.conv1x1(self.conv4(z)))


@REC_NECKS.register(aliases=("ppocr_light_svtr",))
class PPOCRLightSVTRNeck(nn.Module):
    """PP-OCRv6 small's neck: a 1x1 skip (C -> dims), a 1x1 reduce (C -> dims) primed by a depthwise 1xk conv added
    back, ``depth`` SVTR blocks, LayerNorm, plus the skip."""

    config_injected = ("in_channels",)

    def __init__(self, in_channels: int, dims: int = 120, depth: int = 2, heads: int = 8, mlp_ratio: float = 2.0,
                 local_kernel: int = 7, dropout: float = 0.0) -> None:
        super().__init__()
        self.skip = _conv_bn_swish(in_channels, dims)
        self.reduce = _conv_bn_swish(in_channels, dims)
        self.local = _conv_bn_swish(dims, dims, (1, local_kernel), groups=dims)
        self.blocks = nn.ModuleList(SVTRBlock(dims, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dims, eps=1e-6)
        self.out_channels = dims

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        skip = _to_frames(self.skip(features))
        z = self.reduce(features)
        seq = _to_frames(z + self.local(z))
        for block in self.blocks:
            seq = block(seq)
        return self.norm(seq) + skip
