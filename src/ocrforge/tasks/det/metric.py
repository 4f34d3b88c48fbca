"""Text detection hmean-IoU under the ICDAR 2015 protocol (Robust Reading Competition, challenge 4, task 4.1).

Semantics follow the competition's official ``script.py`` (``evaluate_method``), per image:

1. **Don't-care predictions.** A prediction is don't-care when, for *some single* don't-care GT, the intersection
   area divided by the prediction's own area is ``> dont_care_area_threshold`` (each don't-care GT is tested on its
   own, the loop stops at the first hit; overlaps with several don't-care GTs are not summed). A zero-area prediction
   is never don't-care (the official script sets that ratio to 0).
2. **Matching.** ``IoU = inter / (area_gt + area_pred - inter)`` (0 when both areas are 0). Visiting GT in order and,
   for each, predictions in order, a pair matches when neither is matched yet, neither is don't-care and
   ``IoU > iou_threshold`` (strictly). First come, first matched: not a maximum matching.
3. **Counting.** The image contributes ``matched``, care GT and care predictions to global sums; the dataset's
   precision = Σmatched / Σcare predictions and recall = Σmatched / Σcare GT, each 0 when its denominator is 0, and
   hmean = 2PR / (P + R) (0 when P + R = 0). Never a mean of per-image scores.

Geometry conventions where the official script has none (it only reads clockwise integer quads):
polygons may have any N >= 3 points and float coordinates, used as given (the official submission format is
integers: pass integer-valued polygons to reproduce its numbers bit for bit); any orientation is accepted; an
invalid (self-intersecting) polygon is repaired with ``shapely.make_valid(method="structure")``, which keeps every
lobe and drops collapsed lines; a polygon with fewer than 3 points or a non-finite coordinate is empty. An empty or
zero-area polygon still counts (a care GT that can never be matched, a prediction that is a false positive) exactly
as a zero-area box does in the official script. Problems are counted per image in ``ImageCounts.issues``.

Nothing here sweeps thresholds: score and box thresholds are post-processing config values chosen on validation data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
import torch
from torchmetrics import Metric


@dataclass
class ImageCounts:
    """One image's result: care GT, care predictions, matches, the matched (gt index, pred index) pairs, the
    indices of don't-care predictions, and polygon problems by reason (``gt_degenerate``, ``pred_repaired``, ...)."""

    num_gt: int
    num_pred: int
    matched: int
    pairs: list[tuple[int, int]] = field(default_factory=list)
    pred_ignored: list[int] = field(default_factory=list)
    issues: Counter[str] = field(default_factory=Counter)

    def metrics(self) -> dict[str, float]:
        """Per-image P/R/hmean with the official per-sample conventions: an image without care GT has recall 1 and
        precision 1 if it has no care predictions either, else 0. (The global numbers use ``hmean_from_counts``.)"""
        if self.num_gt == 0:
            recall, precision = 1.0, float(self.num_pred == 0)
        else:
            recall = self.matched / self.num_gt
            precision = self.matched / self.num_pred if self.num_pred else 0.0
        return {"precision": precision, "recall": recall, "hmean": _harmonic_mean(precision, recall)}


