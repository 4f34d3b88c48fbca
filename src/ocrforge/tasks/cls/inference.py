"""Classification pre- and post-processing in numpy + OpenCV only, shared by the PyTorch and ONNX Runtime paths."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ...data.images import border_colour, normalise, pad_with, resize_to_height


def mean_colour(mean: Sequence[float], color: str = "RGB") -> np.ndarray:
    """The RGB uint8 colour that normalises to (nearly) zero: PaddleOCR pads its normalised lines with zeros.
    ``mean`` is in the model's channel order (``color``)."""
    rgb = list(mean)[::-1] if color == "BGR" else list(mean)
    return np.round(np.asarray(rgb, dtype=np.float64) * 255).clip(0, 255).astype(np.uint8)


def fit(image: np.ndarray, size: Sequence[int], keep_ratio: bool | str = False,
        fill: np.ndarray | None = None) -> np.ndarray:
    """RGB uint8 HxWx3 -> RGB uint8 at ``size`` = (H, W).

    ``keep_ratio`` True letterboxes with the image's own border colour (median of the edge pixels) rather than black,
    so padding looks like the page around the content. ``"line"`` reads a text line as PaddleOCR's orientation
    classifier does: height H with the aspect ratio kept (wider lines squeezed to W), then padded on the right
    with ``fill`` (:func:`mean_colour`, which normalises to PaddleOCR's zero padding).
    """
    height, width = int(size[0]), int(size[1])
    if keep_ratio == "line":
        if fill is None:
            raise ValueError("keep_ratio='line' pads with a fill colour; pass fill=mean_colour(mean, color)")
        resized = resize_to_height(image, height, width)
        return pad_with(resized, fill, right=width - resized.shape[1])
    if keep_ratio:
        h, w = image.shape[:2]
        scale = min(height / h, width / w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        top, left = (height - nh) // 2, (width - nw) // 2
        image = pad_with(resized, border_colour(image), top, height - nh - top, left, width - nw - left)
    else:
        shrink = image.shape[0] > height or image.shape[1] > width
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return image


def preprocess(image: np.ndarray, size: Sequence[int], mean: Sequence[float], std: Sequence[float],
               keep_ratio: bool | str = False, color: str = "RGB") -> np.ndarray:
    """RGB uint8 HxWx3 -> normalised float32 3xHxW at ``size`` = (H, W), channels in ``color`` order."""
    fill = mean_colour(mean, color) if keep_ratio == "line" else None
    return normalise(fit(image, size, keep_ratio, fill), mean, std, color)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def decode(logits: np.ndarray, classes: Sequence[str], top_k: int = 5) -> list[dict]:
    """Logits [N, C] -> per-sample {label, class_id, score, top_k: [[label, score], …]}."""
    probs = softmax(np.asarray(logits, dtype=np.float64))
    k = min(top_k, probs.shape[1])
    order = np.argsort(-probs, axis=1)[:, :k]
    results = []
    for row, idx in zip(probs, order, strict=True):
        results.append({
            "label": str(classes[idx[0]]),
            "class_id": int(idx[0]),
            "score": float(row[idx[0]]),
            "top_k": [[str(classes[i]), float(row[i])] for i in idx],
        })
    return results


def prepare(image: np.ndarray, meta: dict) -> np.ndarray:
    """Preprocess as the exported metadata says (the same call on the PyTorch and ONNX Runtime paths)."""
    return preprocess(image, meta["input_size"], meta["mean"], meta["std"], meta.get("keep_ratio", False),
                      meta.get("color", "RGB"))


def decode_outputs(outputs: dict[str, np.ndarray], meta: dict, sizes: Sequence[tuple[int, int]] | None = None
                   ) -> list[dict]:
    """``sizes`` (original image sizes) are not needed here; the argument keeps one interface for all tasks. An
    embedding-only export (``export.onnx.outputs: [embedding]``) gives each image its L2-normalised embedding."""
    if "logits" not in outputs:
        return [{"embedding": [float(v) for v in row]} for row in outputs["embedding"]]
    return decode(outputs["logits"], meta["classes"])
