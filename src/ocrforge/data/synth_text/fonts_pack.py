"""The bundled OFL font pack and a glyph-cached text rasteriser.

Pillow lays out and rasterises the whole string on every call (about 250-400 us for a word on a small CPU), which
alone would cap the renderer below 2,000 words/s. Words reuse the same few hundred glyphs, so each font at each size
keeps its glyph bitmaps and advances, pair kerning is measured once per font and pair, and a word is assembled from
them with numpy slices (no ligatures: "fi" stays two glyphs, as in most printed and scanned text).
Scripts that need shaping (Arabic, Hebrew, Indic, Thai, combining marks) cannot be assembled glyph by glyph and are
rendered whole by Pillow (with libraqm when available).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from pathlib import Path

import numpy as np
from fontTools.ttLib import TTFont
from PIL import Image, ImageDraw, ImageFont, features

PACK_DIR = Path(__file__).resolve().parent.parent / "fonts_pack"
# Code point blocks whose glyphs change with their neighbours: RTL scripts, Indic, Thai/Lao, Tibetan, Myanmar,
# Khmer, Mongolian, Balinese ..., Arabic presentation forms.
_SHAPED_RANGES = ((0x0590, 0x10FF), (0x1700, 0x18AF), (0x1A00, 0x1CFF), (0xA800, 0xABFF), (0xFB1D, 0xFDFF),
                  (0xFE70, 0xFEFF), (0x10800, 0x11FFF))
# One font at one size with CJK text would otherwise keep every glyph it ever drew.
_MAX_GLYPHS = 4096
_WEIGHT_SUFFIX = re.compile(r"(\s+(Hairline|Thin|ExtraLight|UltraLight|Light|Book|Regular|Medium|SemiBold|DemiBold|"
                            r"Bold|ExtraBold|UltraBold|Heavy|Black|Italic|Oblique))+$", re.I)
_KERN_SIZE = 50
# Without libraqm Pillow's basic layout applies only legacy 'kern' tables and no ligatures, and takes no features.
_NO_LIGATURES = ["-liga", "-clig", "-dlig", "-calt"] if features.check_feature("raqm") else None


def pack_dir() -> Path:
    """Folder of the bundled fonts (one sub-folder per family with its licence; see SOURCES.md there)."""
    return PACK_DIR


@lru_cache(maxsize=4096)
def _char_needs_shaping(ch: str) -> bool:
    code = ord(ch)
    return unicodedata.combining(ch) != 0 or any(lo <= code <= hi for lo, hi in _SHAPED_RANGES)


def needs_shaping(text: str) -> bool:
    return not text.isascii() and any(_char_needs_shaping(ch) for ch in text)  # ASCII never needs shaping


def family_name(path: str) -> str:
    """The font's typographic family ("IBM Plex Sans" for its Medium Italic too), used to weight families equally
    (DejaVu ships 12 files, most pack families 1-3). Raises OSError when FreeType cannot load the file."""
    ImageFont.truetype(path, 12)  # fontTools read the file, but Pillow must render it
    with TTFont(path, lazy=True, fontNumber=0) as font:
        family = font["name"].getBestFamilyName() if "name" in font else None
    # Web subsets often drop the typographic family (name ID 16), leaving "IBM Plex Sans Medium" as a family.
    return _WEIGHT_SUFFIX.sub("", family or "") or Path(path).stem


def has_kerning(path: str) -> bool:
    """Whether the font can move a pair of glyphs apart: a GPOS 'kern' feature or a legacy 'kern' table (the only
    layout features that change the advance between two Latin glyphs here: 'mark'/'mkmk' place combining marks,
    which go to the shaped path, and ligatures are switched off). Reads only the table directory and GPOS's
    feature list (well under 1 ms)."""
    try:
        with TTFont(path, lazy=True, fontNumber=0) as font:
            if "kern" in font:
                return True
            if "GPOS" not in font or font["GPOS"].table.FeatureList is None:
                return False
            return any(r.FeatureTag == "kern" for r in font["GPOS"].table.FeatureList.FeatureRecord)
    except Exception:  # fontTools raises many kinds on odd files: measure then, as before
        return True


class _Kerning:
    """Pair adjustments of one font as the layout engine applies them (GPOS/kern pair kerning with libraqm).

    Measured once per pair at _KERN_SIZE and scaled (kerning is linear in the size), with ligatures and contextual
    alternates switched off: the glyph-by-glyph layout draws "ff" as two glyphs, so a measured ligature width would
    overlap them. Reading the font's GPOS tables with fontTools instead gives the same numbers but costs ~50 ms a
    font to parse.
    """

    def __init__(self, path: str) -> None:
        self.font = ImageFont.truetype(path, _KERN_SIZE)
        self.pairs: dict[str, float] = {}  # pair -> adjustment at _KERN_SIZE, filled on first use
        self._singles: dict[str, float] = {}
        # A quarter of the fonts (monospaced, handwriting) kern nothing; measuring each of their pairs cost ~50 us.
        self.kerns = has_kerning(path)

    def _length(self, text: str) -> float:
        return self.font.getlength(text, features=_NO_LIGATURES)

    def adjust(self, pair: str) -> float:
        if len(self.pairs) >= 4 * _MAX_GLYPHS:
            self.pairs.clear()
        if not self.kerns:
            self.pairs[pair] = 0.0
            return 0.0
        singles = self._singles
        for ch in pair:
            if ch not in singles:
                singles[ch] = self._length(ch)
        value = self.pairs[pair] = self._length(pair) - singles[pair[0]] - singles[pair[1]]
        return value


@lru_cache(maxsize=512)
def _kerning(path: str) -> _Kerning:
    return _Kerning(path)


class CachedFont:
    """One font file at one pixel size, with its glyph bitmaps, advances and kerning cached."""

    def __init__(self, path: str, size: int) -> None:
        self.path, self.size = path, size
        self.font = ImageFont.truetype(path, size)
        self.ascent, self.descent = self.font.getmetrics()
        # The line box a detector would draw spans ascenders to descenders; the font's ascent/descent metrics often
        # include line gap (1.4-1.8 em in Source Serif, STIX) and would shrink the word inside its crop.
        top, bottom = -self.font.getbbox("Hdlbk", anchor="ls")[1], self.font.getbbox("gjpqy", anchor="ls")[3]
        self.line_top, self.line_bottom = min(max(top, 1), self.ascent), min(max(bottom, 0), self.descent)
        self._glyphs: dict[str, tuple[np.ndarray, int, int, float]] = {}
        self._kerning = _kerning(path)
        self._kern_scale = size / _KERN_SIZE

    def _glyph(self, ch: str) -> tuple[np.ndarray, int, int, float, int, int]:
        """Bitmap, its offset from the pen position on the baseline, the advance, and the bitmap's width/height."""
        cached = self._glyphs.get(ch)
        if cached is None:
            left, top, right, bottom = self.font.getbbox(ch, anchor="ls")
            bitmap = np.zeros((0, 0), np.uint8)
            if right > left and bottom > top:
                image = Image.new("L", (right - left, bottom - top))
                ImageDraw.Draw(image).text((-left, -top), ch, font=self.font, fill=255, anchor="ls")
                bitmap = np.asarray(image)
            if len(self._glyphs) >= _MAX_GLYPHS:
                self._glyphs.clear()
            cached = (bitmap, left, top, self.font.getlength(ch), bitmap.shape[1], bitmap.shape[0])
            self._glyphs[ch] = cached
        return cached

    def render(self, text: str, margin: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """Coverage mask (uint8, 255 = ink) of one line of ``text`` and its line box (x0, y0, x1, y1).

        The mask spans the font's ascent and descent (or any taller glyph) plus ``margin`` on every side; the line
        box spans ascender to descender line vertically and the advance horizontally.
        """
        if needs_shaping(text):
            return self._render_shaped(text, margin)
        # Hot loop: cache hits are read inline and extents tracked with plain comparisons; method calls and max()
        # per character would cost as much as the lookups.
        glyphs, pairs, scale = self._glyphs, self._kerning.pairs, self._kern_scale
        pen, placed, previous = 0.0, [], ""
        x_min, x_max, y_min, y_max = 0, 0, -self.ascent, self.descent
        for ch in text:
            bitmap, left, top, advance, w, h = glyphs.get(ch) or self._glyph(ch)
            if previous:
                pair = previous + ch
                kern = pairs.get(pair)
                pen += (self._kerning.adjust(pair) if kern is None else kern) * scale
            if w:
                x = round(pen) + left
                placed.append((bitmap, x, top, w, h))
                if x < x_min:
                    x_min = x
                if x + w > x_max:
                    x_max = x + w
                if top < y_min:
                    y_min = top
                if top + h > y_max:
                    y_max = top + h
            pen += advance
            previous = ch
        advance = int(np.ceil(pen))
        pad_x, baseline = margin - x_min, margin - y_min
        mask = np.zeros((y_max - y_min + 2 * margin, pad_x + max(x_max, advance) + margin), np.uint8)
        inked_to = x_min  # right edge of the bitmaps placed so far: left of it glyphs may overlap (kerning, italics)
        for bitmap, x, top, w, h in placed:
            region = mask[baseline + top:baseline + top + h, pad_x + x:pad_x + x + w]
            if x < inked_to:
                np.maximum(region, bitmap, out=region)
            else:  # still blank there: a plain copy is cheaper than the ufunc
                region[...] = bitmap
            if x + w > inked_to:
                inked_to = x + w
        return mask, (pad_x, baseline - self.line_top, pad_x + advance, baseline + self.line_bottom)

    def _render_shaped(self, text: str, margin: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        left, _, right, _ = self.font.getbbox(text, anchor="ls")
        advance = int(np.ceil(self.font.getlength(text)))
        pad_x = margin + max(0, -left)
        width = max(right, advance) + pad_x + margin
        height = self.ascent + self.descent + 2 * margin
        baseline = margin + self.ascent
        image = Image.new("L", (width, height))
        ImageDraw.Draw(image).text((pad_x, baseline), text, font=self.font, fill=255, anchor="ls")
        return np.asarray(image), (pad_x, baseline - self.line_top, pad_x + advance, baseline + self.line_bottom)


@lru_cache(maxsize=1024)
def cached_font(path: str, size: int) -> CachedFont:
    """Fonts are cached per (path, size): opening a .woff decompresses it, and the glyph cache lives on the object."""
    return CachedFont(path, size)
