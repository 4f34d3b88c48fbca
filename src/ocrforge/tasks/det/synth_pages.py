"""Synthetic pages for text detection, with one quad per word: the built-in default dataset of the DBNet task.

Two kinds of page, mixed at random. Documents: paper-like ground, headings in larger or bold type, justified or
ragged paragraphs, bullet and numbered lists, ruled tables, sometimes two columns, sizes varying between pages and
sections. Scenes: photographic ground with shapes, a few short lines at random places, sizes, colours and small
angles, some on plates or with an outline. Then the whole page is sometimes turned and put in perspective onto a
surrounding ground (the same transform moves every quad), and lit, blurred, noised or JPEG-compressed.

Every word on a page is whole and annotated: a line that would not fit is not drawn. Every page is a pure function of
``(seed, index)``: ``np.random.default_rng([seed, index])`` drives text, fonts, layout, colours and effects.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from torch.utils.data import Dataset

from ...data.converters.det_labels import TextRegion, paddle_line, write_icdar2015
from ...data.synth_text.corpus import TextSampler
from ...data.synth_text.export import encode_jpeg
from ...data.synth_text.render import INKS, WordRenderer, luma, random_colours
from ...errors import DataError
from ...registry import DET_DATASETS
from .synth_layout import (
    MAX_DRAWS,
    Sheet,
    Stamp,
    Typesetter,
    Word,
    clutter,
    contrasting,
    ground,
    set_line,
    snap_size,
    stamp,
    typeset_word,
    view_page,
    word_pad,
    word_stream,
)

EXPORT_FORMATS = ("paddle", "icdar2015")
# Cells of tables: amounts, dates, numbers and codes more than running text.
_TABLE_KINDS = {"word": 0.25, "name": 0.1, "date": 0.15, "amount": 0.2, "number": 0.15, "code": 0.15}


@dataclass(frozen=True)
class SynthPage:
    image: np.ndarray  # H x W x 3 uint8 RGB
    polygons: list[np.ndarray]  # (4, 2) float32 word quads in image pixels, clockwise from top-left
    texts: list[str]


@dataclass(frozen=True)
class _Style:
    """What stays the same over one document page."""

    ground: list[float]
    ink: list[float]
    accent: list[float]  # headings
    font: int
    size: float  # body text size in pixels, before snapping
    leading: float  # line pitch over line height
    justify: bool


def _paragraph(sheet: Sheet, ts: Typesetter, rng: np.random.Generator, style: _Style, x0: float, x1: float,
               y: float, bottom: float, lines: int, size: int, indent: float = 0.0, font: int | None = None) -> float:
    """Up to ``lines`` lines of running text in ``font`` (default: the page's) wrapped between x0 and x1, the first
    line box's top at ``y``; the last line ends early. Returns the y below the last line set (``y`` if none fits)."""
    font = style.font if font is None else font
    cached, space = ts.font(font, size), ts.space(font, size)
    pitch = (cached.line_top + cached.line_bottom) * style.leading
    stream, pending, pad = word_stream(ts.sampler, rng), None, word_pad(size)
    for i in range(lines):
        if y + pitch > bottom:
            break
        start = x0 + (indent if i == 0 else 0.0)
        room = x1 - start
        limit = room if i < lines - 1 else room * rng.uniform(0.3, 1.0)
        words: list[Word] = []
        width = 0.0
        for _ in range(MAX_DRAWS):
            word, pending = pending or ts.next_word(stream, font, size), None
            if word is None:
                break
            grown = width + (space if words else 0.0) + word.advance
            if words and grown > limit:
                pending = word
                break
            if word.advance > room:
                ts.stats["word_wider_than_column"] += 1
                continue
            words.append(word)
            width = grown
        if not words:
            break
        gap = space
        if style.justify and i < lines - 1 and len(words) > 1:
            gap = min(space + (room - width) / (len(words) - 1), 3 * space)
        sheet.put_line(stamp(set_line(words, [gap] * (len(words) - 1)), pad), start, y + cached.line_top, style.ink)
        y += pitch
    return y


def _heading(sheet: Sheet, ts: Typesetter, rng: np.random.Generator, style: _Style, x0: float, x1: float,
             y: float, bottom: float, scale: float) -> float:
    """One line, larger and mostly bold, left or centred, sometimes ruled below."""
    size = snap_size(style.size * scale)
    font = ts.bold_of(style.font, rng) if rng.random() < 0.7 else ts.pick_font(rng)
    words = ts.words(rng, font, size, count=int(rng.integers(1, 7)), upper=rng.random() < 0.25)
    cached, space = ts.font(font, size), ts.space(font, size)
    while words and sum(w.advance for w in words) + space * (len(words) - 1) > x1 - x0:
        words.pop()
    top = y + 0.3 * style.size
    height = cached.line_top + cached.line_bottom
    if not words or top + height > bottom:
        return y
    line = set_line(words, [space] * (len(words) - 1))
    start = x0 + (x1 - x0 - line.width) / 2 if rng.random() < 0.3 else x0
    sheet.put_line(stamp(line, word_pad(size)), start, top + cached.line_top, style.accent)
    y = top + height * 1.25
    if rng.random() < 0.25 and y + 4 < bottom:
        cv2.line(sheet.image, (round(x0), round(y)), (round(x1), round(y)), style.accent, 1 + int(size > 24))
        y += 4
    return y + 0.3 * style.size


def _table(sheet: Sheet, ts: Typesetter, rng: np.random.Generator, style: _Style, x0: float, x1: float,
           y: float, bottom: float) -> float:
    """A header row (bold, sometimes shaded) and rows of short cells (amounts, dates, codes ...), ruled as a grid,
    by rows, or not at all; numbers right-aligned."""
    size = snap_size(style.size * rng.uniform(0.8, 1.0))
    body, head = style.font, ts.bold_of(style.font, rng)
    cached = ts.font(body, size)
    line_height = cached.line_top + cached.line_bottom
    row = line_height * rng.uniform(1.4, 1.9)
    top = y + 0.4 * style.size
    rows = min(int(rng.integers(3, 12)), int((bottom - top) / row))
    cols = int(rng.integers(2, 6))
    while cols > 1 and (x1 - x0) / cols < 5 * size:
        cols -= 1
    if rows < 2:
        return y
    shares = np.cumsum(rng.uniform(0.6, 1.6, cols))
    edges = np.concatenate([[x0], x0 + (x1 - x0) * shares / shares[-1]])
    grey = [0.8 * g + 0.2 * i for g, i in zip(style.ground, style.ink)]
    rule = style.ink if rng.random() < 0.6 else grey
    if rng.random() < 0.4:
        shade = [0.88 * g + 0.12 * i for g, i in zip(style.ground, style.ink)]
        cv2.rectangle(sheet.image, (round(x0), round(top)), (round(x1), round(top + row)), shade, -1)
    cell_pad, pad = 0.4 * size, word_pad(size)
    for r in range(rows):
        baseline = top + r * row + (row - line_height) / 2 + cached.line_top
        for c in range(cols):
            if r and rng.random() < 0.08:  # an empty cell
                continue
            font = head if r == 0 else body
            words, space = ts.words(rng, font, size, count=4, table=r > 0), ts.space(font, size)
            room = edges[c + 1] - edges[c] - 2 * cell_pad
            while words and sum(w.advance for w in words) + space * (len(words) - 1) > room:
                words.pop()
            if not words:
                continue
            line = set_line(words, [space] * (len(words) - 1))
            numeric = any(ch.isdigit() for ch in line.texts[-1])
            start = edges[c + 1] - cell_pad - line.width if numeric and r else edges[c] + cell_pad
            sheet.put_line(stamp(line, pad), start, baseline, style.ink)
    thickness, mode = 1 + int(rng.random() < 0.2), rng.random()
    ys = [round(top + r * row) for r in range(rows + 1)]
    lines = [(x0, v, x1, v) for v in (ys if mode < 0.7 else ys[:2] + ys[-1:])] if mode < 0.9 else []
    if mode < 0.35:  # full grid
        lines += [(x, ys[0], x, ys[-1]) for x in edges]
    for a, b, c, d in lines:
        cv2.line(sheet.image, (round(a), round(b)), (round(c), round(d)), rule, thickness)
    return ys[-1] + 0.6 * style.size


def _list(sheet: Sheet, ts: Typesetter, rng: np.random.Generator, style: _Style, x0: float, x1: float,
          y: float, bottom: float) -> float:
    """Bulleted (a drawn dot, not text) or numbered items of one or two lines, indented."""
    size = snap_size(style.size)
    cached = ts.font(style.font, size)
    numbered, indent = rng.random() < 0.35, 1.6 * size
    for k in range(1, int(rng.integers(2, 7))):
        below = _paragraph(sheet, ts, rng, style, x0 + indent, x1, y, bottom, int(rng.integers(1, 3)), size)
        if below <= y:
            break
        baseline = y + cached.line_top
        if numbered:
            number = typeset_word(cached, f"{k}.")
            if number is not None:
                sheet.put_line(stamp(set_line([number], []), word_pad(size)), x0, baseline, style.ink)
        else:
            centre = (round(x0 + 0.5 * size), round(baseline - 0.3 * size))
            cv2.circle(sheet.image, centre, max(1, round(0.15 * size)), style.ink, -1)
        y = below
    return y + 0.4 * style.size


def document_page(ts: Typesetter, rng: np.random.Generator, height: int, width: int) -> Sheet:
    """A page of a heading, then paragraphs, section headings, tables and lists, in one or two columns."""
    paper, ink = random_colours(rng)
    accent = ink
    if rng.random() < 0.3:  # coloured headings, where they stand out from the paper
        colour = list(INKS[int(rng.integers(len(INKS)))])
        accent = colour if abs(luma(colour) - luma(paper)) > 90 else ink
    short = min(height, width)
    style = _Style(paper, ink, accent, ts.pick_font(rng), short * float(np.exp(rng.uniform(np.log(0.016),
                   np.log(0.042)))), rng.uniform(1.2, 1.6), rng.random() < 0.4)
    sheet = Sheet(ground(rng, height, width, paper), rng, ts.stats, worn_ink=rng.random() < 0.3)
    x0, x1 = width * rng.uniform(0.03, 0.1), width * (1 - rng.uniform(0.03, 0.1))
    y, bottom = height * rng.uniform(0.02, 0.08), height * (1 - rng.uniform(0.02, 0.08))
    if rng.random() < 0.75:
        y = _heading(sheet, ts, rng, style, x0, x1, y, bottom, rng.uniform(1.4, 2.4))
    columns = [(x0, x1)]
    if rng.random() < 0.2 and x1 - x0 > 40 * style.size:
        gutter = style.size * rng.uniform(1.5, 3.0)
        middle = (x0 + x1) / 2
        columns = [(x0, middle - gutter / 2), (middle + gutter / 2, x1)]
    for left, right in columns:
        top = y
        for block in range(40):
            r = rng.random()
            if r < 0.12 and block:
                below = _heading(sheet, ts, rng, style, left, right, top, bottom, rng.uniform(1.1, 1.5))
            elif r < 0.3:
                below = _table(sheet, ts, rng, style, left, right, top, bottom)
            elif r < 0.4:
                below = _list(sheet, ts, rng, style, left, right, top, bottom)
            else:
                size = snap_size(style.size * (rng.uniform(0.85, 1.2) if rng.random() < 0.3 else 1.0))
                indent = 2 * size if rng.random() < 0.3 else 0.0
                font = ts.pick_font(rng) if rng.random() < 0.15 else style.font  # a quote, a note, a pasted part
                below = _paragraph(sheet, ts, rng, style, left, right, top, bottom, int(rng.integers(2, 10)), size,
                                   indent, font)
                below += 0.6 * size if below > top else 0.0
            if below <= top:
                break
            top = below
    return sheet


def _plate(item: Stamp, x: int, y: int, margin: float) -> np.ndarray:
    """Corners of the turned rectangle around all of a stamp's word quads, grown by ``margin``."""
    rect = cv2.minAreaRect(item.quads.reshape(-1, 2))
    (cx, cy), (w, h), angle = rect
    corners = cv2.boxPoints(((cx + x, cy + y), (w + 2 * margin, h + 2 * margin), angle))
    return np.round(corners).astype(np.int32)


def scene_page(ts: Typesetter, rng: np.random.Generator, height: int, width: int) -> Sheet:
    """A few short lines of text on a photographic ground, each at its own place, size, colour and angle."""
    sheet = Sheet(clutter(ground(rng, height, width, (rng.random(3) * 255).tolist()), rng), rng, ts.stats)
    short = min(height, width)
    for _ in range(int(rng.integers(1, 9))):
        size = snap_size(short * float(np.exp(rng.uniform(np.log(0.03), np.log(0.15)))))
        font = ts.pick_font(rng)
        font = ts.bold_of(font, rng) if rng.random() < 0.4 else font
        words = ts.words(rng, font, size, count=int(rng.integers(1, 5)), upper=rng.random() < 0.3)
        if not words:
            continue
        gap = ts.space(font, size) * rng.uniform(0.9, 1.5)
        angle = float(np.clip(rng.normal(0, 6), -15, 15)) if rng.random() < 0.7 else 0.0
        item = stamp(set_line(words, [gap] * (len(words) - 1)), word_pad(size), angle)
        h, w = item.mask.shape
        if w > width or h > height:
            ts.stats["scene_line_too_large"] += 1
            continue
        for _ in range(10):
            x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            if sheet.free(x, y, x + w, y + h, gap=size // 2):
                break
        else:
            ts.stats["scene_line_no_room"] += 1
            continue
        under, spread = sheet.ground_under(x, y, x + w, y + h)
        if rng.random() < 0.3:  # a sign plate or label behind the line
            under, spread = (rng.random(3) * 255).tolist(), 0.0
            cv2.fillConvexPoly(sheet.image, _plate(item, x, y, size * rng.uniform(0.2, 0.6)), under)
        ink = contrasting(rng, under)
        # On a busy ground (shapes, edges) the mean says little about the pixels next to a stroke: outline it.
        halo = contrasting(rng, ink) if spread > 35 or rng.random() < 0.1 else None
        sheet.put(item, x, y, ink, halo)
    return sheet


class PageRenderer:
    """Renders ``(seed, index)`` to a :class:`SynthPage` of ``height`` x ``width`` pixels.

    Fonts as for :class:`~ocrforge.data.synth_text.WordRenderer` (the bundled pack, matplotlib's fonts, any under
    ``fonts_dir``); text from :class:`~ocrforge.data.synth_text.TextSampler` weighted by ``kinds`` and
    ``languages``. ``scene_ratio`` of the pages are scenes, the rest documents. ``stats`` counts skipped words and
    lines left out (per process).
    """

    def __init__(self, height: int = 640, width: int = 640, seed: int = 0, fonts_dir: str | Sequence[str] | None = None,
                 include_pack: bool = True, include_matplotlib: bool = True, kinds: dict[str, float] | None = None,
                 languages: dict[str, float] | None = None, scene_ratio: float = 0.3) -> None:
        if height < 32 or width < 32:
            raise ValueError(f"pages must be at least 32 x 32 pixels, got {height} x {width}")
        dirs = (fonts_dir,) if isinstance(fonts_dir, (str, Path)) else tuple(fonts_dir or ())
        # The word renderer discovers the fonts, groups them by family and holds the text sampler.
        words = WordRenderer(dirs, include_pack, include_matplotlib, seed=seed, kinds=kinds, languages=languages)
        table_kinds = {k: v for k, v in _TABLE_KINDS.items() if kinds is None or kinds.get(k, 0) > 0} or kinds
        table_sampler = TextSampler(seed, kinds=table_kinds, languages=languages)
        self.height, self.width, self.seed, self.scene_ratio = height, width, seed, scene_ratio
        self.stats: Counter = words.stats
        self.typesetter = Typesetter(words.fonts, words.families, words.sampler, table_sampler, self.stats)

    def render(self, index: int) -> SynthPage:
        rng = np.random.default_rng([self.seed, index])
        draw = scene_page if rng.random() < self.scene_ratio else document_page
        sheet = draw(self.typesetter, rng, self.height, self.width)
        image, polygons = view_page(sheet.image, sheet.quads, rng)
        return SynthPage(WordRenderer.degrade(image, rng), polygons, sheet.texts)


@DET_DATASETS.register(aliases=("SynthPages",))
class SynthPagesDataset(Dataset):
    """``num_samples`` synthetic pages with word quads. Items are raw detection samples:
    ``{"image", "polygons", "ignore" (all False), "texts", "path": "synth://pages/<seed>/<index>"}``."""

    def __init__(self, num_samples: int = 1000, seed: int = 0, height: int = 640, width: int = 640,
                 fonts_dir: str | Sequence[str] | None = None, include_pack: bool = True,
                 include_matplotlib: bool = True) -> None:
        self.num_samples, self.seed = num_samples, seed
        self.renderer = PageRenderer(height, width, seed, fonts_dir, include_pack, include_matplotlib)

    def __len__(self) -> int:
        return self.num_samples

    @property
    def stats(self) -> Counter:
        """Re-drawn words and left-out lines so far in this process (each DataLoader worker counts its own)."""
        return self.renderer.stats

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.num_samples:
            raise IndexError(index)
        page = self.renderer.render(index)
        return {"image": page.image, "polygons": page.polygons, "ignore": [False] * len(page.polygons),
                "texts": page.texts, "path": f"synth://pages/{self.seed}/{index}"}


def export_synth_det(out: str | Path, num: int, seed: int = 0, height: int = 640, width: int = 640,
                     fmt: str = "paddle", **dataset_kwargs: Any) -> dict:
    """Write ``num`` pages of ``SynthPagesDataset(num, seed, height, width)`` as ``out/images/page_<n>.jpg`` and
    labels: ``fmt="paddle"``: ``out/labels.txt`` (``images/page_<n>.jpg<TAB>[{"transcription", "points"}]``,
    paths relative to ``out``, written as ``labels.txt.partial`` and renamed when complete); ``fmt="icdar2015"``:
    ``out/gt/gt_page_<n>.txt``. Refuses to write into a folder that already holds labels.

    Returns ``{"out", "format", "pages", "words", "seconds", "pages_per_s", "stats"}``.
    """
    if fmt not in EXPORT_FORMATS:
        raise DataError(f"unknown detection label format '{fmt}' (choose from {', '.join(EXPORT_FORMATS)})")
    if num < 1:
        raise DataError(f"num must be at least 1, got {num}")
    folder = Path(out)
    labels, gt = folder / "labels.txt", folder / "gt"
    if labels.exists() or (gt.is_dir() and any(gt.iterdir())):
        raise DataError(f"{folder} already holds detection labels; write to a new folder")
    dataset = SynthPagesDataset(num, seed, height, width, **dataset_kwargs)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    if fmt == "icdar2015":
        gt.mkdir(exist_ok=True)
    digits, skips, words = max(6, len(str(num - 1))), Counter(), 0
    start = time.perf_counter()
    partial = folder / "labels.txt.partial"
    paddle = fmt == "paddle"
    with open(partial, "w", encoding="utf-8", newline="\n") if paddle else contextlib.nullcontext() as handle:
        for i in range(num):
            sample = dataset[i]
            name = f"page_{i:0{digits}d}"
            (folder / "images" / f"{name}.jpg").write_bytes(encode_jpeg(sample["image"]))
            regions = [TextRegion(p, t) for p, t in zip(sample["polygons"], sample["texts"])]
            words += len(regions)
            if paddle:
                handle.write(paddle_line(f"images/{name}.jpg", regions))
            else:
                write_icdar2015(regions, gt / f"gt_{name}.txt", skips)
    if paddle:
        os.replace(partial, labels)
    seconds = time.perf_counter() - start
    stats = dataset.stats + skips
    return {"out": str(folder), "format": fmt, "pages": num, "words": words, "seconds": seconds,
            "pages_per_s": num / max(seconds, 1e-9), "stats": {k: v for k, v in sorted(stats.items()) if v}}


def summarize(report: dict) -> str:
    """One line: pages, words, destination, speed and the non-zero counters."""
    counters = ", ".join(f"{k}={v}" for k, v in report["stats"].items()) or "none"
    return (f"{report['pages']} pages, {report['words']} words -> {report['out']} ({report['format']}) in "
            f"{report['seconds']:.1f} s, {report['pages_per_s']:.1f} pages/s; counters: {counters}")
