"""``predict(model, inputs)``: images or folders through a checkpoint (PyTorch) or an ONNX model (ONNX Runtime).

Both back-ends share the same numpy pre- and post-processing; the ONNX path never imports torch.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

import numpy as np

from ..data.images import IMAGE_SUFFIXES, SampleSkipped, read_image
from ..errors import ConfigError
from ..export.runtime import OnnxModel, inference_module
from .progress import Progress, open_output

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

    from ..engine.loading import module_from_checkpoint

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA device is available here")
    module, _ = module_from_checkpoint(ckpt)
    exporter = module.task.exporter()
    wrapper = exporter.module(module.model).eval().to(device)
    names = list(exporter.output_names())

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            outputs = wrapper(torch.from_numpy(batch).to(device))
        return {n: o.float().cpu().numpy() for n, o in zip(names, outputs, strict=True)}

    return run, exporter.metadata()


def load_backend(model: str | Path, device: str = "cpu") -> tuple[Callable[[np.ndarray], dict], dict]:
    if str(model).endswith(".onnx"):
        onnx_model = OnnxModel(model)
        return onnx_model.run, onnx_model.meta
    return _torch_backend(model, device)


def read_or_skip(file: Path, skipped: Counter) -> np.ndarray | None:
    """The file's RGB image, or None for an unreadable file (logged and counted by reason, never fatal)."""
    try:
        return read_image(file)
    except SampleSkipped as exc:
        skipped[exc.reason] += 1
        log.warning("skipped %s: %s", file, exc)
        return None


def _batches(files: list[Path], size: int,
             skipped: Counter) -> Iterator[tuple[list[Path], list[np.ndarray], int]]:
    """Batches of readable images, each with the number of files it used up (unreadable ones included, so that
    progress counts every file)."""
    paths: list[Path] = []
    images: list[np.ndarray] = []
    used = 0
    for file in files:
        used += 1
        image = read_or_skip(file, skipped)
        if image is not None:
            paths.append(file)
            images.append(image)
        if len(paths) == size:
            yield paths, images, used
            paths, images, used = [], [], 0
    if used:
        yield paths, images, used


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


def predict(model: str | Path, inputs: Iterable[str | Path], *, out: str | Path | TextIO | None = None,
            batch_size: int = 32, device: str = "cpu", beam_width: int = 0, progress: bool = True) -> dict[str, Any]:
    """Predict every image under ``inputs``; unreadable files are counted per reason, never fatal.

    ``out`` (a path, or a stream such as ``sys.stdout``) receives one JSON line per image as each batch is done,
    flushed, so an interrupted run keeps what it did. ``progress``: a bar on stderr when it is a terminal (else,
    and without it, a count line now and then). ``beam_width`` > 1 decodes recognisers with CTC prefix beam
    search instead of greedy."""
    run, meta = load_backend(model, device)
    meta = {**meta, "beam_width": beam_width}
    processing = inference_module(meta["task"])
    files = collect_images(inputs)
    skipped: Counter = Counter()
    results: list[dict] = []
    with open_output(out) as handle, Progress(len(files), "predict", bar=progress) as bar:
        for paths, images, used in _batches(files, batch_size, skipped):
            rows = [{"path": str(path), **pred}
                    for path, pred in zip(paths, infer(processing, run, meta, images), strict=True)]
            results += rows
            if handle is not None:
                bar.emit(handle, rows)
            bar.advance(used)
    return {"predictions": results, "num_images": len(files), "skipped": dict(skipped)}
