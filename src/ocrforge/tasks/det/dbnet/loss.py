"""DB loss: BCE with 3:1 online hard negative mining on the probability map, dice on the approximate binary map,
masked L1 on the threshold map. Computed in fp32 even under autocast (BCE and dice sums are fragile in bf16)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ....registry import DET_LOSSES

EPS = 1e-6


def balanced_bce(prob: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, negative_ratio: float) -> torch.Tensor:
    """BCE over all positives and the hardest ``negative_ratio`` × as many negatives (per batch, as DBNet does)."""
    positive = gt * mask
    negative = (1 - gt) * mask
    prob = prob.clamp(EPS, 1 - EPS)
    if prob.is_cuda:
        loss = bce_keeping_nan(prob, gt)
        return _balanced_bce_on_device(loss * negative, (loss * positive).sum(), torch.count_nonzero(positive),
                                       torch.count_nonzero(negative), negative_ratio)
    loss = F.binary_cross_entropy(prob, gt, reduction="none")  # the CPU path, bit-identical to before
    positive_loss = (loss * positive).sum()
    num_positive = int(positive.sum().item())
    num_negative = min(int(negative.sum().item()), int(num_positive * negative_ratio))
    if num_negative > 0:
        negative_loss = torch.topk((loss * negative).flatten(), num_negative).values.sum()
    else:
        negative_loss = loss.sum() * 0.0
    return (positive_loss + negative_loss) / (num_positive + num_negative + EPS)


def bce_keeping_nan(prob: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Element-wise BCE of probabilities in [EPS, 1 - EPS], written out: F.binary_cross_entropy asserts on a NaN
    input inside its CUDA kernel, which ends the process; this way a NaN reaches the loss, and the step is skipped
    as non-finite."""
    return (gt - 1) * torch.log(1 - prob) - gt * torch.log(prob)


def _balanced_bce_on_device(negative_losses: torch.Tensor, positive_loss: torch.Tensor, num_positive: torch.Tensor,
                            num_negative_pixels: torch.Tensor, negative_ratio: float) -> torch.Tensor:
    """The same mining without reading the counts back to the host (``topk`` needs its k there: two syncs a step):
    all negatives sorted, the first ``num_negative`` summed. The counts are int64 pixel counts (masks are 0/1), exact
    at any batch size."""
    wanted = torch.floor(num_positive.double() * negative_ratio).long()
    num_negative = torch.minimum(num_negative_pixels, wanted)
    ranked = torch.sort(negative_losses.flatten(), descending=True).values
    kept = torch.arange(ranked.numel(), device=ranked.device) < num_negative
    negative_loss = (ranked * kept).sum()
    return (positive_loss + negative_loss) / (num_positive + num_negative + EPS)


def dice_loss(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    intersection = (pred * gt * mask).sum()
    union = (pred * mask).sum() + (gt * mask).sum() + EPS
    return 1 - 2.0 * intersection / union


def masked_l1(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ((pred - gt).abs() * mask).sum() / (mask.sum() + EPS)


@DET_LOSSES.register(aliases=("db",))
class DBLoss(nn.Module):
    """``prob_weight`` × BCE-OHEM(prob) + ``binary_weight`` × dice(binary) + ``thresh_weight`` × L1(thresh).
    Defaults follow DBNet (and MMOCR / PaddleOCR): 5, 1, 10 with 3 negatives per positive."""

    def __init__(self, prob_weight: float = 5.0, binary_weight: float = 1.0, thresh_weight: float = 10.0,
                 negative_ratio: float = 3.0) -> None:
        super().__init__()
        self.prob_weight, self.binary_weight, self.thresh_weight = prob_weight, binary_weight, thresh_weight
        self.negative_ratio = negative_ratio

    def forward(self, outputs: dict[str, torch.Tensor], batch: dict) -> dict[str, torch.Tensor]:
        targets = {k: v.float() for k, v in batch["targets"].items()}  # sent as uint8 / float16 from the workers
        shrink, shrink_mask = targets["shrink_map"], targets["shrink_mask"]
        with torch.autocast(outputs["prob"].device.type, enabled=False):
            prob = outputs["prob"].float()[:, 0]
            losses = {"prob": balanced_bce(prob, shrink, shrink_mask, self.negative_ratio)}
            total = self.prob_weight * losses["prob"]
            if "binary" in outputs:
                losses["binary"] = dice_loss(outputs["binary"].float()[:, 0], shrink, shrink_mask)
                losses["thresh"] = masked_l1(outputs["thresh"].float()[:, 0], targets["threshold_map"],
                                             targets["threshold_mask"])
                total = total + self.binary_weight * losses["binary"] + self.thresh_weight * losses["thresh"]
        losses["loss"] = total
        return losses
