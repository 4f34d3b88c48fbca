"""Mechanics of synthetic detection pages (the page kinds are in ``synth_pages.py``).

A word is rendered once from the glyph cache as a coverage mask and knows its ink box; a line pastes its words' masks
side by side on a common baseline; a stamp is a line turned by a small angle together with one quad per word (the
ink box plus a small margin, the way ICDAR 2015 annotators drew boxes); a sheet blends stamps onto the float32 page
and keeps the quads. A stamp that would not fit on the page entirely is not drawn at all, so every word on a page is
whole and annotated. Around the text: contrasting colours, clutter that is not text, and the whole-page view
transform that moves the quads with the pixels.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ...data.converters.det_labels import ICDAR_DONT_CARE, PADDLE_DONT_CARE
from ...data.fonts import FontInfo
from ...data.synth_text.corpus import TextSampler
from ...data.synth_text.fonts_pack import CachedFont, cached_font
from ...data.synth_text.render import WordRenderer, luma, solid, textured_background

# Pixel sizes fonts are rasterised at: every (font, size) keeps its own glyph cache, so sizes are snapped to these.
# A ladder of ratio ~1.19: 16 sizes x 64 fonts fill cached_font's LRU of 1024 exactly.
FONT_SIZES = (7, 8, 10, 12, 14, 17, 20, 24, 28, 34, 40, 48, 57, 68, 81, 96)
# Texts that the label formats read as "don't care": a word spelled so would come back as an ignored region.
_RESERVED_TEXTS = ICDAR_DONT_CARE | PADDLE_DONT_CARE
_BOLD_NAME = re.compile(r"bold|black|heavy|[-_](6|7|8|9)00[-_.]", re.I)
MAX_DRAWS = 50  # words drawn from a stream before giving up on a line
MIN_CONTRAST = 100.0  # luminance difference (0-255) between scene text and the ground under it


def snap_size(pixels: float) -> int:
    """The nearest of FONT_SIZES."""
    return min(FONT_SIZES, key=lambda size: abs(size - pixels))


def word_stream(sampler: TextSampler, rng: np.random.Generator) -> Iterator[str]:
    """Endless words (split at spaces) from the sampler's words, names, dates, amounts and codes."""
    while True:
        yield from sampler.sample(rng).split(" ")


@dataclass(frozen=True)
class Word:
    text: str
    mask: np.ndarray  # uint8 coverage, 255 = ink
    origin: tuple[int, int]  # the pen position on the baseline, in mask pixels (x, y)
    advance: int
    ink: tuple[int, int, int, int]  # x, y, width, height of the inked pixels in the mask


def typeset_word(font: CachedFont, text: str) -> Word | None:
    """``text`` in ``font``; None when it leaves no ink (the font has only empty glyphs for it). The mask keeps 2 px
    of empty margin, room for an outline."""
    mask, (x0, y0, x1, _) = font.render(text, margin=2)
    ink = cv2.boundingRect(mask)
    if ink[2] == 0:
        return None
    return Word(text, mask, (x0, y0 + font.line_top), x1 - x0, ink)


@dataclass(frozen=True)
class Line:
    mask: np.ndarray  # uint8 coverage of all words
    origin: tuple[int, int]  # the first word's pen position on the baseline, in mask pixels
    width: int  # pen advance from the first word's start to the last word's end
    boxes: np.ndarray  # (n, 4) float32 ink boxes x0, y0, x1, y1 of the words, in mask pixels
    texts: list[str]


def set_line(words: Sequence[Word], gaps: Sequence[float]) -> Line:
    """Words on one baseline, ``gaps[i]`` pixels of space after word ``i`` (len(words) - 1 gaps)."""
    pens, pen = [], 0.0
    for word, gap in zip(words, [*gaps, 0.0]):
        pens.append(pen)
        pen += word.advance + gap
    lefts = [round(pen) - w.origin[0] for pen, w in zip(pens, words)]
    shift = max(0, -min(lefts))
    above = max(w.origin[1] for w in words)
    below = max(w.mask.shape[0] - w.origin[1] for w in words)
    mask = np.zeros((above + below, max(left + w.mask.shape[1] for left, w in zip(lefts, words)) + shift), np.uint8)
    boxes = np.empty((len(words), 4), np.float32)
    for i, (word, left) in enumerate(zip(words, lefts)):
        x, y = left + shift, above - word.origin[1]
        h, w = word.mask.shape
        region = mask[y:y + h, x:x + w]
        np.maximum(region, word.mask, out=region)
        ix, iy, iw, ih = word.ink
        boxes[i] = (x + ix, y + iy, x + ix + iw, y + iy + ih)
    return Line(mask, (shift, above), round(pens[-1]) + words[-1].advance, boxes, [w.text for w in words])


