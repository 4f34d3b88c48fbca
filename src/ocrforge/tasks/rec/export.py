"""Recognition export: the main head's export outputs (``RecHead.export_outputs``), named, with their dynamic axes
and the decoder that reads them recorded in the metadata; RapidOCR's ``character`` where the charset allows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ...data.images import normalise
from ...errors import ConfigError
from ..base import TaskExport
from .inference import resize_pad


class RecExport(TaskExport):
    def preprocess(self, image: np.ndarray) -> np.ndarray:
        t = self.task
        padded, _ = resize_pad(image, t.height, t.max_width)
        return normalise(padded, t.mean, t.std, t.color)

    def module(self, model: nn.Module) -> nn.Module:
        if not callable(getattr(model, "export_forward", None)):
            raise ConfigError(f"ONNX export of a recogniser needs a model with export_forward(images) (a "
                              f"Recognizer); {type(model).__name__} has none")
        return RecInference(model)

    def output_names(self) -> Sequence[str]:
        return self.task.head_class().export_outputs

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {self.input_names()[0]: {0: "batch", 3: "width"}, **self.task.head_class().export_axes}

    def metadata(self) -> dict[str, Any]:
        t = self.task
        return {"task": "rec", "decoder": t.head_class().decoder_name, "input_size": [t.height, t.max_width],
                "mean": list(t.mean), "std": list(t.std), "tokens": t.charset.tokens,
                "lowercase": t.charset.lowercase, "padding": "right, crop border colour", "color": t.color,
                "layout": "NCHW"}

    def extra_metadata(self) -> dict[str, str]:
        """RapidOCR's ``character``: it splits the value into lines and adds blank in front and space at the end,
        so only a charset laid out that way (space last and nowhere else, no ``<unk>``, no line-break-like
        characters) can be described to it."""
        charset = self.task.charset
        chars = charset.chars
        body = chars[:-1]
        if (not chars or chars[-1] != " " or " " in body or charset.unknown_id is not None
                or "\n".join(body).splitlines() != body):
            return {}
        return {"character": "\n".join(body)}


class RecInference(nn.Module):
    """The model's ``export_forward``: backbone, neck and the main head's export outputs (an ``aux_head`` is
    training guidance only: neither exported nor used to decode)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.model.export_forward(image)
