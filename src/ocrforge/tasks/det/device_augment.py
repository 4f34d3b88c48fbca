"""The pixel work of detection augmentation for a whole batch on the training device (``data.augment.on_device``):
the workers decide each sample's warp and colour change (``DetAugment.plan``) and send the part of the image the
warp reads; here one batched bilinear warp, the colour change and the padding give what ``DetAugment`` gives on the
CPU, as float images of integer values 0-255 (rounded where OpenCV rounds to uint8).

Why ``grid_sample`` and not torchvision.transforms.v2 on the batch: a v2 transform draws one set of parameters
per call, so a batch would share one warp; each sample's own matrix needs the sampling grid built here.

OpenCV interpolates with 5-bit fixed-point weights and ``grid_sample`` in float, so single pixels can differ by a
grey level or two at sharp edges (``tests/test_det_device_augment.py`` states the tolerance).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, decode_jpeg

from ...data.images import SampleSkipped, decode_image
from .augment import GREY_WEIGHTS


@dataclass
class EncodedImage:
    """A JPEG file on its way to the device, undecoded, and how often to halve it there once decoded. Not a tensor:
    batch transfers leave it on the host, where the decoder reads it."""

    data: np.ndarray  # uint8 bytes of the file
    halvings: int
    path: str = ""


def warp_batch(sources: list[torch.Tensor | EncodedImage], warp: dict[str, torch.Tensor], size: tuple[int, int],
               pad_value: int) -> tuple[torch.Tensor, list[int]]:
    """(B, 3, H, W) float32 RGB, values 0-255, from each sample's source (an HWC uint8 tensor, or an
    ``EncodedImage``, decoded on the warp's device) and the per-sample arrays of ``WarpPlan.device_warp``, stacked;
    and the samples whose file no decoder read (their image is the pad value: the caller leaves them out)."""
    inverse = warp["inverse"].float()
    device = inverse.device
    source, unreadable = _source_batch(sources, pad_value, device)
    source_h, source_w = source.shape[-2:]
    out_h, out_w = size
    xs = torch.arange(out_w, device=device, dtype=torch.float32).view(1, 1, out_w)
    ys = torch.arange(out_h, device=device, dtype=torch.float32).view(1, out_h, 1)
    # Source point of every output pixel, in OpenCV pixel coordinates (centres at integers).
    sx = inverse[:, 0, 0, None, None] * xs + inverse[:, 0, 1, None, None] * ys + inverse[:, 0, 2, None, None]
    sy = inverse[:, 1, 0, None, None] * xs + inverse[:, 1, 1, None, None] * ys + inverse[:, 1, 2, None, None]
    # A replicated border is bilinear sampling at the point clamped onto the outermost pixel centres.
    clamp_max = warp["clamp_max"].to(device=device, dtype=torch.float32)
    replicate = (clamp_max[:, 0] >= 0)[:, None, None]
    sx = torch.where(replicate, torch.minimum(sx.clamp(min=0.0), clamp_max[:, 0, None, None]), sx)
    sy = torch.where(replicate, torch.minimum(sy.clamp(min=0.0), clamp_max[:, 1, None, None]), sy)
    # grid_sample's normalised coordinates with align_corners=False: -1 and 1 are the outer edges of the pixels.
    grid = torch.stack(((2 * sx + 1) / source_w - 1, (2 * sy + 1) / source_h - 1), dim=-1)
    warped = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    warped = torch.round(warped + pad_value)  # warpAffine writes uint8

    content = warp["content"].to(device)
    inside = (xs < content[:, 0, None, None]) & (ys < content[:, 1, None, None])  # (B, H, W)
    inside = inside[:, None]
    area = inside.sum(dim=(2, 3)).clamp(min=1)
    mean_rgb = torch.where(inside, warped, 0.0).sum(dim=(2, 3)) / area  # (B, 3): cv2.mean of the content
    # Python scalars: a tensor made here would be a blocking host-to-device copy every step.
    red, green, blue = (float(w) for w in GREY_WEIGHTS)
    mean_grey = mean_rgb[:, 0] * red + mean_rgb[:, 1] * green + mean_rgb[:, 2] * blue
    matrix = warp["colour_matrix"].to(device=device, dtype=torch.float32)
    offset = warp["colour_offset"].to(device=device, dtype=torch.float32) * mean_grey[:, None]
    coloured = torch.einsum("bij,bjhw->bihw", matrix, warped) + offset[:, :, None, None]
    coloured = torch.round(coloured).clamp(0, 255)  # cv2.transform saturates to uint8
    return torch.where(inside, coloured, torch.full((), float(pad_value), device=device)), unreadable


def _source_batch(sources: list[torch.Tensor | EncodedImage], pad_value: int, device: torch.device
                  ) -> tuple[torch.Tensor, list[int]]:
    """(B, 3, h, w) float32 of source pixel - pad value, zero beyond each source: sampling it with zeros outside is
    sampling the image with the pad value outside (bilinear is linear). JPEG files are decoded in one batched call
    and halved as planned (the workers halved the parts they decoded). Also the samples no decoder read."""
    images: list[torch.Tensor | None] = [s.to(device).permute(2, 0, 1).float() if isinstance(s, torch.Tensor)
                                         else None for s in sources]
    encoded = [i for i, s in enumerate(sources) if isinstance(s, EncodedImage)]
    unreadable = []
    if encoded:
        for i, image in zip(encoded, _decode([sources[i] for i in encoded], device), strict=True):
            if image is None:
                unreadable.append(i)
                continue
            image = image.float()
            for _ in range(sources[i].halvings):
                image = pyr_down(image)
            images[i] = image
    readable = [image for image in images if image is not None]
    height = max((image.shape[1] for image in readable), default=1)
    width = max((image.shape[2] for image in readable), default=1)
    batch = torch.zeros((len(images), 3, height, width), device=device)
    for out, image in zip(batch, images):
        if image is not None:
            out[:, : image.shape[1], : image.shape[2]] = image - pad_value
    return batch, unreadable


def _decode(files: list[EncodedImage], device: torch.device) -> list[torch.Tensor | None]:
    """(3, H, W) uint8 RGB images, decoded in one batched call; a batch the decoder rejects is decoded file by file
    (``_decode_file``)."""
    try:
        return decode_jpeg([torch.from_numpy(f.data) for f in files], mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        return [_decode_file(file, device) for file in files]


def _decode_file(file: EncodedImage, device: torch.device) -> torch.Tensor | None:
    """One file, with OpenCV (as the workers would) if the device decoder rejects it. None, with a warning naming
    the file, if nothing decodes it: the batch is built, so it is left out of the loss rather than skipped."""
    try:
        return decode_jpeg(torch.from_numpy(file.data), mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        try:
            return torch.from_numpy(decode_image(file.data, file.path)).permute(2, 0, 1).to(device)
        except SampleSkipped:
            warnings.warn(f"{file.path}: a JPEG file no decoder reads (its header looked sound): left out of this "
                          f"step's loss", stacklevel=3)
            return None


def pyr_down(image: torch.Tensor) -> torch.Tensor:
    """cv2.pyrDown of a (3, H, W) float image of 0-255 values: the 5x5 binomial blur with OpenCV's default border
    (BORDER_REFLECT_101, per axis, a 1-pixel side repeating its pixel), every second pixel, rounded as pyrDown writes
    uint8 (OpenCV rounds halves up, this to even: a grey level apart at most)."""
    rows = _reflect_101(image.shape[1], image.device)
    columns = _reflect_101(image.shape[2], image.device)
    padded = image.index_select(1, rows).index_select(2, columns)[None]
    return torch.round(F.conv2d(padded, _pyramid_kernel(image.device), stride=2, groups=3)[0])


@lru_cache(maxsize=64)
def _reflect_101(size: int, device: torch.device) -> torch.Tensor:
    """Indices of a side of ``size`` pixels padded by 2 on each end, mirrored about the end pixels (cached per size
    and device: no host-to-device copy per call)."""
    if size == 1:
        return torch.zeros(size + 4, dtype=torch.long, device=device)
    period = 2 * (size - 1)
    index = np.abs((np.arange(-2, size + 2) + period) % period)
    index = np.where(index >= size, period - index, index)
    return torch.from_numpy(index).to(device)


@lru_cache(maxsize=8)
def _pyramid_kernel(device: torch.device) -> torch.Tensor:
    taps = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
    return (taps[:, None] * taps[None, :]).expand(3, 1, 5, 5).contiguous().to(device)
