"""Per-sample seeding, skip-safe sample access, and collation that counts what was skipped and why."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from .images import SampleSkipped

SKIP_KEY = "_skipped"
# The skipped samples themselves, a list per batch: ``{"index", "skipped": reason, "detail", **sample_info}`` where
# the dataset has a ``sample_info(index)`` (path, ground truth) that needs no image. Evaluation counts them as wrong
# and lists them; a skipped sample never just vanishes from a score.
SKIPPED_ITEMS_KEY = "_skipped_items"
# A kept sample may carry {reason: n} under COUNT_KEY for effects that are not skips (e.g. characters mapped to
# <unk>); the collate function sums them so they are reported like skips.
COUNT_KEY = "_counts"


class SkipSafeDataset(Dataset):
    """Takes ``(epoch, index)``; seeds the RNGs from (seed, epoch, index) so augmentation is reproducible on resume
    and across worker counts; turns ``SampleSkipped`` into a marker that the collate function counts and drops
    (keeping the sample's index, reason and ``sample_info`` under ``SKIPPED_ITEMS_KEY``)."""

    def __init__(self, dataset: Dataset, seed: int = 0) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int] | int) -> dict[str, Any]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        sample_seed = int(np.random.SeedSequence([self.seed, epoch, index]).generate_state(1)[0])
        random.seed(sample_seed)
        np.random.seed(sample_seed)
        # The CPU generator only: torch.manual_seed also queues a lazy CUDA/XPU/MTIA seeding in a process that has
        # not initialised them, recording a formatted stack each time (~1 ms a sample, half a worker's time).
        torch.default_generator.manual_seed(sample_seed)
        try:
            return self.dataset[index]
        except SampleSkipped as exc:
            info = getattr(self.dataset, "sample_info", None)
            item = {"index": index, "skipped": exc.reason, "detail": exc.detail, **(info(index) if info else {})}
            return {SKIP_KEY: exc.reason, SKIPPED_ITEMS_KEY: item}


def chw_tensor(image: np.ndarray) -> torch.Tensor:
    """RGB uint8 HxWx3 -> uint8 3xHxW tensor, as samples travel from workers (normalised on the device)."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def make_collate(inner: Callable[[list[dict]], dict] = default_collate) -> Callable[[Sequence[dict]], dict]:
    def collate(samples: Sequence[dict]) -> dict:
        skipped = Counter(s[SKIP_KEY] for s in samples if SKIP_KEY in s)
        kept = [s for s in samples if SKIP_KEY not in s]
        counts: Counter = Counter()
        for sample in kept:
            counts.update(sample.pop(COUNT_KEY, {}))
        batch = inner(kept) if kept else {}
        batch[SKIP_KEY] = dict(skipped)
        batch[SKIPPED_ITEMS_KEY] = [s[SKIPPED_ITEMS_KEY] for s in samples if SKIP_KEY in s]
        batch[COUNT_KEY] = dict(counts)
        batch["batch_size"] = len(kept)  # a host int: reading a device tensor each step would stall the GPU queue
        return batch

    return collate
