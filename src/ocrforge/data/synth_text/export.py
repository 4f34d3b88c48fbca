"""Write synthetic recognition words to disk: an image folder with ``labels.txt``, or an LMDB.

Both outputs hold the same JPEG bytes for the same ``(seed, index)``: every crop is a pure function of its seed and
index (see ``render.py``) and JPEG encoding at a fixed quality is deterministic, so a seed names a dataset.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ...errors import DataError
from ..charset import Charset
from ..lmdb_store import LmdbWriter
from . import SynthWordsDataset

JPEG_QUALITY = 95
LABELS_FILE = "labels.txt"
# Always printed, zero or not: how often the drawn font lacked a character, and texts no font could draw.
RENDER_COUNTERS = ("font_fallback", "text_redrawn_no_font")
IMAGES_DIR = "images"


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """RGB uint8 -> JPEG bytes (OpenCV encodes BGR)."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise DataError(f"could not JPEG-encode an image of shape {image.shape}")
    return data.tobytes()


def export_synth_rec(out: str | Path, num_samples: int, seed: int = 0,
                     charset: Charset | str | None = "printable_space", height: int = 32,
                     fonts_dir: str | Sequence[str] | None = None, lmdb: bool = False,
                     quality: int = JPEG_QUALITY, **dataset_kwargs) -> dict:
    """Render ``num_samples`` words of ``SynthWordsDataset(num_samples, seed, charset, height, fonts_dir)``.

    Folder output: ``out/images/<nnnnnnnn>.jpg`` and ``out/labels.txt`` (``images/<nnnnnnnn>.jpg<TAB>text``,
    relative to ``out``), written as ``labels.txt.partial`` and renamed when complete. With ``lmdb``: an LMDB at
    ``out`` (records 1..N, JPEG bytes). Refuses to overwrite an existing ``labels.txt`` or LMDB.

    Returns ``{"out", "format", "samples", "seconds", "words_per_s", "stats"}``; ``stats`` are the renderer's and
    text sampler's counters (font fallbacks, re-drawn texts, folded case, ...), zero counts left out.
    """
    if num_samples < 1:
        raise DataError(f"num_samples must be at least 1, got {num_samples}")
    folder = Path(out)
    if not lmdb and (folder / LABELS_FILE).exists():
        raise DataError(f"{folder / LABELS_FILE} already exists; write to a new folder")
    dataset = SynthWordsDataset(num_samples, seed, charset=charset, height=height, fonts_dir=fonts_dir,
                                **dataset_kwargs)
    start = time.perf_counter()
    if lmdb:
        with LmdbWriter(folder) as writer:
            for i in range(num_samples):
                sample = dataset[i]
                writer.add(encode_jpeg(sample["image"], quality), sample["label"])
    else:
        (folder / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
        partial = folder / (LABELS_FILE + ".partial")
        width = max(8, len(str(num_samples - 1)))
        with open(partial, "w", encoding="utf-8", newline="\n") as labels:
            for i in range(num_samples):
                sample = dataset[i]
                name = f"{IMAGES_DIR}/{i:0{width}d}.jpg"
                (folder / name).write_bytes(encode_jpeg(sample["image"], quality))
                labels.write(f"{name}\t{sample['label']}\n")
        os.replace(partial, folder / LABELS_FILE)
    seconds = time.perf_counter() - start
    return {"out": str(folder), "format": "lmdb" if lmdb else "folder", "samples": num_samples,
            "seconds": seconds, "words_per_s": num_samples / max(seconds, 1e-9),
            "stats": {k: v for k, v in sorted(dataset.stats.items()) if v}}


def summarize(report: dict) -> str:
    """One line: count, destination, speed and the renderer's counters (the others only when non-zero)."""
    stats = {**dict.fromkeys(RENDER_COUNTERS, 0), **report["stats"]}
    counters = ", ".join(f"{k}={v}" for k, v in stats.items())
    return (f"{report['samples']} words -> {report['out']} ({report['format']}) in {report['seconds']:.1f} s, "
            f"{report['words_per_s']:.0f} words/s; counters: {counters}")