@dataclass(frozen=True)
class Stamp:
    mask: np.ndarray  # uint8 coverage, turned by the line's angle
    quads: np.ndarray  # (n, 4, 2) float32 word quads (clockwise from top-left) in mask pixels
    texts: list[str]
    origin: tuple[float, float]  # the line's pen start on the baseline, in stamp pixels


def stamp(line: Line, pad: tuple[float, float], angle: float = 0.0) -> Stamp:
    """The line turned counter-clockwise by ``angle`` degrees about its centre (on a canvas grown to hold it), with
    word quads of ink box plus ``pad`` (x, y) pixels, the x pad cut to half the gap between neighbours so that their
    quads do not overlap; quads may reach past the mask by the pad."""
    px, py = pad
    x0, y0, x1, y1 = line.boxes.T
    half_gaps = np.clip((x0[1:] - x1[:-1]) / 2, 0, px)
    x0, x1 = x0 - np.concatenate([[px], half_gaps]), x1 + np.concatenate([half_gaps, [px]])
    y0, y1 = y0 - py, y1 + py
    quads = np.empty((len(line.boxes), 4, 2), np.float32)
    quads[:, :, 0] = np.stack([x0, x1, x1, x0], 1)
    quads[:, :, 1] = np.stack([y0, y0, y1, y1], 1)
    if angle == 0.0:
        return Stamp(line.mask, quads, line.texts, (float(line.origin[0]), float(line.origin[1])))
    h, w = line.mask.shape
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    out_w, out_h = int(np.ceil(w * cos + h * sin)), int(np.ceil(w * sin + h * cos))
    matrix[:, 2] += (out_w / 2 - w / 2, out_h / 2 - h / 2)
    mask = cv2.warpAffine(line.mask, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR)
    quads = quads @ matrix[:, :2].T.astype(np.float32) + matrix[:, 2].astype(np.float32)
    origin = matrix[:, :2] @ np.float64(line.origin) + matrix[:, 2]
    return Stamp(mask, quads, line.texts, (float(origin[0]), float(origin[1])))


class Sheet:
    """A float32 RGB page being drawn on, with the quads and texts of every word stamped so far; lines that do not
    fit on the page are counted in ``stats['line_left_out']``. ``worn_ink``: faded, uneven or spread print."""

    def __init__(self, image: np.ndarray, rng: np.random.Generator, stats: Counter, worn_ink: bool = False) -> None:
        self.image, self.rng, self.stats, self.worn_ink = image, rng, stats, worn_ink
        self.height, self.width = image.shape[:2]
        self.quads: list[np.ndarray] = []
        self.texts: list[str] = []
        self.taken: list[tuple[int, int, int, int]] = []  # stamped rectangles x0, y0, x1, y1

    def fits(self, item: Stamp, x: int, y: int) -> bool:
        h, w = item.mask.shape
        if x < 0 or y < 0 or x + w > self.width or y + h > self.height:
            return False
        quads = item.quads + np.float32((x, y))
        return bool(quads.min() >= 0 and (quads[..., 0] <= self.width).all() and (quads[..., 1] <= self.height).all())

    def free(self, x0: int, y0: int, x1: int, y1: int, gap: int = 0) -> bool:
        """No stamp so far within ``gap`` pixels of the rectangle."""
        return all(x1 + gap <= a0 or a1 + gap <= x0 or y1 + gap <= b0 or b1 + gap <= y0
                   for a0, b0, a1, b1 in self.taken)

    def ground_under(self, x0: int, y0: int, x1: int, y1: int) -> tuple[list[float], float]:
        """Mean colour of the rectangle and the spread (standard deviation) of its luminance."""
        region = self.image[y0:y1, x0:x1].reshape(-1, 3)
        return region.mean(axis=0).tolist(), float((region @ np.float32((0.299, 0.587, 0.114))).std())

    def put(self, item: Stamp, x: int, y: int, ink: Sequence[float], halo: Sequence[float] | None = None) -> bool:
        """Blend the stamp's ink at (x, y) (its top-left) and record its words; False (nothing drawn) if it does not
        fit on the page. ``halo``: an outline colour drawn under the ink (signs, captions on photos)."""
        if not self.fits(item, x, y):
            self.stats["line_left_out"] += 1
            return False
        h, w = item.mask.shape
        alpha = item.mask.astype(np.float32) * np.float32(1 / 255)
        if self.worn_ink:
            alpha = WordRenderer.ink_alpha(alpha, self.rng)
        region = self.image[y:y + h, x:x + w]
        if halo is not None:
            outline = cv2.dilate(alpha, np.ones((3, 3), np.uint8), iterations=1 + int(h > 40))  # <= the 2 px margin
            region = cv2.blendLinear(region, solid(h, w, halo), 1 - outline, outline)
        self.image[y:y + h, x:x + w] = cv2.blendLinear(region, solid(h, w, ink), 1 - alpha, alpha)
        self.quads.extend(item.quads + np.float32((x, y)))
        self.texts.extend(item.texts)
        self.taken.append((x, y, x + w, y + h))
        return True

    def put_line(self, item: Stamp, pen_x: float, baseline: float, ink: Sequence[float]) -> bool:
        """``put`` with the line's pen start at (pen_x, baseline) on the page."""
        return self.put(item, round(pen_x - item.origin[0]), round(baseline - item.origin[1]), ink)


