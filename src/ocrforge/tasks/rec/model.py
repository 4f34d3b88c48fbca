"""Recognizer = backbone (image -> frames) + neck (context mixing) + head, with an optional auxiliary head."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ...models import pplcnet as _pplcnet  # noqa: F401  (registers PP-LCNet backbones)
from ...models import pplcnetv4 as _pplcnetv4  # noqa: F401  (registers PP-LCNetV4 backbones)
from ...registry import REC_BACKBONES, REC_HEADS, REC_MODELS, REC_NECKS
from . import backbones as _backbones  # noqa: F401  (registers the backbones)
from . import heads as _heads  # noqa: F401  (registers the heads)
from . import necks as _necks  # noqa: F401  (registers the necks)
from . import ppocr_necks as _ppocr_necks  # noqa: F401  (registers PP-OCR's necks)

# The head of a model config that names none.
DEFAULT_HEAD = {"type": "CTCHead"}


@REC_MODELS.register()
class Recognizer(nn.Module):
    """``aux_head`` (e.g. an attention decoder beside a CTC head) adds a training signal only: it runs in training,
    its loss is added by the loss module, and inference and export use ``head`` alone."""

    # The registry of each child and the arguments this model passes it (checked by config validation).
    config_children: ClassVar[dict[str, tuple[str, tuple[str, ...]]]] = {
        "backbone": ("rec.backbone", ()), "neck": ("rec.neck", ("in_channels",)),
        "head": ("rec.head", ("in_channels", "num_classes")),
        "aux_head": ("rec.head", ("in_channels", "num_classes"))}
    config_injected = ("num_classes",)

    def __init__(self, num_classes: int, backbone: dict[str, Any] | None = None, neck: dict[str, Any] | None = None,
                 head: dict[str, Any] | None = None, aux_head: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.backbone = REC_BACKBONES.build(dict(backbone or {"type": "CRNNBackbone"}))
        self.neck = REC_NECKS.build(dict(neck or {"type": "BiLSTMNeck"}), in_channels=self.backbone.out_channels)
        self.head = REC_HEADS.build(dict(head or DEFAULT_HEAD), in_channels=self.neck.out_channels,
                                    num_classes=num_classes)
        self.aux_head = REC_HEADS.build(dict(aux_head), in_channels=self.neck.out_channels,
                                        num_classes=num_classes) if aux_head else None

    def forward(self, images: torch.Tensor, targets: dict | None = None) -> dict[str, torch.Tensor]:
        frames = self.neck(self.backbone(images))
        out = self.head(frames, targets)
        if self.aux_head is not None and self.training:
            out.update(self.aux_head(frames, targets))
        return out

    def export_forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The main head's export outputs (``head.export_outputs``) for ``images``: what an ONNX export returns."""
        return self.head.export_forward(self.neck(self.backbone(images)))
