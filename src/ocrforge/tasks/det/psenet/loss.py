"""PSENet loss: dice with online hard example mining (3 negatives per positive) on the text map, dice on the
kernels inside the predicted text, weighted 0.7 / 0.3 as in PSENet. Per-image dice, averaged over the batch;
computed in fp32 even under autocast."""

from __future__ import annotations

import torch
from torch import nn

from ....errors import ConfigError
from ....registry import DET_LOSSES

EPS = 1e-3  # PSENet's smoothing of the dice denominators


def dice_loss(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - dice per image over the masked pixels, [N, ...] -> [N]."""
    pred, gt, mask = (t.flatten(1) for t in (pred, gt, mask))
    pred, gt = pred * mask, gt * mask
    dice = 2 * (pred * gt).sum(1) / ((pred * pred).sum(1) + EPS + (gt * gt).sum(1) + EPS)
    return 1 - dice


def ohem_mask(score: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, negative_ratio: float) -> torch.Tensor:
    """[N, H, W] pixels the text dice learns from: every positive, and per image the ``negative_ratio`` x as many
    highest-scoring negatives; an image without positives (or negatives) learns from its whole mask."""
    selected = []
    for score_i, gt_i, mask_i in zip(score, gt, mask, strict=True):
        positive = (gt_i > 0.5) & (mask_i > 0.5)
        negative = (gt_i <= 0.5) & (mask_i > 0.5)
        num_negative = min(int(negative.sum()), int(positive.sum() * negative_ratio))
        if not positive.any() or num_negative == 0:
            selected.append(mask_i > 0.5)
            continue
        threshold = torch.topk(score_i[negative], num_negative).values[-1]
        selected.append(positive | (negative & (score_i >= threshold)))
    return torch.stack(selected).float()


@DET_LOSSES.register()
class PSELoss(nn.Module):
    """``text_weight`` x dice-OHEM(text map) + ``kernel_weight`` x mean over kernels of dice(kernel), the kernels
    learnt only where the predicted text probability is above 0.5 (and the training mask is 1)."""

    def __init__(self, text_weight: float = 0.7, kernel_weight: float = 0.3, negative_ratio: float = 3.0) -> None:
        super().__init__()
        self.text_weight, self.kernel_weight, self.negative_ratio = text_weight, kernel_weight, negative_ratio

    def forward(self, outputs: dict[str, torch.Tensor], batch: dict) -> dict[str, torch.Tensor]:
        targets = batch["targets"]
        with torch.autocast(outputs["kernels"].device.type, enabled=False):
            pred = outputs["kernels"].float()
            gt, mask = targets["kernel_maps"].float(), targets["training_mask"].float()  # sent as uint8
            if pred.shape[1] != gt.shape[1]:
                raise ConfigError(f"the head predicts {pred.shape[1]} kernel maps but the targets have "
                                  f"{gt.shape[1]}: make model.head.kernel_num and model.targets.kernel_num agree")
            text, text_gt = pred[:, 0], gt[:, 0]
            selected = ohem_mask(text.detach(), text_gt, mask, self.negative_ratio)
            losses = {"text": dice_loss(text, text_gt, selected).mean()}
            inside = ((text.detach() > 0.5) & (mask > 0.5)).float()[:, None].expand_as(pred[:, 1:])
            # one dice per (image, kernel)
            losses["kernels"] = dice_loss(pred[:, 1:].flatten(0, 1), gt[:, 1:].flatten(0, 1),
                                          inside.flatten(0, 1)).mean()
            losses["loss"] = self.text_weight * losses["text"] + self.kernel_weight * losses["kernels"]
        return losses
