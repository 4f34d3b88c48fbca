"""ONNX Runtime inference driven by the model's own metadata. Imports numpy, OpenCV and onnxruntime only."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import CheckpointError


def inference_module(task: str) -> ModuleType:
    """The task's numpy-only pre/post-processing (``prepare(image, meta)``, ``decode_outputs(outputs, meta, sizes)``,
    ``sizes`` being the original (height, width) of each image), named by the task class's ``inference_module``;
    the registry reads that name from the source, so running an ONNX model imports no torch."""
    from ..builtins import register_builtins
    from ..registry import TASKS

    register_builtins()
    try:
        declared = TASKS.describe(task)
    except KeyError as exc:
        raise CheckpointError(f"no inference code for task '{task}': {exc.args[0]}") from None
    return importlib.import_module(declared.inference_module)


class OnnxModel:
    """An exported model plus the preprocessing its metadata describes."""

    def __init__(self, path: str | Path, providers: list[str] | None = None) -> None:
        import onnxruntime as ort

        if not Path(path).is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        try:
            self.session = ort.InferenceSession(str(path), providers=providers or ort.get_available_providers())
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable or invalid files
            raise CheckpointError(f"{path} is not a loadable ONNX model: {exc}") from None
        raw = self.session.get_modelmeta().custom_metadata_map
        if "ocrforge" not in raw:
            raise CheckpointError(f"{path} has no ocrforge metadata; export it with `ocrforge export`")
        self.meta: dict[str, Any] = json.loads(raw["ocrforge"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.processing = inference_module(self.meta["task"])

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs keyed by the task's names (metadata ``outputs``, in graph order), which the decoders read: a graph
        whose outputs were renamed at export (``export.onnx.output_names``) decodes like any other."""
        outputs = self.session.run(None, {self.input_name: batch.astype(np.float32, copy=False)})
        return dict(zip(self.meta.get("outputs", self.output_names), outputs, strict=True))
