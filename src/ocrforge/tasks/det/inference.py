"""Detection pre- and post-processing in numpy + OpenCV + pyclipper only, shared by PyTorch and ONNX Runtime.

An image is resized (aspect kept) so that its shorter (``limit_type: min``) or longer (``max``) side is
``limit_side_len``, each side rounded to a multiple of 32; a batch of such images is padded at the bottom/right.
The probability map's valid part is post-processed and the polygons are mapped back to the original image.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ...data.images import normalise
from .postprocess import DBPostProcess

STRIDE = 32


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


def polygons_from_prob(prob: np.ndarray, original_size: tuple[int, int], meta: dict,
                       postprocess: DBPostProcess | None = None) -> list[dict]:
    """One image's probability map (H x W, possibly padded) -> [{"points", "score"}] in original pixels."""
    height, width = original_size
    rh, rw = resized_shape(height, width, meta["limit_side_len"], meta["limit_type"])
    postprocess = postprocess or DBPostProcess(**meta["postprocess"])
    return postprocess(np.ascontiguousarray(prob[:rh, :rw], dtype=np.float32), scale=(width / rw, height / rh))


def decode_outputs(outputs: dict[str, np.ndarray], meta: dict,
                   sizes: Sequence[tuple[int, int]] | None = None) -> list[dict]:
    """``prob`` [N, 1, H, W] -> per image ``{"polygons": [[[x, y], …]], "scores": [...]}`` in original pixels.
    ``sizes`` are the original (height, width) of the images, needed to undo the resize and padding."""
    if sizes is None:
        raise ValueError("detection post-processing needs the original image sizes")
    postprocess = DBPostProcess(**meta["postprocess"])
    results = []
    for prob, size in zip(outputs["prob"], sizes, strict=True):
        found = polygons_from_prob(prob[0], size, meta, postprocess)
        results.append({"polygons": [np.round(r["points"].astype(np.float64), 1).tolist() for r in found],
                        "scores": [round(float(r["score"]), 4) for r in found]})
    return results
