"""The detection task's ``data`` section. A family's targets and post-processing are configured next to its head
(``model.targets``, ``model.postprocess``), not here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...config.schema import image_size_field
from ..base import DataSchemaBase
from .augment import DetAugmentConfig


@dataclass
class EvalResizeSchema:
    # Validation/test/inference size: the shorter ('min') or longer ('max') side becomes limit_side_len (x32).
    limit_side_len: int = 736
    limit_type: str = "min"


@dataclass
class DetDataSchema(DataSchemaBase):
    image_size: list[int] = image_size_field([640, 640])  # training crop [H, W]
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    augment: DetAugmentConfig = field(default_factory=DetAugmentConfig)
    eval_resize: EvalResizeSchema = field(default_factory=EvalResizeSchema)
    # Where configs and checkpoints written before ``model.targets`` / ``model.postprocess`` kept their arguments
    # (without a type): the task moves them there, onto the model family's default type.
    targets: dict[str, Any] | None = None
    postprocess: dict[str, Any] | None = None
