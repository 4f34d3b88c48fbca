"""ICDAR 2015 hmean-IoU: hand-computed cases on axis-aligned boxes, and a literal re-implementation of the official
script's loops compared with the vectorised one on random images."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
import torch

from ocrforge.tasks.det.metric import DetectionMetric, ImageCounts, evaluate_image, hmean_from_counts


def box(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Clockwise (in image coordinates) axis-aligned quad, like an ICDAR 2015 line."""
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float32)


def square(x: float, y: float = 0, size: float = 10) -> np.ndarray:
    return box(x, y, x + size, y + size)


def counts(result: ImageCounts) -> tuple[int, int, int]:
    return result.matched, result.num_gt, result.num_pred


# ------------------------------------------------------------------------------------------------ matching rules
def test_iou_just_above_half_matches_and_below_does_not():
    # 10x10 squares shifted by 3: inter 70, union 130, IoU 0.538; shifted by 4: 60 / 140 = 0.43.
    assert counts(evaluate_image([square(0)], [False], [square(3)])) == (1, 1, 1)
    assert counts(evaluate_image([square(0)], [False], [square(4)])) == (0, 1, 1)


def test_iou_exactly_half_does_not_match():
    # the prediction is the left half of the GT: inter 50, union 100.
    assert counts(evaluate_image([square(0)], [False], [box(0, 0, 5, 10)])) == (0, 1, 1)
    # the prediction contains the GT and is twice as large: inter 100, union 200.
    assert counts(evaluate_image([square(0)], [False], [box(0, 0, 20, 10)])) == (0, 1, 1)
    assert evaluate_image([square(0)], [False], [box(0, 0, 5, 10)], iou_threshold=0.49).matched == 1


def test_one_to_one_matching():
    two_over_one = evaluate_image([square(0)], [False], [square(1), square(0)])
    assert counts(two_over_one) == (1, 1, 2)
    assert two_over_one.pairs == [(0, 0)]  # the first prediction in order wins, not the better one
    # one wide prediction over two adjacent GTs: IoU 100/200 each, so no match at all; a prediction covering
    # 0..12 overlaps the first GT at 100/120 and can match only that one.
    assert counts(evaluate_image([square(0), square(10)], [False, False], [box(0, 0, 20, 10)])) == (0, 2, 1)
    assert evaluate_image([square(0), square(10)], [False, False], [box(0, 0, 12, 10)]).pairs == [(0, 0)]


def test_greedy_order_of_the_official_script():
    # GT0 = [0,10], GT1 = [2,12]; pred0 = [1,11] (IoU 0.82 with both), pred1 = [-2,8] (IoU 0.67 with GT0, 0.43
    # with GT1). GT0 takes pred0 first and GT1 is left without a match, although 2 matches exist (GT0-pred1,
    # GT1-pred0): the official script is first come, first matched, not a maximum matching.
    gts, flags = [square(0), square(2)], [False, False]
    result = evaluate_image(gts, flags, [square(1), square(-2)])
    assert counts(result) == (1, 2, 2)
    assert result.pairs == [(0, 0)]
    swapped = evaluate_image(gts, flags, [square(-2), square(1)])
    assert sorted(swapped.pairs) == [(0, 0), (1, 1)]


# --------------------------------------------------------------------------------------------------- don't care
def test_prediction_mostly_inside_dont_care_is_ignored():
    result = evaluate_image([square(0)], [True], [square(4), square(6), square(5)])
    # 60 % inside: ignored; 40 % inside: a false positive; exactly 50 % inside: counted (the test is "> 0.5").
    assert result.pred_ignored == [0]
    assert counts(result) == (0, 0, 2)


def test_dont_care_overlaps_are_tested_one_gt_at_a_time():
    # the prediction lies 40 % in each of two don't-care boxes (80 % in total): the official script tests each
    # don't-care GT on its own, so it stays a (false positive) prediction.
    result = evaluate_image([box(0, 0, 4, 10), box(6, 0, 10, 10)], [True, True], [square(0)])
    assert counts(result) == (0, 0, 1)


def test_dont_care_gt_is_neither_counted_nor_matched():
    result = evaluate_image([square(0), square(20)], [True, False], [square(20), square(40)])
    assert counts(result) == (1, 1, 2)
    # a prediction that would match a care GT but sits mostly inside a don't-care GT is dropped before matching.
    result = evaluate_image([square(0), square(0)], [False, True], [square(0)])
    assert counts(result) == (0, 1, 0) and result.pred_ignored == [0]


