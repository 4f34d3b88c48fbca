"""``export_onnx(ckpt)`` / ``to_onnx(model)``: the task's inference wrapper to ONNX, metadata for consumers, ONNX
Runtime parity check. The ``export.onnx`` settings come from the config and may be overridden at export time; they
are checked against what the task's export produces before anything is traced."""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import nn

from ..data.images import SampleSkipped
from ..engine.rundir import write_json
from ..errors import ConfigError, OcrforgeError, ParityError
from .runtime import OnnxModel

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from ..tasks.base import Task

# Names a config key by where its value came from: "<source>: export.onnx.<key>: <problem>" (the config errors' form).
Source = Callable[[str], str]


def _example_batch(task: Task, shape: list[int]) -> np.ndarray:
    """Real preprocessed samples where a dataset is configured (parity on data the model knows), else noise."""
    rng = np.random.default_rng(0)
    batch = rng.standard_normal(shape).astype(np.float32)
    # The training data need not be reachable (or intact) where a model is exported: noise then stays.
    with contextlib.suppress(OcrforgeError, SampleSkipped, OSError):
        raw = task.raw_dataset("val")
        for i in range(min(shape[0], len(raw) if raw is not None else 0)):
            sample = task.exporter().preprocess(raw[i]["image"])
            if list(sample.shape) == shape[1:]:
                batch[i] = sample
    return batch


@dataclass
class _Plan:
    """``export.onnx`` resolved against the task: which outputs, under which names, with which dynamic axes."""

    input_name: str
    indices: list[int]  # positions of the exported outputs among the task wrapper's outputs
    task_outputs: list[str]  # the task's names of the exported outputs (what its decoder reads), in graph order
    output_names: list[str]  # the graph's names of the same outputs
    axes: dict[str, Any]  # torch.onnx's dynamic_axes, keyed by graph names


def _fail(problems: list[str]) -> None:
    if problems:
        lines = "\n  ".join(problems)
        raise ConfigError(f"invalid config ({len(problems)} problem{'s' * (len(problems) > 1)}):\n  {lines}")


def _plan(task: Task, onnx_cfg: Any, source: Source) -> _Plan:
    """Check ``export.onnx`` (outputs, output_names, input_names, dynamic_axes, opset) against this task's export;
    raise ConfigError listing every problem, each naming where the key came from."""
    import onnx

    problems: list[str] = []

    def problem(key: str, message: str) -> None:
        problems.append(f"{source(key)}: export.onnx.{key}: {message}")

    exporter = task.exporter()
    available = list(exporter.output_names())
    wanted = list(onnx_cfg.outputs or available)
    unknown = [name for name in wanted if name not in available]
    if unknown:
        problem("outputs", f"{', '.join(unknown)}: not an output of this model; it exports {', '.join(available)}")
    wanted = [name for name in wanted if name in available]
    names = list(onnx_cfg.output_names or wanted)
    if len(names) != len(wanted):
        problem("output_names", f"{len(names)} name{'s' * (len(names) != 1)} {names} for {len(wanted)} exported "
                                f"output{'s' * (len(wanted) != 1)} ({', '.join(wanted)}); give one name per output")
    task_input = exporter.input_names()[0]
    input_name = str((onnx_cfg.input_names or [task_input])[0])
    if input_name in names:
        problem("input_names", f"'{input_name}' is also the name of an output")
    # Task names -> graph names, for the task's default axes and for keys a config gives.
    graph = {task_input: input_name, **dict(zip(wanted, names, strict=False))}
    known = [input_name, *names]
    if onnx_cfg.dynamic_axes:
        axes: dict[str, Any] = {}
        for key, value in OmegaConf.to_container(onnx_cfg.dynamic_axes).items():
            target = key if key in known else graph.get(key)
            if target is None:
                problem(f"dynamic_axes.{key}", f"no input or output of this export is called '{key}' (input: "
                                               f"{input_name}; outputs: {', '.join(names)})")
            else:
                axes[target] = value
    else:
        axes = {graph[k]: v for k, v in exporter.dynamic_axes().items() if k in graph}
    newest = onnx.defs.onnx_opset_version()
    if onnx_cfg.opset > newest:
        problem("opset", f"{onnx_cfg.opset} is newer than the installed onnx package supports ({newest})")
    _fail(problems)
    return _Plan(input_name, [available.index(n) for n in wanted], wanted, names, axes)


