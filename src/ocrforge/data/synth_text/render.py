"""Synthetic word and short-line crops for recognition training.

A crop imitates what a text detector hands a recogniser: one word or short line on paper, a screen or a sign, in one
of many fonts, cut tightly or loosely (the margin shows the crop's own background), slightly rotated, slanted or
curved, on textured or unevenly lit ground, then blurred, resampled, noisy or JPEG-compressed.

Every crop is a pure function of (seed, index): ``np.random.default_rng([seed, index])`` drives text, font, colours,
geometry and effects, and random noise comes from a fixed bank sliced at drawn offsets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from ...errors import DataError
from ..charset import Charset
from ..fonts import FontInfo, discover_fonts
from .corpus import TextSampler
from .fonts_pack import cached_font, family_name, pack_dir

_MAX_ATTEMPTS = 20
_PAPERS = ((255, 255, 255), (246, 244, 238), (240, 234, 214), (228, 228, 228), (250, 246, 225), (236, 240, 245),
           (255, 250, 240), (222, 214, 196), (245, 235, 235), (232, 240, 230), (210, 210, 205))
INKS = ((20, 20, 20), (0, 0, 0), (45, 45, 50), (25, 35, 110), (20, 50, 160), (150, 20, 25), (30, 80, 40),
         (70, 50, 35), (90, 90, 90))
_MIN_CONTRAST = 90.0  # luminance difference (0-255) kept between ink and ground before textures and lighting
_NOISE_SHAPE = (128, 2048, 3)
# Crop margins as fractions of the box height: (left, top, right, bottom).
_TIGHT_PADS = (0.15, 0.08, 0.15, 0.08)
_LOOSE_PADS = ((0.1, 0.05, 0.1, 0.05), (0.7, 0.3, 0.7, 0.3))
_CLUTTER_P = (0.08, 0.12, 0.05, 0.1)  # underline, table rules, form line, specks
_UPSCALE = (cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_NEAREST)
# Speed note: on a small CPU numpy broadcasts over a trailing RGB axis cost 15-40 us per op on a 32x120 crop, the
# equivalent OpenCV calls (scalar tuples, GRAY2RGB, blendLinear) 2-5 us; hence the OpenCV idioms below.


class _Sampler(Protocol):
    def sample(self, rng: np.random.Generator) -> str: ...


@dataclass(frozen=True)
class SynthWord:
    image: np.ndarray  # H x W x 3 uint8 RGB
    text: str
    font: str
    background: tuple[int, int, int]  # the ground colour before texture, lighting and noise


def _randint(rng: np.random.Generator, n: int) -> int:
    """Uniform in [0, n); a quarter of the cost of rng.integers, which adds up over ~50 draws a crop."""
    return int(rng.random() * n)


def luma(c: Sequence[float]) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


@lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """Unit Gaussian noise drawn once; a window at a random offset is free, fresh normals cost ~200 us a crop here."""
    return np.random.default_rng(12345).standard_normal(_NOISE_SHAPE, dtype=np.float32)


@lru_cache(maxsize=4)
def _tiled_noise_bank(rows: int, cols: int) -> np.ndarray:
    """The bank repeated for pages larger than it: tiled once per worker, not on every call (~2 ms a page)."""
    return np.tile(_noise_bank(), (rows, cols, 1))


def _noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    bank = _noise_bank()
    if h > bank.shape[0] or w > bank.shape[1]:
        bank = _tiled_noise_bank(h // bank.shape[0] + 1, w // bank.shape[1] + 1)
    y, x = _randint(rng, bank.shape[0] - h + 1), _randint(rng, bank.shape[1] - w + 1)
    return bank[y:y + h, x:x + w]


@lru_cache(maxsize=1024)
def _ramp(n: int) -> np.ndarray:
    """``np.linspace(-1, 1, n)`` as float32, read-only: linspace costs ~10 us a call, and crops share few widths."""
    ramp = np.linspace(-1, 1, n, dtype=np.float32)
    ramp.flags.writeable = False
    return ramp


def _smooth_field(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [-0.5, 0.5], H x W: stains, uneven paper or light, out-of-focus scenery."""
    grid = rng.random((2 + cells // 4, 2 + cells), dtype=np.float32) - 0.5
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_LINEAR)


def _trim(mask: np.ndarray, box: tuple[int, int, int, int]) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The mask cut to its ink and line box plus 1 px, and the box in the cut's coordinates."""
    # boundingRect of a uint8 image spans its non-zero pixels: one C pass, ~10x cheaper than numpy's two reductions.
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0:
        return mask, box
    x0, y0 = max(0, min(x, box[0]) - 1), max(0, min(y, box[1]) - 1)
    x1, y1 = max(x + w + 1, box[2] + 1), max(y + h + 1, box[3] + 1)
    return mask[y0:y1, x0:x1], (box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0)


def _rgb(field: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(field, cv2.COLOR_GRAY2RGB)


def solid(h: int, w: int, colour: Sequence[float]) -> np.ndarray:
    return cv2.add(np.zeros((h, w, 3), np.float32), (*colour, 0.0))


def random_colours(rng: np.random.Generator) -> tuple[list[float], list[float]]:
    """Ground and ink colours (RGB floats), at least _MIN_CONTRAST apart in luminance."""
    u = rng.random(8).tolist()
    if u[0] < 0.72:  # dark ink on paper
        paper, ink_base = _PAPERS[int(u[1] * len(_PAPERS))], INKS[int(u[2] * len(INKS))]
        ground = [c - 10 + 18 * v for c, v in zip(paper, u[3:6])]
        ink = [c + 30 * u[6] - 10 * v for c, v in zip(ink_base, u[3:6])]
    elif u[0] < 0.86:  # light text on dark ground: signs, screens, table headers
        ground = [100 * v for v in u[1:4]]
        paper = _PAPERS[int(u[4] * len(_PAPERS))]
        ink = [c - 30 * u[5] for c in paper]
    else:  # coloured ground: forms, highlighted fields, packaging
        ground = [40 + 215 * v for v in u[1:4]]
        ink = [50 * u[4]] * 3 if luma(ground) > 120 else [255 - 40 * u[4]] * 3
    ground, ink = [min(max(c, 0.0), 255.0) for c in ground], [min(max(c, 0.0), 255.0) for c in ink]
    lg, li = luma(ground), luma(ink)
    if abs(lg - li) < _MIN_CONTRAST:  # push the ink away from the ground along luminance
        if lg > 127:
            ink = [c * max(0.0, lg - _MIN_CONTRAST) / max(li, 1.0) for c in ink]
        else:
            ink = [255 - (255 - c) * (255 - lg - _MIN_CONTRAST) / max(255 - li, 1.0) for c in ink]
    return ground, [min(max(c, 0.0), 255.0) for c in ink]


def textured_background(rng: np.random.Generator, h: int, w: int, ground: list[float]) -> np.ndarray:
    image = solid(h, w, ground)
    r = rng.random()
    if r < 0.25:  # gradient: a photographed page, a glossy sign
        angle = rng.random() * np.pi
        ramp = _ramp(w)[None, :] * np.float32(np.cos(angle)) + _ramp(h)[:, None] * np.float32(np.sin(angle))
        tint = (rng.random(3) * 40 - 20).tolist() if rng.random() < 0.3 else [rng.random() * 50 - 25] * 3
        image = cv2.add(image, cv2.multiply(_rgb(ramp), (*tint, 0.0)))
    elif r < 0.55:  # paper texture and stains
        image = cv2.scaleAdd(_rgb(_smooth_field(rng, h, w, 4 + _randint(rng, 20))), 10 + 30 * rng.random(), image)
    elif r < 0.68:  # busy photographic ground: brightness blotches with a slight colour cast
        field = _rgb(_smooth_field(rng, h, w, 2 + _randint(rng, 10)))
        cast = (20 + 25 * rng.random() + rng.random(3) * 16 - 8).tolist()
        image = cv2.add(image, cv2.multiply(field, (*cast, 0.0)))
    return cv2.scaleAdd(_noise(rng, h, w), 0.5 + 4 * rng.random(), image)  # paper grain / sensor floor


class WordRenderer:
    """Renders ``(seed, index)`` to a :class:`SynthWord`: an RGB crop exactly ``height`` pixels high.

    Fonts: the bundled pack, matplotlib's usable fonts and every font under ``fonts_dirs`` (TTF/OTF/WOFF; add a
    CJK font there for CJK charsets), each family drawn equally often. Text whose characters the drawn font lacks
    goes to a font that has them (``stats['font_fallback']``); text no font covers is re-drawn
    (``stats['text_redrawn_no_font']``). ``clean`` renders ink on a flat ground with no geometry or degradation
    (evaluation sets, debugging). Counters are per process (each DataLoader worker has its own).
    """

    def __init__(self, fonts_dirs: Sequence[str | Path] = (), include_pack: bool = True,
                 include_matplotlib: bool = True, height: int = 32, seed: int = 0, charset: Charset | None = None,
                 min_len: int = 1, max_len: int = 25, sampler: _Sampler | None = None, clean: bool = False,
                 **sampler_kwargs: Any) -> None:
        if height < 8:
            raise ValueError(f"height must be at least 8 pixels, got {height}")
        dirs = ((str(pack_dir()),) if include_pack else ()) + tuple(str(d) for d in fonts_dirs)
        if not dirs and not include_matplotlib:
            raise ValueError("no fonts: enable the pack or matplotlib fonts, or pass fonts_dirs")
        self.height, self.seed, self.clean = height, seed, clean
        self.sampler = sampler or TextSampler(seed, charset, min_len, max_len, **sampler_kwargs)
        self.stats: Counter = Counter()
        self.fonts: list[FontInfo] = []
        families: dict[str, list[int]] = {}
        for info in discover_fonts(dirs, include_matplotlib):
            try:
                family = family_name(info.path)
            except OSError:  # fontTools read it but FreeType cannot: skip, counted
                self.stats["font_unloadable"] += 1
                continue
            families.setdefault(family, []).append(len(self.fonts))
            self.fonts.append(info)
        if not self.fonts:
            raise DataError(f"none of the fonts in {', '.join(dirs) or 'matplotlib'} can be loaded by Pillow")
        self.families = [tuple(members) for _, members in sorted(families.items())]
        # Pixel sizes to rasterise at; the crop is resized to ``height`` afterwards, so these only set sharpness.
        # Two sizes: every (font, size) keeps its own glyph cache, and more sizes mean more cold misses.
        self.font_sizes = tuple(sorted({max(8, round(height * f)) for f in (0.7, 1.0)}))

    def render(self, index: int) -> SynthWord:
        # The stream of np.random.default_rng([seed, index]) without its ~15 us of argument checks.
        rng = np.random.Generator(np.random.PCG64([self.seed, index]))
        for _ in range(_MAX_ATTEMPTS):
            text = self.sampler.sample(rng)
            font = self._pick_font(text, rng)
            if font is None:
                self.stats["text_redrawn_no_font"] += 1
                continue
            drawn = self.draw(text, font, rng)
            if drawn is not None:
                return drawn
            self.stats["empty_render"] += 1
        raise DataError(f"synthetic text {self.seed}/{index}: no renderable text in {_MAX_ATTEMPTS} draws; "
                        f"the fonts lack the charset's characters (add fonts_dirs) - counts: {dict(self.stats)}")

    def _pick_font(self, text: str, rng: np.random.Generator) -> str | None:
        members = self.families[_randint(rng, len(self.families))]
        font = self.fonts[members[_randint(rng, len(members))]]
        if font.covers(text):
            return font.path
        capable = [f.path for f in self.fonts if f.covers(text)]
        if not capable:
            return None
        self.stats["font_fallback"] += 1
        return capable[_randint(rng, len(capable))]

    def draw(self, text: str, font_path: str, rng: np.random.Generator) -> SynthWord | None:
        """One crop of ``text`` in ``font_path``; None when the font draws no ink for it."""
        font = cached_font(font_path, self.font_sizes[_randint(rng, len(self.font_sizes))])
        mask, line_box = font.render(text, margin=font.size // 4 + 2)
        if not self.clean:
            mask, line_box = self._warp(mask, line_box, rng)
        alpha = self._crop(mask, line_box, rng)
        if alpha is None:
            return None
        ground, ink = random_colours(rng)
        h, w = alpha.shape
        if self.clean:
            image = solid(h, w, ground)
        else:
            image = textured_background(rng, h, w, ground)
            alpha = self.ink_alpha(alpha, rng)
        image = cv2.blendLinear(image, solid(h, w, ink), 1 - alpha, alpha)
        if self.clean:
            out = np.clip(image, 0, 255).astype(np.uint8)
        else:
            out = self.degrade(self._clutter(image, alpha, ink, rng), rng)
        return SynthWord(out, text, font_path, tuple(round(c) for c in ground))

    @staticmethod
    def _warp(mask: np.ndarray, box: tuple[int, int, int, int], rng: np.random.Generator
              ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """Rotation, slant, perspective and curvature; the line box follows (as the detector's box would)."""
        u = rng.random(4).tolist()
        angle = min(max(float(rng.normal(0, 1.5)), -5.0), 5.0) if u[0] < 0.4 else 0.0
        shear = (rng.random() - 0.5) * 0.5 if u[1] < 0.12 else 0.0
        perspective, curve = u[2] < 0.12, u[3] < 0.08
        if angle == 0.0 and shear == 0.0 and not perspective and not curve:
            return mask, box
        mask, (x0, y0, x1, y1) = _trim(mask, box)  # warps cost per pixel, and the canvas is mostly margin
        h, w = mask.shape
        line_h = y1 - y0
        if curve:  # curved baseline: shift columns along a parabola or an arc
            bend = (rng.random() - 0.5) * 0.5 * line_h
            t = _ramp(w)
            shift = bend * (t * t - 0.5) if rng.random() < 0.6 else bend * np.sin(np.pi * t)
            pad = int(np.ceil(abs(bend)))
            mask = cv2.copyMakeBorder(mask, pad, pad, 0, 0, cv2.BORDER_CONSTANT, value=0)
            h, y1 = h + 2 * pad, y1 + 2 * pad  # the box moves down by pad and grows by the bend both ways
            map_x = np.repeat(np.arange(w, dtype=np.float32)[None, :], h, axis=0)
            map_y = np.arange(h, dtype=np.float32)[:, None] + shift[None, :].astype(np.float32)
            mask = cv2.remap(mask, map_x, map_y, cv2.INTER_LINEAR)
            if angle == 0.0 and shear == 0.0 and not perspective:
                return mask, (x0, y0, x1, y1)
        src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
        cos, sin = np.cos(np.radians(angle)), np.sin(np.radians(angle))
        centred = src - np.array([w / 2, h / 2], np.float32)
        centred[:, 0] += shear * centred[:, 1]
        dst = centred @ np.array([[cos, -sin], [sin, cos]], np.float32)
        if perspective:  # corners moved independently: a word photographed off-axis
            dst += (rng.random((4, 2)) - 0.5).astype(np.float32) * (0.24 * line_h)
        dst = (dst - dst.min(axis=0)).astype(np.float32)
        matrix = cv2.getPerspectiveTransform(src, dst)
        size = (int(np.ceil(dst[:, 0].max())) + 1, int(np.ceil(dst[:, 1].max())) + 1)
        if perspective:
            warped = cv2.warpPerspective(mask, matrix, size, flags=cv2.INTER_LINEAR)
        else:  # 2-3x cheaper than warpPerspective for the same (affine) matrix
            warped = cv2.warpAffine(mask, matrix[:2], size, flags=cv2.INTER_LINEAR)
        corners = np.array([[[x0, y0], [x1, y0], [x1, y1], [x0, y1]]], np.float32)
        moved = cv2.perspectiveTransform(corners, matrix)[0]
        lo, hi = np.floor(moved.min(axis=0)).astype(int), np.ceil(moved.max(axis=0)).astype(int)
        return warped, (int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1]))

    def _crop(self, mask: np.ndarray, line_box: tuple[int, int, int, int], rng: np.random.Generator
              ) -> np.ndarray | None:
        """Cut the word out like a detector box (ink extent, usually widened to the line's ascent/descent), add
        tight or loose margins, and resize to ``height`` with a little aspect jitter. Returns the alpha in [0, 1]."""
        # The extent of pixels above 32, as boundingRect of the thresholded mask (see _trim).
        x0, y0, ink_w, ink_h = cv2.boundingRect(cv2.threshold(mask, 32, 255, cv2.THRESH_BINARY)[1])
        if ink_w == 0:
            return None
        x1, y1 = x0 + ink_w, y0 + ink_h
        if rng.random() < 0.7:
            y0, y1 = min(y0, line_box[1]), max(y1, line_box[3])
        box_h = y1 - y0
        u = rng.random(5).tolist()
        low, high = ((0.0,) * 4, _TIGHT_PADS) if self.clean or u[4] < 0.5 else _LOOSE_PADS
        left, top, right, bottom = (int((lo + v * (hi - lo)) * box_h + 0.5) for lo, hi, v in zip(low, high, u))
        x0, y0, x1, y1 = x0 - left, y0 - top, x1 + right, y1 + bottom
        h, w = mask.shape
        if x0 < 0 or y0 < 0 or x1 > w or y1 > h:  # the margin reaches past the canvas: it is empty ground there
            mask = cv2.copyMakeBorder(mask, max(0, -y0), max(0, y1 - h), max(0, -x0), max(0, x1 - w),
                                      cv2.BORDER_CONSTANT, value=0)
            x0, x1, y0, y1 = x0 - min(0, x0), x1 - min(0, x0), y0 - min(0, y0), y1 - min(0, y0)
        crop = mask[y0:y1, x0:x1]
        scale = self.height / crop.shape[0]
        aspect = 1.0 if self.clean else min(max(float(np.exp(rng.normal(0, 0.1))), 0.75), 1.3)
        width = max(2, round(crop.shape[1] * scale * aspect))
        # INTER_AREA only for strong reductions: at non-integer ratios it costs ~6x INTER_LINEAR here.
        interp = cv2.INTER_AREA if scale < 0.5 else cv2.INTER_LINEAR
        resized = cv2.resize(crop, (width, self.height), interpolation=interp)
        return resized.astype(np.float32) * np.float32(1 / 255)

    @staticmethod
    def ink_alpha(alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Faded, uneven or bolder print."""
        r = rng.random()
        if r < 0.08:  # ink spread / bold
            alpha = cv2.dilate(alpha, np.ones((2, 2), np.uint8))
        elif r < 0.14:  # worn print
            alpha = np.minimum(alpha, cv2.erode(alpha, np.ones((2, 1), np.uint8)) * 0.5 + alpha * 0.6)
        if rng.random() < 0.2:  # uneven ink or toner
            h, w = alpha.shape
            alpha = alpha * (1 - (0.2 + 0.4 * rng.random()) * (_smooth_field(rng, h, w, 8) + 0.5))
        return alpha * np.float32(0.75 + 0.25 * rng.random()) if rng.random() < 0.3 else alpha

    @staticmethod
    def _clutter(image: np.ndarray, alpha: np.ndarray, ink: list[float], rng: np.random.Generator) -> np.ndarray:
        """Underlines, table rules, form lines and specks that surround real words."""
        h, w = alpha.shape
        u = rng.random(4).tolist()  # Python floats: a numpy comparison and .any() cost ~10x more on 4 values
        if not any(v < p for v, p in zip(u, _CLUTTER_P)):
            return image
        colour = tuple(ink) if rng.random() < 0.6 else tuple((60 + 120 * rng.random(3)).tolist())
        if u[0] < _CLUTTER_P[0]:  # underline just below the ink
            rows = np.flatnonzero(alpha.max(axis=1) > 0.3)
            if rows.size and rows[-1] + 2 < h:
                y = int(rows[-1]) + 1 + _randint(rng, min(3, h - int(rows[-1]) - 2))
                inset = max(1, w // 8)
                cv2.line(image, (_randint(rng, inset), y), (w - 1 - _randint(rng, inset), y), colour, 1)
        if u[1] < _CLUTTER_P[1]:  # table rules on the crop's edges
            thick = 1 + _randint(rng, 2)
            for side in np.flatnonzero(rng.random(4) < 0.5).tolist():
                x, y = (0, w - 1)[side % 2], (0, h - 1)[side % 2]
                p1, p2 = ((x, 0), (x, h - 1)) if side < 2 else ((0, y), (w - 1, y))
                cv2.line(image, p1, p2, colour, thick)
        if u[2] < _CLUTTER_P[2]:  # a form line or box edge near the bottom
            y = int(h * 0.85) + _randint(rng, h - int(h * 0.85))
            cv2.line(image, (0, y), (w - 1, y + _randint(rng, 3) - 1), colour, 1)
        if u[3] < _CLUTTER_P[3]:  # dust, pale and off the ink's box so that it never reads as a dot or an accent
            rows, cols = np.flatnonzero(alpha.max(axis=1) > 0.1), np.flatnonzero(alpha.max(axis=0) > 0.1)
            dust = tuple(float(0.5 * (c + g)) for c, g in zip(colour, image[0, 0]))
            for x, y in zip((rng.random(6) * w).astype(int).tolist(), (rng.random(6) * h).astype(int).tolist()):
                if rows.size == 0 or not (rows[0] - 3 <= y <= rows[-1] + 3 and cols[0] - 3 <= x <= cols[-1] + 3):
                    cv2.circle(image, (x, y), _randint(rng, 2), dust, -1)
        return image

    @staticmethod
    def degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Lighting, optics, sensor and compression: float32 in, uint8 out."""
        h, w = image.shape[:2]
        u = rng.random(7).tolist()
        if u[0] < 0.35:  # uneven lighting: a shadow or a bright spot across the crop
            shade = 1 + _smooth_field(rng, h, w, 2) * np.float32(0.2 + 0.4 * rng.random())
            image = cv2.multiply(image, _rgb(shade))
        if u[1] < 0.3:
            image = cv2.GaussianBlur(image, (0, 0), 0.4 + 0.7 * rng.random())
        elif u[1] < 0.35:  # motion blur
            k = 3 + _randint(rng, 3)
            kernel = np.zeros((k, k), np.float32)
            kernel[k // 2] = 1 / k
            rot = cv2.getRotationMatrix2D(((k - 1) / 2, (k - 1) / 2), 180 * rng.random(), 1.0)
            kernel = cv2.warpAffine(kernel, rot, (k, k))
            image = cv2.filter2D(image, -1, kernel / max(float(kernel.sum()), 1e-6))
        if u[2] < 0.6:
            image = cv2.scaleAdd(_noise(rng, h, w), 2 + 8 * rng.random(), image)
        out = np.clip(image, 0, 255).astype(np.uint8)
        if u[3] < 0.1:  # grey scan or photocopy
            out = cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        if u[4] < 0.2:  # low resolution: down, then back up
            f = 0.5 + 0.3 * rng.random()
            # INTER_LINEAR, not AREA, going down: its aliasing is what cheap cameras do, and AREA costs 5x here.
            small = cv2.resize(out, (max(2, round(w * f)), max(2, round(h * f))), interpolation=cv2.INTER_LINEAR)
            out = cv2.resize(small, (w, h), interpolation=_UPSCALE[_randint(rng, 3)])
        if u[5] < 0.3:  # JPEG; OpenCV codecs expect BGR (cvtColor swaps in ~1 us, a numpy [..., ::-1] copy ~25 us)
            quality = 15 + _randint(rng, 70)
            _, buf = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
            out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        return out
