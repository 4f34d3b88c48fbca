"""A trained TaskModule back from its checkpoint, for testing, export, prediction and the Python API."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..builtins import register_builtins
from ..config import import_recorded_plugins
from ..errors import CheckpointError
from ..registry import TASKS
from .checkpoint import load_weights_report, model_state, read_checkpoint
from .module import TaskModule


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
