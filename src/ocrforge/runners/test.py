"""``test(cfg, ckpt)``: metrics on the test split (or val), predictions and pictures in a ``_test`` run folder."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from omegaconf import DictConfig, OmegaConf

from ..config import to_yaml
from ..data.collate import SKIPPED_ITEMS_KEY
from ..engine.data import TaskDataModule
from ..engine.loading import module_from_checkpoint
from ..engine.module import TaskModule
from ..engine.rundir import environment_info, new_run_dir, write_json
from ..engine.trainer import resolve_precision
from ..errors import ConfigError


class UnevaluatedSamples(L.Callback):
    """Validation and test samples that could not be loaded count as wrong in the task's metric (through its
    ``count_unevaluated``) and are kept in ``items`` to be listed: a score must not rise because the hard samples
    were unreadable. Items are ``{"index", "skipped": reason, "detail", "path", "gt" ...}`` (see ``data.collate``),
    kept for the latest full pass; sanity-check batches reach the metric (reset after the check), not the list."""

    def __init__(self) -> None:
        self.items: dict[str, list[dict[str, Any]]] = {"val": [], "test": []}

    def _count(self, trainer: L.Trainer, metric: Any, batch: dict, split: str) -> None:
        items = batch.get(SKIPPED_ITEMS_KEY) or []
        count = getattr(metric, "count_unevaluated", None)
        if items and count is not None:
            count(items)
        if not trainer.sanity_checking:
            self.items[split] += items

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.items["val"] = []

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.items["test"] = []

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: dict,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        self._count(trainer, pl_module.val_metric, batch, "val")

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: dict,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        self._count(trainer, pl_module.test_metric, batch, "test")


def _devices(devices: Any, cfg: DictConfig) -> Any:
    """The processes to test on: ``devices`` (the CLI's launcher), else ``train.devices`` when it names a count or a
    list, else one; ``train.devices: auto`` would take every GPU of the machine for what one evaluates fine."""
    if devices is not None:
        return devices
    configured = cfg.train.devices
    if configured == "auto":
        return 1
    return OmegaConf.to_object(configured) if OmegaConf.is_config(configured) else configured  # a list of GPUs


def _gather_to_rank_zero(shard: Any) -> list[Any] | None:
    """Every process's ``shard``, in rank order, on rank 0 (None on the others); ``[shard]`` without DDP."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [shard]
    rank = dist.get_rank()
    shards: list[Any] | None = [None] * dist.get_world_size() if rank == 0 else None
    dist.gather_object(shard, shards, dst=0)
    return shards


def test(cfg: DictConfig, ckpt_path: str | Path, *, save_preds: bool = False, show_dir: str | Path | None = None,
         devices: Any = None, num_nodes: int | None = None, strategy: str | None = None) -> dict[str, Any]:
    """Evaluate ``ckpt_path`` on the test split (or val); write metrics, predictions and pictures to a ``_test`` run
    folder and return the metrics.json content (with ``run_dir``).

    On several processes (``devices``/``num_nodes``, or ``train.devices`` and ``train.strategy: ddp``; under
    torchrun or srun as their launcher says) each evaluates a disjoint shard without padding, the metrics' sums are
    reduced, and rank 0 gathers predictions, unloadable samples and counts and writes every file: the same result
    as one process's (the loss averaged over other batches may differ in its last digits).
    """
    module, checkpoint = module_from_checkpoint(ckpt_path, cfg)
    cfg = module.cfg
    if module.task.split_node("test") is None:
        raise ConfigError("neither data.test nor data.val is configured: nothing to test on")
    unevaluated = UnevaluatedSamples()
    trainer = L.Trainer(accelerator=cfg.train.accelerator, devices=_devices(devices, cfg),
                        num_nodes=num_nodes or cfg.train.num_nodes, strategy=strategy or cfg.train.strategy,
                        precision=resolve_precision(cfg), logger=False, enable_checkpointing=False,
                        enable_progress_bar=cfg.train.progress_bar, enable_model_summary=False,
                        use_distributed_sampler=False, callbacks=[unevaluated])
    dataset = module.task.build_dataset("test")
    if len(dataset) < trainer.world_size:  # a process without a batch would never join the metrics' reduction
        raise ConfigError(f"{len(dataset)} test samples cannot be shared among {trainer.world_size} processes: "
                          "test on fewer")
    trainer.test(module, datamodule=TaskDataModule(module.task), verbose=False)
    # Synchronised by torchmetrics in ``compute``: the same on every rank.
    metrics = {k.removeprefix("test/"): float(v) for k, v in trainer.callback_metrics.items()}
    shards = _gather_to_rank_zero((module.test_predictions, unevaluated.items["test"], module.skipped["test"],
                                   module.data_counts["test"]))
    result = None
    if trainer.is_global_zero:
        result = _write_results(module, checkpoint, cfg, ckpt_path, metrics, shards, trainer.world_size,
                                save_preds, Path(show_dir) if show_dir else None)
    return trainer.strategy.broadcast(result)


def _write_results(module: TaskModule, checkpoint: dict, cfg: DictConfig, ckpt_path: str | Path,
                   metrics: dict[str, float], shards: list[Any], world: int, save_preds: bool,
                   show_dir: Path | None) -> dict[str, Any]:
    """Rank 0's part of ``test``: the run folder and everything in it, from all processes' shards in dataset order
    (the order one process evaluates in)."""
    def in_order(part: int) -> list[dict]:
        return sorted(itertools.chain.from_iterable(shard[part] for shard in shards), key=lambda row: row["index"])

    predictions, unevaluated = in_order(0), in_order(1)
    skipped = dict(sum((Counter(shard[2]) for shard in shards), Counter()))
    counts = dict(sum((Counter(shard[3]) for shard in shards), Counter()))
    out_dir = new_run_dir(cfg.work_dir, cfg.project, cfg.exp_name, suffix="_test")
    (out_dir / "config.yaml").write_text(to_yaml(cfg))
    write_json(out_dir / "env.json", {**environment_info(), "checkpoint": str(ckpt_path),
                                      "ema_weights": "ema_state_dict" in checkpoint, "processes": world})
    raw = module.task.raw_dataset("test")
    result = {"checkpoint": str(ckpt_path), "metrics": metrics, "skipped_samples": {
        "while_indexing": dict(getattr(raw, "skipped_at_init", {}) or {}), "while_loading": skipped},
        "data_counts": counts,
        # Counted as wrong in the metrics; listed here and, with --save-preds, among the predictions.
        "unevaluated_samples": unevaluated}
    write_json(out_dir / "metrics.json", result)
    if save_preds:
        rows = predictions + [{**item, "correct": False} for item in unevaluated]
        with open(out_dir / "predictions.jsonl", "w", encoding="utf-8") as handle:
            for pred in sorted(rows, key=lambda row: row["index"]):  # dataset order, skipped samples in place
                handle.write(json.dumps(pred, ensure_ascii=False) + "\n")
    module.task.save_test_artifacts(metrics, predictions, out_dir, show_dir)
    rank_zero_info(" | ".join(f"{k} {v:.4g}" for k, v in metrics.items() if "class_acc" not in k))
    rank_zero_info(f"test results in {out_dir}")
    return {**result, "run_dir": str(out_dir)}
