"""Skips counted by reason together with where the first ones came from, so ``data check`` can say which samples
are bad (label file and line, image path, ...) and not only how many."""

from __future__ import annotations

from array import array
from collections import Counter
from typing import Any

# Locations kept per reason: enough for any listing a person reads, bounded for a file in which every line is bad.
EXAMPLES_KEPT = 1000


class SkipCounter(Counter):
    """A Counter of skips by reason (``skips[reason] += n`` still counts) that also keeps, per reason, the
    locations of the first ``EXAMPLES_KEPT`` skips counted through :func:`count_skip` in ``examples``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.examples: dict[str, list[dict[str, Any]]] = {}

    def __reduce__(self) -> tuple:
        # Counter's own reduce drops instance attributes; a dataset pickled into a spawned worker keeps them.
        return type(self), (dict(self),), {"examples": self.examples}


def count_skip(skips: Counter, reason: str, n: int = 1, **where: Any) -> None:
    """Count ``n`` skips of ``reason``; a :class:`SkipCounter` also remembers ``where`` the sample came from
    (``label_file``, ``line``, ``path`` of the image ...). Nothing is recorded for ``n`` <= 0, so no reason is
    listed with a zero count."""
    if n <= 0:
        return
    skips[reason] += n
    if isinstance(skips, SkipCounter):
        kept = skips.examples.setdefault(reason, [])
        if len(kept) < EXAMPLES_KEPT:
            kept.append(where)


class LineOrigins:
    """The label file and 1-based line of each sample of a label-file dataset, in 8 bytes a sample (a dataset of
    millions of lines must not hold a dict per sample for this); ``origins(index)`` is a ``sample_info`` part."""

    def __init__(self) -> None:
        self.files: list[str] = []
        self._file_ids: dict[str, int] = {}
        self._file = array("i")
        self._line = array("i")

    def __len__(self) -> int:
        return len(self._line)

    def extend(self, file: str, lines: list[int]) -> None:
        """Append samples of ``file`` at ``lines``, in dataset order."""
        file_id = self._file_ids.setdefault(file, len(self.files))
        if file_id == len(self.files):
            self.files.append(file)
        self._file.extend(array("i", [file_id]) * len(lines))
        self._line.extend(lines)

    def __call__(self, index: int) -> dict[str, Any]:
        return {"label_file": self.files[self._file[index]], "line": self._line[index]}
