"""``ocrforge data check``: read every configured sample once and report what would be skipped, why, and where
(label file and line, image path, LMDB record), so the bad samples can be found and fixed."""

from __future__ import annotations

from collections import Counter
from typing import Any

from omegaconf import DictConfig

from ..data.collate import COUNT_KEY, SKIP_KEY, SKIPPED_ITEMS_KEY
from ..engine.data import build_dataloader
from ..engine.module import build_task


def check_data(cfg: DictConfig, splits: tuple[str, ...] = ("train", "val", "test"),
               show: int = 10) -> dict[str, Any]:
    """Per split: usable samples, skips by reason, and under ``examples`` the first ``show`` skipped samples of
    each reason with their location, in dataset order."""
    task = build_task(cfg)
    report: dict[str, Any] = {}
    for split in splits:
        if not cfg.data.get(split):
            continue
        loader = build_dataloader(task, split, training=False)
        loaded, skipped, counts = 0, Counter(), Counter()
        loading_examples: dict[str, list[dict[str, Any]]] = {}
        for batch in loader:
            loaded += int(batch["batch_size"])
            skipped.update(batch[SKIP_KEY])
            counts.update(batch[COUNT_KEY])
            for item in batch[SKIPPED_ITEMS_KEY]:
                kept = loading_examples.setdefault(item["skipped"], [])
                if len(kept) < show:
                    kept.append({k: v for k, v in item.items() if k != "skipped"})
        raw = task.raw_dataset(split)
        at_init = getattr(raw, "skipped_at_init", None) or {}
        indexing_examples = {reason: found[:show] for reason, found in getattr(at_init, "examples", {}).items()}
        report[split] = {"usable": loaded, "skipped_while_loading": dict(skipped), "data_counts": dict(counts),
                         "skipped_while_indexing": dict(at_init),
                         "examples": {"while_indexing": indexing_examples if show else {},
                                      "while_loading": loading_examples if show else {}}}
    return report


def _where(example: dict[str, Any]) -> str:
    """``labels.txt:12  /data/img.png``: the label file and line in the form editors jump to, then the image."""
    place = example.get("label_file")
    if place is not None and "line" in example:
        place = f"{place}:{example['line']}"
    parts = [str(p) for p in (place, example.get("path"), example.get("file_list")) if p is not None]
    return "  ".join(parts) or str(example.get("detail") or "(location unknown)")


def summary(report: dict[str, Any]) -> str:
    """The report for a person: per split and reason, the count and where the listed samples are."""
    lines = []
    for split, part in report.items():
        phases = (("while indexing", part["skipped_while_indexing"], part["examples"]["while_indexing"]),
                  ("while loading", part["skipped_while_loading"], part["examples"]["while_loading"]))
        total = sum(sum(counts.values()) for _, counts, _ in phases)
        lines.append(f"{split}: {part['usable']} usable, {total or 'nothing'} skipped")
        for phase, counts, examples in phases:
            for reason, count in sorted(counts.items(), key=lambda kv: -kv[1]):
                listed = examples.get(reason, [])
                lines.append(f"  {reason} ({phase}): {count}")
                lines += [f"    {_where(example)}" for example in listed]
                if 0 < len(listed) < count:
                    lines.append(f"    ... and {count - len(listed)} more")
    return "\n".join(lines)
