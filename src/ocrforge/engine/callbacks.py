"""Callbacks: EMA of weights, RNG state in checkpoints, pre-emption save and SLURM requeue, ending the ranks a failed
process started, one-line epoch summaries."""

from __future__ import annotations

import copy
import logging
import os
import random
import signal
import subprocess
import time
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch import nn

from .rundir import slurm_job_id

log = logging.getLogger("ocrforge")


class ModelEma:
    """An exponential moving average of a model's state (parameters and buffers) in a copy of the model.

    Each update is one fused lerp over every floating-point tensor and one fused copy of the integer buffers
    (BatchNorm's counters): no Python loop over tensors, nothing read back to the host. The tensor lists are bound at
    the first update (``unbind`` drops them, e.g. once the model has moved). The decay and its warm-up ramp are those
    of timm's ModelEmaV3 (warm-up gamma 1, power 2/3), which this replaces: same numbers, same checkpoints.
    """

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True) -> None:
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.warmup = decay, warmup
        self._bound: tuple[list[torch.Tensor], ...] | None = None

    def decay_at(self, step: int) -> float:
        step = max(0, step - 1)
        if step == 0:
            return 0.0
        if not self.warmup:
            return self.decay
        return min(1 - (1.0 + step) ** (-2 / 3), self.decay)

    def unbind(self) -> None:
        self._bound = None

    def _bind(self, model: nn.Module) -> tuple[list[torch.Tensor], ...]:
        ema_float, model_float, ema_other, model_other = [], [], [], []
        pairs = zip(self.module.state_dict(keep_vars=True).values(), model.state_dict(keep_vars=True).values(),
                    strict=True)
        for ema_value, value in pairs:
            floating = ema_value.is_floating_point()
            (ema_float if floating else ema_other).append(ema_value)
            (model_float if floating else model_other).append(value)
        return ema_float, model_float, ema_other, model_other

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        if self._bound is None:
            self._bound = self._bind(model)
        ema_float, model_float, ema_other, model_other = self._bound
        if ema_float:
            torch._foreach_lerp_(ema_float, model_float, 1.0 - self.decay_at(step))
        if ema_other:
            torch._foreach_copy_(ema_other, model_other)


class EMACallback(L.Callback):
    """Exponential moving average of ``pl_module.model`` (:class:`ModelEma`), updated after every optimiser step.

    Validation runs on the EMA weights (swapped in and out around the loop); the EMA weights are saved in the
    checkpoint as ``ema_state_dict`` so that test, predict and export use them, and restored exactly on resume.
    """

    def __init__(self, decay: float = 0.999, warmup: bool = True) -> None:
        self.decay, self.warmup = decay, warmup
        self.ema: ModelEma | None = None
        self._pending: dict | None = None
        self._backup: dict[str, torch.Tensor] | None = None
        self._last_step = -1

    def _ensure(self, pl_module: L.LightningModule) -> ModelEma:
        if self.ema is None:
            self.ema = ModelEma(pl_module.model, decay=self.decay, warmup=self.warmup)
            if self._pending is not None:
                self.ema.module.load_state_dict(self._pending)
                self._pending = None
        return self.ema

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._ensure(pl_module).module.to(pl_module.device)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._ensure(pl_module).unbind()  # bound again at the first update, to the tensors training will change

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step != self._last_step:  # only after a real optimiser step (accumulation, skips)
            self._last_step = trainer.global_step
            self._ensure(pl_module).update(pl_module.model, step=trainer.global_step)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.ema is None or trainer.sanity_checking:
            return
        self._backup = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}
        pl_module.model.load_state_dict(self.ema.module.state_dict())

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._backup is not None:
            pl_module.model.load_state_dict(self._backup)
            self._backup = None

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        # Interrupted inside validation: put the trained weights back before anything saves a checkpoint.
        self.on_validation_epoch_end(trainer, pl_module)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if self.ema is not None:
            checkpoint["ema_state_dict"] = {k: v.detach().cpu() for k, v in self.ema.module.state_dict().items()}
            checkpoint["ema_decay"] = self.decay

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        state = checkpoint.get("ema_state_dict")
        if state is None:
            return
        if self.ema is not None:
            self.ema.module.load_state_dict(state)
        else:
            self._pending = state


