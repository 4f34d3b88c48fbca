"""Classification metrics from one confusion matrix (+ top-k hits): sums reduce exactly across processes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torchmetrics import Metric


class ClassificationMetric(Metric):
    full_state_update = False

    def __init__(self, num_classes: int, top_k: int = 5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.top_k = top_k if num_classes > top_k else 0  # top-5 only makes sense with more than 5 classes
        self.add_state("confusion", torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("top_k_hits", torch.tensor(0), dist_reduce_fx="sum")
        # Samples that could not be loaded, by true class (and those whose class is unknown): counted as wrong.
        self.add_state("unevaluated", torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("unevaluated_unlabelled", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, outputs: dict[str, torch.Tensor], batch: dict) -> None:
        logits, target = outputs["logits"].detach(), batch["label"]
        pred = logits.argmax(dim=1)
        idx = target * self.num_classes + pred
        self.confusion += torch.bincount(idx, minlength=self.num_classes ** 2).view_as(self.confusion)
        if self.top_k:
            top = logits.topk(self.top_k, dim=1).indices
            self.top_k_hits += (top == target[:, None]).any(dim=1).sum()

    def count_unevaluated(self, items: Sequence[Mapping[str, Any]]) -> None:
        """Samples that could not be loaded count as wrong (in their class's recall where the class index
        ``gt_id`` is known): leaving them out would raise the score by dropping the hard cases."""
        for item in items:
            label = item.get("gt_id")
            if label is None:
                self.unevaluated_unlabelled += 1
            else:
                self.unevaluated[int(label)] += 1

    def compute(self) -> dict[str, torch.Tensor]:
        cm = self.confusion.double()
        missed = self.unevaluated.double()
        unevaluated = missed.sum() + self.unevaluated_unlabelled
        total = (cm.sum() + unevaluated).clamp(min=1)
        tp = cm.diag()
        support, predicted = cm.sum(1) + missed, cm.sum(0)
        precision = tp / predicted.clamp(min=1)
        recall = tp / support.clamp(min=1)
        f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall), torch.zeros_like(tp))
        present = support > 0  # macro averages over classes that occur, as sklearn does with labels=present
        out = {
            "acc": tp.sum() / total,
            "macro_f1": f1[present].mean() if present.any() else f1.new_tensor(0.0),
            "num_samples": cm.sum() + unevaluated,
            "num_unevaluated": unevaluated,
        }
        if self.top_k:
            out[f"top{self.top_k}"] = self.top_k_hits.double() / total
        for i in range(self.num_classes):
            out[f"class_acc/{i}"] = recall[i]
        return out
