"""Layers shared by the model families: conv-norm-act blocks, squeeze-excite gates and attention written out for
ONNX export.

timm's ConvNormAct and SqueezeExcite do not fit here: they name their parts (``conv.weight``, ``bn.running_mean``;
``fc1``, ``fc2``), while ocrforge's blocks are ``nn.Sequential`` (``0.weight``, ``1.running_mean``) and its
PaddleOCR squeeze-excite has ``reduce``/``expand`` with Paddle's hard sigmoid: those keys are what saved checkpoints
hold and what the PP-OCR importer (``pretrained/``) fills, so the builders below keep them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_norm_act(cin: int, cout: int, kernel: int | tuple[int, int] = 3, stride: int | tuple[int, int] = 1,
                  groups: int = 1, act: type[nn.Module] | None = nn.ReLU, norm: bool = True, bias: bool | None = None,
                  dims: int = 2) -> nn.Sequential:
    """``nn.Sequential(conv, BatchNorm, act)`` with "same" padding for odd kernels; keys ``0.*``, ``1.*``.

    ``norm=False`` puts an Identity where the BatchNorm was (a fused deploy form: the conv then has a bias, the keys
    stay in place); ``bias`` defaults to ``not norm``; ``act=None`` ends at the norm; ``dims=1`` for sequences.
    """
    conv, batch_norm = (nn.Conv1d, nn.BatchNorm1d) if dims == 1 else (nn.Conv2d, nn.BatchNorm2d)
    padding = tuple(k // 2 for k in kernel) if isinstance(kernel, tuple) else kernel // 2
    layers: list[nn.Module] = [conv(cin, cout, kernel, stride, padding, groups=groups,
                                    bias=not norm if bias is None else bias),
                               batch_norm(cout) if norm else nn.Identity()]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


def hard_sigmoid(x: torch.Tensor, slope: float) -> torch.Tensor:
    """Paddle's hard sigmoid ``clip(slope * x + 0.5, 0, 1)``: slope 1/6 in the backbones' SE, 0.2 in the FPNs'."""
    return (slope * x + 0.5).clamp(0.0, 1.0)


class SqueezeExcite(nn.Module):
    """PaddleOCR's squeeze-excite: ``x * hsigmoid(conv(relu(conv(mean(x)))))``, a reduction of 4, both convs with
    bias, Paddle's hard sigmoid of ``slope``."""

    def __init__(self, channels: int, slope: float = 1 / 6) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, channels // 4, 1)
        self.expand = nn.Conv2d(channels // 4, channels, 1)
        self.slope = slope

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        return hard_sigmoid(self.expand(F.relu(self.reduce(x.mean(dim=(2, 3), keepdim=True)))), self.slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


def squeeze_excite_gate(channels: int, bias: bool = True, gate: type[nn.Module] = nn.Hardsigmoid) -> nn.Sequential:
    """The squeeze-excite weights alone, ``nn.Sequential(pool, conv, ReLU, conv, gate)`` (keys ``1.*``, ``3.*``),
    a reduction of 4: the caller multiplies (PP-LCNet) or adds (DBNet++'s scale attention) them."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, channels // 4, 1, bias=bias), nn.ReLU(),
                         nn.Conv2d(channels // 4, channels, 1, bias=bias), gate())


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, dropout: float = 0.0,
           causal: bool = False) -> torch.Tensor:
    """Multi-head scaled dot-product attention of projected [B, L, H * D] queries, keys and values -> [B, L, H * D].

    Written with ``unflatten``/``flatten`` instead of a reshape to fixed sizes, so that an exported graph keeps its
    sequence lengths dynamic (a recogniser reads crops of any width)."""
    q, k, v = (t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in (q, k, v))  # each [B, H, L, D]
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=causal)
    return out.transpose(1, 2).flatten(2)


def multihead_attention(mha: nn.MultiheadAttention, query: torch.Tensor, source: torch.Tensor,
                        causal: bool) -> torch.Tensor:
    """``mha``'s computation (batch first, no padding mask) through ``attend`` on its own weights: the ONNX export
    of nn.MultiheadAttention bakes the traced source length into a Reshape, so a crop of another width fails there."""
    dim = mha.embed_dim
    q = F.linear(query, mha.in_proj_weight[:dim], mha.in_proj_bias[:dim])
    k, v = F.linear(source, mha.in_proj_weight[dim:], mha.in_proj_bias[dim:]).chunk(2, dim=-1)
    out = attend(q, k, v, mha.num_heads, mha.dropout if mha.training else 0.0, causal)
    return mha.out_proj(out)


class SelfAttention(nn.Module):
    """Multi-head self-attention written out (one ``qkv`` projection, ``proj`` out) instead of
    nn.MultiheadAttention, whose export fixes the sequence length (see ``multihead_attention``)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return self.proj(attend(q, k, v, self.heads, self.dropout if self.training else 0.0))
