"""Built-in synthetic orientation data: text lines (0/180) and pages (0/90/180/270) rendered with bundled fonts.

Every sample is a pure function of (seed, index), so a run, its resume and another machine see the same images.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from torch.utils.data import Dataset

from ...data.fonts import discover_fonts
from ...data.text import pseudo_line
from ...registry import CLS_DATASETS

_CLASSES = {"line": ["0", "180"], "page": ["0", "90", "180", "270"]}
_ASCII = "".join(chr(c) for c in range(33, 127))


@lru_cache(maxsize=512)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


def _colours(rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...]]:
    paper = rng.integers(170, 256, size=3)
    ink = rng.integers(0, 90, size=3)
    if rng.random() < 0.15:  # light text on dark ground
        paper, ink = 255 - paper, 255 - ink
    return tuple(int(v) for v in paper), tuple(int(v) for v in ink)


def _degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.5:
        k = int(rng.choice([3, 5]))
        image = cv2.GaussianBlur(image, (k, k), 0)
    noise = rng.normal(0, rng.uniform(0, 12), image.shape)
    return np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)


@CLS_DATASETS.register(aliases=("SynthOrientation",))
class SynthOrientationDataset(Dataset):
    """``mode='line'``: one text line, upright or upside down; ``mode='page'``: a page of text in 4 rotations.

    A label is the angle the content was turned counter-clockwise; turning the image clockwise by it makes it
    upright. ``rotations='random'`` draws one orientation per sample; ``'all'`` shows each rendered text in every
    orientation at consecutive indices (each copy with its own skew, blur and noise): a batch then holds the same
    texts in all their orientations, and one render serves that many samples (give the split ``shuffle: false``).
    """

    def __init__(self, num_samples: int = 2000, mode: Literal["line", "page"] = "line", seed: int = 0,
                 page_size: int = 192, fonts_dir: str | None = None,
                 rotations: Literal["random", "all"] = "random") -> None:
        if mode not in _CLASSES:
            raise ValueError(f"mode must be 'line' or 'page', got {mode!r}")
        if rotations not in ("random", "all"):
            raise ValueError(f"rotations must be 'random' or 'all', got {rotations!r}")
        self.num_samples, self.mode, self.seed, self.page_size = num_samples, mode, seed, page_size
        self.rotations = rotations
        self._last_render: tuple[int, np.ndarray] | None = None
        fonts = discover_fonts((fonts_dir,) if fonts_dir else ())
        self.fonts = [f.path for f in fonts if f.covers(_ASCII)]
        self.classes = _CLASSES[mode]

    @staticmethod
    def discover_classes(mode: str = "line", **_: Any) -> list[str]:
        return list(_CLASSES[mode])

    def __len__(self) -> int:
        return self.num_samples

    def _pick_font(self, rng: np.random.Generator, size: int) -> ImageFont.FreeTypeFont:
        return _font(self.fonts[int(rng.integers(len(self.fonts)))], size)

    def _render_line(self, rng: np.random.Generator) -> np.ndarray:
        font = self._pick_font(rng, int(rng.integers(16, 40)))
        text = pseudo_line(rng, 1, 6)
        left, top, right, bottom = font.getbbox(text)
        pad_x, pad_y = int(rng.integers(2, 16)), int(rng.integers(2, 10))
        paper, ink = _colours(rng)
        canvas = Image.new("RGB", (right - left + 2 * pad_x, bottom - top + 2 * pad_y), paper)
        ImageDraw.Draw(canvas).text((pad_x - left, pad_y - top), text, font=font, fill=ink)
        return np.asarray(canvas)

    def _render_page(self, rng: np.random.Generator) -> np.ndarray:
        size = self.page_size
        paper, ink = _colours(rng)
        canvas = Image.new("RGB", (size, size), paper)
        draw = ImageDraw.Draw(canvas)
        font_size = int(rng.integers(9, 20))
        font = self._pick_font(rng, font_size)
        margin = int(rng.integers(4, 20))
        y = margin - int(rng.integers(0, font_size))
        while y < size:
            if rng.random() < 0.12:  # paragraph break or heading
                y += font_size
                heading = self._pick_font(rng, int(font_size * rng.uniform(1.2, 1.8)))
                draw.text((margin, y), pseudo_line(rng, 1, 4), font=heading, fill=ink)
                y += int(heading.size * 1.4)
                continue
            indent = margin + (int(rng.integers(0, 4 * font_size)) if rng.random() < 0.2 else 0)
            draw.text((indent, y), pseudo_line(rng, 4, 14), font=font, fill=ink)
            y += int(font_size * rng.uniform(1.15, 1.6))
        return np.asarray(canvas)

    def _render(self, rng: np.random.Generator) -> np.ndarray:
        return self._render_line(rng) if self.mode == "line" else self._render_page(rng)

    def _rendered_once(self, content: int) -> np.ndarray:
        """One render serves the consecutive indices of its rotations (a DataLoader worker gets a batch's indices in
        order when the split does not shuffle); rendering is most of a sample's cost."""
        if self._last_render is None or self._last_render[0] != content:
            self._last_render = (content, self._render(np.random.default_rng([self.seed, content])))
        return self._last_render[1]

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.num_samples:
            raise IndexError(index)
        if self.rotations == "all":
            # The same content in every orientation at once: only orientation tells the labels apart.
            content, label = divmod(index, len(self.classes))
            image = self._rendered_once(content)
            rng = np.random.default_rng([self.seed, content, label])
        else:
            rng = np.random.default_rng([self.seed, index])
            label = int(rng.integers(len(self.classes)))
            image = self._render(rng)
        angle = rng.uniform(-3, 3)
        h, w = image.shape[:2]
        rot = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        image = cv2.warpAffine(image, rot, (w, h), borderMode=cv2.BORDER_REPLICATE)
        image = _degrade(image, rng)
        image = np.ascontiguousarray(np.rot90(image, k=label * (2 if self.mode == "line" else 1)))
        return {"image": image, "label": label, "path": f"synth://{self.mode}/{self.seed}/{index}"}