class RNGStateCallback(L.Callback):
    """Saves and restores the Python, NumPy and torch RNG states so a resumed run draws what it would have.

    Restoring waits for ``on_train_start``: the sanity validation that Lightning runs first would otherwise
    consume random numbers that the uninterrupted run never drew.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending is None:
            return
        state_dict, self._pending = self._pending, None
        random.setstate(state_dict["python"])
        np.random.set_state(state_dict["numpy"])
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class LastCheckpointCallback(L.Callback):
    """A resumable ``last.ckpt`` that is never stale: after every validation and epoch, every ``every_n_steps``
    optimiser steps or ``every_minutes``, at the end (also when ``max_steps`` ends training mid-epoch), on SIGTERM
    (SLURM pre-emption, ``kill``: Lightning stops after the current batch) and on Ctrl-C -- whatever top-k does.
    ``periodic=False`` keeps only the last three.

    Writes are atomic (AtomicCheckpointIO); the ``*.ckpt.tmp`` a kill during a write leaves behind is removed when
    the next run in that folder starts.
    """

    def __init__(self, checkpoint_dir: Path, *, periodic: bool = True, every_n_steps: int | None = None,
                 every_minutes: float | None = None) -> None:
        self.path = Path(checkpoint_dir) / "last.ckpt"
        self.periodic = periodic  # False (checkpoint.save_last: false): only at the end and on SIGTERM / Ctrl-C
        self.every_n_steps, self.every_minutes = (every_n_steps, every_minutes) if periodic else (None, None)
        self._saved_step, self._saved_at = -1, time.monotonic()

    def _save(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(self.path)
        self._saved_step, self._saved_at = trainer.global_step, time.monotonic()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Under torchrun / srun only rank 0 knows the run folder until the ranks are connected (rundir.new_run_dir).
        self.path = Path(trainer.strategy.broadcast(str(self.path)))

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and self.path.parent.is_dir():
            stale = sorted(self.path.parent.glob("*.ckpt.tmp"))
            for tmp in stale:
                tmp.unlink(missing_ok=True)
            if stale:
                rank_zero_info(f"removed {len(stale)} unfinished checkpoint write(s): {[t.name for t in stale]}")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A resumed run's own starting point is on disk already; writing it again from the restarted loop (e.g. in
        # the validation Lightning reruns) would store a loop state that does not resume exactly.
        self._saved_step, self._saved_at = trainer.global_step, time.monotonic()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step == self._saved_step or trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return  # an epoch's last batch is saved after its validation or at the epoch's end
        due = bool(self.every_n_steps) and step % self.every_n_steps == 0
        if self.every_minutes:
            # Ranks' clocks differ: rank 0 decides, or one rank would wait in a save the others never enter.
            due = trainer.strategy.broadcast(due or time.monotonic() - self._saved_at >= 60 * self.every_minutes)
        if due:
            self._save(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (self.periodic and not trainer.sanity_checking and trainer.state.fn == "fit"
                and trainer.global_step != self._saved_step):
            self._save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.periodic and trainer.global_step != self._saved_step:
            self._save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._uncount_unfinished_epoch(trainer)
        self._save(trainer)

    @staticmethod
    def _uncount_unfinished_epoch(trainer: L.Trainer) -> None:
        """``max_steps`` or ``max_time`` ending training mid-epoch still counts that epoch as completed in
        Lightning's loop state, so a resumed run would start the next epoch and never train the rest of this one.
        Saved as not completed (the state a SIGTERM mid-epoch leaves), it resumes where it stopped."""
        loop = trainer.fit_loop
        done, per_epoch = loop.epoch_loop.batch_progress.current.completed, trainer.num_training_batches
        progress = loop.epoch_progress
        if 0 < done < per_epoch and progress.current.completed == progress.current.started:
            for counts in (progress.current, progress.total):
                counts.completed -= 1
                counts.processed -= 1

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, (SIGTERMException, KeyboardInterrupt)) and trainer.global_step > 0:
            self._save(trainer)
            reason = "SIGTERM" if isinstance(exception, SIGTERMException) else "interrupted"
            rank_zero_info(f"{reason}: saved {self.path} at step {trainer.global_step}; continue with --resume")


class SlurmPreemption(L.Callback):
    """Under SLURM: the pre-emption warning SIGUSR1 (``--signal=USR1@90`` in tools/slurm_train.sh) stops training as
    SIGTERM does -- after the current batch, on every rank, and LastCheckpointCallback saves ``last.ckpt`` -- and
    the run, stopped by either signal, asks SLURM to requeue the job (``requeue``, called by the train runner once
    ``status.json`` says where to resume: requeueing makes SLURM end this job at once).

    Lightning's own auto-requeue (``SLURMEnvironment(auto_requeue=True)``, switched off in build_trainer) saves an
    ``hpc_ckpt`` from inside the signal handler, i.e. in the middle of a step, and trains on; stopping at a batch
    boundary gives a checkpoint that resumes exactly (RNG states, position in the data).
    """

    def __init__(self) -> None:
        self.job_id = slurm_job_id()
        self.signal: str | None = None  # which signal stopped training: SIGUSR1 or SIGTERM

    def _install(self) -> None:
        # From inside the fit loop: Lightning has registered its SIGTERM handler (which SIGUSR1 is forwarded to), and
        # puts back the SIGUSR1 handler from before fit when fit ends, however it ends.
        signal.signal(signal.SIGUSR1, self._on_sigusr1)

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()

    def _on_sigusr1(self, signum: int, frame: FrameType | None) -> None:
        self.signal = "SIGUSR1"
        rank_zero_info(f"SIGUSR1: SLURM job {self.job_id} is about to end; saving after the current batch, then "
                       "requeueing it")
        sigterm = signal.getsignal(signal.SIGTERM)
        if callable(sigterm):  # Lightning's: flag the stop, pass the signal to the ranks it started, tell the others
            sigterm(signum, frame)
        else:
            os.kill(os.getpid(), signal.SIGTERM)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and self.signal is None:
            self.signal = "SIGTERM"

    def requeue(self) -> bool:
        """``scontrol requeue`` this job (SLURM restarts it, and the train runner resumes it: rundir's
        ``requeued_checkpoint``); whether SLURM accepted it. Jobs started by ``srun`` outside ``sbatch`` cannot be."""
        try:
            done = subprocess.run(["scontrol", "requeue", str(self.job_id)], capture_output=True, text=True,
                                  timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning(f"could not requeue SLURM job {self.job_id} ({exc}); continue it with --resume")
            return False
        if done.returncode != 0:
            log.warning(f"scontrol requeue {self.job_id} failed ({(done.stderr or done.stdout).strip()}); continue it "
                        "with --resume")
            return False
        rank_zero_info(f"requeued SLURM job {self.job_id}: when it starts again it resumes from its last.ckpt")
        return True


class EndLaunchedRanksOnFailure(L.Callback):
    """When the process that started the other ranks fails (``--devices N``: Lightning re-runs the command for ranks
    1..N-1), end them with it. Failing before they are connected -- its port taken at the rendezvous, a device
    error -- it would leave them waiting for it until the 30-minute timeout (rank 1 of an EADDRINUSE ran 20+
    minutes); NCCL ranks also wait in a collective that a dead peer never joins. Lightning does this for Ctrl-C only,
    and passes SIGTERM on (they save and stop). torchrun and ``srun --kill-on-bad-exit`` end the ranks they start."""

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        launcher = trainer.strategy.launcher
        if launcher is not None and not isinstance(exception, (SIGTERMException, KeyboardInterrupt)):
            launcher.kill(signal.SIGKILL)  # a no-op in the ranks that started none


class EpochSummary(L.Callback):
    """One line per epoch: losses, validation metrics, learning rate, time, throughput and skipped samples."""

    def __init__(self) -> None:
        self._start, self._samples = time.perf_counter(), 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Not called when a run resumes mid-epoch; __init__ covers that first, partial epoch.
        self._start, self._samples = time.perf_counter(), 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._samples += int(batch["batch_size"])

    @staticmethod
    def _metric_parts(trainer: L.Trainer, prefixes: tuple[str, ...]) -> list[str]:
        metrics = trainer.callback_metrics
        parts = []
        for key in sorted(metrics):
            if key.startswith(prefixes) and "class_acc" not in key and (
                    not key.startswith("train/") or key.endswith("_epoch")):
                parts.append(f"{key.removesuffix('_epoch')} {float(metrics[key]):.4g}")
        return parts

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Validations inside an epoch (val_check_interval < 1) get their own line; the epoch line covers the last.
        if trainer.sanity_checking or trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return
        rank_zero_info(" | ".join([f"epoch {trainer.current_epoch + 1} step {trainer.global_step}",
                                   *self._metric_parts(trainer, ("val/",))]))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        elapsed = time.perf_counter() - self._start
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}", f"step {trainer.global_step}"]
        parts += self._metric_parts(trainer, ("train/", "val/"))
        if trainer.optimizers:
            parts.append(f"lr {trainer.optimizers[0].param_groups[0]['lr']:.3g}")
        parts.append(f"{elapsed:.1f}s")
        # Every rank sees an equal shard, so rank 0's count times the world size is the global throughput.
        parts.append(f"{self._samples * trainer.world_size / max(elapsed, 1e-9):.0f} samples/s")
        skipped = pl_module.skipped["train"]
        if skipped:
            parts.append(f"skipped {sum(skipped.values())} {dict(skipped)}")
        rank_zero_info(" | ".join(parts))
