"""``train(cfg)``: run folder, seeding, resume / load-from, Lightning fit, metrics.json."""

from __future__ import annotations

import difflib
import logging
import os
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from ..config import to_yaml
from ..engine.callbacks import SlurmPreemption
from ..engine.checkpoint import (
    check_resumable,
    check_resumable_weights,
    load_weights_report,
    model_state,
    read_checkpoint,
    require_matching_weights,
)
from ..engine.data import TaskDataModule, build_dataloader
from ..engine.module import TaskModule
from ..engine.rundir import (
    RUN_DIR_ENV,
    environment_info,
    find_latest_checkpoint,
    new_run_dir,
    requeued_checkpoint,
    run_dir_of_checkpoint,
    write_json,
)
from ..engine.trainer import build_trainer, process_count, resolve_precision, stop_reason, tune_cpu_threads
from ..errors import CheckpointError, ConfigError
from .test import UnevaluatedSamples

log = logging.getLogger("ocrforge")


@dataclass
class TrainResult:
    run_dir: Path
    best_checkpoint: str | None
    last_checkpoint: str | None
    metrics: dict[str, Any] = field(default_factory=dict)


def _is_rank_zero() -> bool:
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", 0))) == 0 and int(
        os.environ.get("LOCAL_RANK", 0)) == 0


def resolve_resume(resume: str | bool | None, cfg: DictConfig) -> Path | None:
    """``True``/'auto': the newest ``last.ckpt`` of this experiment under the work dir; a path: that file."""
    if not resume:
        return None
    if resume is True or resume == "auto":
        found = find_latest_checkpoint(cfg.work_dir, cfg.project, cfg.exp_name)
        if found is None:
            raise CheckpointError(f"--resume: no last.ckpt under {Path(cfg.work_dir) / cfg.project}/"
                                  f"{cfg.exp_name}_*/checkpoints")
        return found
    path = Path(resume)
    if not path.is_file():
        raise CheckpointError(f"--resume: checkpoint not found: {path}")
    return path


def _read_resume_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint to resume, memory-mapped: its step, config and tensor shapes are read, not its tensors."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.__class__.__name__}: {exc}") from None


def _lr_scale(cfg: DictConfig, devices: int) -> float:
    """--auto-scale-lr: the global batch of one optimiser step (``data.train.batch_size`` per process x ``devices``,
    the number of processes over all nodes, x ``accumulate_grad_batches``) over ``auto_scale_lr.base_batch_size``."""
    base = cfg.auto_scale_lr.base_batch_size
    if not base:
        raise ConfigError("--auto-scale-lr needs auto_scale_lr.base_batch_size in the config")
    per_process, accumulate = cfg.data.train.batch_size, cfg.train.accumulate_grad_batches
    effective = per_process * devices * accumulate
    scale = effective / base
    rank_zero_info(f"auto-scale-lr: global batch {effective} ({per_process} x {devices} processes x {accumulate} "
                   f"accumulated) / base {base} -> lr x {scale:.4g}")
    return scale


def _sum_over_ranks(per_split: dict[str, Counter]) -> dict[str, dict[str, int]]:
    """Per-split counters of this process, summed over all DDP processes (each saw its own shard)."""
    merged = {split: Counter(c) for split, c in per_split.items()}
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        gathered: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(gathered, per_split)
        merged = {split: sum((Counter(g[split]) for g in gathered), Counter()) for split in per_split}
    return {split: dict(c) for split, c in merged.items() if c}


def _check_monitor(module: TaskModule, monitor: str | None, has_val: bool) -> None:
    """Fail before training, not after the first epoch, when checkpoint.monitor names no logged metric."""
    if monitor is None:
        return
    with warnings.catch_warnings():  # compute() on a fresh metric gives the names; its values are unused
        warnings.simplefilter("ignore")
        empty = module.task.build_metric().compute()
    names = {f"val/{k}" for k in module.task.rename_metrics(empty)} | {"val/loss"}
    names |= {"train/loss", "train/loss_epoch"}
    if monitor not in names:
        hint = difflib.get_close_matches(monitor, sorted(names), n=1)
        raise ConfigError(f"checkpoint.monitor: '{monitor}' is not a logged metric"
                          + (f"; did you mean '{hint[0]}'?" if hint else "")
                          + ("" if has_val else " (no data.val is configured)")
                          + f" (logged: {', '.join(sorted(names))})")


