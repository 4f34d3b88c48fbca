"""Image reading that reports why a sample is unusable instead of raising from deep inside a worker."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


class SampleSkipped(Exception):
    """Raised by a dataset for a sample that must be left out; ``reason`` is the counter key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


# JPEG frame headers (SOF0-SOF15 but DHT, JPG and DAC, which share the range) hold the image's height.
_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


def jpeg_height(data: bytes | np.ndarray) -> int | None:
    """The height in a JPEG's frame header, found by walking the segments before it (a few, at the file's start);
    None for anything else."""
    header = _jpeg_header(data)
    return header[2] if header else None


def device_decodable_jpeg(data: bytes | np.ndarray) -> tuple[int, int] | None:
    """(H, W) of a JPEG that GPU decoders read as cv2.imdecode does, up to chroma upsampling: baseline or extended
    sequential, 8-bit, grey or colour, no EXIF rotation (cv2.imdecode applies it, GPU decoders do not). None for
    anything else."""
    header = _jpeg_header(data)
    if header is None:
        return None
    marker, precision, height, width, components, orientation = header
    if (marker not in (0xC0, 0xC1) or precision != 8 or components not in (1, 3) or orientation not in (None, 1)
            or not height * width):
        return None
    return height, width


def _jpeg_header(data: bytes | np.ndarray) -> tuple[int, int, int, int, int, int | None] | None:
    """(frame marker, sample precision, height, width, components, EXIF orientation or None) from the segments
    before the frame."""
    if bytes(data[:2]) != b"\xff\xd8":
        return None
    at, end, orientation = 2, len(data), None
    while at + 10 <= end:
        if data[at] != 0xFF:
            return None
        marker = int(data[at + 1])
        if marker == 0xFF:  # fill byte
            at += 1
        elif marker in _JPEG_FRAME_MARKERS:
            return (marker, int(data[at + 4]), int(data[at + 5]) << 8 | int(data[at + 6]),
                    int(data[at + 7]) << 8 | int(data[at + 8]), int(data[at + 9]), orientation)
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            at += 2
        else:
            length = int(data[at + 2]) << 8 | int(data[at + 3])
            if marker == 0xE1 and bytes(data[at + 4:at + 10]) == b"Exif\x00\x00":
                orientation = _exif_orientation(bytes(data[at + 10:at + 2 + length]))
            at += 2 + length
    return None


def _exif_orientation(tiff: bytes) -> int | None:
    """The Orientation tag (0x0112) of an EXIF block's first image directory, or None."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return None
    directory = struct.unpack(order + "I", tiff[4:8])[0]
    if directory + 2 > len(tiff):
        return None
    count = struct.unpack(order + "H", tiff[directory:directory + 2])[0]
    for entry in range(directory + 2, directory + 2 + 12 * count, 12):
        if entry + 12 > len(tiff):
            return None
        if struct.unpack(order + "H", tiff[entry:entry + 2])[0] == 0x0112:
            return struct.unpack(order + "H", tiff[entry + 8:entry + 10])[0]
    return None


def _decode_flag(buf: np.ndarray, min_height: int | None) -> int:
    """``IMREAD_COLOR``, or the largest reduced JPEG decode (1/8, 1/4, 1/2: libjpeg scales while decoding, several
    times cheaper than decoding every pixel) that keeps the image at least ``min_height`` tall."""
    height = jpeg_height(buf) if min_height else None
    if height:
        for factor, flag in _JPEG_REDUCED:
            if -(-height // factor) >= min_height:
                return flag
    return cv2.IMREAD_COLOR


def decode_image(data: bytes | np.ndarray, source: str = "", min_height: int | None = None) -> np.ndarray:
    """Decode encoded bytes to an RGB uint8 HxWx3 array, or raise SampleSkipped('unreadable_image').

    ``min_height``: a JPEG at least twice as tall is decoded at a reduced size that stays at least this tall (for
    data that is resized to a smaller height next, e.g. recognition crops)."""
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    image = cv2.imdecode(buf, _decode_flag(buf, min_height)) if buf.size else None
    if image is None or image.size == 0:
        raise SampleSkipped("unreadable_image", source)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_image(path: str | Path, min_height: int | None = None) -> np.ndarray:
    """Read an image file as RGB uint8 (``min_height`` as in :func:`decode_image`); non-ASCII paths work
    (np.fromfile + imdecode, not cv2.imread)."""
    return decode_image(read_file(path), str(path), min_height)


def read_file(path: str | Path) -> np.ndarray:
    """An image file's bytes (uint8), or raise SampleSkipped('missing_image')."""
    try:
        return np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise SampleSkipped("missing_image", f"{path}: {exc.strerror}") from None


