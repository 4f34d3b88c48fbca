"""DataLoaders from ``data.<split>`` settings: sharded, epoch-seeded samples that make resume exact.

Every sample is drawn as ``(epoch, index)``: the sampler's order depends only on (seed, epoch) and each sample's
random augmentation only on (seed, epoch, index), whatever the number of workers, persistent or not, and whether
the run was resumed. Evaluation shards without padding, so no sample is counted twice across processes. A run
resumes on any number of processes: the checkpoint records how many batches all processes together trained of the
open epoch, and the resumed processes share out the rest of that epoch's order.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import lightning as L
from lightning.pytorch.utilities import rank_zero_warn
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Sampler

from ..config.schema import split_data_spec
from ..data.collate import SkipSafeDataset, make_collate
from ..data.packing import PackedBatchLoader
from ..errors import ConfigError
from ..tasks.base import Task
from .samplers import EpochIndexSampler, LengthBucketBatchSampler, UnpaddedEvalSampler


def build_dataloader(task: Task, split: str, *, training: bool, seed: int = 0, num_replicas: int = 1,
                     rank: int = 0, start_epoch: int = 0, skip_batches: int = 0) -> DataLoader | None:
    """This process's loader of ``split``; training starts at ``start_epoch``, past the ``skip_batches`` batches
    (of ``batch_size`` samples each) that all processes together had trained of it."""
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
    pack = training and workers > 0  # training batches are the ones that must keep up with the device
    return (PackedBatchLoader if pack else DataLoader)(
        SkipSafeDataset(dataset, seed),
        **batching,
        num_workers=workers,
        pin_memory=loader["pin_memory"],
        persistent_workers=loader["persistent_workers"] and workers > 0,
        prefetch_factor=loader["prefetch_factor"] if workers > 0 else None,
        collate_fn=make_collate(task.collate),
    )


def _processes(count: int) -> str:
    return f"{count} process" + ("es" if count != 1 else "")


class TaskDataModule(L.LightningDataModule):
    """Builds loaders for this process's shard (the Trainer runs with ``use_distributed_sampler=False``)."""

    def __init__(self, task: Task) -> None:
        super().__init__()
        self.task = task
        self._start_epoch = 0
        # A resumed run: (batches of the open epoch done when it was saved, the number of processes it had).
        self._saved: tuple[int, int | None] | None = None
        # From the resumed epoch's start: (that epoch, its batches done by all processes then, Lightning's
        # per-process count then), to count the batches done since in the next checkpoint.
        self._resumed_at: tuple[int, int, int] | None = None

    def _done_when_saved(self, world: int) -> int:
        """Batches of the open epoch all processes together had trained when the resumed run was saved. A
        checkpoint that does not record its number of processes counted one process's, on as many as now."""
        if self._saved is None:
            return 0
        done, saved_world = self._saved
        return done if saved_world is not None else done * world

    def _loader(self, split: str, training: bool) -> DataLoader | None:
        trainer = self.trainer
        world = trainer.world_size if trainer else 1
        return build_dataloader(self.task, split, training=training, seed=self.task.cfg.seed, num_replicas=world,
                                rank=trainer.global_rank if trainer else 0, start_epoch=self._start_epoch,
                                skip_batches=self._done_when_saved(world) if training else 0)

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

    def _left_in_resumed_epoch(self) -> int:
        """Batches this process trains of the resumed epoch."""
        loader = self.trainer.train_dataloader
        if isinstance(loader.batch_sampler, LengthBucketBatchSampler):
            return loader.batch_sampler.resumed_length()
        samples, batch_size = loader.sampler.resumed_length(), self.task.cfg.data.train.batch_size
        return samples // batch_size if loader.drop_last else math.ceil(samples / batch_size)

    def align_resumed_epoch(self) -> None:
        """At the start of training, after Lightning restored its loop counters (which come after the data state and
        the loaders). A run resumed on another number of processes counts the open epoch's batches anew, as those
        of this process's new share already done, so that Lightning runs exactly the rest of the epoch: its own
        count, in batches of the old shares, would end the epoch too early or too late."""
        if self._saved is None:
            return
        trainer = self.trainer
        world, saved_world = trainer.world_size, self._saved[1]
        progress = trainer.fit_loop.epoch_loop.batch_progress
        counted = progress.current.processed
        if saved_world is not None and saved_world != world:
            left = self._left_in_resumed_epoch()
            counted = max(0, int(trainer.num_training_batches) - left)
            shift = counted - progress.current.processed
            for counts in (progress.current, progress.total):
                counts.ready, counts.started = counts.ready + shift, counts.started + shift
                counts.processed, counts.completed = counts.processed + shift, counts.completed + shift
            batch_size = self.task.cfg.data.train.batch_size
            rank_zero_warn(
                f"resumed on {_processes(world)} a run that trained on {_processes(saved_world)}: the global batch "
                f"is now {batch_size * world} samples instead of {batch_size * saved_world}, but the learning rate "
                "is the checkpoint's, not rescaled for it (--auto-scale-lr included: start a new run with --load-from "
                "to choose it anew), and its schedule is laid out again over the new number of steps. The rest of "
                f"epoch {self._start_epoch + 1} is shared out: {left} batches a process.")
        self._resumed_at = (self._start_epoch, self._done_when_saved(world), counted)

    def state_dict(self) -> dict[str, Any]:
        """Where training stands in the data: the epoch, the batches of it that all processes together trained on,
        and how many processes there were."""
        trainer = self.trainer
        # Lightning's own position: the epoch it is in (``processed`` counts the closed ones) and, while that epoch
        # is open, its batches trained -- all of them when a validation at its last batch saves. Batches count as
        # ``processed`` (stepped): a save in ``on_train_batch_end`` comes before Lightning marks one completed.
        epochs = trainer.fit_loop.epoch_progress.current
        world, done = trainer.world_size, 0
        if epochs.started > epochs.processed:
            processed = trainer.fit_loop.epoch_loop.batch_progress.current.processed
            done = processed * world  # ranks step together: each has trained as many batches
            if self._resumed_at is not None and self._resumed_at[0] == epochs.processed:
                _, done_then, counted_then = self._resumed_at
                done = done_then + (processed - counted_then) * world
        return {"epoch": epochs.processed, "batches_done": done, "world_size": world}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._start_epoch = int(state_dict.get("epoch", 0))
        world = state_dict.get("world_size")
        self._saved = (int(state_dict.get("batches_done", 0)), int(world) if world is not None else None)