class Typesetter:
    """Fonts (grouped by family, bold faces marked) and text samplers; draws words a font can set.

    Words whose characters the font lacks, or that read as "don't care" in the label formats (``###``, ``*``), are
    re-drawn and counted in ``stats``.
    """

    def __init__(self, fonts: Sequence[FontInfo], families: Sequence[tuple[int, ...]], sampler: TextSampler,
                 table_sampler: TextSampler, stats: Counter) -> None:
        self.fonts, self.families = list(fonts), list(families)
        self.sampler, self.table_sampler, self.stats = sampler, table_sampler, stats
        self.bold = [bool(_BOLD_NAME.search(Path(f.path).name)) for f in self.fonts]
        self.bold_fonts = [i for i, is_bold in enumerate(self.bold) if is_bold]
        self._spaces: dict[tuple[int, int], float] = {}

    def pick_font(self, rng: np.random.Generator) -> int:
        """A font index: a family uniformly, then one of its faces."""
        members = self.families[int(rng.integers(len(self.families)))]
        return members[int(rng.integers(len(members)))]

    def bold_of(self, font: int, rng: np.random.Generator) -> int:
        """A bold face of ``font``'s family, else any bold face, else ``font`` itself."""
        family = next(members for members in self.families if font in members)
        same = [i for i in family if self.bold[i]]
        choices = same or self.bold_fonts or [font]
        return choices[int(rng.integers(len(choices)))]

    def font(self, font: int, size: int) -> CachedFont:
        return cached_font(self.fonts[font].path, size)

    def word(self, text: str, font: int, size: int) -> Word | None:
        """``text`` set in ``font`` at ``size``; None (counted) if it reads as "don't care", has characters the font
        lacks, or leaves no ink."""
        if not text or text in _RESERVED_TEXTS:
            self.stats["word_skipped_reserved"] += 1
        elif not self.fonts[font].covers(text):
            self.stats["word_skipped_no_glyph"] += 1
        else:
            word = typeset_word(self.font(font, size), text)
            if word is not None:
                return word
            self.stats["word_skipped_no_ink"] += 1
        return None

    def next_word(self, stream: Iterator[str], font: int, size: int) -> Word | None:
        """The next word of the endless ``stream`` that ``font`` can set; None after MAX_DRAWS tries."""
        for _ in range(MAX_DRAWS):
            word = self.word(next(stream), font, size)
            if word is not None:
                return word
        return None

    def words(self, rng: np.random.Generator, font: int, size: int, count: int, table: bool = False,
              upper: bool = False) -> list[Word]:
        """The settable ones of the first ``count`` words of one sampled text (a name, a date, a phrase ...)."""
        texts = (self.table_sampler if table else self.sampler).sample(rng).split(" ")[:count]
        words = (self.word(t.upper() if upper else t, font, size) for t in texts)
        return [w for w in words if w is not None]

    def space(self, font: int, size: int) -> float:
        """Width of a space (Pillow measures it in ~10 us, so it is kept)."""
        key = (font, size)
        if key not in self._spaces:
            self._spaces[key] = self.font(font, size).font.getlength(" ")
        return self._spaces[key]


