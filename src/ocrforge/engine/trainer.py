"""Build the Lightning Trainer (how to run) from the config: precision, loggers, checkpoints, callbacks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from omegaconf import DictConfig

from .callbacks import EMACallback, EpochSummary, LastCheckpointCallback, RNGStateCallback
from .checkpoint import AtomicCheckpointIO
from .loggers import build_loggers


def amp_precision() -> str:
    """``--amp``: bf16 where the device has it (recent GPUs, CPUs), else fp16 with a grad scaler."""
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed"


def resolve_precision(cfg: DictConfig, amp: bool = False) -> str:
    """``train.precision`` as Lightning takes it: ``--amp`` as above; ``auto`` (the default) is bf16 autocast on a
    GPU that has bf16 and fp32 elsewhere (CPU autocast is slower than fp32 for these models)."""
    if amp:
        return amp_precision()
    precision = str(cfg.train.precision)
    if precision != "auto":
        return precision
    on_gpu = cfg.train.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if on_gpu and torch.cuda.is_bf16_supported() else "32"


def tune_cpu_threads(cfg: DictConfig) -> int | None:
    """On CPU, leave the DataLoader workers their cores: torch's intra-op threads spin-wait when the cores are
    shared, which made the quick-start run 1.5x slower on 2 cores. An explicit OMP_NUM_THREADS wins."""
    on_cpu = cfg.train.accelerator == "cpu" or (cfg.train.accelerator == "auto" and not torch.cuda.is_available())
    if not on_cpu or "OMP_NUM_THREADS" in os.environ:
        return None
    workers = cfg.data.train.get("num_workers", 0) if cfg.data.get("train") else 0
    threads = max(1, (os.cpu_count() or 1) - workers)
    torch.set_num_threads(threads)
    return threads


def checkpoint_filename(monitor: str | None) -> str:
    if not monitor:
        return "epoch={epoch}-step={step}"
    short = monitor.replace("/", "_")
    return f"epoch={{epoch}}-step={{step}}-{short}={{{monitor}:.4f}}"


def build_trainer(cfg: DictConfig, run_dir: Path, monitor: tuple[str | None, str], *, devices: Any = None,
                  num_nodes: int | None = None, strategy: str | None = None,
                  callbacks: list[L.Callback] | None = None, resume_step: int | None = None) -> L.Trainer:
    t = cfg.train
    ckpt_dir = run_dir / "checkpoints"
    metric, mode = monitor
    checkpointing = ModelCheckpoint(
        dirpath=str(ckpt_dir), filename=checkpoint_filename(metric), monitor=metric, mode=mode,
        # last.ckpt is LastCheckpointCallback's: Lightning rewrites it only when a top-k file is written.
        save_top_k=cfg.checkpoint.save_top_k if metric else 1, save_last=False,
        every_n_epochs=cfg.checkpoint.every_n_epochs, auto_insert_metric_name=False,
        # The step is in every name, so no -v1 copies: a resumed run keeps writing the same last.ckpt.
        enable_version_counter=False,
    )
    c = cfg.checkpoint
    # Written at the end and on SIGTERM whatever save_last says: without it nothing could resume.
    last = LastCheckpointCallback(ckpt_dir, periodic=c.save_last, every_n_steps=c.every_n_steps,
                                  every_minutes=c.every_minutes)
    callbacks = [checkpointing, RNGStateCallback(), last, EpochSummary(), *(callbacks or [])]
    if cfg.ema.enabled:
        callbacks.insert(0, EMACallback(cfg.ema.decay, cfg.ema.warmup))
    loggers = build_loggers(cfg, run_dir, resume_step)
    if loggers:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    if t.progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=max(1, t.log_every_n_steps // 2)))
    return L.Trainer(
        default_root_dir=str(run_dir),
        max_epochs=t.max_epochs if t.max_epochs is not None else -1,
        max_steps=t.max_steps,
        max_time=t.max_time,
        precision=str(t.precision),
        accumulate_grad_batches=t.accumulate_grad_batches,
        gradient_clip_val=t.gradient_clip_val,
        gradient_clip_algorithm=t.gradient_clip_algorithm,
        val_check_interval=int(t.val_check_interval) if t.val_check_interval > 1 else t.val_check_interval,
        check_val_every_n_epoch=t.check_val_every_n_epoch,
        log_every_n_steps=t.log_every_n_steps,
        limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches,
        accelerator=t.accelerator,
        devices=devices if devices is not None else t.devices,
        num_nodes=num_nodes or t.num_nodes,
        strategy=strategy or t.strategy,
        deterministic=cfg.deterministic,
        logger=loggers or False,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False,  # engine/data.py shards itself (epoch-seeded, unpadded evaluation)
        enable_progress_bar=t.progress_bar,
        enable_model_summary=True,
        profiler=t.profiler,
    )