def _check_val_check_interval(cfg: DictConfig, datamodule: TaskDataModule, world: int) -> None:
    """An integer ``train.val_check_interval`` beyond an epoch's training batches fails inside Lightning's fit loop
    with a traceback; the count needs the dataset, so it is checked here rather than in the schema. Mirrors
    Lightning's own test: the batches of the shortest shard after ``limit_train_batches``, skipped when training
    or validation is limited to nothing."""
    t = cfg.train
    interval, limit = t.val_check_interval, t.limit_train_batches
    if interval <= 1 or limit == 0 or t.limit_val_batches == 0:
        return
    loader = build_dataloader(datamodule.task, "train", training=True, seed=cfg.seed, num_replicas=world,
                              rank=world - 1)  # the last rank holds the shortest shard
    batches = len(loader)
    batches = min(batches, int(limit)) if isinstance(limit, int) or limit > 1 else int(batches * limit)
    if batches and int(interval) > batches:
        shard = f" per process ({world} processes)" if world > 1 else ""
        raise ConfigError(f"train.val_check_interval: {int(interval)} training batches, but an epoch has only "
                          f"{batches}{shard} ({len(loader.dataset)} samples of data.train in batches of "
                          f"{cfg.data.train.batch_size}, limit_train_batches {limit}); give at most {batches}, or a "
                          "fraction of an epoch such as 0.5")


def _report_dataset_skips(datamodule: TaskDataModule) -> dict[str, dict[str, int]]:
    report = {}
    for split in ("train", "val"):
        raw = datamodule.task.raw_dataset(split)
        skips = dict(getattr(raw, "skipped_at_init", {}) or {})
        if skips:
            report[split] = skips
            rank_zero_info(f"data.{split}: left out while indexing: {skips}")
    return report


def train(cfg: DictConfig, *, resume: str | bool | None = None, load_from: str | None = None,
          load_from_partial: bool = False, amp: bool = False, auto_scale_lr: bool = False, devices: Any = None,
          num_nodes: int | None = None, strategy: str | None = None,
          callbacks: list[L.Callback] | None = None) -> TrainResult:
    """Train ``cfg`` (a config from ``load_config``) and return where the run went and what it reached.

    ``load_from_partial`` (or ``load_from_partial: true``) accepts a ``load_from`` file of which no tensor fits the
    model. ``callbacks`` are added to the built-in ones (Python API only). Everything that can be checked before
    training is checked before a run folder is created or, for ``resume``, written to; the folder of a run that
    then ends gets a ``status.json`` (finished / interrupted / failed, why, at which step).
    """
    L.seed_everything(cfg.seed, workers=True)
    resume_path = resolve_resume(resume, cfg) if resume else _requeued_resume(cfg)
    inherited = os.environ.get(RUN_DIR_ENV)
    try:
        return _fit(cfg, resume_path, load_from, load_from_partial or bool(cfg.get("load_from_partial")), amp,
                    auto_scale_lr, devices, num_nodes, strategy, callbacks or [])
    finally:
        if inherited is None:
            os.environ.pop(RUN_DIR_ENV, None)


def _requeued_resume(cfg: DictConfig) -> Path | None:
    """A requeued SLURM job starts its command again, without --resume: it continues the run it interrupted."""
    found = requeued_checkpoint(cfg.work_dir, cfg.project, cfg.exp_name)
    if found is not None:
        rank_zero_info(f"SLURM job restart {os.environ.get('SLURM_RESTART_COUNT')}: resuming {found}")
    return found


