"""Recognition loss: CTC (in fp32, ``zero_infinity``) plus cross entropy for an attention head when present."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import LOSSES


@LOSSES.register("rec")
class RecognitionLoss(nn.Module):
    """``ctc_weight`` × CTC on ``logits`` + ``attention_weight`` × CE on ``attn_logits`` (whichever the model gave).

    CTC runs outside autocast: its log-space sums lose too much in bf16/fp16. Labels that cannot fit the output
    sequence never reach it (the dataset skips and counts them), so ``zero_infinity`` only guards the rest.
    """

    def __init__(self, ctc_weight: float = 1.0, attention_weight: float = 1.0, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.ctc_weight, self.attention_weight, self.label_smoothing = ctc_weight, attention_weight, label_smoothing

    def forward(self, outputs: dict[str, torch.Tensor], batch: dict) -> dict[str, torch.Tensor]:
        targets = batch["targets"]
        losses: dict[str, torch.Tensor] = {}
        if "logits" in outputs:
            with torch.autocast(outputs["logits"].device.type, enabled=False):
                log_probs = outputs["logits"].float().log_softmax(-1).transpose(0, 1)  # [T, B, C]
                frames = torch.full((log_probs.shape[1],), log_probs.shape[0], dtype=torch.long,
                                    device=log_probs.device)
                losses["ctc"] = F.ctc_loss(log_probs, targets["ids"], frames, targets["lengths"], blank=0,
                                           reduction="mean", zero_infinity=True)
        if "attn_logits" in outputs:
            logits, tokens = outputs["attn_logits"], targets["tokens"]
            steps = min(logits.shape[1], tokens.shape[1])
            losses["attention"] = F.cross_entropy(logits[:, :steps].float().flatten(0, 1),
                                                  tokens[:, :steps].flatten(), ignore_index=-100,
                                                  label_smoothing=self.label_smoothing)
        losses["loss"] = (self.ctc_weight * losses.get("ctc", 0.0)
                          + self.attention_weight * losses.get("attention", 0.0))
        return losses
