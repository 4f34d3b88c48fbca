"""Samplers that yield ``(epoch, index)`` keys: the order depends only on (seed, epoch), never on workers or resume."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DistributedSampler, Sampler


class EpochIndexSampler(DistributedSampler):
    """DistributedSampler (seeded shuffle, sharding) that yields ``(epoch, index)`` pairs.

    The epoch is Lightning's (``set_epoch`` before each epoch), starting at ``start_epoch``: on resume Lightning
    creates the iterator, and workers prefetch from it, before its first ``set_epoch``. The first iteration of
    ``start_epoch`` drops the ``skip`` samples its shard had already trained on, so a run resumed mid-epoch sees
    exactly the rest of that epoch; a run saved at an epoch's last batch (in a validation inside the epoch) skips
    all of it, whether or not Lightning iterates that finished epoch again (it does only with workers).
    """

    def __init__(self, *args: Any, start_epoch: int = 0, skip: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.epoch, self.skip = start_epoch, _EpochSkip(start_epoch, skip)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        epoch = self.epoch
        indices = list(super().__iter__())[self.skip.take(epoch):]
        return ((epoch, index) for index in indices)


class _EpochSkip:
    """What a resumed run skips: ``count`` items of the first iteration of ``epoch``, then nothing."""

    def __init__(self, epoch: int, count: int) -> None:
        self.epoch, self.count = epoch, count

    def take(self, epoch: int) -> int:
        count = self.count if epoch == self.epoch else 0
        self.count = 0 if epoch >= self.epoch else self.count
        return count


class UnpaddedEvalSampler(Sampler):
    """Rank r takes indices r, r+W, r+2W …: every sample exactly once over all ranks (no padding duplicates)."""

    def __init__(self, length: int, num_replicas: int = 1, rank: int = 0) -> None:
        self.length, self.num_replicas, self.rank = length, num_replicas, rank

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((0, i) for i in range(self.rank, self.length, self.num_replicas))

    def __len__(self) -> int:
        return max(0, math.ceil((self.length - self.rank) / self.num_replicas))


class LengthBucketBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of similar label length (``bucket_by_length``): less padding per batch for recognisers, whose crops
    are about as wide as their text is long.

    Each epoch shuffles all indices with (seed, epoch), cuts them into pools of ``pool_batches`` batches, sorts each
    pool by length and slices it into batches, then shuffles the batch order: lengths vary between batches, not
    within one, and every sample is still drawn once an epoch. Ranks take every ``num_replicas``-th batch of the
    same list (equal counts: the tail is dropped with ``drop_last``, else padded by wrapping round). A resumed run
    starts at ``start_epoch`` and skips the ``skip_batches`` its rank had already trained on (as EpochIndexSampler).
    """

    def __init__(self, lengths: Sequence[int] | np.ndarray, batch_size: int, *, num_replicas: int = 1, rank: int = 0,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False, pool_batches: int = 50,
                 start_epoch: int = 0, skip_batches: int = 0) -> None:
        if batch_size < 1 or pool_batches < 1:
            raise ValueError("batch_size and pool_batches must be positive")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size, self.num_replicas, self.rank = batch_size, num_replicas, rank
        self.shuffle, self.seed, self.drop_last, self.pool = shuffle, seed, drop_last, batch_size * pool_batches
        self.epoch, self.skip = start_epoch, _EpochSkip(start_epoch, skip_batches)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _per_rank(self) -> int:
        n = len(self.lengths)
        total = n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        return total // self.num_replicas if self.drop_last else math.ceil(total / self.num_replicas)

    def __len__(self) -> int:
        return self._per_rank()

    def _batches(self, epoch: int) -> list[np.ndarray]:
        generator = torch.Generator().manual_seed(self.seed + epoch)
        n = len(self.lengths)
        order = torch.randperm(n, generator=generator).numpy() if self.shuffle else np.arange(n)
        batches = []
        for start in range(0, n, self.pool):
            pool = order[start:start + self.pool]
            pool = pool[np.argsort(self.lengths[pool], kind="stable")]
            batches += [pool[i:i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        wanted = self._per_rank() * self.num_replicas
        batches = (batches * math.ceil(wanted / max(len(batches), 1)))[:wanted]  # pads by wrapping, or trims
        return batches[self.rank::self.num_replicas]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.epoch
        for batch in self._batches(epoch)[self.skip.take(epoch):]:
            yield [(epoch, int(i)) for i in batch]
