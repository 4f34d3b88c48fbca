"""Words per second of the synthetic word renderer in one process; writes JSON to benchmarks/results/.

    python benchmarks/synth_rec_speed.py [--seconds 15] [--height 32]
    python benchmarks/synth_rec_speed.py --complete configs/rec/ppocr_mobile_synth.yaml [--seconds 15]

``--complete CONFIG`` times what one DataLoader worker does per training sample instead: the task's train dataset
built from the config as training builds it (``task.build_dataset('train')`` behind ``SkipSafeDataset``: per-sample
seeding, rendering, the config's transforms, label encoding, resize/pad to the model input, the CHW tensor).

Each process fills its glyph and kerning caches as fonts meet new characters, so three rates are reported, each over
a third of the time budget: ``cold`` (a fresh renderer), ``fresh_after_warmup`` (new indices next), and
``warm_cache`` (the cold indices rendered again: every glyph and pair cached, the rate a long run converges to).
OpenCV runs single-threaded, as it should in a DataLoader worker. A busy machine lowers every figure, so each phase
records this process's CPU share and the machine's busy fraction.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ocrforge.data.collate import SKIP_KEY, SkipSafeDataset
from ocrforge.data.synth_text import WordRenderer
from ocrforge.engine.rundir import environment_info

RESULTS = Path(__file__).resolve().parent / "results"


def busy_jiffies() -> tuple[int, int] | None:
    """(busy, total) CPU time of the whole machine so far, from /proc/stat (Linux only)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def timed(produce: Callable[[int], int], indices: Iterable[int], seconds: float, unit: str = "words"
          ) -> dict[str, float | None]:
    """Calls ``produce(index)`` (returning the image width) in order until the indices or the time budget run out.

    ``cpu_share``: this process's CPU time over wall time (1.0 = it had a core to itself); ``machine_busy``: the
    busy fraction of all CPUs meanwhile; above 1/cpus, other work was running and the rate is an underestimate.
    """
    count, widths, jiffies = 0, 0, busy_jiffies()
    began, cpu_began = time.perf_counter(), time.process_time()
    for index in indices:
        widths += produce(index)
        count += 1
        if time.perf_counter() - began >= seconds:
            break
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu_began
    after = busy_jiffies()
    busy = round((after[0] - jiffies[0]) / max(after[1] - jiffies[1], 1), 2) if jiffies and after else None
    single = unit.rstrip("s")
    return {unit: count, f"{unit}_per_s": round(count / elapsed, 1),
            f"us_per_{single}": round(elapsed / count * 1e6, 1), "mean_width_px": round(widths / count, 1),
            "cpu_share": round(cpu / elapsed, 2), "machine_busy": busy}


def one_thread() -> None:
    """As in a DataLoader worker: one OpenCV thread, one torch thread."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def in_fresh_process(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a spawned process: each config starts with cold font, glyph, kerning and Faker caches, as a
    worker of its own training run would (the CPU affinity is inherited)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def complete_samples(config: str, seconds: float) -> dict[str, Any]:
    """Complete training samples per second of one worker for ``config``'s train split (see the module docstring).

    Indices are drawn as ``(epoch 0, index)`` keys, as the training sampler hands them to ``SkipSafeDataset``;
    skipped samples (labels the model cannot take) count as produced, as they cost a worker the same."""
    from ocrforge.config.loader import load_config
    from ocrforge.engine.module import build_task

    one_thread()
    began = time.perf_counter()
    cfg = load_config(config)
    task = build_task(cfg)
    dataset = SkipSafeDataset(task.build_dataset("train"), int(cfg.seed))
    setup_s = time.perf_counter() - began
    skips: Counter = Counter()

    def produce(index: int) -> int:
        sample = dataset[(0, index)]
        if SKIP_KEY in sample:
            skips[sample[SKIP_KEY]] += 1
            return 0
        return sample["image"].shape[-1]

    phase = seconds / 3
    cold = timed(produce, range(len(dataset)), phase, "samples")
    fresh = timed(produce, range(len(dataset) // 2, len(dataset)), phase, "samples")
    warm = timed(produce, list(range(cold["samples"])) * 3, phase, "samples")
    raw = dataset.dataset.raw
    return {"config": config, "image_size": list(cfg.data.image_size), "setup_s": round(setup_s, 3),
            "fonts": len(raw.renderer.fonts), "cold": cold, "fresh_after_warmup": fresh, "warm_cache": warm,
            "skipped": dict(skips), "stats": dict(raw.stats)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="total time budget of the three phases")
    parser.add_argument("--height", type=int, default=32)
    parser.add_argument("--complete", metavar="CONFIG", action="append", default=[],
                        help="time complete training samples of this config's train split (repeatable)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    one_thread()
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    if args.complete:
        result = {"benchmark": "synth_rec_speed_complete",
                  "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "machine": {**environment_info(), "loadavg_before": load_before,
                              "cpu_affinity": sorted(os.sched_getaffinity(0))},
                  "configs": [in_fresh_process(complete_samples, config, args.seconds) for config in args.complete]}
        date = datetime.now(timezone.utc).date().isoformat()
        write(result, args.out or RESULTS / f"synth_rec_speed_vm_{date}.json")
        return

    began = time.perf_counter()
    renderer = WordRenderer(height=args.height, seed=0)
    setup_s = time.perf_counter() - began
    phase = args.seconds / 3

    def produce(index: int) -> int:
        return renderer.render(index).image.shape[1]

    cold = timed(produce, range(10**9), phase)
    fresh = timed(produce, range(10**8, 10**9), phase)
    warm = timed(produce, list(range(cold["words"])) * 3, phase)

    n_text, text_began = 2000, time.perf_counter()
    for i in range(n_text):
        renderer.sampler.sample(np.random.default_rng([1, i]))
    text_us = (time.perf_counter() - text_began) / n_text * 1e6

    result = {
        "benchmark": "synth_rec_speed",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {**environment_info(), "loadavg_before": load_before},
        "height": args.height,
        "fonts": len(renderer.fonts),
        "families": len(renderer.families),
        "setup_s": round(setup_s, 3),
        "cold": cold,
        "fresh_after_warmup": fresh,
        "warm_cache": warm,
        "text_sampling_us_per_word": round(text_us, 1),
        "stats": dict(renderer.stats),
        "sampler_stats": dict(renderer.sampler.stats),
    }
    write(result, args.out or RESULTS / f"synth_rec_speed_{platform.node() or 'host'}.json")


def write(result: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