def list_images(folder: str | Path) -> list[Path]:
    root = Path(folder)
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def pad_batch(arrays: Sequence[np.ndarray], value: float = 0.0) -> np.ndarray:
    """CxHxW arrays of different sizes -> one NxCxHmaxxWmax batch of their dtype, padded at the bottom and right."""
    if all(a.shape == arrays[0].shape for a in arrays):
        return np.stack(arrays)  # nothing to pad: one copy, no fill
    height = max(a.shape[1] for a in arrays)
    width = max(a.shape[2] for a in arrays)
    batch = np.full((len(arrays), arrays[0].shape[0], height, width), value, dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        batch[i, :, : a.shape[1], : a.shape[2]] = a
    return batch


def border_colour(image: np.ndarray) -> np.ndarray:
    """Median colour of the outermost pixels (uint8 RGB): the image's own background, used for padding.

    Equal to ``np.median(edge, axis=0).astype(np.uint8)``: each channel's edge values in a row of their own, sorted
    in place by numpy's radix sort for 8-bit integers (``kind="stable"``); np.median's checks or a partition along
    the strided axis cost 1.5-3x more on these few hundred pixels, and this runs once per recognition sample."""
    edge = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]).T.copy()
    edge.sort(axis=1, kind="stable")
    half = edge.shape[1] // 2
    upper = edge[:, half]
    if edge.shape[1] % 2:
        return upper
    lower = edge[:, half - 1]
    return (lower >> 1) + (upper >> 1) + (lower & upper & 1)  # (lower + upper) // 2 without leaving uint8


def pad_with(image: np.ndarray, colour: np.ndarray, top: int = 0, bottom: int = 0, left: int = 0,
             right: int = 0) -> np.ndarray:
    """``image`` with borders of ``colour``; OpenCV's border fill is ~15x faster than numpy's broadcast fill."""
    return cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT,
                              value=tuple(int(c) for c in colour))


def mean_std_arrays(mean: Sequence[float], std: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """``mean`` and ``std`` as float32 3x1x1 arrays, for ``(x / 255 - mean) / std`` in numpy or torch."""
    return np.asarray(mean, np.float32).reshape(3, 1, 1), np.asarray(std, np.float32).reshape(3, 1, 1)


def normalise(image: np.ndarray, mean: Sequence[float], std: Sequence[float], color: str = "RGB") -> np.ndarray:
    """RGB uint8 HxWx3 -> float32 3xHxW, ``(x / 255 - mean) / std`` per channel: every exported model's input.
    ``color="BGR"`` reverses the channels first (models imported from PaddleOCR read OpenCV's BGR order; ``mean``
    and ``std`` are then in that order too).

    Training batches carry uint8 images and are normalised on the device by the same float32 operations in the
    same order (``Task.model_input``), so both give identical numbers; uint8 moves 4x fewer bytes through the
    DataLoader's shared memory."""
    mean32, std32 = mean_std_arrays(mean, std)
    if color == "BGR":
        image = image[:, :, ::-1]
    elif color != "RGB":
        raise ValueError(f"color must be RGB or BGR, got {color!r}")
    out = image.transpose(2, 0, 1).astype(np.float32, order="C")  # transposing uint8 moves a quarter of the bytes
    out /= np.float32(255.0)
    out -= mean32
    out /= std32
    return out


def resize_to_height(image: np.ndarray, height: int, max_width: int) -> np.ndarray:
    """Fixed height, aspect ratio kept, width capped at ``max_width`` (uint8, no padding)."""
    h, w = image.shape[:2]
    width = int(min(max_width, max(1, round(w * height / max(h, 1)))))
    if (h, w) == (height, width):
        return np.ascontiguousarray(image)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if h > height else cv2.INTER_LINEAR)
