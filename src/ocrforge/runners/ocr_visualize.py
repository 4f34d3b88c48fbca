"""OCR result pictures: the image with each word's polygon (left) beside the recognised text drawn in place (right)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..data.fonts import matplotlib_font_dir


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(matplotlib_font_dir() / "DejaVuSans.ttf"), size)


def _colour(i: int) -> tuple[int, int, int]:
    hue = (i * 37) % 180  # well-separated hues for neighbouring words
    rgb = cv2.cvtColor(np.uint8([[[hue, 200, 210]]]), cv2.COLOR_HSV2RGB)[0, 0]
    return int(rgb[0]), int(rgb[1]), int(rgb[2])


def draw_ocr(image: np.ndarray, words: list[dict]) -> np.ndarray:
    """RGB picture twice the image's width: polygons over the image, and the text of each word in its box."""
    height, width = image.shape[:2]
    left = Image.fromarray(image).convert("RGB")
    right = Image.new("RGB", (width, height), (255, 255, 255))
    draw_left, draw_right = ImageDraw.Draw(left), ImageDraw.Draw(right)
    for i, word in enumerate(words):
        points = [tuple(map(float, p)) for p in word["polygon"]]
        colour = _colour(i)
        draw_left.polygon(points, outline=colour, width=max(1, round(max(height, width) / 500)))
        draw_right.polygon(points, outline=colour)
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        box_h = max(ys) - min(ys)
        size = int(np.clip(box_h * 0.8, 8, 64))
        font = _font(size)
        text = word["text"]
        text_w = draw_right.textlength(text, font=font) or 1.0
        if text_w > max(xs) - min(xs) > 0:
            font = _font(max(6, int(size * (max(xs) - min(xs)) / text_w)))
        draw_right.text((min(xs), min(ys) + max(0.0, box_h - size) / 2), text, fill=(0, 0, 0), font=font)
    return np.concatenate([np.asarray(left), np.asarray(right)], axis=1)


def save_ocr_picture(image: np.ndarray, words: list[dict], path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    picture = draw_ocr(image, words)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if ok:
        data.tofile(str(out))
    return out
