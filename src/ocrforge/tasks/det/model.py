"""What detection families share: the timm feature pyramid, the FPN neck (optionally DBNet++'s adaptive scale
fusion) and ``DetectionModel``, the backbone -> neck -> head frame each family's model subclasses."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ...models import pplcnet as _pplcnet  # noqa: F401  (registers PP-LCNet backbones)
from ...models import pplcnetv4 as _pplcnetv4  # noqa: F401  (registers PP-LCNetV4 backbones)
from ...models.backbones import TimmFeatures
from ...models.layers import conv_norm_act, squeeze_excite_gate
from ...registry import DET_BACKBONES, DET_HEADS, DET_NECKS
from . import ppocr_fpn as _ppocr_fpn  # noqa: F401  (registers PP-OCR's necks)


@DET_BACKBONES.register(aliases=("timm_det",))
class TimmFeaturePyramid(TimmFeatures):
    """Any timm CNN through ``features_only``, returning the stages of the requested strides (default 4, 8, 16, 32):
    resnet18/50, mobilenetv3_large_100, lcnet_050/100 and most other timm CNNs have them."""

    def __init__(self, name: str = "resnet18", pretrained: bool = False, pretrained_path: str | None = None,
                 strides: tuple[int, ...] | list[int] = (4, 8, 16, 32)) -> None:
        super().__init__(name, strides, pretrained, pretrained_path)
        self.out_channels = self.channels


class ScaleSpatialAttention(nn.Module):
    """DBNet++'s adaptive scale fusion: one attention weight per scale and pixel, from channel and spatial context."""

    def __init__(self, channels: int, num_scales: int) -> None:
        super().__init__()
        self.fuse = conv_norm_act(channels, channels)
        self.channel_wise = squeeze_excite_gate(channels, bias=False, gate=nn.Sigmoid)
        self.spatial_wise = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, bias=False), nn.ReLU(inplace=True),
                                          nn.Conv2d(1, 1, 1, bias=False), nn.Sigmoid())
        self.scale_wise = nn.Sequential(nn.Conv2d(channels, num_scales, 1, bias=False), nn.Sigmoid())

    def forward(self, scales: list[torch.Tensor]) -> torch.Tensor:
        fused = self.fuse(torch.cat(scales, dim=1))
        context = self.channel_wise(fused) + fused
        context = self.spatial_wise(context.mean(dim=1, keepdim=True)) + context
        weights = self.scale_wise(context)
        return torch.cat([weights[:, i : i + 1] * s for i, s in enumerate(scales)], dim=1)


@DET_NECKS.register(aliases=("db_fpn",))
class DBFPN(nn.Module):
    """Top-down FPN; every level is smoothed to ``channels // 4``, upsampled to stride 4 and concatenated."""

    config_injected = ("in_channels",)

    def __init__(self, in_channels: list[int], channels: int = 256, asf: bool = False) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1, bias=False) for c in in_channels)
        self.smooth = nn.ModuleList(nn.Conv2d(channels, channels // 4, 3, padding=1, bias=False)
                                    for _ in in_channels)
        self.asf = ScaleSpatialAttention(channels // 4 * len(in_channels), len(in_channels)) if asf else None
        self.out_channels = channels // 4 * len(in_channels)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        laterals = [conv(f) for conv, f in zip(self.lateral, features, strict=True)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:],
                                                              mode="nearest")
        size = laterals[0].shape[-2:]
        scales = [F.interpolate(conv(x), size=size, mode="nearest") if i else conv(x)
                  for i, (conv, x) in enumerate(zip(self.smooth, laterals, strict=True))]
        return self.asf(scales) if self.asf is not None else torch.cat(scales, dim=1)


class DetectionModel(nn.Module):
    """backbone (strides 4-32) -> neck -> head: the frame every detection family shares.

    A family subclasses it and declares, as class attributes that the task reads before any model exists:

    - ``default_parts``: the ``backbone`` / ``neck`` / ``head`` specs used where the config names none;
    - ``family_defaults``: its ``targets``, ``postprocess`` and ``loss`` specs, used where the config names none
      (``model.targets`` and ``model.postprocess``, configured next to the head, and the top-level ``loss``);
    - ``inference_outputs``: ``{name: meaning}`` of the maps its post-processor reads: the ONNX outputs, in order.

    ``forward(images)`` returns every map the loss reads, each [N, C, H, W] at input resolution;
    ``forward_inference(images)`` the ``inference_outputs`` only (a family may skip branches there). ``targets`` and
    ``postprocess`` are not the network's: they run in DataLoader workers and on numpy maps, so the task builds
    them (``network_spec`` leaves them out of the model's arguments).
    """

    # The registry of each child and the arguments this model passes it (checked by config validation).
    config_children: ClassVar[dict[str, tuple[str, tuple[str, ...]]]] = {
        "backbone": ("det.backbone", ()), "neck": ("det.neck", ("in_channels",)),
        "head": ("det.head", ("in_channels",)), "targets": ("det.targets", ()),
        "postprocess": ("det.postprocess", ())}
    default_parts: ClassVar[dict[str, dict]]
    family_defaults: ClassVar[dict[str, dict]]
    inference_outputs: ClassVar[dict[str, str]]

    def __init__(self, backbone: dict[str, Any] | None = None, neck: dict[str, Any] | None = None,
                 head: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.backbone = DET_BACKBONES.build(dict(backbone or self.default_parts["backbone"]))
        self.neck = DET_NECKS.build(dict(neck or self.default_parts["neck"]), in_channels=self.backbone.out_channels)
        self.head = DET_HEADS.build(dict(head or self.default_parts["head"]), in_channels=self.neck.out_channels)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.neck(self.backbone(images))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(self.features(images))

    def forward_inference(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = self(images)
        return {name: outputs[name] for name in self.inference_outputs}


# Keys of the model section that configure the family beside the network (built by the task, not the model).
FAMILY_KEYS = ("targets", "postprocess")


def network_spec(model: dict[str, Any]) -> dict[str, Any]:
    """The model section without the family's ``targets`` / ``postprocess``: the network's constructor arguments."""
    return {key: value for key, value in model.items() if key not in FAMILY_KEYS}
