"""The one LightningModule: what to compute comes from the task; how to run it comes from the Trainer."""

from __future__ import annotations

import inspect
import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchmetrics import MeanMetric

from ..config.schema import pretrained_weights, split_data_spec
from ..data.collate import COUNT_KEY, SKIP_KEY
from ..errors import CheckpointError
from ..registry import OPTIMIZERS, SCHEDULERS, TASKS
from ..tasks.base import Task
from .checkpoint import load_weights_report, model_state, read_checkpoint, require_matching_weights
from .data import TaskDataModule


def build_task(cfg: DictConfig) -> Task:
    from ..builtins import register_builtins

    register_builtins()
    return TASKS.get(cfg.task)(cfg)


def load_pretrained(task: Task, model: nn.Module) -> dict[str, Any] | None:
    """Fill ``model`` from ``model.pretrained`` (a .pth state dict, an ocrforge .ckpt or a PP-OCR model name) as
    ``--load-from`` does: remapped where the task changed (a dictionary), what fits loaded; returns the report, or
    None when the config names no weights. Weights of which no tensor fits are an error, not a silent fresh start."""
    from ..pretrained.ppocr import resolve_checkpoint

    source = pretrained_weights(task.cfg.model)
    if source is None:
        return None
    checkpoint = read_checkpoint(resolve_checkpoint(source, task.name))
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"model.pretrained: {source} holds a {type(checkpoint).__name__}, not a state dict "
                              f"(save model.state_dict(), not the model)")
    stored = (checkpoint.get("hyper_parameters") or {}).get("config")
    state, remap = task.remap_state(model_state(checkpoint), stored, model)
    report = load_weights_report(model, state)
    require_matching_weights(report, f"model.pretrained {source}", "Point model.pretrained at weights of this model.")
    if remap is not None:
        report["charset_remap"] = remap
    rank_zero_info(f"pretrained {source}: {len(report['loaded'])} tensors loaded, missing {report['missing']}, "
                   f"unexpected {report['unexpected']}, shape-mismatched {report['shape_mismatched']}")
    return {"source": str(source), **report}


def compile_for_training(model: nn.Module, cfg: DictConfig) -> None:
    """``torch.compile`` the model's forward in place (parameter names and checkpoints unchanged). Length-bucketed
    batches vary in width (and the last one in size): those are compiled with dynamic shapes once, not once per
    width."""
    node = cfg.data.get("train")
    bucketed = node is not None and bool(split_data_spec(OmegaConf.to_container(node))[1]["bucket_by_length"])
    model.compile(dynamic=True if bucketed else None)


class FiniteFlag:
    """Whether a loss is finite, read on the host without draining the GPU's queue: ``queue`` copies the flag to
    pinned memory as soon as the loss is queued, ``read`` (after more work has been queued) waits for that copy
    only. On a CPU the flag is read directly."""

    def __init__(self) -> None:
        self._value: torch.Tensor | None = None
        self._host: torch.Tensor | None = None
        self._event: torch.cuda.Event | None = None
        self._copied: torch.cuda.Event | None = None

    def queue(self, loss: torch.Tensor) -> None:
        finite = torch.isfinite(loss.detach())
        if finite.device.type != "cuda":
            self._value, self._copied = finite, None
            return
        if self._host is None:
            self._host, self._event = torch.empty((), dtype=torch.bool, pin_memory=True), torch.cuda.Event()
        self._host.copy_(finite, non_blocking=True)
        self._event.record()
        self._value, self._copied = self._host, self._event

    def read(self) -> bool:
        if self._copied is not None:
            self._copied.synchronize()
        return bool(self._value)


