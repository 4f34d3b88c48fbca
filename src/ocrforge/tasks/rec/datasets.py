"""Recognition datasets: label files (several, with ratios), LMDB, built-in synthetic words. Raw samples:
``{"image": RGB uint8, "label": str, "path": str}``; encoding and resizing happen in the task's sample transform."""

from __future__ import annotations

import bisect
from collections import Counter
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ...data.images import SampleSkipped, read_image
from ...data.lmdb_store import LmdbReader
from ...data.rec_labels import read_rec_labels
from ...data.skips import LineOrigins
from ...data.synth_text import SynthWordsDataset
from ...errors import DataError
from ...registry import REC_DATASETS


@REC_DATASETS.register(aliases=("RecLabelFile",))
class RecLabelFileDataset(Dataset):
    """``path<TAB>text`` files; ``ratios`` samples each file (PaddleOCR's ``ratio_list``), paths relative to
    ``data_root`` (default: each file's folder). Images are read from disk per sample, never held in memory.
    ``decode_height``: JPEGs at least twice this tall are decoded at 1/2, 1/4 or 1/8 size, staying at least this
    tall. Training splits default to the model's input height (``task_defaults``); null decodes in full."""

    task_defaults = ("decode_height",)

    def __init__(self, label_files: list[str], data_root: str | None = None, ratios: list[float] | None = None,
                 seed: int = 0, decode_height: int | None = None) -> None:
        self.decode_height = decode_height
        self.origins = LineOrigins()  # label file and line of each sample, for listing the unloadable ones
        self.samples, skips = read_rec_labels(label_files, data_root, ratios, seed=seed, origins=self.origins)
        self.skipped_at_init: Counter = skips
        if not self.samples:
            raise DataError(f"label files {', '.join(label_files)}: no usable samples ({dict(skips)})")

    def __len__(self) -> int:
        return len(self.samples)

    def label_lengths(self) -> np.ndarray:
        return np.fromiter((len(label) for _, label in self.samples), np.int64, len(self.samples))

    def __getitem__(self, index: int) -> dict[str, Any]:
        path, label = self.samples[index]
        return {"image": read_image(path, self.decode_height), "label": label, "path": path}

    def sample_info(self, index: int) -> dict[str, Any]:
        path, label = self.samples[index]
        return {"path": path, "gt": label, **self.origins(index)}


@REC_DATASETS.register(aliases=("RecLMDB",))
class RecLmdbDataset(Dataset):
    """One or more LMDB folders in the standard layout, concatenated; ``decode_height`` as for label files."""

    task_defaults = ("decode_height",)

    def __init__(self, roots: list[str], decode_height: int | None = None) -> None:
        self.decode_height = decode_height
        if not roots:
            raise DataError("RecLMDB needs at least one folder in 'roots'")
        self.readers = [LmdbReader(root) for root in roots]
        self.offsets = [0]
        for reader in self.readers:
            self.offsets.append(self.offsets[-1] + len(reader))
        for reader in self.readers:
            reader.close()  # reopened lazily in each DataLoader worker

    def __len__(self) -> int:
        return self.offsets[-1]

    def label_lengths(self) -> np.ndarray:
        lengths = [reader.label_lengths() for reader in self.readers]
        for reader in self.readers:
            reader.close()  # read in the main process; workers open their own environments
        return np.concatenate(lengths)

    def _locate(self, index: int) -> tuple[LmdbReader, int]:
        which = bisect.bisect_right(self.offsets, index) - 1
        return self.readers[which], index - self.offsets[which]

    def __getitem__(self, index: int) -> dict[str, Any]:
        reader, local = self._locate(index)
        image, label = reader.get(local, self.decode_height)
        return {"image": image, "label": label, "path": f"lmdb://{reader.path}#{local + 1}"}

    def sample_info(self, index: int) -> dict[str, Any]:
        reader, local = self._locate(index)
        try:
            label = reader.label(local)
        except SampleSkipped:  # the label itself is missing or not UTF-8
            label = None
        return {"path": f"lmdb://{reader.path}#{local + 1}", "gt": label}


@REC_DATASETS.register(aliases=("SynthWords",))
class SynthWordsSource(SynthWordsDataset):
    """Built-in synthetic words and short lines (realistic text, bundled OFL fonts, photographic effects),
    restricted to the task's dictionary; deterministic per (seed, index)."""

    config_injected = ("charset",)
