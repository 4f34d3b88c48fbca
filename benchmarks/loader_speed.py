"""Data-only throughput: a config's training DataLoader (dataset, augmentation, targets, collation, in workers) with
no model, in samples/s and samples/s per worker, for several worker counts.

    python benchmarks/loader_speed.py configs/rec/ppocr_mobile_synth.yaml --workers 1 4 14 --seconds 20 --out r.json

The first batches of each worker count are a warm-up (process start, font and glyph caches) and are not timed.
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


def samples_per_second(config: str, overrides: list[str], workers: int, seconds: float, warmup_batches: int) -> dict:
    cfg = load_config(config, [*overrides, f"data.train.num_workers={workers}"])
    loader = build_dataloader(build_task(cfg), "train", training=True)
    batches = _endless(loader)
    for _ in range(warmup_batches * max(workers, 1)):
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
    parser.add_argument("--warmup-batches", type=int, default=3, help="per worker")
    parser.add_argument("--out", type=Path)
    parser.add_argument("-o", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args()
    runs = [samples_per_second(args.config, args.overrides, w, args.seconds, args.warmup_batches)
            for w in args.workers]
    result = {"config": args.config, "overrides": args.overrides, "cpus": os.cpu_count(),
              "platform": platform.platform(), "runs": runs}
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
