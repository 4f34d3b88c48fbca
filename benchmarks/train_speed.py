"""Training throughput of a real run -- ``train()`` with Lightning, EMA, logging and checkpoint callbacks, as
``ocrforge train`` runs it -- in samples/s over the steps after a warm-up, and where its steps make the host wait
for the GPU; one JSON report.

    python benchmarks/train_speed.py CONFIG [--steps 300] [--skip 50] [--sync-steps 5] [--label NAME] [--out FILE]
        [-o KEY=VALUE ...]

``--sync-steps N``: for N steps after the warm-up, ``torch.cuda.set_sync_debug_mode("warn")`` counts every
synchronising CUDA call by the Python lines that made it (innermost frames of ocrforge, Lightning and torch);
the timed steps follow. Validation, the progress bar and the loggers are off. Uses only ``train(cfg, callbacks=...)``,
so a checkout from before a change runs it too (a before/after in the same session on the same machine).
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import lightning as L
import torch

from ocrforge.config import load_config
from ocrforge.runners.train import train

_FRAMES = ("/ocrforge/", "/lightning/", "/torch/")


def _where(limit: int = 3) -> str:
    frames = [f for f in traceback.extract_stack()[:-2] if any(part in f.filename for part in _FRAMES)]
    named = [f"{f.filename.rsplit('/site-packages/', 1)[-1].rsplit('/src/', 1)[-1]}:{f.lineno}"
             for f in frames[-limit:]]
    return " < ".join(reversed(named)) or "(no Python frame: autograd or a worker thread)"


class StepClock(L.Callback):
    """Times the steps after ``skip + sync_steps`` (device synchronised at both ends) and counts synchronising calls
    during the ``sync_steps`` before them."""

    def __init__(self, skip: int, sync_steps: int) -> None:
        self.skip, self.sync_steps = skip, sync_steps
        self.first_steps_s: list[float] = []
        self.syncs: Counter = Counter()
        self.samples, self.steps, self.elapsed = 0, 0, 0.0
        self._began: float | None = None
        self._saved: tuple[Any, list] | None = None

    def _record(self, message: Any, category: type, filename: str, lineno: int, file: Any = None,
                line: str | None = None) -> None:
        if "synchroniz" in str(message):
            self.syncs[_where()] += 1
        elif self._saved is not None:
            self._saved[0](message, category, filename, lineno, file, line)

    def _watch(self, on: bool) -> None:
        if on:
            self._saved = (warnings.showwarning, warnings.filters[:])
            warnings.simplefilter("always")
            warnings.showwarning = self._record
            torch.cuda.set_sync_debug_mode("warn")
        elif self._saved is not None:
            torch.cuda.set_sync_debug_mode(0)
            warnings.showwarning, warnings.filters[:] = self._saved
            self._saved = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        step = trainer.global_step
        if step == self.skip and self.sync_steps and torch.cuda.is_available():
            self._watch(True)
        if step == self.skip + self.sync_steps:
            self._watch(False)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self._began = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if len(self.first_steps_s) < 3:
            self.first_steps_s.append(round(time.perf_counter() - self._started, 2))
        if self._began is None:
            return
        self.samples += int(batch["batch_size"])
        self.steps += 1
        if trainer.global_step >= trainer.max_steps:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.elapsed = time.perf_counter() - self._began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--steps", type=int, default=300, help="optimiser steps in all")
    parser.add_argument("--skip", type=int, default=50, help="untimed steps first (workers, autotuning, compile)")
    parser.add_argument("--sync-steps", type=int, default=0)
    parser.add_argument("--label", default="", help="a name for this run in the report (e.g. before / after)")
    parser.add_argument("--work-dir", default="/tmp/train_speed")
    parser.add_argument("--out", type=Path)
    parser.add_argument("-o", dest="overrides", nargs="*", default=[])
    args = parser.parse_args()
    fixed = [f"train.max_steps={args.steps}", "train.limit_val_batches=0", "train.progress_bar=false",
             "logging.tensorboard=false", "logging.csv=false", f"work_dir={args.work_dir}"]
    cfg = load_config(args.config, [*fixed, *args.overrides])
    clock = StepClock(args.skip, args.sync_steps)
    began = time.perf_counter()
    train(cfg, callbacks=[clock])
    report = {"label": args.label, "config": args.config, "overrides": args.overrides,
              "batch_size": int(cfg.data.train.batch_size), "workers": int(cfg.data.train.get("num_workers", 0)),
              "timed_steps": clock.steps, "samples_per_s": round(clock.samples / max(clock.elapsed, 1e-9), 1),
              "ms_per_step": round(clock.elapsed / max(clock.steps, 1) * 1000, 2),
              "first_steps_s": clock.first_steps_s, "run_s": round(time.perf_counter() - began, 1),
              "syncs_per_step": {k: round(v / max(args.sync_steps, 1), 2) for k, v in clock.syncs.most_common()}}
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
