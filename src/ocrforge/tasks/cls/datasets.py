"""Classification datasets: class-per-folder trees and ``path<TAB>class`` files. Samples are raw RGB arrays."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from ...data.images import IMAGE_SUFFIXES, read_image
from ...data.label_files import read_label_lines
from ...data.skips import LineOrigins, SkipCounter, count_skip
from ...errors import DataError
from ...registry import CLS_DATASETS

log = logging.getLogger("ocrforge")


class _FileListDataset(Dataset):
    """Shared sample access: a list of (image path, class index); unknown classes were counted at init."""

    config_injected = ("classes",)

    def __init__(self) -> None:
        self.samples: list[tuple[str, int]] = []
        self.class_names: list[str] = []
        self.skipped_at_init: Counter = SkipCounter()
        self.origins: LineOrigins | None = None  # label file and line of each sample, where there is one

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path, label = self.samples[index]
        return {"image": read_image(path), "label": label, "path": path}

    def sample_info(self, index: int) -> dict[str, Any]:
        path, label = self.samples[index]
        origin = self.origins(index) if self.origins is not None else {}
        return {"path": path, "gt": self.class_names[label], "gt_id": label, **origin}

    def _keep(self, items: Sequence[tuple[str, str]], classes: Sequence[str], where: str,
              lines: Sequence[tuple[str, int]] | None = None) -> None:
        """Keep the items of known classes; ``lines`` holds each item's label file and line, if it has one."""
        self.class_names = list(classes)
        lookup = {name: i for i, name in enumerate(classes)}
        if lines is not None:
            self.origins = LineOrigins()
        for i, (path, name) in enumerate(items):
            origin = {"label_file": lines[i][0], "line": lines[i][1]} if lines is not None else {}
            if name in lookup:
                self.samples.append((path, lookup[name]))
                if self.origins is not None:
                    self.origins.extend(origin["label_file"], [origin["line"]])
            else:
                count_skip(self.skipped_at_init, "label_not_in_classes", path=path, label=name, **origin)
        if not self.samples:
            raise DataError(f"{where}: no usable samples (skipped: {dict(self.skipped_at_init) or 'none'})")


@CLS_DATASETS.register(aliases=("ImageFolder",))
class ImageFolderDataset(_FileListDataset):
    """``root/<class name>/**/<image>``; folders not in ``classes`` are counted as ``label_not_in_classes``."""

    def __init__(self, root: str, classes: Sequence[str] | None = None) -> None:
        super().__init__()
        folder = Path(root)
        if not folder.is_dir():
            raise DataError(f"image folder not found: {root}")
        classes = list(classes) if classes else self.discover_classes(root)
        items = [(str(p), p.relative_to(folder).parts[0]) for p in sorted(folder.rglob("*"))
                 if p.suffix.lower() in IMAGE_SUFFIXES and len(p.relative_to(folder).parts) > 1]
        self._keep(items, classes, f"image folder {root}")

    @staticmethod
    def discover_classes(root: str, **_: Any) -> list[str]:
        folder = Path(root)
        if not folder.is_dir():
            raise DataError(f"image folder not found: {root}")
        names, empty = [], []
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            has_image = any(f.suffix.lower() in IMAGE_SUFFIXES for f in sub.rglob("*"))
            (names if has_image else empty).append(sub.name)
        if empty:
            log.warning("image folder %s: left out class folders without images: %s", root, ", ".join(empty))
        if not names:
            raise DataError(f"image folder {root} has no class sub-folders")
        return names


@CLS_DATASETS.register(aliases=("ClsLabelFile",))
class LabelFileDataset(_FileListDataset):
    """One or more ``path<TAB>class`` files; image paths relative to ``data_root`` (default: each file's folder).

    Class names are stripped of surrounding whitespace (logged): an editor's trailing blank must not split one
    class in two. Lines with an empty class are counted as ``empty_label``; the label file's own skips (see
    ``read_label_file``) are counted too."""

    def __init__(self, label_files: list[str], data_root: str | None = None,
                 classes: Sequence[str] | None = None) -> None:
        super().__init__()
        classes = list(classes) if classes else self.discover_classes(label_files, data_root)
        lines: list[tuple[str, int]] = []
        items, stripped = _read_class_labels(label_files, data_root, self.skipped_at_init, lines)
        if stripped:
            log.warning("label files %s: %d class names had surrounding whitespace, stripped",
                        ", ".join(label_files), stripped)
        self._keep(items, classes, f"label files {', '.join(label_files)}", lines)

    @staticmethod
    def discover_classes(label_files: list[str], data_root: str | None = None, **_: Any) -> list[str]:
        return sorted({name for _, name in _read_class_labels(label_files, data_root, Counter())[0]})


def _read_class_labels(label_files: list[str], data_root: str | None, skips: Counter,
                       lines: list[tuple[str, int]] | None = None) -> tuple[list[tuple[str, str]], int]:
    """``(image path, class name)`` of every usable line, and how many names had whitespace stripped; ``lines``,
    if given, receives each item's label file and line."""
    items, stripped = [], 0
    for file in label_files:
        for line, path, label in read_label_lines(file, data_root, skips):
            name = label.strip()
            if not name:
                count_skip(skips, "empty_label", label_file=str(file), line=line, path=path)
                continue
            stripped += name != label
            items.append((path, name))
            if lines is not None:
                lines.append((str(file), line))
    return items, stripped
