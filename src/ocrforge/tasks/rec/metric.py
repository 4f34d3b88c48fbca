"""Recognition metrics as sums (exact across processes): word accuracy three ways, 1-NED, character P/R."""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from rapidfuzz.distance import Levenshtein
from torchmetrics import Metric

_SYMBOLS = set(string.punctuation) | {" "}
# Normalised edit distances are fractions, and a float sum of them depends on the order of addition (one process's,
# or per-process sums added up): they are summed as integer multiples of 2**-32, the same whatever the sharding.
_NED_UNIT = 2 ** 32


def strip_symbols(text: str) -> str:
    """Lower-case, drop punctuation, symbols and spaces (the 'ignore case and symbols' protocol)."""
    return "".join(c for c in text.lower() if c not in _SYMBOLS and not unicodedata.category(c).startswith(("P", "S")))


def char_matches(pred: str, gt: str) -> int:
    """Characters of ``gt`` reproduced in ``pred`` under the minimal edit script (gt length minus the
    substitutions and deletions needed)."""
    ops = Levenshtein.editops(gt, pred)
    return len(gt) - sum(1 for op in ops if op.tag in ("replace", "delete"))


class RecognitionMetric(Metric):
    """``decode(outputs) -> list[str]`` turns model outputs into text; ground truth is ``batch['text']``."""

    full_state_update = False

    def __init__(self, decode: Callable[[dict], list[str]]) -> None:
        super().__init__()
        self.decode = decode
        for name in ("samples", "exact", "ignore_case", "ignore_case_symbols", "char_hits", "pred_chars",
                     "gt_chars", "unevaluated"):
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("ned_units", torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, outputs: dict[str, torch.Tensor], batch: dict) -> None:
        for pred, gt in zip(self.decode(outputs), batch["text"], strict=True):
            self.samples += 1
            self.exact += pred == gt
            self.ignore_case += pred.lower() == gt.lower()
            self.ignore_case_symbols += strip_symbols(pred) == strip_symbols(gt)
            self.ned_units += round(Levenshtein.normalized_distance(pred, gt) * _NED_UNIT)
            self.char_hits += char_matches(pred, gt)
            self.pred_chars += len(pred)
            self.gt_chars += len(gt)

    def count_unevaluated(self, items: Sequence[Mapping[str, Any]]) -> None:
        """Samples that could not be loaded (unreadable image, label outside the dictionary ...) count as wrong, at
        edit distance 1 with their characters unmatched: leaving them out would raise the score by dropping the
        hard cases. ``gt`` is each sample's label where known."""
        self.samples += len(items)
        self.unevaluated += len(items)
        self.ned_units += len(items) * _NED_UNIT
        self.gt_chars += sum(len(item.get("gt") or "") for item in items)

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.samples.clamp(min=1)
        return {
            "acc": self.exact / n,
            "acc_ignore_case": self.ignore_case / n,
            "acc_ignore_case_symbols": self.ignore_case_symbols / n,
            "norm_edit_dis": 1 - self.ned_units.double() / _NED_UNIT / n,
            "char_precision": self.char_hits / self.pred_chars.clamp(min=1),
            "char_recall": self.char_hits / self.gt_chars.clamp(min=1),
            "num_samples": self.samples,
            "num_unevaluated": self.unevaluated,
        }