def _harmonic_mean(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def hmean_from_counts(matched: int, num_gt: int, num_pred: int) -> dict[str, float]:
    """Dataset precision/recall/hmean from summed counts (official global conventions: 0 for an empty denominator)."""
    precision = matched / num_pred if num_pred else 0.0
    recall = matched / num_gt if num_gt else 0.0
    return {"precision": precision, "recall": recall, "hmean": _harmonic_mean(precision, recall)}


def _to_geometry(points: np.ndarray, role: str, issues: Counter[str]) -> shapely.Geometry:
    """A valid polygonal shapely geometry (possibly empty) for one polygon; problems are counted in ``issues``."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3 or not np.isfinite(points).all():
        geometry = shapely.Polygon()
    else:
        geometry = shapely.Polygon(points)
        if not geometry.is_valid:
            # "structure" returns polygons only (lines from collapsed parts are dropped), so overlays never see a
            # mixed GeometryCollection; a bow-tie keeps both of its triangles.
            geometry = shapely.make_valid(geometry, method="structure", keep_collapsed=False)
            if geometry.area > 0:
                issues[f"{role}_repaired"] += 1
    if geometry.area == 0:
        issues[f"{role}_degenerate"] += 1
    return geometry


def evaluate_image(
    gt_polygons: Sequence[np.ndarray],
    gt_ignore: Sequence[bool],
    pred_polygons: Sequence[np.ndarray],
    iou_threshold: float = 0.5,
    dont_care_area_threshold: float = 0.5,
) -> ImageCounts:
    """Match one image's predictions to its GT with the ICDAR 2015 protocol (see the module docstring)."""
    if len(gt_polygons) != len(gt_ignore):
        raise ValueError(f"{len(gt_polygons)} GT polygons but {len(gt_ignore)} ignore flags")
    issues: Counter[str] = Counter()
    gt = np.array([_to_geometry(p, "gt", issues) for p in gt_polygons], dtype=object)
    pred = np.array([_to_geometry(p, "pred", issues) for p in pred_polygons], dtype=object)
    gt_dont_care = np.asarray(gt_ignore, dtype=bool)

    inter = shapely.area(shapely.intersection(gt[:, None], pred[None, :]))  # (num GT, num predictions)
    gt_area, pred_area = shapely.area(gt), shapely.area(pred)

    # Fraction of each prediction inside each don't-care GT, tested one GT at a time; zero-area predictions get 0.
    inside = np.divide(inter[gt_dont_care], pred_area, out=np.zeros((int(gt_dont_care.sum()), len(pred))),
                       where=pred_area > 0)
    pred_dont_care = (inside > dont_care_area_threshold).any(axis=0)

    union = gt_area[:, None] + pred_area[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    candidate = (iou > iou_threshold) & ~gt_dont_care[:, None] & ~pred_dont_care[None, :]

    # np.argwhere lists pairs row-major (GT order, then prediction order): the official greedy visiting order.
    gt_matched, pred_matched = np.zeros(len(gt), bool), np.zeros(len(pred), bool)
    pairs = []
    for g, p in np.argwhere(candidate):
        if not gt_matched[g] and not pred_matched[p]:
            gt_matched[g] = pred_matched[p] = True
            pairs.append((int(g), int(p)))

    return ImageCounts(
        num_gt=int((~gt_dont_care).sum()),
        num_pred=int((~pred_dont_care).sum()),
        matched=len(pairs),
        pairs=pairs,
        pred_ignored=np.flatnonzero(pred_dont_care).tolist(),
        issues=issues,
    )


class DetectionMetric(Metric):
    """ICDAR 2015 hmean-IoU as summed counts, so DDP reduction (a sum per state) is exact.

    ``predict_polygons(outputs, batch)`` returns the predicted polygons of each image in original image coordinates;
    ground truth comes from ``batch["gt_polygons"]`` (per image, a list of (N, 2) arrays in original coordinates) and
    ``batch["gt_ignore"]`` (per image, a list of don't-care flags). ``last_image_counts`` holds the per-image results
    of the most recent ``update``, for callers that write per-image reports.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(
        self,
        predict_polygons: Callable[[dict, dict], list[list[np.ndarray]]],
        iou_threshold: float = 0.5,
        dont_care_area_threshold: float = 0.5,
    ) -> None:
        super().__init__()
        self.predict_polygons = predict_polygons
        self.iou_threshold = iou_threshold
        self.dont_care_area_threshold = dont_care_area_threshold
        for name in ("matched", "num_gt", "num_pred", "num_images"):
            self.add_state(name, torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.last_image_counts: list[ImageCounts] = []

    def update(self, outputs: dict, batch: dict) -> None:
        predictions = self.predict_polygons(outputs, batch)
        self.last_image_counts = [
            evaluate_image(gt, ignore, pred, self.iou_threshold, self.dont_care_area_threshold)
            for gt, ignore, pred in zip(batch["gt_polygons"], batch["gt_ignore"], predictions, strict=True)
        ]
        self.matched += sum(c.matched for c in self.last_image_counts)
        self.num_gt += sum(c.num_gt for c in self.last_image_counts)
        self.num_pred += sum(c.num_pred for c in self.last_image_counts)
        self.num_images += len(self.last_image_counts)

    def count_unevaluated(self, items: Sequence[Mapping[str, Any]]) -> None:
        """Images that could not be loaded: their care regions count as missed, so recall is not inflated."""
        self.num_gt += sum(int(item.get("num_gt", 0)) for item in items)
        self.num_images += len(items)

    def compute(self) -> dict[str, torch.Tensor]:
        scores = hmean_from_counts(int(self.matched), int(self.num_gt), int(self.num_pred))
        return {name: torch.tensor(value, device=self.matched.device) for name, value in scores.items()}
