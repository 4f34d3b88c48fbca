"""Detection augmentation: polygons follow the pixels through scale, rotation, crop and resize; crops rarely cut
words; bad polygons are counted, never fatal."""

from __future__ import annotations

import math
from collections import Counter

import cv2
import numpy as np
import pytest

from ocrforge.tasks.det.augment import DetAugment, DetAugmentConfig

COLOURS = [(220, 30, 30), (30, 170, 30), (30, 30, 220), (210, 170, 0), (170, 0, 170), (0, 160, 160)]
NO_COLOUR = {"colour_prob": 0.0}
GEOMETRY_ONLY = {"scale": (1.0, 1.0), "rotation_prob": 0.0, "crop_attempts": 0, "colour_prob": 0.0}


def box(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)


def coloured_quads() -> tuple[np.ndarray, list[np.ndarray]]:
    """A 400x300 white image with six filled quads (two rotated) of distinct colours, well apart."""
    polygons = [box(20, 20, 120, 60), box(160, 30, 260, 80), box(290, 20, 380, 110),
                cv2.boxPoints(((80, 160), (110, 40), 25)).astype(np.float32), box(180, 150, 240, 270),
                cv2.boxPoints(((320, 220), (90, 50), -35)).astype(np.float32)]
    image = np.full((300, 400, 3), 255, np.uint8)
    for polygon, colour in zip(polygons, COLOURS):
        cv2.fillPoly(image, [np.round(polygon * 16).astype(np.int32)], colour, shift=4)
    return image, polygons


def mean_colour_inside(image: np.ndarray, polygon: np.ndarray) -> np.ndarray | None:
    """Mean colour 2 px inside the polygon (edges are blended by interpolation); None if too small to judge."""
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(polygon * 16).astype(np.int32)], 1, shift=4)
    mask = cv2.erode(mask, np.ones((5, 5), np.uint8))
    return image[mask > 0].mean(axis=0) if mask.sum() >= 20 else None


def test_output_shape_dtype_and_config_values():
    image, polygons = coloured_quads()
    out, out_polygons, flags = DetAugment(size=[320, 480])(image, polygons, [False] * 6, np.random.default_rng(0))
    assert out.shape == (320, 480, 3) and out.dtype == np.uint8
    assert len(out_polygons) == len(flags) and all(p.dtype == np.float32 and p.shape[1] == 2 for p in out_polygons)
    with pytest.raises(ValueError, match="scale"):
        DetAugment(scale=(2.0, 1.0))
    with pytest.raises(TypeError):
        DetAugment(rotatoin=5)
    assert DetAugment(DetAugmentConfig(rotation=3), hue=0).cfg.rotation == 3


def test_same_seed_same_result_other_seed_differs():
    image, polygons = coloured_quads()
    augment = DetAugment()
    first, again, other = (augment(image, polygons, [False] * 6, np.random.default_rng(s)) for s in (3, 3, 4))
    assert np.array_equal(first[0], again[0]) and first[2] == again[2]
    assert all(np.array_equal(a, b) for a, b in zip(first[1], again[1]))
    assert not np.array_equal(first[0], other[0])


@pytest.mark.parametrize("zoom", [1, 2])
def test_plain_resize_matches_cv2_resize_and_scales_polygons(zoom):
    # No scale/rotation/crop/colour, output = zoom x input: the single warp must equal cv2.resize (pixel centres at
    # +0.5, no half-pixel shift) and the polygons must scale by exactly ``zoom``.
    image, polygons = coloured_quads()
    ignore = [False, True, False, False, True, False]
    size = (300 * zoom, 400 * zoom)
    out, out_polygons, flags = DetAugment(size=size, **GEOMETRY_ONLY)(image, polygons, ignore,
                                                                      np.random.default_rng(0))
    assert np.abs(out.astype(int) - cv2.resize(image, size[::-1], interpolation=cv2.INTER_LINEAR)).max() <= 1
    assert flags == ignore  # don't-care flags preserved, order kept
    for before, after in zip(polygons, out_polygons):
        np.testing.assert_allclose(after, before * zoom, atol=1e-3)


