"""Classification loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import CLS_LOSSES


@CLS_LOSSES.register(aliases=("cross_entropy",))
class CrossEntropyLoss(nn.Module):
    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, outputs: dict[str, torch.Tensor], batch: dict) -> dict[str, torch.Tensor]:
        # fp32 logits: softmax over margin-scaled cosines overflows in fp16.
        loss = F.cross_entropy(outputs["logits"].float(), batch["label"], label_smoothing=self.label_smoothing)
        return {"loss": loss}