def _check_axes_rank(plan: _Plan, ranks: dict[str, int], source: Source) -> None:
    """Dynamic axis indices exist in the tensors they name (known once the wrapper has run on the example)."""
    _fail([f"{source('dynamic_axes')}: export.onnx.dynamic_axes.{name}: axis {axis} of a {ranks[name]}-dimensional "
           f"tensor" for name, axes in plan.axes.items() for axis in axes if int(axis) >= ranks[name]])


class _Selected(nn.Module):
    """The task's inference wrapper reduced to the outputs ``export.onnx.outputs`` asks for, in that order."""

    def __init__(self, wrapper: nn.Module, indices: list[int]) -> None:
        super().__init__()
        self.wrapper = wrapper
        self.indices = indices

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.wrapper(image)
        return tuple(outputs[i] for i in self.indices)


def _export(task: Task, model: nn.Module, out: Path, example: np.ndarray | None, checkpoint: str | None,
            source: Source) -> dict[str, Any]:
    import onnx

    onnx_cfg = task.cfg.export.onnx
    plan = _plan(task, onnx_cfg, source)
    wrapper = _Selected(task.exporter().module(model), plan.indices).eval()
    if example is None:
        example = _example_batch(task, list(onnx_cfg.input_shape or [2, 3, *task.cfg.data.image_size]))
    with torch.no_grad():
        reference = wrapper(torch.from_numpy(example))
    _check_axes_rank(plan, {plan.input_name: example.ndim, **{n: r.ndim for n, r in
                                                               zip(plan.output_names, reference, strict=True)}},
                     source)
    out.parent.mkdir(parents=True, exist_ok=True)
    # The fused inference kernels of nn.TransformerEncoderLayer / MultiheadAttention have no ONNX form.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad():
            torch.onnx.export(wrapper, (torch.from_numpy(example),), str(out), input_names=[plan.input_name],
                              output_names=plan.output_names, dynamic_axes=plan.axes, opset_version=onnx_cfg.opset,
                              dynamo=onnx_cfg.dynamo, do_constant_folding=True)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    graph = onnx.load(str(out))
    # ``outputs``: the task's names of the graph's outputs, in order, so a renamed output still decodes.
    meta = {**task.exporter().metadata(), "outputs": plan.task_outputs, "checkpoint": checkpoint}
    entry = graph.metadata_props.add()
    entry.key, entry.value = "ocrforge", json.dumps(meta, ensure_ascii=False)
    extra_metadata = task.exporter().extra_metadata()
    for key, value in extra_metadata.items():
        extra = graph.metadata_props.add()
        extra.key, extra.value = key, value
    onnx.checker.check_model(graph)
    onnx.save(graph, str(out))

    # Parity on the export batch, on another batch size and, for every dynamic spatial axis (e.g. a recogniser's
    # width), on an input 32 px narrower.
    session = OnnxModel(out, providers=["CPUExecutionProvider"])
    report: dict[str, Any] = {"onnx": str(out), "opset": onnx_cfg.opset, "tolerance": onnx_cfg.tolerance,
                              "input": plan.input_name, "outputs": plan.output_names,
                              "extra_metadata": sorted(extra_metadata), "max_abs_diff": {}}
    input_axes = [int(axis) for axis in plan.axes.get(plan.input_name, {})]
    checks = [np.concatenate([example, example[:1]], axis=0)] if 0 in input_axes else []
    for axis in input_axes:
        if axis >= 2 and example.shape[axis] > 32:
            checks.append(np.ascontiguousarray(np.delete(example, np.s_[-32:], axis=axis)))
    for batch in (example, *checks):
        with torch.no_grad():
            expected = wrapper(torch.from_numpy(batch))
        got = session.run(batch)
        for task_name, name, ref in zip(plan.task_outputs, plan.output_names, expected, strict=True):
            diff = float(np.max(np.abs(ref.numpy() - got[task_name]))) if ref.numel() else 0.0
            report["max_abs_diff"][name] = max(diff, report["max_abs_diff"].get(name, 0.0))
    write_json(out.with_suffix(".parity.json"), report)
    worst = max(report["max_abs_diff"].values())
    if worst > onnx_cfg.tolerance:
        raise ParityError(f"ONNX Runtime differs from PyTorch by {worst:.3g} > tolerance {onnx_cfg.tolerance} "
                          f"({report['max_abs_diff']}); the model was written to {out} for inspection")
    return report


