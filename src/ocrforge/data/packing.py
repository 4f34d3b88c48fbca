"""A training batch's tensors in one shared-memory buffer on their way from a DataLoader worker.

Each tensor a worker sends costs a round of file-descriptor passing with that worker (a socket handshake that the
busy worker's Python thread must answer), a shared-memory segment to map and free, and a pinned copy. A DBNet batch
with ``decode_on_device`` has ten tensors (``on_device``: one more per sample): receiving one took the main process
29 ms with two busy workers, 14.5 ms packed; on a 16-core GPU host the loader gave 5-23 % more where batches had
many tensors (benchmarks/README.md). Packed, a batch is one segment, received and pinned in one piece;
``PackedBatchLoader`` yields it unpacked, every tensor a view of the buffer, bit for bit the same. Only dict, list
and tuple containers are searched; anything else travels as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

PACKED_KEY = "_packed"
_ALIGN = 64  # every tensor starts on a 64-byte boundary: a dtype view needs its offset to be a multiple of its size


@dataclass(frozen=True)
class _Slot:
    """Where a packed tensor was in the batch: its index in the buffer's layout."""

    index: int


class PackedTensors:
    """Tensors as byte ranges of one uint8 buffer; ``pin_memory`` (called by the DataLoader's pinning thread) pins
    the buffer whole."""

    def __init__(self, buffer: torch.Tensor, layout: list[tuple[int, torch.dtype, tuple[int, ...]]]) -> None:
        self.buffer, self.layout = buffer, layout

    def pin_memory(self) -> PackedTensors:
        return PackedTensors(self.buffer.pin_memory(), self.layout)

    def tensors(self) -> list[torch.Tensor]:
        out = []
        for offset, dtype, shape in self.layout:
            size = torch.Size(shape).numel() * dtype.itemsize
            out.append(self.buffer[offset: offset + size].view(dtype).view(shape))
        return out


def pack_tensors(batch: dict[str, Any]) -> dict[str, Any]:
    """``batch`` with its tensors copied into one buffer (in shared memory: no further copy on the way out of the
    worker) under ``PACKED_KEY``, each replaced by its slot."""
    tensors: list[torch.Tensor] = []

    def take(tensor: torch.Tensor) -> _Slot:
        tensors.append(tensor)
        return _Slot(len(tensors) - 1)

    structure = _map_leaves(batch, torch.Tensor, take)
    layout, total = [], 0
    for tensor in tensors:
        layout.append((total, tensor.dtype, tuple(tensor.shape)))
        total += -(-tensor.numel() * tensor.element_size() // _ALIGN) * _ALIGN
    # As torch's default_collate does in a worker: allocate the output in shared memory directly.
    storage = torch.empty(0, dtype=torch.uint8)._typed_storage()._new_shared(max(total, 1))
    buffer = torch.empty(0, dtype=torch.uint8).new(storage)
    packed = PackedTensors(buffer, layout)
    for view, tensor in zip(packed.tensors(), tensors, strict=True):
        view.copy_(tensor)
    structure[PACKED_KEY] = packed
    return structure


def unpack_tensors(batch: Any) -> Any:
    """The batch ``pack_tensors`` packed, its tensors views of the (moved) buffer; any other batch as it is."""
    if not isinstance(batch, dict) or PACKED_KEY not in batch:
        return batch
    tensors = batch[PACKED_KEY].tensors()
    return _map_leaves({k: v for k, v in batch.items() if k != PACKED_KEY}, _Slot, lambda slot: tensors[slot.index])


def _map_leaves(value: Any, kind: type, function: Callable[[Any], Any]) -> Any:
    """``value`` with ``function`` applied to every ``kind`` inside its dicts, lists and tuples (not namedtuples)."""
    if isinstance(value, kind):
        return function(value)
    if isinstance(value, dict):
        return {k: _map_leaves(v, kind, function) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_leaves(v, kind, function) for v in value]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_map_leaves(v, kind, function) for v in value)
    return value


class PackedBatchLoader(DataLoader):
    """A DataLoader whose workers pack each batch ``collate_fn`` makes (``pack_tensors``) and that yields them
    unpacked."""

    def __init__(self, dataset: Dataset, *, collate_fn: Callable[[list], dict], **options: Any) -> None:
        # Lightning may build a loader again from this one's attributes: a collate function packing already stays.
        packing = collate_fn if isinstance(collate_fn, _PackingCollate) else _PackingCollate(collate_fn)
        super().__init__(dataset, collate_fn=packing, **options)

    def __iter__(self) -> Iterator[Any]:
        return map(unpack_tensors, super().__iter__())


class _PackingCollate:
    """``collate`` then ``pack_tensors``, in the workers (a class, not a closure, so it pickles where its collate
    function does)."""

    def __init__(self, collate: Callable[[list], dict]) -> None:
        self.collate = collate

    def __call__(self, samples: list) -> dict[str, Any]:
        return pack_tensors(self.collate(samples))
