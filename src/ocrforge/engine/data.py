"""DataLoaders from ``data.<split>`` settings: sharded, epoch-seeded samples that make resume exact.

Every sample is drawn as ``(epoch, index)``: the sampler's order depends only on (seed, epoch) and each sample's
random augmentation only on (seed, epoch, index), whatever the number of workers, persistent or not, and whether
the run was resumed. Evaluation shards without padding, so no sample is counted twice across processes.
"""

from __future__ import annotations

from typing import Any

import cv2
import lightning as L
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Sampler

from ..config.schema import split_data_spec
from ..data.collate import SkipSafeDataset, make_collate
from ..errors import ConfigError
from ..tasks.base import Task
from .samplers import EpochIndexSampler, LengthBucketBatchSampler, UnpaddedEvalSampler


def build_dataloader(task: Task, split: str, *, training: bool, seed: int = 0, num_replicas: int = 1,
                     rank: int = 0, start_epoch: int = 0, skip_batches: int = 0) -> DataLoader | None:
    dataset = task.build_dataset(split)
    if dataset is None:
        return None
    node = task.cfg.data.get(split) or task.cfg.data.get("val")
    _, loader = split_data_spec(OmegaConf.to_container(node))
    batch_sampler: Sampler | None = None
    sampler: Sampler | None = None
    if training and loader["bucket_by_length"]:
        batch_sampler = LengthBucketBatchSampler(
            dataset.label_lengths(), loader["batch_size"], num_replicas=num_replicas, rank=rank,
            shuffle=loader["shuffle"] is not False, seed=seed, drop_last=loader["drop_last"],
            start_epoch=start_epoch, skip_batches=skip_batches)
    elif training:
        shuffle = True if loader["shuffle"] is None else loader["shuffle"]
        sampler = EpochIndexSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                                    seed=seed, drop_last=loader["drop_last"], start_epoch=start_epoch,
                                    skip=skip_batches * loader["batch_size"])
    else:
        sampler = UnpaddedEvalSampler(len(dataset), num_replicas, rank)
    workers = loader["num_workers"]
    if workers > 0:
        # Workers run in parallel already; an OpenCV thread pool in each would oversubscribe the cores. Set here,
        # before the fork: reconfiguring the pool inside a forked worker can deadlock.
        cv2.setNumThreads(1)
    batching = ({"batch_sampler": batch_sampler} if batch_sampler is not None else
                {"batch_size": loader["batch_size"], "sampler": sampler, "drop_last": loader["drop_last"] and training})
    return DataLoader(
        SkipSafeDataset(dataset, seed),
        **batching,
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
        self._start_epoch, self._skip_batches = 0, 0

    def _loader(self, split: str, training: bool) -> DataLoader | None:
        trainer = self.trainer
        return build_dataloader(self.task, split, training=training, seed=self.task.cfg.seed,
                                num_replicas=trainer.world_size if trainer else 1,
                                rank=trainer.global_rank if trainer else 0, start_epoch=self._start_epoch,
                                skip_batches=self._skip_batches if training else 0)

    def train_dataloader(self) -> DataLoader:
        loader = self._loader("train", training=True)
        if loader is None:
            raise ValueError("data.train is not configured")
        return loader

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", training=False) or []

    def test_dataloader(self) -> DataLoader:
        loader = self._loader("test", training=False)
        if loader is None:
            raise ConfigError("neither data.test nor data.val is configured")
        return loader

    def state_dict(self) -> dict[str, Any]:
        """Where training stands in the data: the epoch and the batches of it already trained on."""
        trainer = self.trainer
        if trainer is None:
            return {"epoch": self._start_epoch, "batches_done": self._skip_batches}
        # Lightning's own position: the epoch it is in (``processed`` counts the closed ones) and, while that epoch
        # is open, its batches trained -- all of them when a validation at its last batch saves. Batches count as
        # ``processed`` (stepped): a save in ``on_train_batch_end`` comes before Lightning marks one completed.
        epochs = trainer.fit_loop.epoch_progress.current
        if epochs.started > epochs.processed:
            return {"epoch": epochs.processed,
                    "batches_done": trainer.fit_loop.epoch_loop.batch_progress.current.processed}
        return {"epoch": epochs.processed, "batches_done": 0}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._start_epoch = int(state_dict.get("epoch", 0))
        self._skip_batches = int(state_dict.get("batches_done", 0))
