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

import torch
import torch.nn.functional as F

_GREY_WEIGHTS = (0.299, 0.587, 0.114)  # as augment._GREY_WEIGHTS


def warp_batch(images: torch.Tensor, warp: dict[str, torch.Tensor], size: tuple[int, int],
               pad_value: int) -> torch.Tensor:
    """(B, 3, H, W) float32 RGB, values 0-255, from (B, h, w, 3) uint8 source parts (padded with ``pad_value``
    at the bottom and right) and the per-sample arrays of ``WarpPlan.for_device``, stacked."""
    source_h, source_w = images.shape[1:3]
    out_h, out_w = size
    device = images.device
    inverse = warp["inverse"].to(device=device, dtype=torch.float32)
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
    # Sampling image - pad with zeros outside is sampling the image with the pad value outside (bilinear is linear).
    source = images.permute(0, 3, 1, 2).float() - pad_value
    warped = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    warped = torch.round(warped + pad_value)  # warpAffine writes uint8

    content = warp["content"].to(device)
    inside = (xs < content[:, 0, None, None]) & (ys < content[:, 1, None, None])  # (B, H, W)
    inside = inside[:, None]
    area = inside.sum(dim=(2, 3)).clamp(min=1)
    mean_rgb = torch.where(inside, warped, 0.0).sum(dim=(2, 3)) / area  # (B, 3): cv2.mean of the content
    mean_grey = mean_rgb @ torch.tensor(_GREY_WEIGHTS, device=device)
    matrix = warp["colour_matrix"].to(device=device, dtype=torch.float32)
    offset = warp["colour_offset"].to(device=device, dtype=torch.float32) * mean_grey[:, None]
    coloured = torch.einsum("bij,bjhw->bihw", matrix, warped) + offset[:, :, None, None]
    coloured = torch.round(coloured).clamp(0, 255)  # cv2.transform saturates to uint8
    return torch.where(inside, coloured, torch.full((), float(pad_value), device=device))
