"""Fine-tuning with another dictionary: classifier rows follow their characters from the old charset to the new."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def _row_map(source: Sequence[str], target: Sequence[str], extra: int) -> dict[int, int]:
    """target row -> source row for every token both charsets share (blank and <unk> included), plus ``extra``
    trailing special rows (an attention head's bos/eos) that sit after the tokens in both."""
    where = {token: i for i, token in enumerate(source)}
    mapping = {j: where[token] for j, token in enumerate(target) if token in where}
    mapping.update({len(target) + k: len(source) + k for k in range(extra)})
    return mapping


def remap_charset_rows(state: dict[str, torch.Tensor], fresh: dict[str, torch.Tensor], source: Sequence[str],
                       target: Sequence[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Rewrite every tensor whose first axis indexes classes (``len(source)`` rows, or ``+2`` for attention heads):
    shared characters keep their trained rows, new characters keep the fresh model's initialisation."""
    out = dict(state)
    remapped = []
    for key, old in state.items():
        new = fresh.get(key)
        if new is None or old.ndim == 0:
            continue
        for extra in (0, 2):
            if old.shape[0] == len(source) + extra and new.shape[0] == len(target) + extra \
                    and old.shape[1:] == new.shape[1:]:
                merged = new.detach().clone()
                for j, i in _row_map(source, target, extra).items():
                    merged[j] = old[i]
                out[key] = merged
                remapped.append(key)
                break
    shared = set(source) & set(target)
    report = {
        "source_classes": len(source), "target_classes": len(target),
        "kept_chars": len(shared - {"<blank>"}),
        "new_chars": [t for t in target if t not in shared],
        "dropped_chars": [s for s in source if s not in shared],
        "remapped_tensors": remapped,
    }
    return out, report
