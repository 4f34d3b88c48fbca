"""Write synthetic recognition words to disk: an image folder with ``labels.txt``, or an LMDB.

Both outputs hold the same JPEG bytes for the same ``(seed, index)``: every crop is a pure function of its seed and
index (see ``render.py``) and JPEG encoding at a fixed quality is deterministic, so a seed names a dataset, whatever
the number of processes that rendered it. Rendering once into an LMDB and training epochs from it (``RecLMDB``) costs
a JPEG decode per sample instead of a render.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

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


_CHUNK = 256  # words per task handed to a rendering process
_worker_dataset: SynthWordsDataset | None = None


def _start_worker(dataset_args: dict[str, Any]) -> None:
    global _worker_dataset
    cv2.setNumThreads(1)  # one process per core already
    _worker_dataset = SynthWordsDataset(**dataset_args)


def _render_chunk(dataset: SynthWordsDataset, start: int, stop: int, quality: int
                  ) -> tuple[list[tuple[bytes, str]], Counter]:
    before = Counter(dataset.stats)
    words = []
    for i in range(start, stop):
        sample = dataset[i]
        words.append((encode_jpeg(sample["image"], quality), sample["label"]))
    return words, dataset.stats - before


def _render_in_worker(start: int, stop: int, quality: int) -> tuple[list[tuple[bytes, str]], Counter]:
    assert _worker_dataset is not None
    return _render_chunk(_worker_dataset, start, stop, quality)


def _rendered(dataset: SynthWordsDataset, dataset_args: dict[str, Any], quality: int, workers: int, stats: Counter
              ) -> Iterator[tuple[bytes, str]]:
    """(JPEG bytes, label) of every index in order, rendered here or by ``workers`` processes (chunks of _CHUNK, a
    few in flight per process so that memory stays bounded); ``stats`` adds up the renderers' counters."""
    num_samples = len(dataset)
    chunks = [(start, min(start + _CHUNK, num_samples)) for start in range(0, num_samples, _CHUNK)]
    if workers <= 1 or len(chunks) == 1:
        for start, stop in chunks:
            words, counts = _render_chunk(dataset, start, stop, quality)
            stats.update(counts)
            yield from words
        return
    # Spawned, not forked: a fork of a process with threads (torch's, a DataLoader's) can deadlock in the child.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                             initargs=(dataset_args,)) as pool:
        pending: list[Future] = []
        for chunk in chunks:
            pending.append(pool.submit(_render_in_worker, *chunk, quality))
            if len(pending) < 4 * workers:
                continue
            words, counts = pending.pop(0).result()
            stats.update(counts)
            yield from words
        for future in pending:
            words, counts = future.result()
            stats.update(counts)
            yield from words


def export_synth_rec(out: str | Path, num_samples: int, seed: int = 0,
                     charset: Charset | str | None = "printable_space", height: int = 32,
                     fonts_dir: str | Sequence[str] | None = None, lmdb: bool = False,
                     quality: int = JPEG_QUALITY, workers: int | None = None, **dataset_kwargs) -> dict:
    """Render ``num_samples`` words of ``SynthWordsDataset(num_samples, seed, charset, height, fonts_dir)`` in
    ``workers`` processes (default: one per core, at most 16; the output does not depend on it).

    Folder output: ``out/images/<nnnnnnnn>.jpg`` and ``out/labels.txt`` (``images/<nnnnnnnn>.jpg<TAB>text``,
    relative to ``out``), written as ``labels.txt.partial`` and renamed when complete. With ``lmdb``: an LMDB at
    ``out`` (records 1..N, JPEG bytes). Refuses to overwrite an existing ``labels.txt`` or LMDB.

    Returns ``{"out", "format", "samples", "seconds", "words_per_s", "workers", "stats"}``; ``stats`` are the
    renderer's and text sampler's counters (font fallbacks, re-drawn texts, folded case, ...), zero counts left out.
    """
    if num_samples < 1:
        raise DataError(f"num_samples must be at least 1, got {num_samples}")
    folder = Path(out)
    if not lmdb and (folder / LABELS_FILE).exists():
        raise DataError(f"{folder / LABELS_FILE} already exists; write to a new folder")
    if isinstance(charset, (str, Path)):
        charset = Charset.load(charset)
    dataset_args = {"num_samples": num_samples, "seed": seed, "charset": charset, "height": height,
                    "fonts_dir": fonts_dir, **dataset_kwargs}
    workers = min(os.cpu_count() or 1, 16) if workers is None else max(1, workers)
    dataset = SynthWordsDataset(**dataset_args)  # fonts and charset are checked before any process starts
    stats = Counter(dataset.stats)
    words = _rendered(dataset, dataset_args, quality, workers, stats)
    start = time.perf_counter()
    if lmdb:
        with LmdbWriter(folder) as writer:
            for image_bytes, label in words:
                writer.add(image_bytes, label)
    else:
        (folder / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
        partial = folder / (LABELS_FILE + ".partial")
        width = max(8, len(str(num_samples - 1)))
        with open(partial, "w", encoding="utf-8", newline="\n") as labels:
            for i, (image_bytes, label) in enumerate(words):
                name = f"{IMAGES_DIR}/{i:0{width}d}.jpg"
                (folder / name).write_bytes(image_bytes)
                labels.write(f"{name}\t{label}\n")
        os.replace(partial, folder / LABELS_FILE)
    seconds = time.perf_counter() - start
    return {"out": str(folder), "format": "lmdb" if lmdb else "folder", "samples": num_samples,
            "seconds": seconds, "words_per_s": num_samples / max(seconds, 1e-9), "workers": workers,
            "stats": {k: v for k, v in sorted(stats.items()) if v}}


def summarize(report: dict) -> str:
    """One line: count, destination, speed and the renderer's counters (the others only when non-zero)."""
    stats = {**dict.fromkeys(RENDER_COUNTERS, 0), **report["stats"]}
    counters = ", ".join(f"{k}={v}" for k, v in stats.items())
    return (f"{report['samples']} words -> {report['out']} ({report['format']}) in {report['seconds']:.1f} s, "
            f"{report['words_per_s']:.0f} words/s; counters: {counters}")
