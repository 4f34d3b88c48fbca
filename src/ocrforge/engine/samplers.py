"""Samplers that yield ``(epoch, index)`` keys: the order depends only on (seed, epoch), never on workers or resume."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DistributedSampler, Sampler


def _resharded(items: list, num_replicas: int, rank: int, drop_last: bool, skip: int) -> list:
    """This rank's share of an epoch's global order once its first ``skip`` items were trained on.

    Ranks take every ``num_replicas``-th item, so after k items each, W ranks have consumed exactly the first k*W
    items of the order, whatever W was: a run resumed on another number of processes shares out the rest. The rest
    is cut (``drop_last``) or padded with the order's first items to a multiple of the processes, as
    DistributedSampler pads a whole epoch; with the same number of processes this is the rest of each rank's own
    shard, padding included."""
    rest = items[skip:]
    extra = len(rest) % num_replicas
    if extra and drop_last:
        rest = rest[:len(rest) - extra]
    elif extra:
        pad = num_replicas - extra
        rest = rest + (items * math.ceil(pad / len(items)))[:pad]
    return rest[rank::num_replicas]


class EpochIndexSampler(DistributedSampler):
    """DistributedSampler (seeded shuffle, sharding) that yields ``(epoch, index)`` pairs.

    The epoch is Lightning's (``set_epoch`` before each epoch), starting at ``start_epoch``: on resume Lightning
    creates the iterator, and workers prefetch from it, before its first ``set_epoch``. The first iteration of
    ``start_epoch`` drops the first ``skip`` samples of the epoch's global order, those all processes together had
    already trained on (``_resharded``), so a run resumed mid-epoch -- on any number of processes -- sees exactly
    the rest of that epoch; a run saved at an epoch's last batch (in a validation inside the epoch) skips all of
    it, whether or not Lightning iterates that finished epoch again (it does only with workers).
    """

    def __init__(self, *args: Any, start_epoch: int = 0, skip: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.epoch, self.skip = start_epoch, _EpochSkip(start_epoch, skip)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self, epoch: int) -> list[int]:
        """The epoch's global order, as DistributedSampler draws it."""
        n = len(self.dataset)  # type: ignore[arg-type]
        if not self.shuffle:
            return list(range(n))
        return torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + epoch)).tolist()

    def _indices(self, epoch: int, skip: int) -> list[int]:
        return _resharded(self._order(epoch), self.num_replicas, self.rank, self.drop_last, skip)

    def resumed_length(self) -> int:
        """Samples the first iteration of ``start_epoch`` yields on this rank."""
        return len(self._indices(self.skip.epoch, self.skip.initial))

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        epoch = self.epoch
        return ((epoch, index) for index in self._indices(epoch, self.skip.take(epoch)))


class _EpochSkip:
    """What a resumed run skips: ``count`` items of the first iteration of ``epoch``, then nothing."""

    def __init__(self, epoch: int, count: int) -> None:
        self.epoch, self.count, self.initial = epoch, count, count

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
    starts at ``start_epoch`` and skips the first ``skip_batches`` batches of that list, those all processes
    together had already trained on (as EpochIndexSampler, on any number of processes).
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
        """The epoch's global list of batches, before it is shared out."""
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
        return batches

    def _shard(self, epoch: int, skip: int) -> list[np.ndarray]:
        return _resharded(self._batches(epoch), self.num_replicas, self.rank, self.drop_last, skip)

    def resumed_length(self) -> int:
        """Batches the first iteration of ``start_epoch`` yields on this rank."""
        return len(self._shard(self.skip.epoch, self.skip.initial))

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.epoch
        for batch in self._shard(epoch, self.skip.take(epoch)):
            yield [(epoch, int(i)) for i in batch]
