"""ocrforge: train, evaluate, export and run OCR models (detection, recognition, classification).

The public API is imported lazily so that ``import ocrforge`` stays cheap and the ONNX Runtime path never pulls in
torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "load_config": "ocrforge.config",
    "build_model": "ocrforge.api",
    "load_checkpoint": "ocrforge.api",
    "train": "ocrforge.runners.train",
    "test": "ocrforge.runners.test",
    "predict": "ocrforge.runners.predict",
    "export_onnx": "ocrforge.export.onnx_export",
    "to_onnx": "ocrforge.export.onnx_export",
    "check_data": "ocrforge.runners.data_check",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'ocrforge' has no attribute '{name}'")