def word_pad(size: float) -> tuple[float, float]:
    """Quad margin (x, y) around a word's ink at font size ``size``."""
    return 0.5 + 0.04 * size, 0.5 + 0.06 * size


# ------------------------------------------------------------------------------------------------ around the text
def ground(rng: np.random.Generator, height: int, width: int, colour: Sequence[float]) -> np.ndarray:
    """The word renderer's ground (gradient, paper texture, blotches, grain; float32) drawn at most 128 px a side and
    stretched to the page: its noise bank is tiled (18 MB copied) for anything taller, costing ~5 ms a page on one
    core, and paper and scenery are smooth at this scale anyway; the final degradation adds full-resolution grain."""
    h, w = min(height, 128), min(width, 128)
    image = textured_background(rng, h, w, colour)
    return image if (h, w) == (height, width) else cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def contrasting(rng: np.random.Generator, ground: Sequence[float]) -> list[float]:
    """A random colour at least MIN_CONTRAST darker or lighter (in luminance) than ``ground``."""
    colour, level = rng.random(3) * 255, luma(ground)
    if level >= 128:  # darken towards black until dark enough
        return (colour * min(1.0, (level - MIN_CONTRAST) / max(luma(colour), 1.0))).clip(0, 255).tolist()
    room = 255 - level - MIN_CONTRAST
    return (255 - (255 - colour) * min(1.0, room / max(255 - luma(colour), 1.0))).clip(0, 255).tolist()


def clutter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shapes, bars and strokes in random colours, sometimes out of focus: edges that are not text."""
    h, w = image.shape[:2]
    for _ in range(int(rng.integers(0, 12))):
        colour = (rng.random(3) * 255).tolist()
        (x0, x1), (y0, y1) = (rng.random(2) * w).astype(int).tolist(), (rng.random(2) * h).astype(int).tolist()
        thickness = -1 if rng.random() < 0.6 else int(rng.integers(1, 6))
        kind = rng.random()
        if kind < 0.35:
            cv2.rectangle(image, (x0, y0), (x1, y1), colour, thickness)
        elif kind < 0.6:
            cv2.circle(image, (x0, y0), int(rng.integers(3, max(4, min(h, w) // 4))), colour, thickness)
        elif kind < 0.85:
            cv2.line(image, (x0, y0), (x1, y1), colour, max(1, thickness))
        else:
            points = (rng.random((int(rng.integers(3, 7)), 2)) * (w, h)).astype(np.int32)
            cv2.fillPoly(image, [points], colour)
    if rng.random() < 0.6:
        image = cv2.GaussianBlur(image, (0, 0), 0.8 + 3 * rng.random())
    return image


def view_page(image: np.ndarray, polygons: list[np.ndarray], rng: np.random.Generator
              ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Sometimes: the page turned by a few degrees and put in slight perspective, inside the frame, on a ground of
    its own (a desk, a wall); the quads follow. The whole page stays in view, so no word is cut."""
    if rng.random() >= 0.6:
        return image, polygons
    h, w = image.shape[:2]
    corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    centre = np.float32([w / 2, h / 2])
    angle = np.deg2rad(float(np.clip(rng.normal(0, 2), -5, 5)))
    turn = np.float32([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    inset = rng.uniform(0, 0.07, (4, 2)).astype(np.float32) * (w, h) * np.sign(centre - corners)
    target = (corners - centre) @ turn.T + centre + inset
    # Shrink about the centre until the page fits in the frame.
    reach = np.abs(target - centre).max(axis=0)
    target = (target - centre) * min(1.0, *(centre / np.maximum(reach, 1e-6))) * rng.uniform(0.93, 1.0) + centre
    matrix = cv2.getPerspectiveTransform(corners, target.astype(np.float32))
    surround = ground(rng, h, w, (rng.random(3) * 255).tolist())
    out = cv2.warpPerspective(image, matrix, (w, h), dst=surround, flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_TRANSPARENT)
    if not polygons:
        return out, polygons
    moved = cv2.perspectiveTransform(np.stack(polygons).reshape(-1, 1, 2), matrix).reshape(-1, 4, 2)
    return out, list(moved.astype(np.float32))
