"""``ocrforge data check``: read every configured sample once and report what would be skipped, and why."""

from __future__ import annotations

from collections import Counter
from typing import Any

from omegaconf import DictConfig

from ..data.collate import COUNT_KEY, SKIP_KEY
from ..engine.data import build_dataloader
from ..engine.module import build_task


def check_data(cfg: DictConfig, splits: tuple[str, ...] = ("train", "val", "test")) -> dict[str, Any]:
    task = build_task(cfg)
    report: dict[str, Any] = {}
    for split in splits:
        if not cfg.data.get(split):
            continue
        loader = build_dataloader(task, split, training=False)
        loaded, skipped, counts = 0, Counter(), Counter()
        for batch in loader:
            loaded += int(batch["batch_size"])
            skipped.update(batch[SKIP_KEY])
            counts.update(batch[COUNT_KEY])
        raw = task.raw_dataset(split)
        report[split] = {"usable": loaded, "skipped_while_loading": dict(skipped), "data_counts": dict(counts),
                         "skipped_while_indexing": dict(getattr(raw, "skipped_at_init", {}) or {})}
    return report