# ---------------------------------------------------------------------------------------------- edge cases
def test_empty_images():
    assert counts(evaluate_image([], [], [])) == (0, 0, 0)
    assert counts(evaluate_image([square(0)], [False], [])) == (0, 1, 0)
    assert counts(evaluate_image([], [], [square(0)])) == (0, 0, 1)
    assert counts(evaluate_image([square(0)], [True], [])) == (0, 0, 0)


def test_degenerate_and_invalid_polygons_do_not_crash():
    line = np.array([[0, 0], [5, 0], [10, 0], [5, 0]], np.float32)
    bad = [line, np.full((4, 2), np.nan, np.float32), np.zeros((2, 2), np.float32), np.zeros((0, 2), np.float32)]
    result = evaluate_image([square(0), *bad], [False] * 5, [square(0), *bad])
    # degenerate GT still count (and can never match); degenerate predictions are false positives.
    assert counts(result) == (1, 5, 5)
    assert result.issues == {"gt_degenerate": 4, "pred_degenerate": 4}
    # a zero-area prediction on a don't-care region is not don't-care: the official area ratio is 0 for it.
    assert counts(evaluate_image([square(0)], [True], [line])) == (0, 0, 1)


def test_self_intersecting_prediction_keeps_both_lobes():
    # bow-tie over the GT square: two triangles of area 25 each (make_valid), IoU 50 / 100.
    bowtie = np.array([[0, 0], [10, 10], [10, 0], [0, 10]], np.float32)
    result = evaluate_image([square(0)], [False], [bowtie], iou_threshold=0.49)
    assert counts(result) == (1, 1, 1)
    assert result.issues == {"pred_repaired": 1}


def test_counter_clockwise_polygons_are_accepted():
    assert evaluate_image([square(0)[::-1]], [False], [square(3)]).matched == 1


def test_mismatched_ignore_flags_raise():
    with pytest.raises(ValueError):
        evaluate_image([square(0)], [], [])


# ---------------------------------------------------------------------------------------------- aggregation
def test_empty_denominators_follow_the_official_script():
    assert hmean_from_counts(0, 0, 0) == {"precision": 0.0, "recall": 0.0, "hmean": 0.0}
    assert hmean_from_counts(0, 0, 3) == {"precision": 0.0, "recall": 0.0, "hmean": 0.0}
    assert hmean_from_counts(0, 4, 0) == {"precision": 0.0, "recall": 0.0, "hmean": 0.0}
    assert ImageCounts(num_gt=0, num_pred=0, matched=0).metrics() == {"precision": 1.0, "recall": 1.0, "hmean": 1.0}
    assert ImageCounts(num_gt=0, num_pred=2, matched=0).metrics() == {"precision": 0.0, "recall": 1.0, "hmean": 0.0}


def test_global_scores_come_from_summed_counts():
    # image A: one GT found exactly (per-image hmean 1); image B: three GT, one wrong prediction (hmean 0).
    image_a = evaluate_image([square(0)], [False], [square(0)])
    image_b = evaluate_image([square(0), square(20), square(40)], [False] * 3, [square(70)])
    assert image_a.metrics()["hmean"] == 1.0 and image_b.metrics()["hmean"] == 0.0  # their mean would be 0.5
    total = hmean_from_counts(image_a.matched + image_b.matched, image_a.num_gt + image_b.num_gt,
                              image_a.num_pred + image_b.num_pred)
    # matched 1, GT 4, predictions 2: P = 1/2, R = 1/4, hmean = 2 * 1/8 / (3/4) = 1/3.
    assert total == pytest.approx({"precision": 0.5, "recall": 0.25, "hmean": 1 / 3})


# ------------------------------------------------------------------------------------------------ torchmetrics
BATCHES = [
    {"gt_polygons": [[square(0)], [square(0), square(20), square(40)]], "gt_ignore": [[False], [False] * 3],
     "pred": [[square(0)], [square(70)]]},
    {"gt_polygons": [[square(0), square(20)], []], "gt_ignore": [[False, True], []],
     "pred": [[square(3), square(20)], [square(0)]]},
]


def fake_predict_polygons(outputs: dict, batch: dict) -> list[list[np.ndarray]]:
    return outputs["polygons"]


def updated_metric(batches: list[dict]) -> DetectionMetric:
    metric = DetectionMetric(fake_predict_polygons)
    for batch in batches:
        metric.update({"polygons": batch["pred"]}, batch)
    return metric