class TaskModule(L.LightningModule):
    """Generic training/validation/test steps over a Task. The effective config is saved in every checkpoint."""

    def __init__(self, config: dict[str, Any], lr_scale: float = 1.0, pretrained: bool = True) -> None:
        super().__init__()
        self.cfg = OmegaConf.create(config)
        self.task = build_task(self.cfg)  # may resolve derived values (e.g. class names) into self.cfg
        self.save_hyperparameters({"config": OmegaConf.to_container(self.cfg), "lr_scale": lr_scale})
        self.lr_scale = lr_scale
        self.model = self.task.build_model()
        # ``model.pretrained`` starts a training run; a checkpoint being read brings its own weights (pretrained=False).
        self.pretrained_report = load_pretrained(self.task, self.model) if pretrained else None
        self.criterion = self.task.build_loss()
        self.val_metric = self.task.build_metric()
        self.test_metric = self.task.build_metric()
        # The loss over a pass as a metric of sums, reduced exactly across processes: Lightning's sync_dist mean
        # divides the summed sample count by the number of processes in integers (11 samples on 2 -> 5 under gloo).
        # NaN replaced by NaN: a pass with a non-finite loss must say so (torchmetrics' "disable" drops the weights).
        self.eval_losses = nn.ModuleDict({split: MeanMetric(nan_strategy=float("nan")) for split in ("val", "test")})
        # Per split; train counts cover the latest epoch, val/test the latest full pass (sanity checks ignored).
        self.skipped: dict[str, Counter] = {"train": Counter(), "val": Counter(), "test": Counter()}
        self.data_counts: dict[str, Counter] = {"train": Counter(), "val": Counter(), "test": Counter()}
        self.nonfinite_streak = 0  # consecutive optimiser steps with a non-finite loss on any process
        self._skip_step = False  # set for a batch that must not update the weights
        self._nonfinite = self._finite = False  # set for a batch whose loss is (not) finite; neither: no loss
        self._step_losses: tuple[dict[str, torch.Tensor], int] | None = None  # checked after backward
        self._loss_finite = FiniteFlag()
        self.test_predictions: list[dict] = []

    def apply_training_speed_options(self) -> None:
        """``train.channels_last`` and ``train.compile`` (training only: test, predict and export use the plain
        model). ``Module.compile`` compiles the forward in place, so parameter names and checkpoints do not change."""
        if self.cfg.train.channels_last:
            self.model.to(memory_format=torch.channels_last)
            self.task.channels_last = True
        if self.cfg.train.compile:
            compile_for_training(self.model, self.cfg)

    def on_train_start(self) -> None:
        # Lightning restores its loop counters after the data module's state and loaders, and reads them when the
        # first epoch starts: in between, an epoch resumed on another number of processes is re-counted.
        if isinstance(self.trainer.datamodule, TaskDataModule):
            self.trainer.datamodule.align_resumed_epoch()

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        """``train.norm_eval``: BatchNorm layers run in eval mode for every training batch. Checked per batch, not in
        ``train()``: Lightning never calls ``train()`` when fitting starts and, after validation, restores each
        submodule's flag directly."""
        if self.cfg.train.get("norm_eval", False):
            for module in self.model.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.training:
                    module.eval()

    # --- steps ----------------------------------------------------------------------------------------------
    def _count_skips(self, batch: dict, split: str) -> int:
        if not (self._trainer is not None and self.trainer.sanity_checking):
            self.skipped[split].update(batch.get(SKIP_KEY, {}))
            self.data_counts[split].update(batch.get(COUNT_KEY, {}))
        return int(batch["batch_size"])

    def _reset_counts(self, split: str) -> None:
        self.skipped[split].clear()
        self.data_counts[split].clear()

    def on_train_epoch_start(self) -> None:
        self._reset_counts("train")

    def on_validation_epoch_start(self) -> None:
        self._reset_counts("val")

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """Always returns a loss, so every DDP rank runs backward; a batch that must not train (all samples skipped,
        non-finite loss) is dropped for all ranks together in ``on_before_optimizer_step``.

        Whether the loss is finite is queued for the host here and read in ``on_after_backward``, once backward is
        queued too: the host waits for this forward pass at most, never for the GPU's queue to drain."""
        size = self._count_skips(batch, "train")
        self._step_losses = None
        if size == 0:
            self._skip_step = True
            return sum(p.sum() for p in self.model.parameters() if p.requires_grad) * 0.0
        outputs = self.task.forward_train(self.model, batch)
        losses = self.criterion(outputs, batch)
        self._step_losses = ({k: v.detach() for k, v in losses.items()}, size)
        self._loss_finite.queue(losses["loss"])
        return losses["loss"]

    def on_after_backward(self) -> None:
        if self._step_losses is None:
            return
        losses, size = self._step_losses
        self._step_losses = None
        if not self._loss_finite.read():
            self._skip_step = self._nonfinite = True
            return
        self._finite = True
        for key, value in losses.items():
            self.log(f"train/{key}", value, on_step=True, on_epoch=True, prog_bar=key == "loss", batch_size=size)

    def _count_nonfinite(self, processes: int, finite: int) -> None:
        """The streak of steps with a non-finite loss on any of ``processes`` processes (a step with only finite
        losses on the ``finite`` others ends it; one with no loss at all, every sample skipped, does not): every
        rank counts the same and stops at the same step with the same error, none is left waiting in a collective
        of the next step."""
        if not processes:
            self.nonfinite_streak = 0 if finite else self.nonfinite_streak
            return
        self.nonfinite_streak += 1
        self.log("train/nonfinite_losses", float(self.nonfinite_streak), batch_size=1)
        if self.nonfinite_streak > self.cfg.train.max_nonfinite_steps:
            world = self.trainer.world_size
            where = f" (on {processes} of {world} processes)" if world > 1 else ""
            raise FloatingPointError(
                f"{self.nonfinite_streak} consecutive non-finite losses at step {self.global_step}{where}: lower the "
                "learning rate, enable gradient clipping (train.gradient_clip_val) or check the data")

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        skip, nonfinite, finite = int(self._skip_step), int(self._nonfinite), int(self._finite)
        self._skip_step = self._nonfinite = self._finite = False
        if self.trainer.world_size > 1:  # any rank's reason skips every rank; one collective a step for all three
            flags = torch.tensor([skip, nonfinite, finite], dtype=torch.float32, device=self.device)
            skip, nonfinite, finite = (int(v) for v in self.trainer.strategy.reduce(flags, reduce_op="sum").tolist())
        self._count_nonfinite(nonfinite, finite)
        if not skip:
            return
        scaled = "16" in str(self.trainer.precision) and "bf16" not in str(self.trainer.precision)
        for group in optimizer.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                if scaled:
                    param.grad.fill_(float("nan"))  # fp16's grad scaler skips a step with non-finite gradients
                else:
                    param.grad = None  # optimisers leave a parameter without gradient untouched (no momentum/decay)

    def _eval_step(self, batch: dict, metric: Any, prefix: str) -> dict[str, torch.Tensor] | None:
        size = self._count_skips(batch, prefix)
        if size == 0:
            return None
        outputs = self.task.forward_eval(self.model, batch)
        loss = self.criterion(outputs, batch)["loss"]
        self.eval_losses[prefix].update(loss.detach(), weight=size)
        self.log(f"{prefix}/loss", self.eval_losses[prefix], on_epoch=True, batch_size=size)
        metric.update(outputs, batch)
        return outputs

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.val_metric, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        outputs = self._eval_step(batch, self.test_metric, "test")
        if outputs is not None:
            self.test_predictions.extend(self.task.predictions(outputs, batch))

    def _log_metric(self, metric: Any, prefix: str) -> None:
        values = self.task.rename_metrics(metric.compute())  # reduced over all processes by torchmetrics
        # The same on every rank: a max over ranks keeps them exact, and Lightning no longer warns that values
        # logged per epoch without sync_dist are not accumulated across devices.
        self.log_dict({f"{prefix}/{k}": v.float() for k, v in values.items()}, prog_bar=False, sync_dist=True,
                      reduce_fx="max")
        metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_metric(self.val_metric, "val")

    def on_test_epoch_end(self) -> None:
        self._log_metric(self.test_metric, "test")

    # --- optimisation ---------------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        spec = OmegaConf.to_container(self.cfg.optimizer)
        if self.lr_scale != 1.0:  # --auto-scale-lr
            default_lr = inspect.signature(OPTIMIZERS.get(spec["type"])).parameters["lr"].default
            spec["lr"] = spec.get("lr", default_lr) * self.lr_scale
        optimizer = OPTIMIZERS.build(spec, params=self.model.named_parameters())
        total = int(self.trainer.estimated_stepping_batches)
        per_epoch = math.ceil(self.trainer.num_training_batches / self.trainer.accumulate_grad_batches) \
            if math.isfinite(self.trainer.num_training_batches) else total
        scheduler = SCHEDULERS.build(OmegaConf.to_container(self.cfg.scheduler), optimizer=optimizer,
                                     total_steps=total, steps_per_epoch=max(1, per_epoch))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
