"""Pictures for recognition: crops with ground truth and prediction (green when right, red when wrong)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ...data.fonts import matplotlib_font_dir

GREEN, RED, GREY = (20, 150, 40), (210, 30, 30), (90, 90, 90)


@lru_cache(maxsize=1)
def _font() -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(matplotlib_font_dir() / "DejaVuSans.ttf"), 14)


def save_prediction_grids(predictions: Sequence[dict], load_image: Callable[[dict], np.ndarray], out_dir: Path,
                          per_grid: int = 40, columns: int = 4, tile: tuple[int, int] = (220, 48)) -> list[Path]:
    """Wrong predictions first (worst first), then right ones; each tile: crop, 'gt:' line, 'pred:' line."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ordered = sorted(predictions, key=lambda p: (p["correct"], -p["ned"]))
    width, height = tile
    cell_h = height + 40
    paths = []
    for start in range(0, len(ordered), per_grid):
        chunk = ordered[start:start + per_grid]
        rows = (len(chunk) + columns - 1) // columns
        sheet = Image.new("RGB", (columns * width, rows * cell_h), "white")
        draw = ImageDraw.Draw(sheet)
        for k, pred in enumerate(chunk):
            thumb = Image.fromarray(load_image(pred))
            thumb.thumbnail((width - 6, height))
            x, y = (k % columns) * width, (k // columns) * cell_h
            sheet.paste(thumb, (x + 3, y + 2))
            draw.text((x + 3, y + height + 3), f"gt:   {pred['gt']}", fill=GREY, font=_font())
            draw.text((x + 3, y + height + 20), f"pred: {pred['text']}  {pred['score']:.2f}",
                      fill=GREEN if pred["correct"] else RED, font=_font())
        path = out_dir / f"predictions_{start // per_grid:03d}.png"
        sheet.save(path)
        paths.append(path)
    return paths