def _load_from(module: TaskModule, source: str, partial: bool) -> dict[str, Any]:
    """``--load-from``: the weights that fit, and the report of what did not; no fitting tensor at all is an error
    unless ``partial``."""
    from ..pretrained.ppocr import resolve_checkpoint

    checkpoint = read_checkpoint(resolve_checkpoint(source))
    stored = (checkpoint.get("hyper_parameters") or {}).get("config")
    state, remap = module.task.remap_state(model_state(checkpoint), stored, module.model)
    report: dict[str, Any] = load_weights_report(module.model, state)
    if not partial:
        require_matching_weights(report, f"--load-from {source}",
                                 "Pass --load-from-partial (load_from_partial: true) to train from it anyway")
    if remap is not None:
        report["charset_remap"] = remap
        rank_zero_info(f"load-from: dictionary changed: {remap['kept_chars']} characters kept, "
                       f"{len(remap['new_chars'])} new, {len(remap['dropped_chars'])} dropped")
    rank_zero_info(f"load-from {source}: {len(report['loaded'])} tensors loaded, missing {report['missing']}, "
                   f"unexpected {report['unexpected']}, shape-mismatched {report['shape_mismatched']}")
    return report


def _ended(exc: BaseException, trainer: L.Trainer | None, run_dir: Path) -> dict[str, Any]:
    """status.json of a run that ended with ``exc``: pre-emption and Ctrl-C leave a resumable run, anything else
    a failed one (the message is the one the CLI printed)."""
    step = trainer.global_step if trainer is not None else None
    if not isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return {"status": "failed", "error": f"{exc.__class__.__name__}: {exc}", "global_step": step}
    last = run_dir / "checkpoints" / "last.ckpt"
    # Lightning turns Ctrl-C into sys.exit(1); SIGTERM (SLURM pre-emption, kill) has its own exception, and so has
    # SIGUSR1 under SLURM, which stops training the same way.
    preemption = next((c for c in trainer.callbacks if isinstance(c, SlurmPreemption)), None) if trainer else None
    stopped = isinstance(exc, SIGTERMException)
    status = {"status": "interrupted", "stopped_by": "signal",
              "signal": ((preemption and preemption.signal) or "SIGTERM") if stopped else "SIGINT",
              "global_step": step, "resume_from": str(last) if last.is_file() else None}
    if stopped and preemption is not None:
        status["slurm_job_id"] = preemption.job_id  # how the requeued job finds this run (requeued_checkpoint)
    return status