def _source(origin: str, overrides: Iterable[str]) -> Source:
    """Where ``export.onnx.<key>`` came from: the command line when an override set it (or a section above it)."""
    from ..config.loader import CMDLINE, parse_override

    keys = [parse_override(item)[0] for item in overrides]

    def source(key: str) -> str:
        full = f"export.onnx.{key}"
        hit = any(full == k or full.startswith(k + ".") or k.startswith(full + ".") for k in keys)
        return CMDLINE if hit else origin

    return source


def export_onnx(ckpt_path: str | Path, out: str | Path | None = None, *, use_ema: bool = True,
                config: str | Path | None = None, overrides: Sequence[str] = (),
                plugin_dir: str | Path | None = None) -> dict[str, Any]:
    """Export a checkpoint (or, with ``config``, a bare ``.pth`` state dict) to ONNX and check it against ONNX
    Runtime; raises ParityError when the outputs differ beyond the tolerance.

    ``overrides`` (``export.onnx.opset=13`` …) apply to ``config`` or else to the checkpoint's stored config, and are
    validated like ``-o`` of any command."""
    from ..config import import_plugins, load_config
    from ..engine.checkpoint import read_checkpoint
    from ..engine.loading import module_from_checkpoint
    from ..pretrained.ppocr import resolve_checkpoint

    cfg = None
    if config is not None:
        cfg = load_config(config, overrides, plugin_dir=plugin_dir)
    elif overrides:
        stored = (read_checkpoint(resolve_checkpoint(ckpt_path)).get("hyper_parameters") or {}).get("config")
        if stored is None:
            raise ConfigError(f"{ckpt_path} holds no ocrforge config; pass the config file as well (--config)")
        # The checkpoint's weights replace model.pretrained's, whose file need not exist any more.
        stored["model"] = {k: v for k, v in stored["model"].items() if k != "pretrained" or isinstance(v, bool)}
        cfg = load_config(base=stored, overrides=overrides, plugin_dir=plugin_dir)
    elif plugin_dir is not None:
        import_plugins(plugin_dir=plugin_dir)
    module, _ = module_from_checkpoint(ckpt_path, cfg, use_ema=use_ema)
    origin = str(config) if config is not None else f"{ckpt_path} (its config)"
    out = Path(out) if out else Path(ckpt_path).with_suffix(".onnx")
    return _export(module.task, module.model, out, None, Path(ckpt_path).name, _source(origin, overrides))


def to_onnx(model_or_ckpt: nn.Module | str | Path, path: str | Path, *, cfg: DictConfig | None = None,
            example_input: torch.Tensor | np.ndarray | None = None, use_ema: bool = True) -> dict[str, Any]:
    """Export a model (built from ``cfg``, e.g. by ``ocrforge.build_model``) or a checkpoint path to ``path``, with
    the ONNX Runtime parity check of ``ocrforge export``; returns its report.

    ``cfg`` is required with a model (it says how inputs are prepared and what the outputs mean) and, with a
    checkpoint, replaces its stored config. ``example_input`` ([N, C, H, W]) is the traced and parity-checked
    batch; by default validation samples, or noise, of the configured input size. The model itself is left as it
    was (a copy is exported, on the CPU)."""
    from ..engine.loading import module_from_checkpoint
    from ..engine.module import build_task

    if isinstance(model_or_ckpt, nn.Module):
        if cfg is None:
            raise ConfigError("to_onnx(model, path): pass cfg=, the config the model was built from (it says how "
                              "inputs are prepared and what the outputs mean)")
        task, model, checkpoint = build_task(cfg), copy.deepcopy(model_or_ckpt).cpu(), None
    else:
        module, _ = module_from_checkpoint(model_or_ckpt, cfg, use_ema=use_ema)
        task, model, checkpoint = module.task, module.model, Path(model_or_ckpt).name
    example = None
    if example_input is not None:
        array = example_input.detach().cpu().numpy() if isinstance(example_input, torch.Tensor) else example_input
        example = np.ascontiguousarray(array, dtype=np.float32)
    return _export(task, model, Path(path), example, checkpoint, lambda key: "config")
