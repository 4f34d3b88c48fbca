"""DB targets and DB post-processing on hand-made polygons, checked against analytic values and shapely."""

from __future__ import annotations

from collections import Counter

import cv2
import numpy as np
import pytest
import shapely

from ocrforge.tasks.det.dbnet.postprocess import DBPostProcess
from ocrforge.tasks.det.dbnet.targets import DBTargets, make_db_targets

R = 0.4  # shrink ratio
T_MIN, T_MAX = 0.3, 0.7


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.float32([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


def _offset(polygon: np.ndarray) -> float:
    """D = A(1 - r²)/L, from shapely (independent of the code under test)."""
    shape = shapely.Polygon(polygon)
    return shape.area * (1 - R**2) / shape.length


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = shapely.make_valid(shapely.Polygon(a)), shapely.make_valid(shapely.Polygon(b))
    return a.intersection(b).area / a.union(b).area


def _inverse_unclip_ratio(polygon: np.ndarray) -> float:
    """The unclip ratio that grows the shrunk polygon back by D: D = A' * ratio / L' for the shrunk A', L'."""
    distance = _offset(polygon)
    shrunk = shapely.Polygon(polygon).buffer(-distance)
    return distance * shrunk.length / shrunk.area


def _rotated(cx: float, cy: float, w: float, h: float, angle: float) -> np.ndarray:
    return cv2.boxPoints(((cx, cy), (w, h), angle)).astype(np.float32)


# ----------------------------------------------------------------------------------------------------- targets
def test_rectangle_shrinks_by_the_analytic_offset():
    polygon = _rect(20, 20, 60, 40)  # 40 x 20
    distance = 800 * (1 - R**2) / 120
    shrink = make_db_targets([polygon], [False], 60, 80, shrink_ratio=R)["shrink_map"]
    rows, cols = np.nonzero(shrink)
    width, height = 40 - 2 * distance, 20 - 2 * distance
    assert abs(np.ptp(cols) + 1 - width) <= 1.5 and abs(np.ptp(rows) + 1 - height) <= 1.5
    assert abs(shrink.sum() - width * height) <= width + height + 1  # a one-pixel ring of rasterisation
    assert set(np.unique(shrink)) == {0.0, 1.0}


def test_threshold_map_and_mask_follow_the_distance_to_the_edges():
    polygon = _rect(20, 20, 60, 40)
    distance = _offset(polygon)
    out = make_db_targets([polygon], [False], 60, 80, shrink_ratio=R, thresh_min=T_MIN, thresh_max=T_MAX)
    threshold = out["threshold_map"]
    assert threshold.dtype == np.float32 and threshold.shape == (60, 80)
    assert threshold.min() >= T_MIN - 1e-6 and threshold.max() <= T_MAX + 1e-6
    assert threshold[30, 20] == pytest.approx(T_MAX) and threshold[20, 45] == pytest.approx(T_MAX)  # on edges
    assert threshold[30, 17] == pytest.approx(T_MIN + (T_MAX - T_MIN) * (1 - 3 / distance), abs=1e-5)
    diagonal = np.hypot(3, 3) / distance  # off the corner (20, 20): the nearest point is the corner itself
    assert threshold[17, 17] == pytest.approx(T_MIN + (T_MAX - T_MIN) * (1 - diagonal), abs=1e-5)
    assert threshold[30, 40] == pytest.approx(T_MIN)  # centre: 10 px from every edge, farther than D
    assert threshold[2, 2] == pytest.approx(T_MIN)
    # the mask is the polygon dilated by D: 1 within D - 1 of it, 0 beyond D + 1 (distances from shapely)
    ys, xs = np.mgrid[0:60, 0:80]
    dist = shapely.distance(shapely.Polygon(polygon), shapely.points(xs.ravel(), ys.ravel())).reshape(60, 80)
    mask = out["threshold_mask"]
    assert (mask[dist <= distance - 1] == 1).all() and (mask[dist >= distance + 1] == 0).all()


def test_threshold_map_matches_a_shapely_reference():
    rng = np.random.default_rng(1)
    height, width = 90, 120
    polygons = [_rotated(*rng.uniform((0, 0, 20, 10, -90), (width, height, 80, 30, 90))) for _ in range(4)]
    polygons.append(np.float32([[20, 20], [80, 20], [80, 70], [60, 70], [60, 40], [20, 40]]))  # non-convex
    threshold = make_db_targets(polygons, [False] * 5, height, width, min_text_size=0)["threshold_map"]
    ys, xs = np.mgrid[0:height, 0:width]
    pixels = shapely.points(xs.ravel(), ys.ravel())
    closeness = np.zeros(height * width)
    for polygon in polygons:
        shape = shapely.Polygon(polygon)
        distance = shape.area * (1 - R**2) / shape.length
        closeness = np.maximum(closeness, 1 - np.minimum(shapely.distance(shape.exterior, pixels) / distance, 1))
    expected = T_MIN + (T_MAX - T_MIN) * closeness.reshape(height, width)
    np.testing.assert_allclose(threshold, expected, atol=1e-5)


def test_dont_care_and_too_small_are_masked_and_counted():
    dont_care = _rect(5, 5, 45, 25)
    too_small = _rect(60, 10, 100, 14)  # 4 px high
    thin_diagonal = _rotated(60, 60, 60, 5, 45)  # its bounding box is large, its min-area rect is 5 px thin
    text = _rect(10, 40, 50, 70)
    counts = Counter()
    out = make_db_targets([dont_care, too_small, thin_diagonal, text], [True, False, False, False], 80, 120,
                          counts=counts)
    mask, shrink = out["shrink_mask"], out["shrink_map"]
    assert counts == Counter({"dont_care": 1, "too_small": 2})
    assert (mask[5:26, 5:46] == 0).all() and (mask[10:15, 60:101] == 0).all() and mask[60, 60] == 0
    assert shrink[5:26, 5:46].sum() == 0 and shrink[10:15, 60:101].sum() == 0 and shrink[60, 60] == 0
    assert mask[55, 30] == 1 and shrink[55, 30] == 1  # the real text is learnt
    assert out["threshold_mask"][15, 25] == 0  # don't-care gets no threshold target
    assert out["threshold_mask"][12, 80] == 1  # a too-small word's edges are still drawn


def test_degenerate_and_outside_polygons_do_not_crash_and_are_counted():
    collinear = np.float32([[10, 10], [20, 20], [30, 30]])
    with_nan = np.float32([[1, 1], [np.nan, 5], [20, 20], [1, 20]])
    two_points = np.float32([[5, 5], [9, 9]])
    wrong_shape = np.zeros((4, 3), np.float32)
    empty = np.zeros((0, 2), np.float32)
    ragged = [[1, 2], [3]]
    outside = _rect(-50, -50, -10, -30)
    sliver = _rect(10, 40, 30, 40.02)  # 1/50 px high: nothing survives the shrink
    counts = Counter()
    out = make_db_targets([collinear, with_nan, two_points, wrong_shape, empty, ragged, outside, sliver],
                          [False] * 8, 50, 50, min_text_size=0, counts=counts)
    assert counts == Counter({"degenerate_polygon": 6, "outside_image": 1, "shrink_failed": 1})
    assert out["shrink_map"].sum() == 0
    assert out["shrink_mask"][20, 20] == 0 and out["shrink_mask"][40, 20] == 0  # the drawn line, the sliver
    assert all(a.shape == (50, 50) and a.dtype == np.float32 for a in out.values())


def test_polygon_partly_outside_is_drawn_clipped():
    cut = _rect(-20, 20, 40, 40)  # its left third is outside
    sliver = _rect(70, -30, 110, 3)  # only 3 rows visible: too thin to learn from
    counts = Counter()
    out = make_db_targets([cut, sliver], [False, False], 60, 80, counts=counts)
    distance = _offset(cut)
    assert counts == Counter({"too_small": 1})
    assert (out["shrink_map"][27:34, 0] == 1).all()  # the shrink of the whole word reaches the border
    assert out["shrink_map"][30, round(40 - distance) + 1] == 0
    assert out["threshold_map"][30, 40] == pytest.approx(T_MAX)
    assert (out["shrink_mask"][0:4, 71:80] == 0).all()


def test_db_targets_class_binds_parameters():
    targets = DBTargets(shrink_ratio=R, min_text_size=30)
    counts = Counter()
    out = targets([_rect(20, 20, 60, 40)], [False], 60, 80, counts)
    assert counts["too_small"] == 1 and out["shrink_map"].sum() == 0
    with pytest.raises(ValueError):
        DBTargets(thresh_min=0.8, thresh_max=0.2)


# ------------------------------------------------------------------------------------------------ post-process
QUADS = [_rotated(x, y, 80, 24, angle) for x, y, angle in
         [(60, 40, 0), (200, 60, 15), (90, 150, -30), (230, 200, 60), (40, 260, 90), (150, 280, 45)]]


def test_round_trip_recovers_rotated_quads():
    prob = make_db_targets(QUADS, [False] * len(QUADS), 320, 320, shrink_ratio=R)["shrink_map"]
    results = DBPostProcess(unclip_ratio=_inverse_unclip_ratio(QUADS[0]))(prob)
    assert len(results) == len(QUADS)
    for quad in QUADS:
        assert max(_iou(quad, r["points"]) for r in results) > 0.8
    for result in results:
        points = result["points"]
        assert points.shape == (4, 2) and points.dtype == np.float32 and 0.6 <= result["score"] <= 1.0
        assert cv2.contourArea(points, oriented=True) > 0  # clockwise on screen (y down)
        assert np.argmin(points.sum(axis=1)) == 0  # starts at the top-left


def test_round_trip_recovers_a_non_convex_polygon():
    ell = np.float32([[20, 20], [140, 20], [140, 60], [60, 60], [60, 140], [20, 140]])
    prob = make_db_targets([ell], [False], 200, 200, shrink_ratio=R)["shrink_map"]
    ratio = _inverse_unclip_ratio(ell)
    for score_mode in ("fast", "slow"):
        results = DBPostProcess(unclip_ratio=ratio, box_type="poly", score_mode=score_mode)(prob)
        assert len(results) == 1 and _iou(ell, results[0]["points"]) > 0.8


def test_scale_maps_to_original_coordinates_and_clips():
    big = [q * 1.5 for q in QUADS[:2]] + [_rotated(460, 240, 120, 36, 0)]  # the last one crosses the right edge
    prob = make_db_targets([q / 2 for q in big], [False] * 3, 240, 240, shrink_ratio=R)["shrink_map"]
    results = DBPostProcess(unclip_ratio=_inverse_unclip_ratio(big[0]))(prob, scale=(2.0, 2.0))
    assert len(results) == 3
    visible = [shapely.Polygon(q).intersection(shapely.box(0, 0, 479, 479)).exterior.coords for q in big]
    for polygon in visible:
        assert max(_iou(np.asarray(polygon), r["points"]) for r in results) > 0.8
    for result in results:
        assert result["points"].min() >= 0 and result["points"].max() <= 479


def test_box_thresh_filters_a_low_probability_blob():
    prob = np.zeros((100, 100), np.float32)
    prob[10:30, 10:60] = 0.5
    prob[50:70, 10:60] = 0.9
    results = DBPostProcess(box_thresh=0.6)(prob)
    assert len(results) == 1 and results[0]["score"] == pytest.approx(0.9, abs=1e-3)
    assert results[0]["points"][:, 1].mean() == pytest.approx(59.5, abs=1)  # the 0.9 blob's centre row


def test_score_modes_differ_on_a_non_convex_region():
    prob = np.zeros((100, 100), np.float32)
    prob[10:20, 10:90] = 1.0
    prob[10:90, 10:20] = 1.0  # an L: its min-area rectangle is mostly background
    fast = DBPostProcess(score_mode="fast", box_thresh=0.0)(prob)
    slow = DBPostProcess(score_mode="slow", box_thresh=0.0)(prob)
    assert slow[0]["score"] > 0.99 and fast[0]["score"] < 0.5


def test_max_candidates_keeps_the_largest_and_small_blobs_drop():
    prob = np.zeros((100, 200), np.float32)
    for k, width in enumerate([10, 30, 20, 40, 15]):
        prob[10 + 16 * k:20 + 16 * k, 10:10 + width] = 1.0
    prob[95:97, 150:152] = 1.0  # 2 x 2: below min_size
    assert len(DBPostProcess()(prob)) == 5
    results = DBPostProcess(max_candidates=2)(prob)
    widths = sorted(np.ptp(r["points"][:, 0]) for r in results)
    assert len(results) == 2 and widths[0] > 30


def test_empty_map_gives_nothing():
    assert DBPostProcess()(np.zeros((64, 64), np.float32)) == []
    assert DBPostProcess(box_type="poly")(np.full((64, 64), 0.2, np.float32)) == []


def test_nan_probabilities_give_no_nan_scores():
    prob = np.zeros((60, 60), np.float32)
    prob[10:30, 10:50] = 0.9
    prob[20, 20] = np.nan
    prob[40:50, 10:50] = 0.9
    results = DBPostProcess()(prob)
    assert len(results) >= 1 and all(np.isfinite(r["score"]) for r in results)
