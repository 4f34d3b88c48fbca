"""Training batches travel from DataLoader workers as one buffer (data/packing.py) and arrive as they were made."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from conftest import synth_pages, tiny_det_config

from ocrforge.config import load_config
from ocrforge.data.packing import PACKED_KEY, PackedBatchLoader, pack_tensors, unpack_tensors
from ocrforge.engine.data import build_dataloader
from ocrforge.engine.module import build_task
from ocrforge.tasks.det.device_augment import EncodedImage


def _same(got: Any, want: Any) -> bool:
    """Equal values, dtypes, shapes and container types, all the way down."""
    if isinstance(want, torch.Tensor):
        return (isinstance(got, torch.Tensor) and got.dtype == want.dtype and got.shape == want.shape
                and torch.equal(got, want))
    if isinstance(want, np.ndarray):
        return isinstance(got, np.ndarray) and got.dtype == want.dtype and np.array_equal(got, want)
    if isinstance(want, EncodedImage):
        return (isinstance(got, EncodedImage) and _same(got.data, want.data)
                and (got.halvings, got.path) == (want.halvings, want.path))
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(_same(got[k], want[k]) for k in want)
    if isinstance(want, (list, tuple)):
        return (type(got) is type(want) and len(got) == len(want)
                and all(_same(a, b) for a, b in zip(got, want, strict=True)))
    return got == want


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    return [t for v in value for t in _tensors(v)] if isinstance(value, (list, tuple)) else []


def test_a_packed_batch_is_one_shared_buffer_that_unpacks_bit_for_bit() -> None:
    generator = torch.Generator().manual_seed(0)
    batch = {
        "image": torch.randint(0, 256, (2, 3, 5, 7), dtype=torch.uint8, generator=generator),
        "targets": {"map": torch.rand(2, 5, 7, generator=generator).half(), "mask": torch.rand(2, 5, 7) > 0.5,
                    "strided": torch.arange(40, dtype=torch.int64).view(5, 8)[:, ::3]},  # not contiguous
        "sources": [torch.rand(3, 4, generator=generator, dtype=torch.float64), torch.zeros(0, 9),
                    EncodedImage(np.arange(10, dtype=np.uint8), 1, "a.jpg")],
        "pair": (torch.tensor(2.5), "text"), "size": [(3, 4), (5, 6)], "batch_size": 2, "path": ["a", "b"],
        "_skipped": {"unreadable": 1}, "array": np.ones(3, np.float32),
    }
    packed = pack_tensors(batch)
    assert _tensors({k: v for k, v in packed.items() if k != PACKED_KEY}) == []  # every tensor went into the buffer
    buffer = packed[PACKED_KEY].buffer
    assert buffer.dtype == torch.uint8 and buffer.dim() == 1 and buffer.is_shared()
    unpacked = unpack_tensors(packed)
    assert _same(unpacked, batch)
    assert {t.untyped_storage().data_ptr() for t in _tensors(unpacked)} == {buffer.untyped_storage().data_ptr()}
    assert unpack_tensors(batch) is batch  # a batch that was never packed passes through


def test_training_batches_from_workers_are_the_batches_made_without_workers(tmp_path: Path) -> None:
    """Detection with on-device augmentation: a list of per-sample sources, uint8 maps, float warps. Two workers
    pack each batch; what the loader yields equals the same batches made in this process, and its tensors are
    views of one buffer."""

    def loader(workers: int):
        cfg = load_config(tiny_det_config(tmp_path / str(workers), data={
            "augment": {"on_device": True}, "train": {**synth_pages(8, seed=0, batch_size=4), "num_workers": workers}}))
        return build_dataloader(build_task(cfg), "train", training=True, seed=5)

    packed_loader = loader(2)
    assert isinstance(packed_loader, PackedBatchLoader)
    with_workers, without = list(packed_loader), list(loader(0))
    assert len(with_workers) == len(without) == 2
    for got, want in zip(with_workers, without, strict=True):
        assert PACKED_KEY not in got and _same(got, want)
        assert len({t.untyped_storage().data_ptr() for t in _tensors(got)}) == 1
        assert isinstance(got["image"], list) and len(got["image"]) == 4
