"""Recognition heads: CTC (per-frame classes) and an attention decoder (autoregressive characters)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import HEADS


@HEADS.register("ctc")
class CTCHead(nn.Module):
    """Per-frame class scores; class 0 is the CTC blank. Outputs logits in training, probabilities otherwise."""

    config_injected = ("in_channels", "num_classes")

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, frames: torch.Tensor, targets: dict | None = None) -> dict[str, torch.Tensor]:
        logits = self.fc(self.dropout(frames))
        return {"logits": logits} if self.training else {"logits": logits, "probs": logits.float().softmax(-1)}


def _attention(mha: nn.MultiheadAttention, query: torch.Tensor, source: torch.Tensor, causal: bool) -> torch.Tensor:
    """``mha``'s computation (batch first, no padding mask) written out on its own weights: the ONNX export of
    nn.MultiheadAttention bakes the traced source length into a Reshape, so a crop of another width fails there."""
    dim, heads = mha.embed_dim, mha.num_heads
    q = F.linear(query, mha.in_proj_weight[:dim], mha.in_proj_bias[:dim])
    k, v = F.linear(source, mha.in_proj_weight[dim:], mha.in_proj_bias[dim:]).chunk(2, dim=-1)
    q, k, v = (t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in (q, k, v))  # each [B, H, L, D]
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=mha.dropout if mha.training else 0.0, is_causal=causal)
    return mha.out_proj(out.transpose(1, 2).flatten(2))


@HEADS.register("attention")
class AttentionHead(nn.Module):
    """A small transformer decoder over the neck's frames (PP-OCRv5-style guidance beside CTC, or alone).

    Tokens: the charset's ids 1..C-1 for characters (0, the CTC blank, is unused), then ``bos`` = C and
    ``eos`` = C + 1. Training uses teacher forcing on ``targets['tokens']``; inference decodes greedily.
    """

    config_injected = ("in_channels", "num_classes")

    def __init__(self, in_channels: int, num_classes: int, dim: int = 128, layers: int = 1, heads: int = 4,
                 max_length: int = 26, dropout: float = 0.1) -> None:
        super().__init__()
        self.bos, self.eos, self.max_length = num_classes, num_classes + 1, max_length
        self.memory = nn.Linear(in_channels, dim)
        self.embed = nn.Embedding(num_classes + 2, dim)
        self.position = nn.Parameter(torch.zeros(1, max_length + 1, dim))
        nn.init.trunc_normal_(self.position, std=0.02)
        # The parameters (and checkpoint keys) of a pre-norm nn.TransformerDecoder; _decode runs them.
        layer = nn.TransformerDecoderLayer(dim, heads, dim * 2, dropout, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, layers)
        self.out = nn.Linear(dim, num_classes + 2)

    def _decode(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """``self.decoder``'s forward with a causal mask (pre-norm layers, as built), through ``_attention`` so that
        training, inference and the ONNX graph share one computation whose memory length stays dynamic."""
        for layer in self.decoder.layers:
            h = layer.norm1(x)
            x = x + layer.dropout1(_attention(layer.self_attn, h, h, causal=True))
            x = x + layer.dropout2(_attention(layer.multihead_attn, layer.norm2(x), memory, causal=False))
            x = x + layer.dropout3(layer.linear2(layer.dropout(layer.activation(layer.linear1(layer.norm3(x))))))
        return x

    def _step_logits(self, tokens: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        return self.out(self._decode(self.embed(tokens) + self.position[:, : tokens.shape[1]], memory))

    def greedy_steps(self, frames: torch.Tensor, steps: int, stop_at_eos: bool = False) -> torch.Tensor:
        """Greedy decoding from ``bos``, each step fed the argmax of the previous ones: logits [N, steps, C + 2]
        (``steps`` <= ``max_length + 1``, the positions the head knows).

        ``stop_at_eos`` ends early once every row has emitted eos (fewer steps come back). Export leaves it off:
        a traced graph needs a loop whose length does not depend on the data; steps after eos are ignored by
        decoding, and the causal mask keeps the earlier steps' logits the same either way."""
        memory = self.memory(frames)
        tokens = torch.full_like(frames[:, :1, 0], self.bos, dtype=torch.long)  # follows a dynamic batch in export
        logits = []
        for _ in range(steps):
            logits.append(self._step_logits(tokens, memory)[:, -1])
            tokens = torch.cat([tokens, logits[-1].argmax(-1, keepdim=True)], dim=1)
            if stop_at_eos and bool((tokens[:, 1:] == self.eos).any(dim=1).all()):
                break
        return torch.stack(logits, dim=1)

    def forward(self, frames: torch.Tensor, targets: dict | None = None) -> dict[str, torch.Tensor]:
        if targets is not None and self.training:
            bos = torch.full_like(targets["tokens"][:, :1], self.bos)
            inputs = torch.cat([bos, targets["tokens"][:, :-1].clamp(min=0)], dim=1)[:, : self.max_length + 1]
            return {"attn_logits": self._step_logits(inputs, self.memory(frames))}
        return {"attn_logits": self.greedy_steps(frames, self.max_length + 1, stop_at_eos=True)}
