"""Words per second of the synthetic word renderer in one process; writes JSON to benchmarks/results/.

    python benchmarks/synth_rec_speed.py [--seconds 15] [--height 32]

Each process fills its glyph and kerning caches as fonts meet new characters, so three rates are reported, each over
a third of the time budget: ``cold`` (a fresh renderer), ``fresh_after_warmup`` (new indices next), and
``warm_cache`` (the cold indices rendered again: every glyph and pair cached, the rate a long run converges to).
OpenCV runs single-threaded, as it should in a DataLoader worker. A busy machine lowers every figure, so each phase
records this process's CPU share and the machine's busy fraction.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

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


def timed(renderer: WordRenderer, indices: range | list[int], seconds: float) -> dict[str, float | None]:
    """Renders ``indices`` in order until they or the time budget run out.

    ``cpu_share``: this process's CPU time over wall time (1.0 = it had a core to itself); ``machine_busy``: the
    busy fraction of all CPUs meanwhile; above 1/cpus, other work was running and the rate is an underestimate.
    """
    count, widths, jiffies = 0, 0, busy_jiffies()
    began, cpu_began = time.perf_counter(), time.process_time()
    for index in indices:
        widths += renderer.render(index).image.shape[1]
        count += 1
        if time.perf_counter() - began >= seconds:
            break
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu_began
    after = busy_jiffies()
    busy = round((after[0] - jiffies[0]) / max(after[1] - jiffies[1], 1), 2) if jiffies and after else None
    return {"words": count, "words_per_s": round(count / elapsed, 1), "us_per_word": round(elapsed / count * 1e6, 1),
            "mean_width_px": round(widths / count, 1), "cpu_share": round(cpu / elapsed, 2), "machine_busy": busy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="total time budget of the three phases")
    parser.add_argument("--height", type=int, default=32)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None

    began = time.perf_counter()
    renderer = WordRenderer(height=args.height, seed=0)
    setup_s = time.perf_counter() - began
    phase = args.seconds / 3
    cold = timed(renderer, range(10**9), phase)
    fresh = timed(renderer, range(10**8, 10**9), phase)
    warm = timed(renderer, list(range(cold["words"])) * 3, phase)

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
    out = args.out or RESULTS / f"synth_rec_speed_{platform.node() or 'host'}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
