"""Classification export: logits (scaled cosines for margin heads) and, where the head has one, the embedding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..base import TaskExport
from .inference import preprocess


class ClsExport(TaskExport):
    def preprocess(self, image: np.ndarray) -> np.ndarray:
        t = self.task
        return preprocess(image, t.image_size, t.mean, t.std, t.keep_ratio, t.color)

    def module(self, model: nn.Module) -> nn.Module:
        return ClsInference(model, self.output_names())

    def output_names(self) -> Sequence[str]:
        return getattr(self.task.head_class(), "export_outputs", ("logits",))

    def metadata(self) -> dict[str, Any]:
        t = self.task
        return {"task": "cls", "input_size": list(t.image_size), "mean": list(t.mean), "std": list(t.std),
                "keep_ratio": t.keep_ratio, "classes": t.classes, "color": t.color, "layout": "NCHW"}


class ClsInference(nn.Module):
    """Keeps only the inference branch: the head's ``export_outputs`` in order."""

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.names = tuple(names)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(image)
        return tuple(out[name] for name in self.names)
