"""The classification task's ``data`` section."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ...config.schema import image_size_field
from ..base import DataSchemaBase


@dataclass
class ClsDataSchema(DataSchemaBase):
    image_size: list[int] = image_size_field([64, 64])  # [H, W]
    # False stretches to image_size, True letterboxes centred; "line": height kept, padded right (PaddleOCR's cls).
    keep_ratio: bool | Literal["line"] = False
    # Class names in index order; discovered from the training dataset when left empty.
    classes: list[str] | None = None
