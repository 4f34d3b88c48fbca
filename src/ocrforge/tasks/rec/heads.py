"""Recognition heads: CTC (per-frame classes) and an attention decoder (autoregressive characters)."""

from __future__ import annotations

import torch
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
        layer = nn.TransformerDecoderLayer(dim, heads, dim * 2, dropout, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, layers)
        self.out = nn.Linear(dim, num_classes + 2)

    def _step_logits(self, tokens: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        mask = torch.triu(torch.full((length, length), float("-inf"), device=tokens.device), diagonal=1)
        x = self.embed(tokens) + self.position[:, :length]
        return self.out(self.decoder(x, memory, tgt_mask=mask))

    def forward(self, frames: torch.Tensor, targets: dict | None = None) -> dict[str, torch.Tensor]:
        memory = self.memory(frames)
        if targets is not None and self.training:
            bos = torch.full_like(targets["tokens"][:, :1], self.bos)
            inputs = torch.cat([bos, targets["tokens"][:, :-1].clamp(min=0)], dim=1)[:, : self.max_length + 1]
            return {"attn_logits": self._step_logits(inputs, memory)}
        tokens = torch.full((frames.shape[0], 1), self.bos, dtype=torch.long, device=frames.device)
        steps = []
        for _ in range(self.max_length + 1):
            logits = self._step_logits(tokens, memory)[:, -1]
            steps.append(logits)
            tokens = torch.cat([tokens, logits.argmax(-1, keepdim=True)], dim=1)
            if bool((tokens[:, 1:] == self.eos).any(dim=1).all()):
                break
        return {"attn_logits": torch.stack(steps, dim=1)}
