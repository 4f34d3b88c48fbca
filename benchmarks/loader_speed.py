"""Data-only throughput: a config's training DataLoader (dataset, augmentation, targets, collation, in workers) with
no model, in samples/s and samples/s per worker, for several worker counts.

    python benchmarks/loader_speed.py configs/rec/ppocr_mobile_synth.yaml --workers 1 4 14 --seconds 20 --out r.json

Each worker count first runs ``--warmup-seconds`` untimed: process start, and caches that fill with use (the
synthetic renderer's glyphs and kerning pairs; a long run's persistent workers keep them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path

from torch.utils.data import DataLoader

from ocrforge.config import load_config
from ocrforge.engine.data import build_dataloader
from ocrforge.engine.module import build_task


def _endless(loader: DataLoader) -> Iterator[dict]:
    """Epoch after epoch (small data sets end before the time budget does)."""
    while True:
        yield from loader


def samples_per_second(config: str, overrides: list[str], workers: int, seconds: float, warmup: float) -> dict:
    cfg = load_config(config, [*overrides, f"data.train.num_workers={workers}"])
    loader = build_dataloader(build_task(cfg), "train", training=True)
    batches = _endless(loader)
    start = time.perf_counter()
    while time.perf_counter() - start < warmup:
        next(batches)
    samples, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        samples += int(next(batches)["batch_size"])
    rate = samples / (time.perf_counter() - start)
    return {"workers": workers, "samples_per_s": round(rate, 1),
            "samples_per_s_per_worker": round(rate / max(workers, 1), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup-seconds", type=float, default=30.0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("-o", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args()
    runs = [samples_per_second(args.config, args.overrides, w, args.seconds, args.warmup_seconds)
            for w in args.workers]
    result = {"config": args.config, "overrides": args.overrides, "warmup_s": args.warmup_seconds,
              "cpus": os.cpu_count(),
              "platform": platform.platform(), "runs": runs}
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
