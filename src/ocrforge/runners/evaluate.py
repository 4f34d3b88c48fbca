"""``test(cfg, ckpt)``: metrics on the test split (or val), predictions and pictures in a ``_test`` run folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_info
from omegaconf import DictConfig, OmegaConf

from ..builtins import register_builtins
from ..config import import_recorded_plugins, to_yaml
from ..data.collate import SKIPPED_ITEMS_KEY
from ..engine.checkpoint import load_weights_report, model_state, read_checkpoint
from ..engine.data import TaskDataModule
from ..engine.module import TaskModule
from ..engine.rundir import environment_info, new_run_dir, write_json
from ..engine.trainer import resolve_precision
from ..errors import CheckpointError, ConfigError
from ..registry import TASKS


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


def module_from_checkpoint(ckpt_path: str | Path, cfg: DictConfig | None = None,
                           use_ema: bool = True) -> tuple[TaskModule, dict]:
    """A TaskModule with the checkpoint's weights; its config is the checkpoint's unless ``cfg`` is given.

    Values the training run derived (class names …) are taken from the checkpoint when ``cfg`` leaves them empty,
    so evaluation on a subset never re-numbers the classes. A PP-OCR model name (``ppocrv5-mobile-rec`` …) stands
    for its imported checkpoint.
    """
    from ..pretrained.ppocr import resolve_checkpoint

    checkpoint = read_checkpoint(resolve_checkpoint(ckpt_path))
    stored = (checkpoint.get("hyper_parameters") or {}).get("config")
    if cfg is None:
        if stored is None:
            raise CheckpointError(f"{ckpt_path} holds no ocrforge config; pass the config file as well")
        config = stored
        import_recorded_plugins(config, ckpt_path)  # a plugin model: its classes must be registered first
    else:
        config = OmegaConf.to_container(cfg)
        if stored is not None and stored.get("task") != config.get("task"):
            raise CheckpointError(f"{ckpt_path} is a '{stored.get('task')}' checkpoint; the config is for "
                                  f"'{config.get('task')}'")
        if stored is not None:
            register_builtins()
            TASKS.get(config["task"]).adopt_from_checkpoint(config, stored)
    module = TaskModule(config, pretrained=False)  # the checkpoint's weights, not model.pretrained's
    report = load_weights_report(module.model, model_state(checkpoint, use_ema))
    problems = {k: v for k, v in report.items() if k != "loaded" and v}
    if problems:
        raise CheckpointError(f"{ckpt_path} does not fit this model: {problems}")
    return module, checkpoint


def test(cfg: DictConfig, ckpt_path: str | Path, *, save_preds: bool = False, show_dir: str | Path | None = None,
         devices: Any = None) -> dict[str, Any]:
    module, checkpoint = module_from_checkpoint(ckpt_path, cfg)
    cfg = module.cfg
    if module.task.split_node("test") is None:
        raise ConfigError("neither data.test nor data.val is configured: nothing to test on")
    out_dir = new_run_dir(cfg.work_dir, cfg.project, cfg.exp_name, suffix="_test")
    (out_dir / "config.yaml").write_text(to_yaml(cfg))
    write_json(out_dir / "env.json", {**environment_info(), "checkpoint": str(ckpt_path),
                                      "ema_weights": "ema_state_dict" in checkpoint})
    unevaluated = UnevaluatedSamples()
    trainer = L.Trainer(accelerator=cfg.train.accelerator, devices=devices or 1, precision=resolve_precision(cfg),
                        logger=False, enable_checkpointing=False, default_root_dir=str(out_dir),
                        enable_progress_bar=cfg.train.progress_bar, use_distributed_sampler=False,
                        callbacks=[unevaluated])
    datamodule = TaskDataModule(module.task)
    trainer.test(module, datamodule=datamodule, verbose=False)
    metrics = {k.removeprefix("test/"): float(v) for k, v in trainer.callback_metrics.items()}
    skipped = dict(module.skipped["test"])
    raw = module.task.raw_dataset("test")
    result = {"checkpoint": str(ckpt_path), "metrics": metrics, "skipped_samples": {
        "while_indexing": dict(getattr(raw, "skipped_at_init", {}) or {}), "while_loading": skipped},
        "data_counts": dict(module.data_counts["test"]),
        # Counted as wrong in the metrics; listed here and, with --save-preds, among the predictions.
        "unevaluated_samples": unevaluated.items["test"]}
    write_json(out_dir / "metrics.json", result)
    predictions = module.test_predictions
    if save_preds:
        rows = predictions + [{**item, "correct": False} for item in unevaluated.items["test"]]
        with open(out_dir / "predictions.jsonl", "w", encoding="utf-8") as handle:
            for pred in sorted(rows, key=lambda row: row["index"]):  # dataset order, skipped samples in place
                handle.write(json.dumps(pred, ensure_ascii=False) + "\n")
    module.task.save_test_artifacts(metrics, predictions, out_dir, Path(show_dir) if show_dir else None)
    rank_zero_info(" | ".join(f"{k} {v:.4g}" for k, v in metrics.items() if "class_acc" not in k))
    rank_zero_info(f"test results in {out_dir}")
    result["run_dir"] = str(out_dir)
    return result
