"""Recognition loss: the weighted sum of the heads' own loss terms (``RecHead.loss``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ...registry import REC_LOSSES
from .heads import RecHead


@REC_LOSSES.register(aliases=("rec",))
class RecognitionLoss(nn.Module):
    """Each head's term (the main head's, and an ``aux_head``'s while it runs, in training), weighted.

    ``weights`` maps a head's ``loss_name`` to its weight (1.0 when absent); ``ctc_weight`` and
    ``attention_weight`` are the weights of the terms named ``ctc`` and ``attention`` (CTCHead's, AttentionHead's),
    kept as keys of their own for the configs that set them. ``label_smoothing`` goes to the cross-entropy terms.
    """

    config_injected = ("heads",)

    def __init__(self, heads: Sequence[type[RecHead]], ctc_weight: float = 1.0, attention_weight: float = 1.0,
                 label_smoothing: float = 0.0, weights: dict[str, float] | None = None) -> None:
        super().__init__()
        self.heads, self.label_smoothing = tuple(heads), label_smoothing
        self.weights = {"ctc": ctc_weight, "attention": attention_weight, **(weights or {})}

    def forward(self, outputs: dict[str, torch.Tensor], batch: dict) -> dict[str, torch.Tensor]:
        losses: dict[str, torch.Tensor] = {}
        for head in self.heads:
            term = head.loss(outputs, batch["targets"], label_smoothing=self.label_smoothing)
            if term is not None:
                losses[head.loss_name] = term
        losses["loss"] = sum(self.weights.get(name, 1.0) * term for name, term in losses.items())
        return losses
