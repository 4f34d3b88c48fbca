"""Detection export: the family's inference maps (``DetectionModel.inference_outputs``) at input resolution, with
the preprocessing and the named post-processor in the metadata."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..base import TaskExport
from .inference import STRIDE, prepare


class DetExport(TaskExport):
    def preprocess(self, image: np.ndarray) -> np.ndarray:
        return prepare(image, self.task.inference_meta())

    def module(self, model: nn.Module) -> nn.Module:
        return DetInference(model, self.output_names())

    def output_names(self) -> Sequence[str]:
        return list(self.task.model_class.inference_outputs)

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {name: {0: "batch", 2: "height", 3: "width"} for name in (*self.input_names(), *self.output_names())}

    def metadata(self) -> dict[str, Any]:
        return {"task": "det", **self.task.inference_meta(), "stride": STRIDE, "layout": "NCHW",
                "outputs_meaning": dict(self.task.model_class.inference_outputs)}


class DetInference(nn.Module):
    """The model's inference branch only: its ``inference_outputs`` in order."""

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.names = tuple(names)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model.forward_inference(image)
        return tuple(outputs[name] for name in self.names)
