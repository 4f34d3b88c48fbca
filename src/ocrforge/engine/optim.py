"""Optimisers and per-iteration LR schedules, registered so configs name them by ``type``."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from ..registry import OPTIMIZERS, SCHEDULERS


def _param_groups(params: Iterable[tuple[str, torch.nn.Parameter]], weight_decay: float) -> list[dict]:
    """No weight decay on norms and biases (1-D tensors), the usual recipe for timm backbones."""
    decay, no_decay = [], []
    for _, p in params:
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _fused_on_cuda(groups: list[dict]) -> dict[str, bool]:
    """``fused=True`` when every parameter is on a CUDA device: one kernel updates them all, its step counters stay
    on the device. Elsewhere torch's default implementation, so CPU results are unchanged bit for bit."""
    params = [p for group in groups for p in group["params"]]
    return {"fused": True} if params and all(p.is_cuda for p in params) else {}


def _clippable(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Lightning refuses gradient clipping for an optimiser that says it unscales fp16 gradients inside ``step``
    (fused ones do), even under bf16 where nothing is scaled. Saying no makes GradScaler unscale before clipping, as
    for any other optimiser; the update itself is the same."""
    optimizer._step_supports_amp_scaling = False
    return optimizer


@OPTIMIZERS.register("AdamW", aliases=("adamw",))
def adamw(params, lr: float = 1e-3, weight_decay: float = 0.05, betas: list[float] = (0.9, 0.999),
          eps: float = 1e-8) -> torch.optim.Optimizer:
    groups = _param_groups(params, weight_decay)
    return _clippable(torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, **_fused_on_cuda(groups)))


@OPTIMIZERS.register("Adam", aliases=("adam",))
def adam(params, lr: float = 1e-3, weight_decay: float = 0.0, betas: list[float] = (0.9, 0.999),
         eps: float = 1e-8) -> torch.optim.Optimizer:
    groups = _param_groups(params, weight_decay)
    return _clippable(torch.optim.Adam(groups, lr=lr, betas=tuple(betas), eps=eps, **_fused_on_cuda(groups)))


@OPTIMIZERS.register("SGD", aliases=("sgd",))
def sgd(params, lr: float = 0.01, weight_decay: float = 1e-4, momentum: float = 0.9,
        nesterov: bool = False) -> torch.optim.Optimizer:
    return torch.optim.SGD(_param_groups(params, weight_decay), lr=lr, momentum=momentum, nesterov=nesterov)


def _warmup_steps(total_steps: int, warmup_steps: int, warmup_ratio: float) -> int:
    return min(total_steps, max(warmup_steps, round(warmup_ratio * total_steps)))


# Schedulers take (optimizer, total_steps, steps_per_epoch) from the engine; the rest comes from the config.
@SCHEDULERS.register("CosineLR", aliases=("cosine",))
def cosine(optimizer, total_steps: int, steps_per_epoch: int, warmup_steps: int = 0, warmup_ratio: float = 0.0,
           min_lr_ratio: float = 0.0) -> LRScheduler:
    """Linear warm-up from 0, then half a cosine down to ``min_lr_ratio`` × lr."""
    warm = _warmup_steps(total_steps, warmup_steps, warmup_ratio)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total_steps - warm))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


@SCHEDULERS.register("PolyLR", aliases=("poly",))
def poly(optimizer, total_steps: int, steps_per_epoch: int, power: float = 0.9, warmup_steps: int = 0,
         warmup_ratio: float = 0.0) -> LRScheduler:
    """DBNet's schedule: lr × (1 − t/T)^power after an optional linear warm-up."""
    warm = _warmup_steps(total_steps, warmup_steps, warmup_ratio)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, 1 - (step - warm) / max(1, total_steps - warm)) ** power

    return LambdaLR(optimizer, factor)


class _RunLengthOneCycleLR(OneCycleLR):
    """OneCycle over the length of the run that builds it, also when that run resumes a checkpoint.

    torch's OneCycleLR saves its ``total_steps`` and phase boundaries, so restoring the state of a shorter run
    would end the schedule at the old length (``Tried to step N times`` once training goes past it). A resumed run
    with a new ``max_steps`` / ``max_epochs`` keeps the phases built for its new length and continues from the
    restored step -- as cosine and poly do, whose step functions always take the current run's total: the curve is
    stretched (or shrunk) to the new length and the LR moves onto it from the next step. Same length: exact resume.
    """

    def load_state_dict(self, state_dict: dict) -> None:
        own = {"total_steps": self.total_steps, "_schedule_phases": self._schedule_phases}
        super().load_state_dict(state_dict)
        self.__dict__.update(own)


@SCHEDULERS.register("OneCycleLR", aliases=("onecycle",))
def onecycle(optimizer, total_steps: int, steps_per_epoch: int, pct_start: float = 0.1, div_factor: float = 25.0,
             final_div_factor: float = 1e4, anneal_strategy: str = "cos") -> LRScheduler:
    max_lr = [group["lr"] for group in optimizer.param_groups]
    return _RunLengthOneCycleLR(optimizer, max_lr=max_lr, total_steps=max(total_steps, 1), pct_start=pct_start,
                                div_factor=div_factor, final_div_factor=final_div_factor,
                                anneal_strategy=anneal_strategy)


@SCHEDULERS.register("MultiStepLR", aliases=("multistep",))
def multistep(optimizer, total_steps: int, steps_per_epoch: int, milestones: list[int] = (), gamma: float = 0.1,
              by_epoch: bool = True, warmup_steps: int = 0) -> LRScheduler:
    """Multiply by ``gamma`` at each milestone (epochs when ``by_epoch``, else steps), stepped per iteration."""
    steps = sorted(m * steps_per_epoch if by_epoch else m for m in milestones)

    def factor(step: int) -> float:
        warm = (step + 1) / warmup_steps if step < warmup_steps else 1.0
        return warm * gamma ** sum(step >= m for m in steps)

    return LambdaLR(optimizer, factor)


@SCHEDULERS.register("ConstantLR", aliases=("constant",))
def constant(optimizer, total_steps: int, steps_per_epoch: int, warmup_steps: int = 0) -> LRScheduler:
    return LambdaLR(optimizer, lambda step: (step + 1) / warmup_steps if step < warmup_steps else 1.0)
