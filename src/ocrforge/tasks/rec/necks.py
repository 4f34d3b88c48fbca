"""Sequence necks: [B, C, T] features -> [B, T, D] context-mixed frames."""

from __future__ import annotations

import torch
from torch import nn

from ...models.layers import SelfAttention, conv_norm_act
from ...registry import REC_NECKS


@REC_NECKS.register(aliases=("bilstm",))
class BiLSTMNeck(nn.Module):
    """CRNN's two bidirectional LSTM layers."""

    config_injected = ("in_channels",)

    def __init__(self, in_channels: int, hidden: int = 256, layers: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.lstm = nn.LSTM(in_channels, hidden, num_layers=layers, bidirectional=True, batch_first=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.out_channels = 2 * hidden

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.lstm(features.transpose(1, 2))[0]


class _MixingBlock(nn.Module):
    """Local mixing (depthwise conv over neighbouring frames) then global mixing (self-attention), as in SVTR."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.local = conv_norm_act(dim, dim, 3, groups=dim, act=nn.GELU, bias=True, dims=1)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, dropout)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.local(x.transpose(1, 2)).transpose(1, 2)
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


@REC_NECKS.register(aliases=("svtr",))
class SVTRNeck(nn.Module):
    """The PP-OCR mobile recogniser's neck: project, a few local+global mixing blocks, project back with a
    shortcut to the CNN features (the shortcut keeps the CNN's local evidence when attention smears it)."""

    config_injected = ("in_channels",)

    def __init__(self, in_channels: int, dim: int = 120, depth: int = 2, heads: int = 8, mlp_ratio: float = 2.0,
                 dropout: float = 0.0, out_channels: int = 256) -> None:
        super().__init__()
        self.proj_in = nn.Linear(in_channels, dim)
        self.blocks = nn.Sequential(*[_MixingBlock(dim, heads, mlp_ratio, dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.proj_out = nn.Sequential(nn.Linear(dim + in_channels, out_channels), nn.Hardswish())
        self.out_channels = out_channels

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        seq = features.transpose(1, 2)
        mixed = self.norm(self.blocks(self.proj_in(seq)))
        return self.proj_out(torch.cat([mixed, seq], dim=-1))


@REC_NECKS.register(aliases=("identity",))
class IdentityNeck(nn.Module):
    config_injected = ("in_channels",)

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.out_channels = in_channels

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features.transpose(1, 2)
