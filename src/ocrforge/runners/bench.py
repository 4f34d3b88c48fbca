"""``ocrforge bench``: a config's training throughput measured three ways, as one JSON report.

* ``data``: the training DataLoader alone (workers, augmentation, targets, collation), samples/s.
* ``model``: forward + loss + backward + optimiser step on one reused batch: the ceiling without data loading; the
  step time split into forward / backward / optimiser (measured in separate, synchronised steps) and peak memory.
* ``end_to_end``: the loader feeding those steps (for as long as the data-only part ran, and at least ``steps``),
  with the host's time blocked waiting for each batch.

Each part warms up first (worker start, glyph caches, cuDNN autotuning, ``torch.compile``: its cost is
``model.warmup_s``, the graphs it compiled ``compiled_graphs``, and end-to-end batches of new shapes that compile again
show in ``end_to_end.compiled_graphs``). Peak memory is reported per sample too (all of it, weights and optimiser
state included, over the batch size). The end-to-end loop, like the trainer, never waits for the device between
steps, so loading overlaps computing. Lightning's per-step work (logging, EMA, checkpoint callbacks) is not included:
compare with a real run's ``train.profiler=simple``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..engine.data import build_dataloader
from ..engine.module import build_task, compile_for_training
from ..engine.rundir import environment_info
from ..engine.trainer import resolve_precision
from ..errors import ConfigError
from ..registry import OPTIMIZERS


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    if isinstance(value, list):  # e.g. detection sources for the device: tensors and undecoded files
        return [_to_device(v, device) for v in value]
    return value


def _endless(loader: Any) -> Iterator[dict]:
    while True:  # small data sets end before the time budget does
        yield from loader


def _next_nonempty(batches: Iterator[dict]) -> dict:
    """The next batch that kept a sample (a batch whose samples were all skipped has nothing to train on)."""
    for _ in range(100):
        batch = next(batches)
        if int(batch["batch_size"]):
            return batch
    raise ConfigError("bench: 100 batches in a row had every sample skipped; run `ocrforge data check`")


def _autocast(precision: str, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    if precision in ("32", "32-true"):
        return contextlib.nullcontext
    if precision in ("bf16-mixed", "16-mixed"):
        dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16
        return lambda: torch.autocast(device.type, dtype=dtype)
    raise ConfigError(f"bench measures precision 32, bf16-mixed or 16-mixed, not {precision}")


class _Step:
    """One optimisation step of the task's model on a batch, optionally timed phase by phase."""

    def __init__(self, cfg: DictConfig, task: Any, device: torch.device, precision: str, compile_model: bool,
                 channels_last: bool) -> None:
        self.task, self.device = task, device
        self.model: nn.Module = task.build_model().to(device).train()
        if channels_last:  # as TaskModule.apply_training_speed_options does for training
            self.model.to(memory_format=torch.channels_last)
            task.channels_last = True
        if compile_model:
            compile_for_training(self.model, cfg)
        self.criterion = task.build_loss().to(device)
        self.optimizer = OPTIMIZERS.build(OmegaConf.to_container(cfg.optimizer), params=self.model.named_parameters())
        self.autocast = _autocast(precision, device)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def __call__(self, batch: dict, phases: dict[str, float] | None = None) -> None:
        began = time.perf_counter()
        with self.autocast():
            loss = self.criterion(self.task.forward_train(self.model, batch), batch)["loss"]
        if phases is not None:
            self.sync()
            phases["forward"] += time.perf_counter() - began
            began = time.perf_counter()
        loss.backward()
        if phases is not None:
            self.sync()
            phases["backward"] += time.perf_counter() - began
            began = time.perf_counter()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if phases is not None:
            self.sync()
            phases["optimizer"] += time.perf_counter() - began


def _data_only(batches: Iterator[dict], seconds: float, warmup_seconds: float, workers: int) -> dict[str, Any]:
    began = time.perf_counter()
    while time.perf_counter() - began < warmup_seconds:
        next(batches)
    samples, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        samples += int(next(batches)["batch_size"])
    rate = samples / (time.perf_counter() - began)
    return {"samples_per_s": round(rate, 1), "samples_per_s_per_worker": round(rate / max(workers, 1), 1),
            "workers": workers, "samples": samples}


