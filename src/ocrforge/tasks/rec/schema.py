"""The recognition task's ``data`` section."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...config.schema import image_size_field
from ..base import DataSchemaBase


@dataclass
class CharsetSchema:
    # A built-in name (digits, lowercase, printable, printable_space) or a dictionary file (one char per line).
    dict: str = "printable"
    use_space_char: bool = False
    lowercase: bool = False
    oov: str = "skip"  # error | skip | unknown


@dataclass
class RecDataSchema(DataSchemaBase):
    image_size: list[int] = image_size_field([32, 128])  # [H, max W]
    max_text_length: int = 25
    charset: CharsetSchema = field(default_factory=CharsetSchema)
