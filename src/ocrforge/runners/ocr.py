"""``ocr(inputs, det=…, rec=…, cls=…)``: detection -> perspective crops -> optional 0/180 line classification ->
batched recognition -> reading order -> JSON lines and pictures.

Every model may be a checkpoint (PyTorch) or an exported ONNX model (ONNX Runtime); the pre- and post-processing is
the tasks' numpy code either way, so both back-ends give the same words. With ONNX models only, torch is never
imported.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ..data.geometry import crop_quad, region_quad, turn_upright
from ..errors import ConfigError
from ..export.runtime import inference_module
from .ocr_visualize import save_ocr_picture
from .predict import collect_images, infer, load_backend, read_or_skip
from .progress import Progress, open_output

Backend = Callable[[np.ndarray], dict]


@dataclass
class _Model:
    run: Backend
    meta: dict
    processing: Any

    def __call__(self, images: list[np.ndarray]) -> list[dict]:
        return infer(self.processing, self.run, self.meta, images)


def _load(model: str | Path, task: str, device: str) -> _Model:
    if not str(model).endswith(".onnx"):
        from ..pretrained.ppocr import resolve_checkpoint  # imports no torch: names -> cached checkpoints

        model = resolve_checkpoint(model, task)
    run, meta = load_backend(model, device)
    if meta.get("task") != task:
        raise ConfigError(f"{model} is a '{meta.get('task')}' model; expected a '{task}' model here")
    return _Model(run, meta, inference_module(task))


def reading_order(boxes: list[np.ndarray]) -> list[int]:
    """Indices of quads in reading order: lines top to bottom (a word joins a line when its vertical centre lies
    within half a line height of the line's), words left to right within a line."""
    if not boxes:
        return []
    centres = np.array([b.mean(axis=0) for b in boxes])
    heights = np.array([max(1.0, float(b[:, 1].max() - b[:, 1].min())) for b in boxes])
    lines: list[list[int]] = []
    for i in np.argsort(centres[:, 1], kind="stable"):
        if lines:
            line = lines[-1]
            line_y = centres[line, 1].mean()
            if abs(centres[i, 1] - line_y) <= 0.5 * min(heights[line].mean(), heights[i]):
                line.append(int(i))
                continue
        lines.append([int(i)])
    return [i for line in lines for i in sorted(line, key=lambda j: centres[j, 0])]


class OcrPipeline:
    """Detector + recogniser (+ optional 0/180 text-line classifier), each a ``.ckpt`` or an exported ``.onnx``.

    Words whose recognition score is below ``drop_score`` are dropped and counted (PaddleOCR's ``drop_score``).
    """

    def __init__(self, det: str | Path, rec: str | Path, cls: str | Path | None = None, *, device: str = "cpu",
                 rec_batch_size: int = 32, cls_threshold: float = 0.9, drop_score: float = 0.5,
                 det_postprocess: dict | None = None) -> None:
        self.det = _load(det, "det", device)
        if det_postprocess:
            self.det.meta = {**self.det.meta, "postprocess": {**self.det.meta["postprocess"], **det_postprocess}}
        self.rec = _load(rec, "rec", device)
        self.cls = _load(cls, "cls", device) if cls else None
        if self.cls is not None and sorted(self.cls.meta["classes"]) != ["0", "180"]:
            raise ConfigError(f"{cls} classifies {self.cls.meta['classes']}; a text-line orientation model "
                              "with the classes '0' and '180' only is needed")
        self.rec_batch_size, self.cls_threshold, self.drop_score = rec_batch_size, cls_threshold, drop_score

    def _crops(self, image: np.ndarray, polygons: list, skipped: Counter) -> tuple[list[np.ndarray], list[int]]:
        crops, kept = [], []
        for i, points in enumerate(polygons):
            quad = region_quad(np.asarray(points, dtype=np.float32), annotated=False)
            crop = crop_quad(image, quad) if quad is not None else "degenerate_polygon"
            if isinstance(crop, str):
                skipped[crop] += 1
                continue
            crops.append(turn_upright(crop)[0])  # a vertical line is read turned upright
            kept.append(i)
        return crops, kept

    def _batched(self, model: _Model, crops: list[np.ndarray]) -> list[dict]:
        # Similar widths together: less padding in each recognition batch.
        order = sorted(range(len(crops)), key=lambda i: crops[i].shape[1] / max(crops[i].shape[0], 1))
        results: list[dict] = [{}] * len(crops)
        for start in range(0, len(order), self.rec_batch_size):
            chunk = order[start : start + self.rec_batch_size]
            for i, result in zip(chunk, model([crops[i] for i in chunk]), strict=True):
                results[i] = result
        return results

    def __call__(self, image: np.ndarray) -> dict[str, Any]:
        skipped: Counter = Counter()
        found = self.det([image])[0]
        crops, kept = self._crops(image, found["polygons"], skipped)
        angles = [0] * len(crops)
        cls_scores: list[float | None] = [None] * len(crops)
        if self.cls is not None and crops:
            for k, result in enumerate(self._batched(self.cls, crops)):
                cls_scores[k] = result["score"]
                if result["label"] == "180" and result["score"] >= self.cls_threshold:
                    crops[k] = np.ascontiguousarray(np.rot90(crops[k], 2))
                    angles[k] = 180
        texts = self._batched(self.rec, crops) if crops else []
        words = []
        for k, i in enumerate(kept):
            if texts[k]["score"] < self.drop_score:
                skipped["low_rec_score"] += 1
                continue
            word = {"polygon": found["polygons"][i], "text": texts[k]["text"], "det_score": found["scores"][i],
                    "rec_score": round(float(texts[k]["score"]), 4)}
            if self.cls is not None:
                word.update(angle=angles[k], cls_score=round(float(cls_scores[k]), 4))
            words.append(word)
        order = reading_order([np.asarray(w["polygon"], dtype=np.float32) for w in words])
        return {"height": image.shape[0], "width": image.shape[1], "words": [words[i] for i in order],
                "dropped": dict(skipped)}


def ocr(inputs: Iterable[str | Path], det: str | Path, rec: str | Path, cls: str | Path | None = None, *,
        out: str | Path | TextIO | None = None, show_dir: str | Path | None = None, device: str = "cpu",
        progress: bool = True, **pipeline_kwargs: Any) -> dict[str, Any]:
    """Read every image under ``inputs``; unreadable files are counted per reason, never fatal.

    ``out`` (a path, or a stream such as ``sys.stdout``) receives one JSON line per image as soon as it is read,
    flushed, so an interrupted run keeps what it did. ``progress``: a bar on stderr when it is a terminal (else,
    and without it, a count line now and then)."""
    pipeline = OcrPipeline(det, rec, cls, device=device, **pipeline_kwargs)
    files = collect_images(inputs)
    skipped: Counter = Counter()
    results = []
    with open_output(out) as handle, Progress(len(files), "ocr", bar=progress) as bar:
        for file in files:
            image = read_or_skip(file, skipped)
            if image is not None:
                result = {"path": str(file), **pipeline(image)}
                results.append(result)
                if handle is not None:
                    bar.emit(handle, [result])
                if show_dir is not None:
                    picture = Path(show_dir) / f"{len(results) - 1:05d}_{file.stem[:60]}.jpg"
                    save_ocr_picture(image, result["words"], picture)
            bar.advance(1)
    return {"results": results, "num_images": len(files), "skipped": dict(skipped)}
