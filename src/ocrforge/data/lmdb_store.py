"""Recognition LMDB in the field's standard layout (MMOCR, PaddleOCR, deep-text-recognition-benchmark).

Keys: ``num-samples`` (decimal text), ``image-%09d`` (encoded image bytes), ``label-%09d`` (UTF-8 text), numbered
from 1. Public indices here are 0-based; ``get(i)`` reads record ``i + 1``.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import lmdb
import numpy as np

from ..errors import DataError
from .images import SampleSkipped, decode_image

NUM_SAMPLES_KEY = b"num-samples"

# data.mdb begins with two meta pages (LMDB's MDB_meta after a 16-byte page header; 64-bit, little-endian layout):
# the magic number, the page size (kept in the free-list DB record's pad field), the last page in use and the
# transaction id that tells which of the two metas is current.
_META_MAGIC = 0xBEEFC0DE
_MAGIC_AT, _PAGE_SIZE_AT, _LAST_PAGE_AT, _TXNID_AT = 16, 40, 136, 144
_META_END = _TXNID_AT + 8


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
        try:
            env = _ENVS[path] = lmdb.open(path, readonly=True, lock=False, readahead=False, meminit=False)
        except lmdb.Error as exc:  # e.g. a file of another LMDB version; the header checks passed
            raise DataError(f"LMDB {path} cannot be opened: {exc}") from None
    return env


def check_data_file(path: str | Path) -> None:
    """Refuse a ``data.mdb`` that LMDB would map and then fault on: a truncated file kills the process with SIGBUS
    (no Python error, no message) at the first read past its end, so size and header are checked before mapping.

    Checks: at least two meta pages, the meta magic in both, a plausible page size that divides the file size, and
    a file long enough for the last page the current meta says is in use. Damage inside an intact-looking file is
    beyond a header check (LMDB trusts the sizes in its B-tree nodes); most of it surfaces as ``corrupt_record``."""
    file = Path(path)
    size = file.stat().st_size
    if size == 0:
        raise DataError(f"LMDB file {file} is empty (0 bytes): an unfinished copy or conversion")
    with open(file, "rb") as handle:
        first = handle.read(_META_END)
        if len(first) < _MAGIC_AT + 4 or struct.unpack_from("<I", first, _MAGIC_AT)[0] != _META_MAGIC:
            raise DataError(f"{file} is not an LMDB data file ({size} bytes, no LMDB meta page at its start)")
        if len(first) < _META_END:
            raise DataError(f"LMDB file {file} is truncated: {size} bytes, less than one meta page")
        page = struct.unpack_from("<I", first, _PAGE_SIZE_AT)[0]
        if page < 512 or page > 65536 or page & (page - 1):
            raise DataError(f"LMDB file {file}: page size {page} in its meta page is not a power of two in "
                            "512..65536: the header is damaged")
        if size < 2 * page:
            raise DataError(f"LMDB file {file} is truncated: {size} bytes, less than its two {page}-byte meta pages")
        handle.seek(page)
        second = handle.read(_META_END)
    if struct.unpack_from("<I", second, _MAGIC_AT)[0] != _META_MAGIC:
        raise DataError(f"LMDB file {file}: the second meta page (at byte {page}) is damaged")
    if size % page:
        raise DataError(f"LMDB file {file} is truncated or damaged: {size} bytes is not a whole number of "
                        f"{page}-byte pages")
    # LMDB reads through the meta with the higher transaction id.
    current = max((first, second), key=lambda meta: struct.unpack_from("<Q", meta, _TXNID_AT)[0])
    needed = (struct.unpack_from("<Q", current, _LAST_PAGE_AT)[0] + 1) * page
    if size < needed:
        raise DataError(f"LMDB file {file} is truncated: {size} bytes, but the database uses {needed} bytes "
                        f"({needed // page} pages of {page}); copy it again")


class LmdbReader:
    """Read-only access, safe in DataLoader workers: the environment is opened lazily in each process (readonly,
    no locking, no readahead: the usual recipe for many concurrent random readers) and reopened after a fork."""

    def __init__(self, path: str | Path) -> None:
        if not (Path(path) / "data.mdb").is_file():
            raise DataError(f"no LMDB at {path} (expected {Path(path) / 'data.mdb'})")
        check_data_file(Path(path) / "data.mdb")
        self.path = os.path.realpath(path)
        try:
            self._length = self._read_length(path)
        except DataError:
            self.close()  # no environment is left open for a database that was refused
            raise

    def _read_length(self, path: str | Path) -> int:
        try:
            with self.env.begin() as txn:
                raw = txn.get(NUM_SAMPLES_KEY)
            entries = self.env.stat()["entries"]
        except lmdb.Error as exc:
            raise DataError(f"LMDB {path} cannot be read: {exc}") from None
        if raw is None:
            raise DataError(f"LMDB {path} has no 'num-samples' key: not the standard layout, or an unfinished write")
        try:
            length = int(raw.decode("ascii"))
        except ValueError:  # UnicodeDecodeError included
            raise DataError(f"LMDB {path}: 'num-samples' is {raw[:40]!r}, not a number") from None
        if length < 0:
            raise DataError(f"LMDB {path}: 'num-samples' is {length}, not a count of samples")
        if length > entries:
            raise DataError(f"LMDB {path}: 'num-samples' is {length}, but the database holds only {entries} keys "
                            "(an image and a label per sample): damaged, or written by an interrupted tool")
        return length

    @property
    def env(self) -> lmdb.Environment:
        return _environment(self.path)

    def __len__(self) -> int:
        return self._length

    def _number(self, index: int) -> int:
        if not -self._length <= index < self._length:
            raise IndexError(f"index {index} outside an LMDB of {self._length} samples")
        return index % self._length + 1

    def _read(self, number: int, *keys: bytes) -> list[bytes | None]:
        """The values of ``keys``; a damaged page (LMDB's MDB_CORRUPTED, MDB_PAGE_NOTFOUND ...) below an intact
        header skips the sample as ``corrupt_record`` instead of raising inside a DataLoader worker."""
        try:
            with self.env.begin() as txn:
                return [txn.get(key) for key in keys]
        except lmdb.Error as exc:
            raise SampleSkipped("corrupt_record", f"{self.path}[{number}]: {exc}") from None

    def label(self, index: int) -> str:
        """The label alone (no image decoding), e.g. for length statistics or bucketing."""
        number = self._number(index)
        return self._decode_label(self._read(number, label_key(number))[0], number)

    def label_lengths(self) -> np.ndarray:
        """Every label's length in characters, in one transaction (0 where missing, undecodable or on a damaged
        page: such samples are skipped and counted when loaded)."""
        lengths = np.zeros(self._length, np.int64)
        with self.env.begin() as txn:
            for i in range(self._length):
                try:
                    raw = txn.get(label_key(i + 1))
                    lengths[i] = len(raw.decode("utf-8")) if raw is not None else 0
                except (UnicodeDecodeError, lmdb.Error):
                    continue
        return lengths

    def get(self, index: int, decode_height: int | None = None) -> tuple[np.ndarray, str]:
        """``(RGB uint8 image, label)``; raises SampleSkipped for a missing, undecodable or damaged image or
        label. ``decode_height``: a reduced-size JPEG decode that stays this tall (``images.decode_image``)."""
        number = self._number(index)
        image_bytes, raw_label = self._read(number, image_key(number), label_key(number))
        source = f"{self.path}[{number}]"
        if image_bytes is None:
            raise SampleSkipped("missing_image", source)
        label = self._decode_label(raw_label, number)
        return decode_image(image_bytes, source, decode_height), label

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
