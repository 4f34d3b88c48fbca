"""DBNet's threshold map for a whole batch on the training device, from the polygon edges the workers send
(``targets.border_edges``): the same formula, pixel grid and boxes as the CPU path (``targets._draw_border``).

Every pixel's value is a max over edges (``1 - d / D`` is largest at a polygon's nearest edge), so the batch is one
(batch, edges, H, W) broadcast reduced over edges. Eagerly that costs a few full-size temporaries per edge; on CUDA
the function is compiled once, for a fixed chunk of edges, which fuses it into one kernel that reads only the edges.
"""

from __future__ import annotations

import torch

# Eager evaluation handles this many edges at a time: (batch, chunk, H, W) float32 temporaries stay bounded.
EDGE_CHUNK = 8
# The compiled map takes the edges this many at a time (rows whose box is empty pad the last chunk).
FUSED_CHUNK = 32


def _closeness(edges: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, E, H, W): 1 - d / D inside each edge's box (d = the pixel's distance to the edge), 0 outside."""
    xs = torch.arange(width, device=edges.device, dtype=torch.float32).view(1, 1, 1, width)
    ys = torch.arange(height, device=edges.device, dtype=torch.float32).view(1, 1, height, 1)
    column = [edges[..., i, None, None] for i in range(9)]  # each (B, E, 1, 1)
    start_x, start_y, end_x, end_y, inverse_distance, box_x0, box_y0, box_x1, box_y1 = column
    segment_x, segment_y = end_x - start_x, end_y - start_y
    length = torch.sqrt(segment_x * segment_x + segment_y * segment_y)
    safe_length = torch.clamp(length, min=1e-6)  # a zero-length edge (repeated vertex) is a point
    unit_x, unit_y = segment_x / safe_length, segment_y / safe_length
    dx, dy = xs - start_x, ys - start_y
    along = dx * unit_x + dy * unit_y  # position along the segment's line
    across = dy * unit_x - dx * unit_y  # signed distance from that line
    beyond = along - torch.minimum(torch.clamp(along, min=0.0), length)  # how far past either end
    distance = torch.sqrt(beyond * beyond + across * across)
    closeness = 1.0 - distance * inverse_distance
    inside = (xs >= box_x0) & (xs < box_x1) & (ys >= box_y0) & (ys < box_y1)
    return torch.where(inside, closeness, torch.zeros((), device=edges.device))


def border_map(edges: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, H, W) max(0, max over edges of 1 - d / D), eagerly, ``EDGE_CHUNK`` edges at a time."""
    border = edges.new_zeros((edges.shape[0], height, width))
    for first in range(0, edges.shape[1], EDGE_CHUNK):
        border = torch.maximum(border, _closeness(edges[:, first:first + EDGE_CHUNK], height, width).amax(dim=1))
    return border


def _dense_border_map(edges: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return torch.clamp(_closeness(edges, height, width).amax(dim=1), min=0.0)


_compiled_border_map = None


def _fused_border_map(edges: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The compiled map over fixed chunks of ``FUSED_CHUNK`` edges (the last padded with empty rows), the batch size
    marked dynamic: one graph whatever the edge count or batch size (skips, an epoch's last batch), never an
    uncompiled (batch, edges, H, W) temporary."""
    global _compiled_border_map
    if _compiled_border_map is None:
        _compiled_border_map = torch.compile(_dense_border_map, dynamic=False)
    count = max(1, -(-edges.shape[1] // FUSED_CHUNK)) * FUSED_CHUNK
    padded = torch.nn.functional.pad(edges, (0, 0, 0, count - edges.shape[1]))  # zero rows: empty boxes
    border = None
    for first in range(0, count, FUSED_CHUNK):
        chunk = padded[:, first:first + FUSED_CHUNK].contiguous()  # the strides too are the same every call
        if chunk.shape[0] > 1:  # dynamo specialises sizes 0 and 1 anyway
            torch._dynamo.mark_dynamic(chunk, 0)
        part = _compiled_border_map(chunk, height, width)
        border = part if border is None else torch.maximum(border, part)
    return border


def threshold_map(edges: torch.Tensor, height: int, width: int, thresh_min: float, thresh_max: float,
                  fused: bool | None = None) -> torch.Tensor:
    """(B, H, W) float32 threshold maps from (B, E, 9) edge rows (rows of an empty box, as padding, add nothing).
    ``fused``: compile (default: on CUDA when Triton is there)."""
    edges = edges.float()
    if fused is None:
        fused = edges.is_cuda and _has_triton()
    border = _fused_border_map(edges, height, width) if fused else border_map(edges, height, width)
    return border * (thresh_max - thresh_min) + thresh_min


def _has_triton() -> bool:
    from torch.utils._triton import has_triton

    return has_triton()
