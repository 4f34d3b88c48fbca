"""Pictures for classification: the confusion matrix and grids of samples with ground truth and prediction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ...data.fonts import matplotlib_font_dir

GREEN, RED = (20, 160, 40), (210, 30, 30)


@lru_cache(maxsize=1)
def _font() -> ImageFont.FreeTypeFont:
    # DejaVu Sans (shipped with matplotlib) covers accented and Greek/Cyrillic class names; PIL's default does not.
    return ImageFont.truetype(str(matplotlib_font_dir() / "DejaVuSans.ttf"), 11)


def save_confusion_matrix(confusion: np.ndarray, classes: Sequence[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(classes)
    size = max(4.0, 0.5 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    norm = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels=list(classes), rotation=45, ha="right")
    ax.set_yticks(range(n), labels=list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(int(confusion[i, j])), ha="center", va="center",
                        color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    ax.set_title(f"confusion matrix (accuracy {np.trace(confusion) / max(confusion.sum(), 1):.3f})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_prediction_grids(predictions: Sequence[dict], load_image: Callable[[dict], np.ndarray], out_dir: Path,
                          per_grid: int = 48, tile: int = 128, columns: int = 8) -> list[Path]:
    """Tiles with 'gt → pred score' under each image; green when right, red when wrong. Wrong ones come first."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ordered = sorted(predictions, key=lambda p: p["label"] == p["gt"])
    paths = []
    for start in range(0, len(ordered), per_grid):
        chunk = ordered[start:start + per_grid]
        rows = (len(chunk) + columns - 1) // columns
        sheet = Image.new("RGB", (columns * tile, rows * (tile + 16)), "white")
        draw = ImageDraw.Draw(sheet)
        for k, pred in enumerate(chunk):
            thumb = Image.fromarray(load_image(pred))
            thumb.thumbnail((tile, tile))
            x, y = (k % columns) * tile, (k // columns) * (tile + 16)
            sheet.paste(thumb, (x + (tile - thumb.width) // 2, y + (tile - thumb.height) // 2))
            ok = pred["label"] == pred["gt"]
            draw.text((x + 3, y + tile + 2), f"{pred['gt']} > {pred['label']} {pred['score']:.2f}",
                      fill=GREEN if ok else RED, font=_font())
        path = out_dir / f"predictions_{start // per_grid:03d}.png"
        sheet.save(path)
        paths.append(path)
    return paths
