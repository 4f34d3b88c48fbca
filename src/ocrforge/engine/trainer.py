"""Build the Lightning Trainer (how to run) from the config: precision, loggers, checkpoints, callbacks."""

from __future__ import annotations

import errno
import logging
import os
import socket
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.environments import LightningEnvironment, SLURMEnvironment, TorchElasticEnvironment
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, Timer, TQDMProgressBar
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, ListConfig

from ..errors import OcrforgeError
from .callbacks import (
    EMACallback,
    EndLaunchedRanksOnFailure,
    EpochSummary,
    LastCheckpointCallback,
    RNGStateCallback,
    SlurmPreemption,
)
from .checkpoint import AtomicCheckpointIO
from .loggers import build_loggers
from .rundir import slurm_job_id

log = logging.getLogger("ocrforge")


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX on x86, the BF16 extension on Arm). Without it
    oneDNN emulates bf16 and autocast ran DBNet-R18's forward 100x slower than fp32 (26 s against 0.25 s)."""
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):  # torch's own CPUID checks (x86)
        supported = getattr(torch.cpu, probe, None)
        if supported is not None and supported():
            return True
    try:  # Arm lists the extension as "bf16" among the Features of /proc/cpuinfo
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


_SLOW_BF16 = ("this CPU has no native bf16 (no AVX512-BF16, AMX or Arm BF16), so bf16 autocast is emulated and "
              "runs up to 100x slower than fp32")


def _uses_gpu(cfg: DictConfig) -> bool:
    return cfg.train.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def process_count(cfg: DictConfig, devices: Any = None, num_nodes: int | None = None) -> int:
    """How many training processes Lightning will start: torchrun's / srun's WORLD_SIZE when launched by them, else
    devices per node (a count, a list of ids, or ``auto`` / ``-1``: every GPU, one process on CPU) x nodes."""
    if "WORLD_SIZE" in os.environ:
        return int(os.environ["WORLD_SIZE"])
    requested = devices if devices is not None else cfg.train.devices
    if isinstance(requested, (list, tuple, ListConfig)):
        per_node = len(requested)
    elif str(requested).lstrip("-").isdigit() and int(requested) >= 0:
        per_node = int(requested)
    else:  # "auto" or -1
        per_node = max(torch.cuda.device_count(), 1) if _uses_gpu(cfg) else 1
    return per_node * (num_nodes or cfg.train.num_nodes)


def amp_precision(cfg: DictConfig) -> str:
    """``--amp``: bf16 where the device computes it natively (recent GPUs and CPUs), fp16 with a grad scaler on
    older GPUs, and fp32 -- said once, with the way to force bf16 -- on a CPU that would only emulate bf16."""
    if _uses_gpu(cfg):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    if cpu_has_fast_bf16():
        return "bf16-mixed"
    rank_zero_only(log.warning)(f"--amp: {_SLOW_BF16}: training in fp32 instead "
                                "(to force bf16 anyway, leave out --amp and set -o train.precision=bf16-mixed)")
    return "32"


def resolve_precision(cfg: DictConfig, amp: bool = False) -> str:
    """``train.precision`` as Lightning takes it: ``--amp`` as above; ``auto`` (the default) is bf16 autocast on a
    GPU that has bf16 and fp32 elsewhere (CPU autocast is slower than fp32 for these models)."""
    if amp:
        return amp_precision(cfg)
    precision = str(cfg.train.precision)
    if precision != "auto":
        if "bf16" in precision and not _uses_gpu(cfg) and not cpu_has_fast_bf16():
            rank_zero_only(log.warning)(f"train.precision={precision}: {_SLOW_BF16}")
        return precision
    return "bf16-mixed" if _uses_gpu(cfg) and torch.cuda.is_bf16_supported() else "32"


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


