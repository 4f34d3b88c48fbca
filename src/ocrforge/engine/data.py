"""DataLoaders from ``data.<split>`` settings: sharded, epoch-seeded samples that make resume exact.

Every sample is drawn as ``(epoch, index)``: the sampler's order depends only on (seed, epoch) and each sample's
random augmentation only on (seed, epoch, index), whatever the number of workers, persistent or not, and whether
the run was resumed. Evaluation shards without padding, so no sample is counted twice across processes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import lightning as L
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from ..config.schema import split_data_spec
from ..data.collate import SkipSafeDataset, make_collate
from ..tasks.base import Task


class EpochIndexSampler(DistributedSampler):
    """DistributedSampler (seeded shuffle, sharding) that yields ``(epoch, index)`` pairs.

    The epoch is the number of times iteration has started, counted here rather than taken from Lightning's
    ``set_epoch``: on resume Lightning creates the iterator (and workers prefetch from it) before it sets the
    epoch, which would replay epoch 0's order. The count is saved in checkpoints through the data module.
    """

    def __init__(self, *args: Any, start_epoch: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.epoch = start_epoch

    def set_epoch(self, epoch: int) -> None:
        """Ignored: see the class docstring."""

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        epoch = self.epoch
        indices = list(super().__iter__())
        self.epoch += 1
        return ((epoch, index) for index in indices)


class UnpaddedEvalSampler(Sampler):
    """Rank r takes indices r, r+W, r+2W …: every sample exactly once over all ranks (no padding duplicates)."""

    def __init__(self, length: int, num_replicas: int = 1, rank: int = 0) -> None:
        self.length, self.num_replicas, self.rank = length, num_replicas, rank

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((0, i) for i in range(self.rank, self.length, self.num_replicas))

    def __len__(self) -> int:
        return max(0, math.ceil((self.length - self.rank) / self.num_replicas))


def build_dataloader(task: Task, split: str, *, training: bool, seed: int = 0, num_replicas: int = 1,
                     rank: int = 0, start_epoch: int = 0) -> DataLoader | None:
    dataset = task.build_dataset(split)
    if dataset is None:
        return None
    node = task.cfg.data.get(split) or task.cfg.data.get("val")
    _, loader = split_data_spec(OmegaConf.to_container(node))
    if training:
        shuffle = True if loader["shuffle"] is None else loader["shuffle"]
        sampler: Sampler = EpochIndexSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                                             seed=seed, drop_last=loader["drop_last"], start_epoch=start_epoch)
    else:
        sampler = UnpaddedEvalSampler(len(dataset), num_replicas, rank)
    workers = loader["num_workers"]
    return DataLoader(
        SkipSafeDataset(dataset, seed),
        batch_size=loader["batch_size"],
        sampler=sampler,
        drop_last=loader["drop_last"] and training,
        num_workers=workers,
        pin_memory=loader["pin_memory"],
        persistent_workers=loader["persistent_workers"] and workers > 0,
        prefetch_factor=loader["prefetch_factor"] if workers > 0 else None,
        collate_fn=make_collate(task.collate),
    )


class TaskDataModule(L.LightningDataModule):
    """Builds loaders for this process's shard (the Trainer runs with ``use_distributed_sampler=False``)."""

    def __init__(self, task: Task) -> None:
        super().__init__()
        self.task = task
        self._train_sampler: EpochIndexSampler | None = None
        self._start_epoch = 0

    def _loader(self, split: str, training: bool) -> DataLoader | None:
        trainer = self.trainer
        return build_dataloader(self.task, split, training=training, seed=self.task.cfg.seed,
                                num_replicas=trainer.world_size if trainer else 1,
                                rank=trainer.global_rank if trainer else 0, start_epoch=self._start_epoch)

    def train_dataloader(self) -> DataLoader:
        loader = self._loader("train", training=True)
        if loader is None:
            raise ValueError("data.train is not configured")
        self._train_sampler = loader.sampler
        return loader

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", training=False) or []

    def test_dataloader(self) -> DataLoader:
        loader = self._loader("test", training=False)
        if loader is None:
            raise ValueError("neither data.test nor data.val is configured")
        return loader

    def state_dict(self) -> dict[str, Any]:
        return {"train_epochs_started": self._train_sampler.epoch if self._train_sampler else self._start_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._start_epoch = int(state_dict.get("train_epochs_started", 0))