def _compiled_graphs() -> int:
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def _model_only(step: _Step, batch: dict, steps: int, warmup_steps: int) -> dict[str, Any]:
    size = int(batch["batch_size"])
    began = time.perf_counter()
    for _ in range(warmup_steps):
        step(batch)
    step.sync()
    warmup_s = time.perf_counter() - began
    if step.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    began = time.perf_counter()
    for _ in range(steps):
        step(batch)
    step.sync()
    elapsed = time.perf_counter() - began
    phases = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    split_steps = max(1, min(steps, 20))
    for _ in range(split_steps):
        step(batch, phases)
    peak = torch.cuda.max_memory_allocated() / 2**20 if step.device.type == "cuda" else None
    return {"samples_per_s": round(size * steps / elapsed, 1), "ms_per_step": round(elapsed / steps * 1000, 2),
            "split_ms": {k: round(v / split_steps * 1000, 2) for k, v in phases.items()},
            "peak_memory_mb": None if peak is None else round(peak, 1),
            "peak_memory_mb_per_sample": None if peak is None else round(peak / size, 3), "batch_size": size,
            "warmup_s": round(warmup_s, 2), "compiled_graphs": _compiled_graphs()}


def _end_to_end(step: _Step, batches: Iterator[dict], steps: int, seconds: float, queued: int) -> dict[str, Any]:
    """Untimed first: the ``queued`` batches the workers prefetched while the model was measured (they would flatter
    the loader). Then at least ``steps`` steps and ``seconds`` seconds."""
    for _ in range(queued):
        step(_to_device(_next_nonempty(batches), step.device))
    step.sync()
    graphs = _compiled_graphs()
    samples, done, waiting = 0, 0, 0.0
    started = time.perf_counter()
    while done < steps or time.perf_counter() - started < seconds:
        began = time.perf_counter()
        batch = _next_nonempty(batches)
        waiting += time.perf_counter() - began
        step(_to_device(batch, step.device))
        samples += int(batch["batch_size"])
        done += 1
    step.sync()
    elapsed = time.perf_counter() - started
    return {"samples_per_s": round(samples / elapsed, 1), "data_wait_ms_per_step": round(waiting / done * 1000, 2),
            "step_ms": round((elapsed - waiting) / done * 1000, 2), "steps": done,
            "compiled_graphs": _compiled_graphs() - graphs}


PARTS = ("data", "model", "end_to_end")


def bench(cfg: DictConfig, *, seconds: float = 20.0, warmup_seconds: float = 10.0, steps: int = 50,
          warmup_steps: int = 10, amp: bool = False, compile_model: bool = False, channels_last: bool = False,
          device: str | None = None, parts: Sequence[str] = PARTS) -> dict[str, Any]:
    """Measures ``cfg``'s training data, model and both together (``parts``: a subset, e.g. ``("model",)`` for the
    ceiling and peak memory of a large batch alone); see the module docstring."""
    if steps < 1 or seconds <= 0:
        raise ConfigError("bench needs at least one step and a positive time budget")
    if not set(parts) <= set(PARTS):
        raise ConfigError(f"bench parts are {', '.join(PARTS)}, not {', '.join(sorted(set(parts) - set(PARTS)))}")
    chosen = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available")
    precision = resolve_precision(cfg, amp)
    compile_model, channels_last = compile_model or cfg.train.compile, channels_last or cfg.train.channels_last
    task = build_task(cfg)
    loader = build_dataloader(task, "train", training=True, seed=int(cfg.seed))
    if loader is None:
        raise ConfigError("bench needs data.train")
    batches = _endless(loader)
    workers = int(loader.num_workers)
    report: dict[str, Any] = {"task": cfg.task, "exp_name": cfg.get("exp_name"), "precision": precision,
                              "compile": compile_model, "channels_last": channels_last, "device": str(chosen),
                              "machine": environment_info()}
    if "data" in parts:
        report["data"] = _data_only(batches, seconds, warmup_seconds, workers)
    if "model" not in parts and "end_to_end" not in parts:
        return report
    step = _Step(cfg, task, chosen, precision, compile_model, channels_last)
    if "model" in parts:
        report["model"] = _model_only(step, _to_device(_next_nonempty(batches), chosen), steps, warmup_steps)
    if "end_to_end" in parts:
        queued = workers * (loader.prefetch_factor or 0)
        report["end_to_end"] = _end_to_end(step, batches, steps, seconds, queued)
    return report
