"""``predict(model, inputs)``: images or folders through a checkpoint (PyTorch) or an ONNX model (ONNX Runtime).

Both back-ends share the same numpy pre- and post-processing; the ONNX path never imports torch.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..data.images import IMAGE_SUFFIXES, SampleSkipped, read_image
from ..errors import ConfigError
from ..export.runtime import OnnxModel, inference_module

log = logging.getLogger("ocrforge")


def collect_images(inputs: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"input not found: {path}")
    return files


def _torch_backend(ckpt: str | Path, device: str) -> tuple[Callable[[np.ndarray], dict], dict]:
    import torch

    from .evaluate import module_from_checkpoint

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA device is available here")
    module, _ = module_from_checkpoint(ckpt)
    wrapper = module.task.export_module(module.model).eval().to(device)
    names = list(module.task.onnx_output_names())

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            outputs = wrapper(torch.from_numpy(batch).to(device))
        return {n: o.float().cpu().numpy() for n, o in zip(names, outputs, strict=True)}

    return run, module.task.onnx_metadata()


def load_backend(model: str | Path, device: str = "cpu") -> tuple[Callable[[np.ndarray], dict], dict]:
    if str(model).endswith(".onnx"):
        onnx_model = OnnxModel(model)
        return onnx_model.run, onnx_model.meta
    return _torch_backend(model, device)


def readable_images(files: Iterable[Path], skipped: Counter) -> Iterator[tuple[Path, np.ndarray]]:
    """Each file with its RGB image; unreadable files are logged and counted by reason, never fatal."""
    for file in files:
        try:
            image = read_image(file)
        except SampleSkipped as exc:
            skipped[exc.reason] += 1
            log.warning("skipped %s: %s", file, exc)
            continue
        yield file, image


def _batches(files: list[Path], size: int, skipped: Counter) -> Iterator[tuple[list[Path], list[np.ndarray]]]:
    paths, images = [], []
    for file, image in readable_images(files, skipped):
        paths.append(file)
        images.append(image)
        if len(paths) == size:
            yield paths, images
            paths, images = [], []
    if paths:
        yield paths, images


def infer(processing: ModuleType, run: Callable[[np.ndarray], dict], meta: dict,
          images: list[np.ndarray]) -> list[dict]:
    """Prepare, run and decode images. Inputs of different sizes (detection keeps aspect ratios) run as separate
    batches rather than padded together: padding would change a convolutional network's output near the border,
    so a result would depend on the other images of its batch."""
    prepared = [processing.prepare(image, meta) for image in images]
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, array in enumerate(prepared):
        groups[array.shape].append(i)
    results: list[dict] = [{} for _ in images]
    for indices in groups.values():
        outputs = run(np.stack([prepared[i] for i in indices]))
        decoded = processing.decode_outputs(outputs, meta, [images[i].shape[:2] for i in indices])
        for i, result in zip(indices, decoded, strict=True):
            results[i] = result
    return results


def predict(model: str | Path, inputs: Iterable[str | Path], *, out: str | Path | None = None,
            batch_size: int = 32, device: str = "cpu", beam_width: int = 0) -> dict[str, Any]:
    """Predict every image under ``inputs``; unreadable files are counted per reason, never fatal.

    ``beam_width`` > 1 decodes recognisers with CTC prefix beam search instead of greedy."""
    run, meta = load_backend(model, device)
    meta = {**meta, "beam_width": beam_width}
    processing = inference_module(meta["task"])
    files = collect_images(inputs)
    skipped: Counter = Counter()
    results: list[dict] = []
    for paths, images in _batches(files, batch_size, skipped):
        for path, pred in zip(paths, infer(processing, run, meta, images), strict=True):
            results.append({"path": str(path), **pred})
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", encoding="utf-8") as handle:
            for row in results:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return {"predictions": results, "num_images": len(files), "skipped": dict(skipped)}
