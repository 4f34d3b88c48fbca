"""Recognition LMDB in the field's standard layout (MMOCR, PaddleOCR, deep-text-recognition-benchmark).

Keys: ``num-samples`` (decimal text), ``image-%09d`` (encoded image bytes), ``label-%09d`` (UTF-8 text), numbered
from 1. Public indices here are 0-based; ``get(i)`` reads record ``i + 1``.
"""

from __future__ import annotations

import os
from pathlib import Path

import lmdb
import numpy as np

from ..errors import DataError
from .images import SampleSkipped, decode_image

NUM_SAMPLES_KEY = b"num-samples"


def image_key(number: int) -> bytes:
    return b"image-%09d" % number


def label_key(number: int) -> bytes:
    return b"label-%09d" % number


# py-lmdb allows one open environment per database file and process, and a handle inherited through fork() must not
# be used: environments are therefore shared per process here, and a forked process (a DataLoader worker) drops the
# inherited ones and opens its own on first use.
_ENVS: dict[str, lmdb.Environment] = {}
_ENVS_PID = os.getpid()


def _environment(path: str) -> lmdb.Environment:
    global _ENVS_PID
    if _ENVS_PID != os.getpid():
        for inherited in _ENVS.values():
            inherited.close()  # releases only this process's mapping; the parent's handle stays valid
        _ENVS.clear()
        _ENVS_PID = os.getpid()
    env = _ENVS.get(path)
    if env is None:
        env = _ENVS[path] = lmdb.open(path, readonly=True, lock=False, readahead=False, meminit=False)
    return env


class LmdbReader:
    """Read-only access, safe in DataLoader workers: the environment is opened lazily in each process (readonly,
    no locking, no readahead: the usual recipe for many concurrent random readers) and reopened after a fork."""

    def __init__(self, path: str | Path) -> None:
        if not (Path(path) / "data.mdb").is_file():
            raise DataError(f"no LMDB at {path} (expected {Path(path) / 'data.mdb'})")
        self.path = os.path.realpath(path)
        with self.env.begin() as txn:
            raw = txn.get(NUM_SAMPLES_KEY)
        if raw is None:
            self.close()
            raise DataError(f"LMDB {path} has no 'num-samples' key: not the standard layout, or an unfinished write")
        try:
            self._length = int(raw.decode("ascii"))
        except ValueError:
            raise DataError(f"LMDB {path}: 'num-samples' is {raw[:40]!r}, not a number") from None

    @property
    def env(self) -> lmdb.Environment:
        return _environment(self.path)

    def __len__(self) -> int:
        return self._length

    def _number(self, index: int) -> int:
        if not -self._length <= index < self._length:
            raise IndexError(f"index {index} outside an LMDB of {self._length} samples")
        return index % self._length + 1

    def label(self, index: int) -> str:
        """The label alone (no image decoding), e.g. for length statistics or bucketing."""
        number = self._number(index)
        with self.env.begin() as txn:
            raw = txn.get(label_key(number))
        return self._decode_label(raw, number)

    def label_lengths(self) -> np.ndarray:
        """Every label's length in characters, in one transaction (0 where missing or undecodable: such samples
        are skipped and counted when loaded)."""
        lengths = np.zeros(self._length, np.int64)
        with self.env.begin() as txn:
            for i in range(self._length):
                raw = txn.get(label_key(i + 1))
                try:
                    lengths[i] = len(raw.decode("utf-8")) if raw is not None else 0
                except UnicodeDecodeError:
                    continue
        return lengths

    def get(self, index: int) -> tuple[np.ndarray, str]:
        """``(RGB uint8 image, label)``; raises SampleSkipped for a missing or undecodable image or label."""
        number = self._number(index)
        with self.env.begin() as txn:
            image_bytes, raw_label = txn.get(image_key(number)), txn.get(label_key(number))
        source = f"{self.path}[{number}]"
        if image_bytes is None:
            raise SampleSkipped("missing_image", source)
        label = self._decode_label(raw_label, number)
        return decode_image(image_bytes, source), label

    def _decode_label(self, raw: bytes | None, number: int) -> str:
        if raw is None:
            raise SampleSkipped("missing_label", f"{self.path}[{number}]")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SampleSkipped("undecodable_label", f"{self.path}[{number}]") from None

    def close(self) -> None:
        """Close this process's environment for the path (shared with other readers of the same database)."""
        env = _ENVS.pop(self.path, None) if _ENVS_PID == os.getpid() else None
        if env is not None:
            env.close()


class LmdbWriter:
    """Appends samples to a new LMDB, committing every ``commit_every``; ``num-samples`` is written last, by
    ``close()``, so an interrupted conversion leaves a database that readers reject instead of a truncated one."""

    def __init__(self, path: str | Path, commit_every: int = 1000, map_size: int = 1 << 30) -> None:
        folder = Path(path)
        if (folder / "data.mdb").exists():
            raise DataError(f"{folder} already holds an LMDB; write to a new folder")
        folder.mkdir(parents=True, exist_ok=True)
        self.path = str(folder)
        self.commit_every = commit_every
        self._env = lmdb.open(self.path, map_size=map_size, subdir=True, meminit=False)
        self._pending: list[tuple[bytes, bytes]] = []
        self.count = 0

    def add(self, image_bytes: bytes, label: str) -> int:
        """Queue one sample; returns its 1-based record number."""
        self.count += 1
        self._pending += [(image_key(self.count), bytes(image_bytes)), (label_key(self.count), label.encode("utf-8"))]
        if len(self._pending) >= 2 * self.commit_every:
            self._commit()
        return self.count

    def _commit(self, extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        items = self._pending + list(extra)
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    for key, value in items:
                        txn.put(key, value)
                break
            except lmdb.MapFullError:
                # The map size is only an upper bound on the file; grow it and redo the aborted transaction.
                self._env.set_mapsize(self._env.info()["map_size"] * 2)
        self._pending = []

    def close(self, complete: bool = True) -> None:
        """Commit what is queued; with ``complete`` also write ``num-samples`` (the mark of a finished database)."""
        if self._env is None:
            return
        self._commit(((NUM_SAMPLES_KEY, str(self.count).encode("ascii")),) if complete else ())
        self._env.sync()
        self._env.close()
        self._env = None

    def __enter__(self) -> LmdbWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.close(complete=exc_type is None)
