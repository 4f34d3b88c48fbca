"""Detection datasets: ICDAR 2015 and PaddleOCR det labels (images streamed from disk), and synthetic pages.

Raw samples: ``{"image": RGB uint8, "polygons": [(N, 2) float32], "ignore": [bool], "texts": [str], "path": str}``.
Unusable label lines and regions are counted at indexing time (``skipped_at_init``), never dropped silently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ...data.converters.det_labels import DetSample, read_icdar2015_dataset, read_paddle_det
from ...data.images import read_file, read_image
from ...data.skips import SkipCounter, count_skip
from ...errors import DataError
from ...registry import DET_DATASETS
from ...text_files import iter_lines
from . import synth_pages as _synth_pages  # noqa: F401  (registers SynthPages)


def _usable(points: np.ndarray) -> bool:
    return len(points) >= 3 and bool(np.isfinite(points).all())


class _DetLabelDataset(Dataset):
    def __init__(self, samples: list[DetSample], skips: Counter, source: str, max_samples: int | None) -> None:
        kept = []
        for sample in samples:
            regions = [r for r in sample.regions if _usable(r.points)]
            count_skip(skips, "degenerate_polygon", len(sample.regions) - len(regions), path=str(sample.image),
                       **sample.origin)
            kept.append(replace(sample, regions=regions))
        self.samples = kept[:max_samples] if max_samples else kept
        self.skipped_at_init: Counter = skips
        if not self.samples:
            raise DataError(f"{source}: no usable images ({dict(skips)})")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        return {"image": read_image(sample.image), "polygons": [r.points for r in sample.regions],
                "ignore": [r.ignore for r in sample.regions], "texts": [r.text for r in sample.regions],
                "path": str(sample.image)}

    def encoded_sample(self, index: int) -> dict[str, Any]:
        """The sample with its image file undecoded: ``"data"`` (uint8 bytes) instead of ``"image"``."""
        sample = self.samples[index]
        return {"data": read_file(sample.image), "polygons": [r.points for r in sample.regions],
                "ignore": [r.ignore for r in sample.regions], "texts": [r.text for r in sample.regions],
                "path": str(sample.image)}

    def sample_info(self, index: int) -> dict[str, Any]:
        """The image and its care regions: an image that cannot be loaded leaves them all unmatched."""
        sample = self.samples[index]
        return {"path": str(sample.image), "num_gt": sum(not r.ignore for r in sample.regions), **sample.origin}


@DET_DATASETS.register(aliases=("DetIcdar2015",))
class Icdar2015Dataset(_DetLabelDataset):
    """``images_dir`` + ``labels`` (a folder of ``gt_<image>.txt`` or one file); ``###`` marks don't-care.
    ``files`` keeps only the listed image names (e.g. a train/val split of one folder); ``max_samples`` caps it."""

    def __init__(self, images_dir: str, labels: str, files: str | None = None, max_samples: int | None = None) -> None:
        skips = SkipCounter()
        stems = {Path(n).stem for n in _read_name_list(files)} if files is not None else None
        samples = read_icdar2015_dataset(images_dir, labels, skips, stems)
        if stems is not None:  # listed names with neither image nor GT file (the reader counted the other failures)
            unmatched = len(stems - {s.image.stem for s in samples})
            count_skip(skips, "listed_but_absent", unmatched - sum(skips[k] for k in (
                "missing_image", "undecodable_label_file", "image_without_label")), file_list=files)
        super().__init__(samples, skips, f"ICDAR 2015 labels {labels}", max_samples)


@DET_DATASETS.register(aliases=("DetPaddle",))
class PaddleDetDataset(_DetLabelDataset):
    """PaddleOCR det label files (``path<TAB>[{"transcription", "points"}]``, ``###`` / ``*`` = don't care), paths
    relative to ``data_dir``; several files are concatenated."""

    def __init__(self, label_files: list[str] | str, data_dir: str, max_samples: int | None = None) -> None:
        skips = SkipCounter()
        files = [label_files] if isinstance(label_files, str) else list(label_files)
        samples = [s for f in files for s in read_paddle_det(f, data_dir, skips)]
        super().__init__(samples, skips, f"PaddleOCR det labels {', '.join(files)}", max_samples)


def _read_name_list(path: str) -> set[str]:
    file = Path(path)
    if not file.is_file():
        raise DataError(f"file list not found: {file}")
    return {line.strip() for _, line in iter_lines(file, "file list") if line.strip()}