def _fit(cfg: DictConfig, resume_path: Path | None, load_from: str | None, load_from_partial: bool, amp: bool,
         auto_scale_lr: bool, devices: Any, num_nodes: int | None, strategy: str | None,
         callbacks: list[L.Callback]) -> TrainResult:
    resume_checkpoint = _read_resume_checkpoint(resume_path) if resume_path else None
    if resume_checkpoint is not None:  # before building a model of maybe another task
        check_resumable(resume_checkpoint, resume_path, OmegaConf.to_container(cfg))
    # Resolved (--amp, auto) and recorded in the effective config, so test/export of this run know how it trained.
    cfg.train.precision = resolve_precision(cfg, amp)
    world = process_count(cfg, devices, num_nodes)
    scale = _lr_scale(cfg, world) if auto_scale_lr or cfg.auto_scale_lr.enabled else 1.0
    # model.pretrained starts a fresh run; a resumed one brings its own weights.
    module = TaskModule(OmegaConf.to_container(cfg), lr_scale=scale, pretrained=resume_path is None)
    module.apply_training_speed_options()
    cfg = module.cfg  # now with values the task derived (e.g. class names)
    if resume_checkpoint is not None:
        check_resumable_weights(resume_checkpoint, resume_path, OmegaConf.to_container(cfg), module.state_dict())
    source = load_from or cfg.get("load_from")
    load_report = _load_from(module, source, load_from_partial) if source and resume_path is None else None

    datamodule = TaskDataModule(module.task)
    has_val = datamodule.task.build_dataset("val") is not None
    monitor = (cfg.checkpoint.monitor, cfg.checkpoint.mode) if cfg.checkpoint.monitor else (
        module.task.default_monitor() if has_val else (None, "max"))
    _check_monitor(module, monitor[0], has_val)
    _check_val_check_interval(cfg, datamodule, world)

    # A resumed run continues in its own folder; a fresh one never reuses an earlier folder.
    previous = run_dir_of_checkpoint(resume_path) if resume_path else None
    # Under torchrun / srun only rank 0 creates it; the others learn it by broadcast once connected (new_run_dir).
    run_dir = previous or new_run_dir(cfg.work_dir, cfg.project, cfg.exp_name, create=_is_rank_zero())
    os.environ[RUN_DIR_ENV] = str(run_dir)
    trainer: L.Trainer | None = None
    try:
        if _is_rank_zero():
            suffix = "" if resume_path is None else f"_resume_{time.strftime('%Y-%m-%d_%H-%M-%S')}"
            (run_dir / f"config{suffix}.yaml").write_text(to_yaml(cfg))
            env = environment_info()
            env.update(seed=cfg.seed, precision=str(cfg.train.precision),
                       resumed_from=str(resume_path) if resume_path else None, load_from=source)
            write_json(run_dir / f"env{suffix}.json", env)
            if load_report is not None:
                write_json(run_dir / "load_from_report.json", {"source": str(source), **load_report})
            if module.pretrained_report is not None:
                write_json(run_dir / "pretrained_report.json", module.pretrained_report)
        rank_zero_info(f"run folder: {run_dir}")
        resume_step = int(resume_checkpoint.get("global_step", 0)) if resume_checkpoint is not None else None
        # Validation counts unloadable samples as wrong, as `ocrforge test` does: checkpoints are chosen on it.
        trainer = build_trainer(cfg, run_dir, monitor, devices=devices, num_nodes=num_nodes, strategy=strategy,
                                callbacks=[UnevaluatedSamples(), *callbacks], resume_step=resume_step)
        threads = tune_cpu_threads(cfg)
        if threads is not None:
            rank_zero_info(f"CPU training: {threads} torch thread(s) beside {cfg.data.train.num_workers} data "
                           "workers")
        init_skips = _report_dataset_skips(datamodule)
        started = time.perf_counter()
        # weights_only=False: our checkpoints carry RNG states and counters, not only tensors.
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume_path) if resume_path else None,
                    weights_only=False)
    except BaseException as exc:
        if _is_rank_zero():
            status = _ended(exc, trainer, run_dir)
            write_json(run_dir / "status.json", status)
            if "slurm_job_id" in status:  # only now: a requeue makes SLURM end this job within seconds
                preemption = next(c for c in trainer.callbacks if isinstance(c, SlurmPreemption))
                write_json(run_dir / "status.json", {**status, "requeued": preemption.requeue()})
        raise
    run_dir = Path(trainer.strategy.broadcast(str(run_dir)))  # rank 0's folder on every rank

    stopped_by, why = stop_reason(trainer)
    rank_zero_info(f"training stopped: {why}")
    skipped, counts = _sum_over_ranks(module.skipped), _sum_over_ranks(module.data_counts)
    ckpt_cb = trainer.checkpoint_callback
    best_score = ckpt_cb.best_model_score if ckpt_cb is not None else None
    metrics = {
        "final": {k: float(v) for k, v in trainer.callback_metrics.items()},
        "best": {"monitor": monitor[0], "mode": monitor[1],
                 "score": float(best_score) if best_score is not None else None,
                 "checkpoint": ckpt_cb.best_model_path if ckpt_cb is not None else None},
        "epochs": trainer.current_epoch, "global_step": trainer.global_step, "stopped_by": stopped_by,
        "train_seconds_this_session": round(time.perf_counter() - started, 2),
        "skipped_samples": {"while_indexing": init_skips, "while_loading": skipped},
        "data_counts": counts,
        "precision": str(trainer.precision),
    }
    last = run_dir / "checkpoints" / "last.ckpt"
    if trainer.is_global_zero:
        write_json(run_dir / "metrics.json", metrics)
        write_json(run_dir / "status.json", {"status": "finished", "stopped_by": stopped_by, "reason": why,
                                             "global_step": trainer.global_step})
    return TrainResult(run_dir, metrics["best"]["checkpoint"] or None, str(last) if last.exists() else None, metrics)