@pytest.mark.parametrize("seed", range(8))
def test_polygons_follow_the_pixels(seed):
    # Each output polygon must sit on its own colour: a polygon moved by a wrong matrix would cover white or another
    # quad. The don't-care quad must come out flagged ignore wherever it lands.
    image, polygons = coloured_quads()
    dont_care = 5
    out, out_polygons, flags = DetAugment(**NO_COLOUR)(image, polygons, [i == dont_care for i in range(6)],
                                                       np.random.default_rng(seed))
    judged = []
    for polygon, flag in zip(out_polygons, flags):
        mean = mean_colour_inside(out, polygon)
        if mean is None:
            continue
        distances = np.abs(np.array(COLOURS) - mean).max(axis=1)
        assert distances.min() < 25, f"polygon sits on {mean}, not on a quad's colour"
        judged.append(int(distances.argmin()))
        if judged[-1] == dont_care:
            assert flag
    assert len(judged) == len(set(judged)), "two output polygons on the same quad"
    assert judged, "nothing to judge: the crop must keep at least one word"


def test_rotation_moves_centroids_like_a_rotation_about_the_centre():
    image, polygons = coloured_quads()
    height, width = image.shape[:2]
    augment = DetAugment(size=(640, 640), scale=(1, 1), rotation=10, rotation_prob=1, crop_attempts=0, **NO_COLOUR)
    centres = np.array([p.mean(axis=0) for p in polygons])  # vertex means map through any affine map exactly
    angles = []
    for seed in range(5):
        _, out_polygons, _ = augment(image, polygons, [False] * 6, np.random.default_rng(seed))
        moved = np.array([p.mean(axis=0) for p in out_polygons])
        # Least-squares similarity x' = a x - b y + tx, y' = b x + a y + ty.
        rows = [[x, -y, 1, 0] for x, y in centres] + [[y, x, 0, 1] for x, y in centres]
        (a, b, tx, ty), *_ = np.linalg.lstsq(np.array(rows), np.concatenate([moved[:, 0], moved[:, 1]]), rcond=None)
        predicted = centres @ np.array([[a, b], [-b, a]]) + (tx, ty)
        assert np.abs(predicted - moved).max() < 1.0  # a pure rotation + zoom (no shear, no per-word drift)
        angle = math.atan2(b, a)
        assert abs(math.degrees(angle)) <= 10 + 1e-6
        # The canvas grows to hold the whole rotated image, then fits 640x640 keeping the aspect ratio ...
        canvas_w = width * abs(math.cos(angle)) + height * abs(math.sin(angle))
        canvas_h = width * abs(math.sin(angle)) + height * abs(math.cos(angle))
        zoom = min(640 / canvas_w, 640 / canvas_h)
        assert math.hypot(a, b) == pytest.approx(zoom, rel=1e-2)
        # ... and the image centre lands at the centre of the resized canvas.
        centre = np.array([a * width / 2 - b * height / 2 + tx, b * width / 2 + a * height / 2 + ty])
        np.testing.assert_allclose(centre, [zoom * canvas_w / 2, zoom * canvas_h / 2], atol=2.0)
        angles.append(angle)
    assert max(abs(math.degrees(a)) for a in angles) > 1  # it did rotate


def test_text_aware_crop_rarely_cuts_words():
    # 30 words 40+ px apart. Crop edges are only placed in text-free rows/columns, so a word can be cut only by the
    # whole-image fallback when a word overhangs the image (none here): expected 0; 2% leaves room for rounding.
    # (Edges placed uniformly at random instead cut ~15% of these words.)
    image = np.full((480, 640, 3), 255, np.uint8)
    polygons = [box(20 + 125 * col, 20 + 78 * row, 100 + 125 * col, 44 + 78 * row)
                for row in range(6) for col in range(5)]
    for polygon in polygons:
        cv2.fillPoly(image, [polygon.astype(np.int32)], (0, 0, 0))
    augment, counts, cropped = DetAugment(**NO_COLOUR), Counter(), 0
    for seed in range(50):
        _, out_polygons, flags = augment(image, polygons, [False] * 30, np.random.default_rng(seed), counts)
        assert not all(flags) and len(out_polygons) >= 1  # the crop keeps at least one word
        cropped += len(out_polygons) < 30
    assert counts["cut_by_crop"] / (50 * 30) <= 0.02
    assert cropped >= 25  # it really crops (else "never cuts" would be trivial)