def _cluster_plugins() -> list[Any]:
    """Under srun, Lightning's SLURM environment with its auto-requeue off (SlurmPreemption says why); Lightning picks
    the environment itself otherwise. TorchElastic first, as Lightning does: torchrun may run inside a SLURM job."""
    if not TorchElasticEnvironment.detect() and SLURMEnvironment.detect():
        return [SLURMEnvironment(auto_requeue=False)]
    return []


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as torch's TCPStore binds: TIME_WAIT is free
        try:
            probe.bind(("", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def check_rendezvous_port(trainer: L.Trainer) -> None:
    """The process that will host the DDP rendezvous (global rank 0) checks that its port is free before anything
    listens or connects. Taken, it is one clear error, and Lightning starts no other rank (srun's --kill-on-bad-exit
    ends those it started) -- not torch's EADDRINUSE traceback with the other ranks left waiting. Under torchrun the
    launcher itself listens there (tools/dist_run.sh checks PORT before starting it)."""
    env = getattr(trainer.strategy, "cluster_environment", None)  # DDP, also with one process: it still listens
    if isinstance(env, SLURMEnvironment):
        hosts, source = env.global_rank() == 0, "MASTER_PORT, or Lightning's pick from the SLURM job id"
    elif isinstance(env, LightningEnvironment):  # without MASTER_PORT it picks a free port
        hosts, source = env.node_rank() == 0 and env.local_rank() == 0, "MASTER_PORT"
    else:
        return
    port = env.main_port
    if hosts and not _port_is_free(port):
        raise OcrforgeError(f"port {port} ({source}) is already in use on this machine (another training run?), so "
                            f"the training processes cannot meet there: set MASTER_PORT to a free port, e.g. "
                            f"MASTER_PORT={port + 1} (with tools/dist_*.sh: PORT)")


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
    # SlurmPreemption after `last`: its requeue comes after the SIGTERM save.
    preemption = [SlurmPreemption()] if slurm_job_id() else []
    callbacks = [checkpointing, RNGStateCallback(), last, *preemption, EndLaunchedRanksOnFailure(), EpochSummary(),
                 *(callbacks or [])]
    if cfg.ema.enabled:
        callbacks.insert(0, EMACallback(cfg.ema.decay, cfg.ema.warmup))
    loggers = build_loggers(cfg, run_dir, resume_step)
    if loggers:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    if t.progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=max(1, t.log_every_n_steps // 2)))
    sync_batchnorm = t.sync_batchnorm and _uses_gpu(cfg)
    if t.sync_batchnorm and not sync_batchnorm:
        # torch's SyncBatchNorm raises in the first training step on CPU tensors; the same config still runs here.
        rank_zero_only(log.warning)("train.sync_batchnorm: SyncBatchNorm runs on GPUs only; ignored on CPU")
    trainer = L.Trainer(
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
        sync_batchnorm=sync_batchnorm,
        deterministic=cfg.deterministic,
        logger=loggers or False,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO(), *_cluster_plugins()],
        use_distributed_sampler=False,  # engine/data.py shards itself (epoch-seeded, unpadded evaluation)
        enable_progress_bar=t.progress_bar,
        enable_model_summary=True,
        profiler=t.profiler,
    )
    check_rendezvous_port(trainer)
    return trainer


def stop_reason(trainer: L.Trainer) -> tuple[str, str]:
    """Which limit ended a ``fit`` that returned normally, as (``max_steps`` | ``max_epochs`` | ``max_time`` |
    ``early_stopping`` | ``callback``, a sentence for the log). Lightning stops at whichever limit comes first and
    says little, so a ``max_steps`` that was never reached would otherwise go unnoticed."""
    steps, max_steps, max_epochs = trainer.global_step, trainer.max_steps, trainer.max_epochs
    epochs_limited = max_epochs is not None and max_epochs != -1
    if max_steps != -1 and steps >= max_steps:
        within = f" (max_epochs {max_epochs} not reached)" if epochs_limited else ""
        return "max_steps", f"max_steps={max_steps} reached at step {steps}{within}"
    # The epoch count, not current_epoch: LastCheckpointCallback un-counts an unfinished last epoch at the end.
    if epochs_limited and trainer.fit_loop.epoch_progress.current.processed >= max_epochs:
        before = f", before max_steps={max_steps}" if max_steps != -1 else ""
        return "max_epochs", f"max_epochs={max_epochs} reached at step {steps}{before}"
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    remaining = timer.time_remaining() if timer is not None else None
    if remaining is not None and remaining <= 0:
        return "max_time", f"max_time spent at step {steps}"
    early = next((c for c in trainer.callbacks if isinstance(c, EarlyStopping) and c.stopped_epoch), None)
    if early is not None:
        return "early_stopping", f"early stopping on {early.monitor} at step {steps}"
    return "callback", f"a callback stopped training at step {steps}"