def test_detection_metric_over_two_batches():
    metric = updated_metric(BATCHES)
    # batch 1: matched 1, GT 4, predictions 2; batch 2: matched 1 (IoU 0.538), GT 1, predictions 2 (one ignored),
    # then an image without GT and one false positive.
    assert (int(metric.matched), int(metric.num_gt), int(metric.num_pred), int(metric.num_images)) == (2, 5, 4, 4)
    scores = metric.compute()
    expected = hmean_from_counts(2, 5, 4)
    assert set(scores) == {"precision", "recall", "hmean"}
    for name, value in expected.items():
        assert isinstance(scores[name], torch.Tensor)
        assert scores[name].item() == pytest.approx(value)
    assert [counts(c) for c in metric.last_image_counts] == [(1, 1, 1), (0, 0, 1)]
    assert metric.last_image_counts[0].pred_ignored == [1]


def test_an_unloadable_image_counts_its_words_as_missed():
    recall = updated_metric(BATCHES[:1]).compute()["recall"].item()
    metric = updated_metric(BATCHES[:1])
    metric.count_unevaluated([{"index": 9, "skipped": "unreadable_image", "num_gt": 4}])
    assert metric.compute()["recall"].item() == pytest.approx(recall * 4 / 8)
    assert int(metric.num_images) == 3


def test_states_reduce_like_ddp():
    everything = updated_metric(BATCHES)
    first, second = updated_metric(BATCHES[:1]), updated_metric(BATCHES[1:])
    summed = {name: getattr(first, name) + getattr(second, name) for name in ("matched", "num_gt", "num_pred")}
    first.merge_state(second)  # the same sum reduction torchmetrics applies across processes
    for name, value in everything.compute().items():
        assert first.compute()[name].item() == pytest.approx(value.item())
    assert {name: int(getattr(everything, name)) for name in summed} == {k: int(v) for k, v in summed.items()}
    assert int(first.num_images) == 4


# ------------------------------------------------------------------------ literal official script vs vectorised
def reference_polygon(points: np.ndarray) -> shapely.Polygon:
    polygon = shapely.Polygon(points)
    return polygon if polygon.is_valid else shapely.make_valid(polygon, method="structure", keep_collapsed=False)


def reference_evaluate(gt_points, gt_dont_care, det_points, iou_constraint=0.5, area_precision_constraint=0.5):
    """The loops of the official ``evaluate_method`` for one image, transcribed with shapely in place of Polygon."""
    gt_pols = [reference_polygon(p) for p in gt_points]
    det_pols = [reference_polygon(p) for p in det_points]
    gt_dont_care_nums = [n for n, flag in enumerate(gt_dont_care) if flag]
    det_dont_care_nums = []
    for n, det in enumerate(det_pols):
        for g in gt_dont_care_nums:
            intersected = gt_pols[g].intersection(det).area
            precision = 0 if det.area == 0 else intersected / det.area
            if precision > area_precision_constraint:
                det_dont_care_nums.append(n)
                break
    matched = 0
    gt_taken, det_taken = [False] * len(gt_pols), [False] * len(det_pols)
    for g, gt in enumerate(gt_pols):
        for d, det in enumerate(det_pols):
            if gt_taken[g] or det_taken[d] or g in gt_dont_care_nums or d in det_dont_care_nums:
                continue
            inter = det.intersection(gt).area
            union = det.area + gt.area - inter
            iou = inter / union if union > 0 else 0
            if iou > iou_constraint:
                gt_taken[g] = det_taken[d] = True
                matched += 1
    return matched, len(gt_pols) - len(gt_dont_care_nums), len(det_pols) - len(det_dont_care_nums)


def random_image(rng: np.random.Generator) -> tuple[list[np.ndarray], list[bool], list[np.ndarray]]:
    """Integer quads on a small canvas (ICDAR-like ties and crowding): GT rectangles, jittered copies of them as
    predictions, plus arbitrary (possibly self-intersecting or collinear) quads on both sides."""
    gts = []
    for _ in range(rng.integers(0, 6)):
        x, y = rng.integers(0, 30, size=2)
        w, h = rng.integers(2, 15, size=2)
        gts.append(box(x, y, x + w, y + h))
    gts += [rng.integers(0, 40, size=(4, 2)).astype(np.float32) for _ in range(rng.integers(0, 2))]
    preds = [g + rng.integers(-3, 4, size=(4, 2)) for g in gts if rng.random() < 0.8]
    preds += [rng.integers(0, 40, size=(4, 2)).astype(np.float32) for _ in range(rng.integers(0, 3))]
    preds = [preds[i] for i in rng.permutation(len(preds))]
    return gts, [bool(rng.random() < 0.25) for _ in gts], preds


def test_matches_literal_official_loops_on_random_images():
    rng = np.random.default_rng(2015)
    for _ in range(200):
        gts, dont_care, preds = random_image(rng)
        for thresholds in ((0.5, 0.5), (0.3, 0.7)):
            result = evaluate_image(gts, dont_care, preds, *thresholds)
            assert counts(result) == reference_evaluate(gts, dont_care, preds, *thresholds)
