"""Synthetic detection pages: determinism, word quads on the ink and inside the page, export round trips, the CLI."""

from __future__ import annotations

import pickle
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from ocrforge.cli import main
from ocrforge.data.converters.det_labels import read_icdar2015_dataset, read_paddle_det
from ocrforge.data.images import read_image
from ocrforge.data.synth_text import pack_dir
from ocrforge.data.synth_text.fonts_pack import cached_font
from ocrforge.registry import DET_DATASETS
from ocrforge.tasks.det.synth_layout import Sheet, set_line, stamp, typeset_word, view_page, word_pad
from ocrforge.tasks.det.synth_pages import PageRenderer, SynthPage, SynthPagesDataset

SIZE = (256, 224)  # height, width: not square, so that swapped axes would show


@pytest.fixture(scope="module")
def renderer() -> PageRenderer:
    return PageRenderer(*SIZE, seed=5)


@pytest.fixture(scope="module")
def pages(renderer: PageRenderer) -> list[SynthPage]:
    return [renderer.render(i) for i in range(14)]


def _gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def _fill(quad: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(mask, np.round(quad).astype(np.int32), 1)
    return mask.astype(bool)


def test_pages_are_a_function_of_seed_and_index(renderer: PageRenderer, pages: list[SynthPage]) -> None:
    again = PageRenderer(*SIZE, seed=5).render(3)  # a fresh renderer: cold glyph caches must not change a page
    assert np.array_equal(again.image, pages[3].image) and again.texts == pages[3].texts
    assert len(again.polygons) == len(pages[3].polygons)
    assert all(np.array_equal(a, b) for a, b in zip(again.polygons, pages[3].polygons))
    assert not np.array_equal(pages[3].image, pages[4].image)
    assert not np.array_equal(PageRenderer(*SIZE, seed=6).render(3).image, pages[3].image)


def test_quads_are_whole_words_inside_the_page(pages: list[SynthPage]) -> None:
    height, width = SIZE
    counts = [len(p.polygons) for p in pages]
    assert max(counts) >= 40 and min(counts) <= 10  # documents and scenes are both drawn
    for page in pages:
        assert page.image.shape == (height, width, 3) and page.image.dtype == np.uint8
        assert len(page.polygons) == len(page.texts)
        for quad, text in zip(page.polygons, page.texts):
            assert quad.shape == (4, 2) and quad.dtype == np.float32 and np.isfinite(quad).all()
            assert quad[:, 0].min() >= 0 and quad[:, 0].max() <= width
            assert quad[:, 1].min() >= 0 and quad[:, 1].max() <= height
            assert cv2.contourArea(quad) > 1.0
            assert text and not any(c.isspace() for c in text) and text not in ("###", "*")
    # Sizes vary between pages: the median word height differs by far more than the quad margins could explain.
    heights = [np.median([np.linalg.norm(q[3] - q[0]) for q in p.polygons]) for p in pages if p.polygons]
    assert max(heights) > 2 * min(heights)


def test_quads_sit_on_ink(pages: list[SynthPage]) -> None:
    """Inside a word's quad both ink and ground show, so its grey levels spread far; the same quad moved to a place
    that no quad covers mostly shows ground (or a shape's edge), whatever noise, blur or JPEG did to the page."""
    rng = np.random.default_rng(0)
    on_words, elsewhere = [], []
    for page in pages:
        gray = _gray(page.image)
        covered = np.zeros(gray.shape, bool)
        for quad in page.polygons:
            covered |= _fill(quad, gray.shape)
        for quad in page.polygons:
            if min(np.linalg.norm(quad[1] - quad[0]), np.linalg.norm(quad[3] - quad[0])) < 8:
                continue  # tiny text blurs into the ground; the task masks it anyway
            values = gray[_fill(quad, gray.shape)]
            on_words.append(np.percentile(values, 95) - np.percentile(values, 5))
            for _ in range(20):
                moved = quad + rng.uniform(0, gray.shape[::-1]) - quad.min(axis=0)
                region = _fill(moved, gray.shape)
                if moved.max(axis=0)[0] < gray.shape[1] and moved.max(axis=0)[1] < gray.shape[0] and \
                        not covered[region].any():
                    elsewhere.append(np.percentile(gray[region], 95) - np.percentile(gray[region], 5))
                    break
    on_words, elsewhere = np.array(on_words), np.array(elsewhere)
    assert len(on_words) > 100 and len(elsewhere) > 50
    assert (on_words >= 40).mean() > 0.9
    assert np.median(on_words) > 3 * np.median(elsewhere)


@pytest.mark.parametrize("angle", [0.0, 12.0])
def test_stamped_quads_hold_all_the_ink_word_by_word(angle: float) -> None:
    font = cached_font(str(next(pack_dir().rglob("lato-latin-400-normal.woff"))), 24)
    words = [typeset_word(font, t) for t in ("Invoice", "No.", "4711,", "paid")]
    line = set_line(words, [7.0] * 3)
    sheet = Sheet(np.full((120, 300, 3), 255, np.float32), np.random.default_rng(0), Counter())
    assert sheet.put(stamp(line, word_pad(24), angle), 20, 20, (0, 0, 0))
    assert not sheet.put(stamp(line, word_pad(24), angle), 250, 20, (0, 0, 0))  # would be cut: not drawn
    assert sheet.stats["line_left_out"] == 1 and sheet.texts == ["Invoice", "No.", "4711,", "paid"]
    ink = 255 - sheet.image[..., 0]
    inside = [_fill(q, ink.shape) for q in sheet.quads]
    assert all(ink[region].max() > 200 for region in inside)  # every quad covers a glyph
    assert ink[np.logical_or.reduce(inside)].sum() > 0.995 * ink.sum()  # and no ink lies outside the quads
    overlaps = sum(region.astype(int) for region in inside) > 1
    assert overlaps.sum() <= 0.02 * np.logical_or.reduce(inside).sum()  # neighbours do not share pixels


def test_view_moves_quads_with_the_pixels() -> None:
    font = cached_font(str(next(pack_dir().rglob("noto-serif-latin-400-normal.woff"))), 20)
    sheet = Sheet(np.full((200, 240, 3), 255, np.float32), np.random.default_rng(0), Counter())
    for row, texts in enumerate([("Total", "12,50"), ("Page", "3", "of", "7"), ("Rechnung",)]):
        line = set_line([typeset_word(font, t) for t in texts], [6.0] * (len(texts) - 1))
        assert sheet.put(stamp(line, word_pad(20)), 30 + 20 * row, 30 + 50 * row, (0, 0, 0))
    before = np.stack(sheet.quads)
    for seed in range(20):  # a page the view turns (it leaves some pages as they are)
        image, quads = view_page(sheet.image.copy(), list(before), np.random.default_rng(seed))
        if np.abs(np.stack(quads) - before).max() > 2:
            break
    else:
        pytest.fail("the view never moved the page")
    # The homography that moved the quads must also have moved the pixels: ink where the moved ink should be.
    matrix, _ = cv2.findHomography(before.reshape(-1, 2), np.stack(quads).reshape(-1, 2))
    page = cv2.warpPerspective(np.ones((200, 240), np.uint8), matrix, (240, 200)).astype(bool)
    expected = cv2.warpPerspective((sheet.image[..., 0] < 128).astype(np.uint8), matrix, (240, 200)).astype(bool)
    found = (_gray(np.clip(image, 0, 255).astype(np.uint8)) < 128) & page
    assert (expected & found).sum() > 0.8 * (expected | found).sum()


def _export(tmp_path: Path, fmt: str) -> tuple[Path, list[dict]]:
    out = tmp_path / fmt
    assert main(["synth", "det", "--out", str(out), "--num", "3", "--seed", "2", "--size", "160", "192",
                 "--format", fmt]) == 0
    dataset = SynthPagesDataset(num_samples=3, seed=2, height=160, width=192)
    return out, [dataset[i] for i in range(3)]


@pytest.mark.parametrize("fmt", ["paddle", "icdar2015"])
def test_export_reads_back(tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture) -> None:
    out, expected = _export(tmp_path, fmt)
    summary = capsys.readouterr().out.strip()
    assert "\n" not in summary and "3 pages" in summary and fmt in summary
    skips: Counter = Counter()
    if fmt == "paddle":
        samples = read_paddle_det(out / "labels.txt", out, skips)
        tolerance = 0.01  # written with two decimals
    else:
        samples = read_icdar2015_dataset(out / "images", out / "gt", skips)
        tolerance = 0.5  # written as integers
    assert not skips and [s.image.name for s in samples] == [f"page_{i:06d}.jpg" for i in range(3)]
    texts = []
    for sample, item in zip(samples, expected):
        assert read_image(sample.image).shape == (160, 192, 3)
        assert [r.text for r in sample.regions] == item["texts"]
        assert not any(r.ignore for r in sample.regions)
        for region, polygon in zip(sample.regions, item["polygons"]):
            assert np.abs(region.points - polygon).max() <= tolerance + 1e-4
        texts += item["texts"]
    assert any("," in t for t in texts)  # names and amounts ("Smith,", "1,50") appear on most pages


def test_cli_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "pages"
    assert main(["synth", "det", "--out", str(out), "--num", "1", "--size", "64", "64"]) == 0
    capsys.readouterr()
    assert main(["synth", "det", "--out", str(out), "--num", "1", "--size", "64", "64"]) == 2
    assert "already holds detection labels" in capsys.readouterr().err


def test_dataset_items_follow_the_contract() -> None:
    assert DET_DATASETS.get("SynthPagesDataset") is DET_DATASETS.get("SynthPages") is SynthPagesDataset
    dataset = SynthPagesDataset(num_samples=3, seed=1, height=128, width=160)
    assert len(dataset) == 3
    item = dataset[2]
    assert set(item) == {"image", "polygons", "ignore", "texts", "path"}
    assert item["image"].shape == (128, 160, 3) and item["image"].dtype == np.uint8
    assert len(item["polygons"]) == len(item["ignore"]) == len(item["texts"]) > 0
    assert all(p.shape == (4, 2) and p.dtype == np.float32 for p in item["polygons"])
    assert item["ignore"] == [False] * len(item["polygons"]) and all(isinstance(t, str) for t in item["texts"])
    assert item["path"] == "synth://pages/1/2"
    for index in (3, -1):
        with pytest.raises(IndexError):
            dataset[index]
    clone = pickle.loads(pickle.dumps(dataset))  # DataLoader workers started with "spawn" receive a pickle
    assert np.array_equal(clone[2]["image"], item["image"]) and clone[2]["texts"] == item["texts"]