def test_cut_polygons_are_clipped_and_ignored_small_overhangs_are_not():
    image = np.full((100, 200, 3), 255, np.uint8)
    polygons = [box(150, 20, 250, 60), box(10, 10, 50, 40), box(170, 70, 201, 90), box(-20, 70, 30, 95)]
    ignore = [False, False, False, True]
    counts = Counter()
    _, out_polygons, flags = DetAugment(size=(100, 200), **GEOMETRY_ONLY)(image, polygons, ignore,
                                                                          np.random.default_rng(0), counts)
    assert flags == [True, False, False, True]
    assert counts["cut_by_crop"] == 1  # only the care word turned don't-care; a cut don't-care is no loss
    assert cv2.contourArea(out_polygons[0]) == pytest.approx(50 * 40)  # the part inside the image: x 150..200
    assert out_polygons[2][:, 0].max() == 200  # a 1 px overhang is annotation noise: clamped, still a word
    assert cv2.contourArea(out_polygons[3]) == pytest.approx(30 * 25)


def test_all_coordinates_inside_the_output():
    image, polygons = coloured_quads()
    polygons += [box(-30, 100, 60, 140), box(380, 250, 470, 330), box(500, 10, 600, 40), box(5, 5, 395, 295)]
    augment = DetAugment(size=(320, 480), rotation_prob=1.0, rotation=30)
    for seed in range(30):
        _, out_polygons, _ = augment(image, polygons, [False] * len(polygons), np.random.default_rng(seed))
        for polygon in out_polygons:
            assert len(polygon) >= 3 and np.isfinite(polygon).all()
            assert polygon[:, 0].min() >= 0 and polygon[:, 0].max() <= 480
            assert polygon[:, 1].min() >= 0 and polygon[:, 1].max() <= 320


def test_degenerate_polygons_are_counted_not_fatal():
    image, polygons = coloured_quads()
    bad = [np.array([[0, 0], [np.nan, 1], [2, 2], [0, 3]], np.float32), box(0, 0, np.inf, 10),
           np.array([[0, 0], [5, 5]], np.float32), np.array([[0, 0], [5, 5], [10, 10]], np.float32),
           np.zeros((4, 3), np.float32), np.array([], np.float32)]
    counts = Counter()
    _, out_polygons, flags = DetAugment(size=(300, 400), **GEOMETRY_ONLY)(
        image, bad + polygons[:1], [False] * 7, np.random.default_rng(0), counts)
    assert counts["degenerate_polygon"] == 6
    assert len(out_polygons) == 1 and flags == [False]


@pytest.mark.parametrize("crop_attempts", [0, 50])
def test_image_without_polygons(crop_attempts):
    image = np.full((120, 90, 3), 200, np.uint8)
    out, out_polygons, flags = DetAugment(crop_attempts=crop_attempts)(image, [], [], np.random.default_rng(0))
    assert out.shape == (640, 640, 3) and out_polygons == [] and flags == []


def test_colour_jitter_changes_pixels_not_geometry():
    image, polygons = coloured_quads()
    plain = DetAugment(**NO_COLOUR)(image, polygons, [False] * 6, np.random.default_rng(7))
    jittered = DetAugment(colour_prob=1.0, brightness=0.5)(image, polygons, [False] * 6, np.random.default_rng(7))
    neutral = DetAugment(colour_prob=1.0, brightness=0, contrast=0, saturation=0, hue=0)(
        image, polygons, [False] * 6, np.random.default_rng(7))
    assert all(np.array_equal(a, b) for a, b in zip(plain[1], jittered[1]))
    assert not np.array_equal(plain[0], jittered[0])
    assert np.abs(plain[0].astype(int) - neutral[0]).max() <= 1  # zero ranges: the identity (up to rounding)
