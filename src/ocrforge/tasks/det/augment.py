"""Detection augmentation that keeps word polygons right, run per sample in DataLoader workers.

Steps (PaddleOCR / MMOCR DBNet recipe): random rescale and rotation of the whole image, a text-aware random crop
whose edges avoid words, an aspect-preserving resize of the crop padded at the bottom/right to a fixed size, and
colour jitter. Polygons are (N, 2) float32 pixel coordinates in a continuous frame where pixel (i, j) covers
[i, i + 1) x [j, j + 1).

Why OpenCV rather than torchvision.transforms.v2 here: scale, rotation, crop and resize compose into one affine
matrix, so each sample costs a single ``cv2.warpAffine`` straight into the output size (no intermediate 3x-scaled
image), and the polygons go through the very same matrix, exactly.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np
import shapely

# Below this zoom the image is halved before the warp (``_halvings_for_zoom``, ``WarpPlan.reduce``).
_MIN_WARP_ZOOM = 0.5
GREY_WEIGHTS = np.array([0.299, 0.587, 0.114])  # ITU-R 601 luma, as OpenCV's RGB2GRAY and torchvision
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


@dataclass
class DetAugmentConfig:
    """Every field is a config value (``data.augment`` in YAML). A probability of 0 turns its step off;
    ``crop_attempts: 0`` (or ``crop_min_side: 1``) keeps the whole image."""

    scale: tuple[float, float] | list[float] = (0.5, 3.0)  # uniform rescale before the crop, aspect kept
    rotation: float = 10.0  # max degrees, uniform in [-rotation, rotation], about the image centre
    rotation_prob: float = 0.5
    crop_min_side: float = 0.1  # min crop side, fraction of the rescaled image (PaddleOCR's EastRandomCropData)
    crop_attempts: int = 50  # random crops tried before falling back to the whole image
    # Input pixels a polygon may stick out of the crop (or the image) and still count as whole: annotation noise.
    cut_tolerance: float = 2.0
    brightness: float = 0.3  # factors uniform in [1 - x, 1 + x], as torchvision's ColorJitter
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.02  # fraction of a full turn, uniform in [-hue, hue]
    colour_prob: float = 0.8
    pad_value: int = 0  # grey level of the padding and of the corners a rotation uncovers
    # The warp, colour change and the family's device part of the targets (DB's threshold map) run batched on the
    # training device; the workers only decide them and draw the binary maps (device_augment.py).
    on_device: bool = False
    # With on_device: JPEG files travel undecoded and are decoded on the device (torchvision.io.decode_jpeg; on
    # CUDA, nvJPEG); files it cannot decode there (PNG, progressive or CMYK JPEG, EXIF rotation) the workers do.
    decode_on_device: bool = False

    def __post_init__(self) -> None:
        self.scale = (float(self.scale[0]), float(self.scale[1]))
        checks = {
            "scale": 0 < self.scale[0] <= self.scale[1],
            "rotation": 0 <= self.rotation <= 180,
            "crop_min_side": 0 <= self.crop_min_side <= 1,
            "crop_attempts": self.crop_attempts >= 0,
            "cut_tolerance": self.cut_tolerance >= 0,
            "brightness": 0 <= self.brightness <= 1,
            "contrast": 0 <= self.contrast <= 1,
            "saturation": 0 <= self.saturation <= 1,
            "hue": 0 <= self.hue <= 0.5,
            "pad_value": 0 <= self.pad_value <= 255,
            "rotation_prob": 0 <= self.rotation_prob <= 1,
            "colour_prob": 0 <= self.colour_prob <= 1,
        }
        checks["decode_on_device"] = self.on_device or not self.decode_on_device  # decoding there needs the warp there
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"augment: invalid {', '.join(f'{n}={getattr(self, n)!r}' for n in bad)}")


class DetAugment:
    """``(image, polygons, ignore, rng) -> (image, polygons, ignore)``: an exactly ``size`` H x W x 3 uint8 RGB image
    and its polygons in output pixels, all inside [0, W] x [0, H].

    Polygons with NaN/inf, fewer than 3 points or no area are dropped (``counts["degenerate_polygon"]``); polygons
    outside the crop are dropped; polygons the crop cuts are clipped to it and marked ignore (a care word turned
    don't-care is counted in ``counts["cut_by_crop"]``). Kept polygons stay in input order.
    """

    def __init__(self, cfg: DetAugmentConfig | None = None, size: Sequence[int] = (640, 640), **overrides) -> None:
        # The output size is the task's data.image_size, not an augmentation setting.
        if len(size) != 2 or min(size) <= 0:
            raise ValueError(f"augment: invalid size {size!r}")
        self.size = (int(size[0]), int(size[1]))
        self.cfg = replace(cfg or DetAugmentConfig(), **overrides)  # replace() re-validates; unknown keys: TypeError

    def __call__(self, image: np.ndarray, polygons: Sequence[np.ndarray], ignore: Sequence[bool],
                 rng: np.random.Generator, counts: Counter | None = None
                 ) -> tuple[np.ndarray, list[np.ndarray], list[bool]]:
        plan = self.plan(image.shape[:2], polygons, ignore, rng, counts)
        content = cv2.warpAffine(plan.reduce(image), plan.to_pixels, plan.content, flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE if plan.axis_aligned else cv2.BORDER_CONSTANT,
                                 borderValue=(self.cfg.pad_value,) * 3)
        if plan.colour is not None:
            content = plan.colour.apply(content)
        out_h, out_w = self.size
        output = np.full((out_h, out_w, 3), self.cfg.pad_value, dtype=np.uint8)
        output[: plan.content[1], : plan.content[0]] = content
        return output, plan.polygons, plan.ignore

    def plan(self, shape: tuple[int, int], polygons: Sequence[np.ndarray], ignore: Sequence[bool],
             rng: np.random.Generator, counts: Counter | None = None) -> WarpPlan:
        """Everything but the pixel work, for an image of ``shape`` (H, W): the random draws (the same, in the same
        order, as ``__call__`` makes), the polygons in output pixels, and the warp and colour change to apply, on
        the CPU or batched on a device."""
        if len(polygons) != len(ignore):
            raise ValueError(f"{len(polygons)} polygons but {len(ignore)} ignore flags")
        counts = counts if counts is not None else Counter()
        polygons, ignore = _usable_polygons(polygons, ignore, counts)
        height, width = int(shape[0]), int(shape[1])
        out_h, out_w = self.size

        scale, to_canvas, canvas_w, canvas_h = self._scale_rotate(width, height, rng)
        polygons = _transform(to_canvas, polygons)
        crop = self._text_aware_crop(polygons, ignore, canvas_w, canvas_h, rng)
        polygons, ignore = _clip_to_crop(polygons, ignore, crop, self.cfg.cut_tolerance * scale, counts)

        x0, y0, x1, y1 = crop
        fit = min(out_w / (x1 - x0), out_h / (y1 - y0))
        content_w, content_h = min(out_w, max(1, round((x1 - x0) * fit))), min(out_h, max(1, round((y1 - y0) * fit)))
        # Map the crop exactly onto the content box (x and y factors differ by at most half a pixel of rounding).
        crop_to_output = np.array([[content_w / (x1 - x0), 0, -x0 * content_w / (x1 - x0)],
                                   [0, content_h / (y1 - y0), -y0 * content_h / (y1 - y0)]])
        to_output = _compose(crop_to_output, to_canvas)
        polygons = _transform(crop_to_output, polygons, box=(content_w, content_h))
        halvings, to_output = _halvings_for_zoom((height, width), to_output, zoom=scale * fit)
        # OpenCV puts pixel centres at integer coordinates; the polygons' frame puts them at +0.5.
        to_pixels = to_output.copy()
        to_pixels[:, 2] += to_output[:, :2].sum(axis=1) * 0.5 - 0.5
        # Without rotation the warp reads outside the image only by half a pixel at its edges: replicate there, as
        # cv2.resize does, rather than darken the border; with rotation, the uncovered corners get the pad value.
        axis_aligned = bool(to_pixels[0, 1] == 0 and to_pixels[1, 0] == 0)
        return WarpPlan(halvings, to_pixels, (content_w, content_h), axis_aligned, self._colour_change(rng),
                        polygons, ignore)

    # --- geometry -------------------------------------------------------------------------------------------------
    def _scale_rotate(self, width: int, height: int, rng: np.random.Generator
                      ) -> tuple[float, np.ndarray, int, int]:
        """Random scale and rotation about the image centre as one 2x3 matrix onto a canvas just large enough to
        hold the whole rotated image (nothing is cut by the rotation); returns scale, matrix, canvas W, H."""
        cfg = self.cfg
        scale = float(rng.uniform(*cfg.scale))
        rotate = rng.random() < cfg.rotation_prob
        angle = float(rng.uniform(-cfg.rotation, cfg.rotation)) if rotate else 0.0
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, scale)
        corners = _transform(matrix, [np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)])[0]
        matrix[:, 2] -= corners.min(axis=0)
        canvas_w, canvas_h = (math.ceil(side - 1e-6) for side in corners.max(axis=0) - corners.min(axis=0))
        return scale, matrix, max(1, canvas_w), max(1, canvas_h)

    def _text_aware_crop(self, polygons: list[np.ndarray], ignore: list[bool], canvas_w: int, canvas_h: int,
                         rng: np.random.Generator) -> tuple[int, int, int, int]:
        """A crop (x0, y0, x1, y1) whose edges lie only where the projections of the words on the x and y axes leave
        gaps, so words are rarely cut (PaddleOCR's EastRandomCropData, MMOCR's RandomCrop); it must contain a word
        (a care word if any, else any polygon) when there are polygons. The whole canvas after ``crop_attempts``."""
        cfg = self.cfg
        whole = (0, 0, canvas_w, canvas_h)
        if cfg.crop_attempts == 0:
            return whole
        care = [p for p, flag in zip(polygons, ignore) if not flag]
        bounds = _bounds(care or polygons)  # (n, 4): x_min, y_min, x_max, y_max
        # All attempts drawn at once: a (attempts, 2) array of edges per axis.
        xs = _random_edges(_free_edges(bounds[:, 0], bounds[:, 2], canvas_w), cfg.crop_attempts, rng)
        ys = _random_edges(_free_edges(bounds[:, 1], bounds[:, 3], canvas_h), cfg.crop_attempts, rng)
        if xs is None or ys is None:
            return whole
        x0, x1, y0, y1 = xs.min(1), xs.max(1), ys.min(1), ys.max(1)
        ok = (x1 - x0 >= max(1.0, cfg.crop_min_side * canvas_w)) & (y1 - y0 >= max(1.0, cfg.crop_min_side * canvas_h))
        if len(bounds):
            inside = ((bounds[None, :, 0] >= x0[:, None]) & (bounds[None, :, 2] <= x1[:, None])
                      & (bounds[None, :, 1] >= y0[:, None]) & (bounds[None, :, 3] <= y1[:, None]))
            ok &= inside.any(axis=1)
        found = np.flatnonzero(ok)
        if not len(found):
            return whole
        first = found[0]
        return int(x0[first]), int(y0[first]), int(x1[first]), int(y1[first])

    def _colour_change(self, rng: np.random.Generator) -> ColourChange | None:
        cfg = self.cfg
        if rng.random() >= cfg.colour_prob:
            return None
        brightness, contrast, saturation = (rng.uniform(1 - x, 1 + x) for x in (cfg.brightness, cfg.contrast,
                                                                                cfg.saturation))
        angle = rng.uniform(-cfg.hue, cfg.hue) * 2 * math.pi
        desaturate = saturation * np.eye(3) + (1 - saturation) * np.outer(np.ones(3), GREY_WEIGHTS)
        cos, sin = math.cos(angle), math.sin(angle)
        rotate_hue = _YIQ_TO_RGB @ np.array([[1, 0, 0], [0, cos, -sin], [0, sin, cos]]) @ _RGB_TO_YIQ
        return ColourChange(rotate_hue @ desaturate, brightness, contrast)


@dataclass
class ColourChange:
    """Brightness, contrast (about the mean grey), saturation (towards grey) and hue (a rotation of the YIQ chroma
    plane) are all linear in RGB: ``colour`` is the saturation and hue part, and the whole change one 3x4 matrix
    once the image's mean grey is known."""

    colour: np.ndarray  # (3, 3)
    brightness: float
    contrast: float

    def matrix(self, mean_rgb: np.ndarray) -> np.ndarray:
        """The 3x4 matrix for an image whose mean colour is ``mean_rgb``."""
        mean_grey = float(np.dot(mean_rgb, GREY_WEIGHTS)) * self.brightness
        return np.hstack([self.colour * self.contrast * self.brightness,
                          (self.colour @ np.full(3, (1 - self.contrast) * mean_grey))[:, None]])

    def apply(self, image: np.ndarray) -> np.ndarray:
        return cv2.transform(image, self.matrix(np.asarray(cv2.mean(image)[:3])))


@dataclass
class WarpPlan:
    """One training sample's augmentation, decided: the input halved ``halvings`` times (while the zoom is below
    ``_MIN_WARP_ZOOM``), warped by the 2x3 ``to_pixels`` matrix (OpenCV pixel centres of the halved image) into a
    ``content`` (W, H) box at the top left of the output, the pad value around it; border replicated if
    ``axis_aligned``, else the pad value; then ``colour`` if any. ``polygons`` and ``ignore`` are already in output
    pixels."""

    halvings: int
    to_pixels: np.ndarray
    content: tuple[int, int]
    axis_aligned: bool
    colour: ColourChange | None
    polygons: list[np.ndarray]
    ignore: list[bool]

    def reduce(self, image: np.ndarray) -> np.ndarray:
        """The input halved as planned. pyrDown (Gaussian blur, every second pixel; 10x faster than INTER_AREA at
        odd ratios): warpAffine samples without low-pass filtering, so thin strokes survive a small zoom."""
        for _ in range(self.halvings):
            image = cv2.pyrDown(image)
        return image

    def read_box(self, shape: tuple[int, int]) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1): the part of the halved image, of ``shape`` (H, W), that the warp reads, with a pixel to
        spare for bilinear sampling."""
        inverse = self._inverse()
        width, height = self.content
        corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float64)
        read = corners @ inverse[:, :2].T + inverse[:, 2]
        # Clipped into the image, at least a pixel wide: a warp that reads only outside it still gets one pixel.
        size = np.array([shape[1], shape[0]])
        x0, y0 = np.clip(np.floor(read.min(axis=0)).astype(int) - 1, 0, size - 1)
        x1, y1 = np.clip(np.ceil(read.max(axis=0)).astype(int) + 2, (x0 + 1, y0 + 1), size)
        return int(x0), int(y0), int(x1), int(y1)

    def device_warp(self, origin: tuple[int, int], size: tuple[int, int]) -> dict[str, np.ndarray]:
        """The warp as arrays for ``device_augment.warp_batch``, for a source that is the part of the halved image
        at ``origin`` (x, y) of ``size`` (W, H): ``inverse`` (2x3, output pixel -> source pixel, OpenCV centres),
        ``clamp_max`` (the source's last pixel x, y for a replicated border; -1 for the pad value), ``content``
        (W, H), ``colour_matrix`` (3x3), ``colour_offset`` (3,: times the mean grey of the warped content)."""
        inverse = self._inverse()
        inverse[:, 2] -= origin
        clamp_max = np.float32([size[0] - 1, size[1] - 1]) if self.axis_aligned else np.float32([-1, -1])
        if self.colour is None:
            colour_matrix, colour_offset = np.eye(3), np.zeros(3)
        else:
            change = self.colour
            colour_matrix = change.colour * change.contrast * change.brightness
            colour_offset = change.colour @ np.full(3, (1 - change.contrast) * change.brightness)
        return {"inverse": inverse.astype(np.float32), "clamp_max": clamp_max, "content": np.int64(self.content),
                "colour_matrix": colour_matrix.astype(np.float32), "colour_offset": colour_offset.astype(np.float32)}

    def for_device(self, image: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The part of the (halved) input the warp reads, and its warp: a zoomed-in crop moves a fraction of the
        image to the device."""
        source = self.reduce(image)
        x0, y0, x1, y1 = self.read_box(source.shape[:2])
        return source[y0:y1, x0:x1], self.device_warp((x0, y0), (x1 - x0, y1 - y0))

    def _inverse(self) -> np.ndarray:
        linear, shift = self.to_pixels[:, :2], self.to_pixels[:, 2]
        inverse_linear = np.linalg.inv(linear)
        return np.hstack([inverse_linear, (-inverse_linear @ shift)[:, None]])


def halved_shape(shape: tuple[int, int], halvings: int) -> tuple[int, int]:
    """(H, W) after ``halvings`` pyrDowns (each rounds up)."""
    height, width = shape
    for _ in range(halvings):
        height, width = (height + 1) // 2, (width + 1) // 2
    return height, width


def _halvings_for_zoom(shape: tuple[int, int], to_output: np.ndarray, zoom: float) -> tuple[int, np.ndarray]:
    """How often to halve the input so that the warp's zoom is at least ``_MIN_WARP_ZOOM``, and the matrix from the
    halved image: pyrDown's pixel i is centred on the source's pixel 2i, so source = 2 * small - 0.5 in continuous
    coordinates."""
    halvings = 0
    while zoom < _MIN_WARP_ZOOM and min(halved_shape(shape, halvings)) > 1:
        to_output = _compose(to_output, np.array([[2, 0, -0.5], [0, 2, -0.5]]))
        halvings += 1
        zoom *= 2
    return halvings, to_output


# --- polygon helpers ----------------------------------------------------------------------------------------------
def _usable_polygons(polygons: Sequence[np.ndarray], ignore: Sequence[bool], counts: Counter
                     ) -> tuple[list[np.ndarray], list[bool]]:
    """(N >= 3, 2) finite float64 polygons with an area, and their flags; the rest counted as degenerate."""
    shaped, flags = [], []
    for polygon, flag in zip(polygons, ignore):
        try:
            points = np.asarray(polygon, dtype=np.float64)
        except (TypeError, ValueError):
            continue
        if points.ndim == 2 and points.shape[1] == 2 and len(points) >= 3:
            shaped.append(points)
            flags.append(bool(flag))
    usable = np.zeros(len(shaped), bool)
    if shaped:  # finiteness and shoelace areas of all polygons at once
        points = np.concatenate(shaped)
        finite = np.isfinite(points).all(axis=1)
        x, y = np.where(finite[:, None], points, 0).T
        starts = np.cumsum([0] + [len(p) for p in shaped[:-1]])
        following = np.arange(1, len(points) + 1)
        following[np.append(starts[1:], len(points)) - 1] = starts  # each polygon's last point wraps to its first
        areas = 0.5 * np.abs(np.add.reduceat(x * y[following] - x[following] * y, starts))
        usable = np.logical_and.reduceat(finite, starts) & (areas > 1e-6)
    counts["degenerate_polygon"] += len(polygons) - int(usable.sum())
    return [p for p, ok in zip(shaped, usable) if ok], [f for f, ok in zip(flags, usable) if ok]


def _transform(matrix: np.ndarray, polygons: list[np.ndarray], box: tuple[int, int] | None = None
               ) -> list[np.ndarray]:
    """All polygons through one 2x3 affine matrix in a single matrix product; clamped into [0, W] x [0, H] of
    ``box`` (float rounding) if given."""
    if not polygons:
        return []
    points = np.concatenate(polygons) @ matrix[:, :2].T + matrix[:, 2]
    if box is not None:
        points = np.clip(points, 0, box).astype(np.float32)
    return np.split(points, np.cumsum([len(p) for p in polygons])[:-1])


def _bounds(polygons: list[np.ndarray]) -> np.ndarray:
    """(n, 4) boxes x_min, y_min, x_max, y_max."""
    if not polygons:
        return np.empty((0, 4))
    points = np.concatenate(polygons)
    starts = np.cumsum([0] + [len(p) for p in polygons[:-1]])
    return np.hstack([np.minimum.reduceat(points, starts), np.maximum.reduceat(points, starts)])


def _free_edges(lows: np.ndarray, highs: np.ndarray, size: int) -> np.ndarray:
    """Integer positions 0..size where an edge cuts no interval (low, high): those strictly inside are blocked."""
    blocked = np.zeros(size + 2, np.int64)
    first = np.floor(np.clip(lows, -1, size + 1)).astype(np.int64) + 1
    end = np.maximum(np.ceil(np.clip(highs, -1, size + 1)).astype(np.int64), first)  # exclusive
    np.add.at(blocked, np.clip(first, 0, size + 1), 1)
    np.add.at(blocked, np.clip(end, 0, size + 1), -1)
    return np.flatnonzero(np.cumsum(blocked)[: size + 1] == 0)


def _random_edges(free: np.ndarray, attempts: int, rng: np.random.Generator) -> np.ndarray | None:
    """(attempts, 2) edge pairs: each edge a random position in a random run of free positions (PaddleOCR's
    region-wise choice: small gaps between words are picked as often as wide margins). None if < 2 free edges."""
    if len(free) < 2:
        return None
    run_starts = np.flatnonzero(np.diff(free, prepend=free[0] - 2) > 1)
    run_lengths = np.diff(np.append(run_starts, len(free)))
    runs = rng.integers(len(run_starts), size=(attempts, 2))
    offsets = (rng.random((attempts, 2)) * run_lengths[runs]).astype(np.int64)
    return free[run_starts[runs] + offsets]


def _clip_to_crop(polygons: list[np.ndarray], ignore: list[bool], crop: tuple[int, int, int, int],
                  tolerance: float, counts: Counter) -> tuple[list[np.ndarray], list[bool]]:
    """Drop polygons outside the crop; keep whole ones (clamping overhangs within ``tolerance``); clip cut ones to
    the crop and mark them ignore (a word split in two by a concave cut gives two pieces)."""
    x0, y0, x1, y1 = crop
    kept, flags = [], []
    for polygon, flag, (px0, py0, px1, py1) in zip(polygons, ignore, _bounds(polygons)):
        if px1 <= x0 or px0 >= x1 or py1 <= y0 or py0 >= y1:
            continue
        if px0 >= x0 - tolerance and py0 >= y0 - tolerance and px1 <= x1 + tolerance and py1 <= y1 + tolerance:
            kept.append(np.clip(polygon, (x0, y0), (x1, y1)))
            flags.append(flag)
            continue
        clipped = shapely.clip_by_rect(shapely.Polygon(polygon), x0, y0, x1, y1)
        pieces = [np.asarray(g.exterior.coords)[:-1] for g in getattr(clipped, "geoms", [clipped])
                  if isinstance(g, shapely.Polygon) and g.area > 0]
        kept += pieces
        flags += [True] * len(pieces)
        counts["cut_by_crop"] += int(bool(pieces) and not flag)
    return kept, flags


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 affine matrix of ``outer(inner(p))``."""
    return (np.vstack([outer, [0, 0, 1]]) @ np.vstack([inner, [0, 0, 1]]))[:2]
