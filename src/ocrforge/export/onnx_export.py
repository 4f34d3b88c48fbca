"""``export(ckpt)``: the task's inference wrapper to ONNX, metadata for consumers, ONNX Runtime parity check."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.images import SampleSkipped
from ..engine.rundir import write_json
from ..errors import OcrforgeError, ParityError
from .runtime import OnnxModel


def _example_batch(module: Any, shape: list[int]) -> np.ndarray:
    """Real preprocessed samples where a dataset is configured (parity on data the model knows), else noise."""
    rng = np.random.default_rng(0)
    batch = rng.standard_normal(shape).astype(np.float32)
    # The training data need not be reachable (or intact) where a model is exported: noise then stays.
    with contextlib.suppress(OcrforgeError, SampleSkipped, OSError):
        raw = module.task.raw_dataset("val")
        for i in range(min(shape[0], len(raw) if raw is not None else 0)):
            sample = module.task.preprocess(raw[i]["image"])
            if list(sample.shape) == shape[1:]:
                batch[i] = sample
    return batch


def export_onnx(ckpt_path: str | Path, out: str | Path | None = None, *, use_ema: bool = True) -> dict[str, Any]:
    """Export a checkpoint; raises ParityError when ONNX Runtime's outputs differ beyond the tolerance."""
    import onnx

    from ..runners.evaluate import module_from_checkpoint

    module, _ = module_from_checkpoint(ckpt_path, use_ema=use_ema)
    task, onnx_cfg = module.task, module.cfg.export.onnx
    out = Path(out) if out else Path(ckpt_path).with_suffix(".onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    wrapper = task.export_module(module.model).eval()
    input_names = list(onnx_cfg.input_names or ["image"])
    output_names = list(onnx_cfg.output_names or task.onnx_output_names())
    axes = dict(onnx_cfg.dynamic_axes) if onnx_cfg.dynamic_axes else task.onnx_dynamic_axes()
    if "image" in axes and input_names[0] != "image":  # the tasks name their input "image"; a config may rename it
        axes[input_names[0]] = axes.pop("image")
    shape = list(onnx_cfg.input_shape or [2, 3, *module.cfg.data.image_size])
    example = _example_batch(module, shape)
    # The fused inference kernels of nn.TransformerEncoderLayer / MultiheadAttention have no ONNX form.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad():
            torch.onnx.export(wrapper, (torch.from_numpy(example),), str(out), input_names=input_names,
                              output_names=output_names, dynamic_axes=axes, opset_version=onnx_cfg.opset,
                              dynamo=onnx_cfg.dynamo, do_constant_folding=True)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    model = onnx.load(str(out))
    meta = {**task.onnx_metadata(), "outputs": output_names, "checkpoint": Path(ckpt_path).name}
    entry = model.metadata_props.add()
    entry.key, entry.value = "ocrforge", json.dumps(meta, ensure_ascii=False)
    extra_metadata = task.onnx_extra_metadata()
    for key, value in extra_metadata.items():
        extra = model.metadata_props.add()
        extra.key, extra.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(out))

    # Parity on the export batch and on the dynamic axes.
    session = OnnxModel(out, providers=["CPUExecutionProvider"])
    report: dict[str, Any] = {"onnx": str(out), "opset": onnx_cfg.opset, "tolerance": onnx_cfg.tolerance,
                              "input": input_names[0], "extra_metadata": sorted(extra_metadata),
                              "max_abs_diff": {}}
    # A batch of another size, and for every dynamic spatial axis (e.g. a recogniser's width) one 32 px narrower.
    checks = [np.concatenate([example, example[:1]], axis=0)]
    for axis in axes.get(input_names[0], {}):
        if int(axis) >= 2 and example.shape[int(axis)] > 32:
            checks.append(np.ascontiguousarray(np.delete(example, np.s_[-32:], axis=int(axis))))
    for batch in (example, *checks):
        with torch.no_grad():
            expected = wrapper(torch.from_numpy(batch))
        got = session.run(batch)
        for name, ref in zip(output_names, expected, strict=True):
            diff = float(np.max(np.abs(ref.numpy() - got[name]))) if ref.numel() else 0.0
            report["max_abs_diff"][name] = max(diff, report["max_abs_diff"].get(name, 0.0))
    write_json(out.with_suffix(".parity.json"), report)
    worst = max(report["max_abs_diff"].values())
    if worst > onnx_cfg.tolerance:
        raise ParityError(f"ONNX Runtime differs from PyTorch by {worst:.3g} > tolerance {onnx_cfg.tolerance} "
                          f"({report['max_abs_diff']}); the model was written to {out} for inspection")
    return report
