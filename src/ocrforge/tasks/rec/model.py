"""Recognizer = backbone (image -> frames) + neck (context mixing) + head, with an optional auxiliary head."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ...models import pplcnet as _pplcnet  # noqa: F401  (registers PP-LCNet backbones)
from ...models import pplcnetv4 as _pplcnetv4  # noqa: F401  (registers PP-LCNetV4 backbones)
from ...registry import BACKBONES, HEADS, MODELS, NECKS
from . import backbones as _backbones  # noqa: F401  (registers the backbones)
from . import heads as _heads  # noqa: F401  (registers the heads)
from . import necks as _necks  # noqa: F401  (registers the necks)
from . import ppocr_necks as _ppocr_necks  # noqa: F401  (registers PP-OCR's necks)


@MODELS.register("Recognizer")
class Recognizer(nn.Module):
    """``aux_head`` (e.g. an attention decoder beside a CTC head) adds a training signal only: it runs in training,
    its loss is added by the loss module, and inference and export use ``head`` alone."""

    config_children: ClassVar[dict[str, str]] = {"backbone": "backbone", "neck": "neck", "head": "head",
                                                  "aux_head": "head"}
    config_injected = ("num_classes",)

    def __init__(self, num_classes: int, backbone: dict[str, Any] | None = None, neck: dict[str, Any] | None = None,
                 head: dict[str, Any] | None = None, aux_head: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.backbone = BACKBONES.build(dict(backbone or {"type": "crnn_vgg"}))
        self.neck = NECKS.build(dict(neck or {"type": "bilstm"}), in_channels=self.backbone.out_channels)
        self.head = HEADS.build(dict(head or {"type": "ctc"}), in_channels=self.neck.out_channels,
                                num_classes=num_classes)
        self.aux_head = HEADS.build(dict(aux_head), in_channels=self.neck.out_channels,
                                    num_classes=num_classes) if aux_head else None

    def forward(self, images: torch.Tensor, targets: dict | None = None) -> dict[str, torch.Tensor]:
        frames = self.neck(self.backbone(images))
        out = self.head(frames, targets)
        if self.aux_head is not None and self.training:
            out.update(self.aux_head(frames, targets))
        return out
