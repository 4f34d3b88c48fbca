"""Detection pre- and post-processing in numpy + OpenCV only, shared by PyTorch and ONNX Runtime.

An image is resized (aspect kept) so that its shorter (``limit_type: min``) or longer (``max``) side is
``limit_side_len``, each side rounded to a multiple of 32; a batch of such images is padded at the bottom/right.
The post-processor that the metadata names (``meta["postprocess"]``: ``{"type": <a det.postprocess name>, ...}``)
decodes the valid part of each image's output maps into polygons in the original image.

A post-processor is a picklable object with ``decode(outputs, scale) -> [{"points": (N, 2), "score"}]``, where
``outputs`` are one image's maps ``{name: (C, h, w) float32}`` and ``scale`` = (original width / w, original height
/ h); its module imports numpy/OpenCV/pyclipper/shapely only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from ...data.images import normalise
from ...registry import DET_POSTPROCESSORS

STRIDE = 32
# ONNX files exported before post-processors were named by type hold DB's arguments alone.
UNNAMED_POSTPROCESS = "DBPostProcess"


def resized_shape(height: int, width: int, limit_side_len: int, limit_type: str = "min") -> tuple[int, int]:
    """The network input size for an image: the limited side scaled to ``limit_side_len``, both sides multiples
    of 32 (at least 32)."""
    side = min(height, width) if limit_type == "min" else max(height, width)
    ratio = limit_side_len / max(side, 1)
    return (max(STRIDE, round(height * ratio / STRIDE) * STRIDE),
            max(STRIDE, round(width * ratio / STRIDE) * STRIDE))


def resize_for_inference(image: np.ndarray, limit_side_len: int, limit_type: str = "min") -> np.ndarray:
    """RGB uint8 image resized to its inference size (see ``resized_shape``); validation uses it too."""
    h, w = resized_shape(*image.shape[:2], limit_side_len, limit_type)
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if h < image.shape[0] else cv2.INTER_LINEAR)


def prepare(image: np.ndarray, meta: dict) -> np.ndarray:
    """RGB uint8 image -> float32 3xHxW at its inference size."""
    resized = resize_for_inference(image, meta["limit_side_len"], meta["limit_type"])
    return normalise(resized, meta["mean"], meta["std"], meta.get("color", "RGB"))


def build_postprocess(spec: Mapping[str, Any]) -> Any:
    """The post-processor ``spec`` names (``{"type": name, **arguments}``; no type: DB's, as exported before)."""
    from ...builtins import register_builtins  # the names of the built-in post-processors, read from the source

    register_builtins()
    return DET_POSTPROCESSORS.build({"type": UNNAMED_POSTPROCESS, **spec})


def detect_image(outputs: Mapping[str, np.ndarray], original_size: tuple[int, int], meta: dict,
                 postprocess: Any) -> list[dict]:
    """One image's output maps ({name: (C, H, W)}, possibly padded) -> [{"points", "score"}] in original pixels."""
    height, width = original_size
    rh, rw = resized_shape(height, width, meta["limit_side_len"], meta["limit_type"])
    valid = {name: np.ascontiguousarray(maps[:, :rh, :rw], dtype=np.float32) for name, maps in outputs.items()}
    return postprocess.decode(valid, scale=(width / rw, height / rh))


def decode_outputs(outputs: dict[str, np.ndarray], meta: dict,
                   sizes: Sequence[tuple[int, int]] | None = None) -> list[dict]:
    """Output maps [N, C, H, W] by name -> per image ``{"polygons": [[[x, y], …]], "scores": [...]}`` in original
    pixels. ``sizes`` are the original (height, width) of the images, needed to undo the resize and padding."""
    if sizes is None:
        raise ValueError("detection post-processing needs the original image sizes")
    if any(len(maps) != len(sizes) for maps in outputs.values()):
        raise ValueError(f"{len(sizes)} image sizes for outputs of batch {[len(m) for m in outputs.values()]}")
    postprocess = build_postprocess(meta["postprocess"])
    results = []
    for i, size in enumerate(sizes):
        found = detect_image({name: maps[i] for name, maps in outputs.items()}, size, meta, postprocess)
        results.append({"polygons": [np.round(r["points"].astype(np.float64), 1).tolist() for r in found],
                        "scores": [round(float(r["score"]), 4) for r in found]})
    return results
