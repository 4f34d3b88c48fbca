"""Recognition data: label files with sampling ratios, and the LMDB store read from several DataLoader workers."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from torch.utils.data import DataLoader, Dataset

from ocrforge.data.images import SampleSkipped
from ocrforge.data.lmdb_store import LmdbReader, LmdbWriter, image_key
from ocrforge.data.rec_labels import read_rec_labels, sample_by_ratio
from ocrforge.errors import DataError


def _label_file(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def test_ratios_skips_and_data_root(tmp_path: Path) -> None:
    big = _label_file(tmp_path / "big.txt", [f"img/{i}.png\tw{i}" for i in range(10)]
                      + ["no tab here", "img/e.png\t", "img/s.png\t   ", "img/long.png\t" + "x" * 30])
    small = _label_file(tmp_path / "small.txt", ["s/0.png\t小", "s/1.png\t字"])
    root = tmp_path / "root"
    root.mkdir()
    samples, skips = read_rec_labels([big, small], data_root=root, ratios=[0.5, 2.5], max_length=25, seed=3)
    assert skips == Counter(malformed_line=1, empty_label=2, label_too_long=1)
    from_big = [s for s in samples if "img/" in s[0]]
    assert len(from_big) == 5 and len(set(from_big)) == 5
    assert all(p.startswith(str(root)) for p, _ in samples)
    labels = Counter(label for p, label in samples if "/s/" in p)
    assert sum(labels.values()) == 5 and set(labels.values()) <= {2, 3}  # 2 copies + a random half of 2 files
    again, _ = read_rec_labels([big, small], data_root=root, ratios=[0.5, 2.5], max_length=25, seed=3)
    other, _ = read_rec_labels([big, small], data_root=root, ratios=[0.5, 2.5], max_length=25, seed=4)
    assert again == samples and other != samples
    everything, _ = read_rec_labels([big], ratios=1.0)  # default root: the label file's folder
    assert len(everything) == 11 and everything[0][0] == str(tmp_path / "img/0.png")


def test_ratio_validation(tmp_path: Path) -> None:
    file = _label_file(tmp_path / "a.txt", ["a.png\ta"])
    with pytest.raises(DataError, match="2 sampling ratios for 1"):
        read_rec_labels([file], ratios=[1, 1])
    with pytest.raises(DataError, match=">= 0"):
        read_rec_labels([file], ratios=-1)
    assert read_rec_labels([file], ratios=0)[0] == []
    assert sample_by_ratio(list("abcd"), 0.0, np.random.default_rng(0)) == []


def _png(value: int, width: int = 12) -> bytes:
    """First row ``value``, the rest noise (so PNGs do not compress to nothing)."""
    image = np.random.default_rng(value).integers(0, 256, (8, width, 3), dtype=np.uint8)
    image[0] = value
    return cv2.imencode(".png", image)[1].tobytes()


def _write_store(path: Path, count: int) -> None:
    with LmdbWriter(path, commit_every=3, map_size=1 << 16) as writer:  # a 64 KiB map that must grow
        for i in range(count):
            writer.add(_png(i * 10, width=400), f"標籤{i}")
    assert (path / "data.mdb").stat().st_size > 1 << 16


def test_lmdb_round_trip_and_bad_records(tmp_path: Path) -> None:
    store = tmp_path / "lmdb"
    _write_store(store, 7)
    reader = LmdbReader(store)
    assert len(reader) == 7
    image, label = reader.get(6)
    assert image.dtype == np.uint8 and image.shape == (8, 400, 3) and int(image[0, 0, 0]) == 60
    assert label == "標籤6" and reader.label(-1) == "標籤6"
    with pytest.raises(IndexError):
        reader.get(7)
    reader.close()
    with pytest.raises(DataError, match="already holds"):
        LmdbWriter(store)

    broken = tmp_path / "broken"
    with LmdbWriter(broken) as writer:
        writer.add(b"not an image", "x")
        writer.add(_png(1), "y")
    import lmdb

    with lmdb.open(str(broken)) as env, env.begin(write=True) as txn:
        txn.delete(image_key(2))
    reader = LmdbReader(broken)
    with pytest.raises(SampleSkipped) as bad:
        reader.get(0)
    assert bad.value.reason == "unreadable_image"
    with pytest.raises(SampleSkipped) as missing:
        reader.get(1)
    assert missing.value.reason == "missing_image"


def test_interrupted_write_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), LmdbWriter(tmp_path / "partial") as writer:
        writer.add(_png(0), "a")
        raise RuntimeError("interrupted")
    with pytest.raises(DataError, match="num-samples"):
        LmdbReader(tmp_path / "partial")
    with pytest.raises(DataError, match="no LMDB"):
        LmdbReader(tmp_path / "nothing")


class _Wrapped(Dataset):
    def __init__(self, reader: LmdbReader) -> None:
        self.reader = reader
        self.parent_env = reader.env  # opened before the fork on purpose: workers must not reuse it

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int) -> dict:
        image, label = self.reader.get(index)
        env = self.reader.env
        return {"pixel": int(image[0, 0, 0]), "label": label, "pid": os.getpid(), "env": id(env),
                "inherited": env is self.parent_env}


def test_lmdb_in_two_dataloader_workers(tmp_path: Path) -> None:
    store = tmp_path / "lmdb"
    _write_store(store, 12)
    reader = LmdbReader(store)
    dataset = _Wrapped(reader)
    loader = DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=list)
    rows = [row for batch in loader for row in batch]
    assert sorted(r["pixel"] for r in rows) == [i * 10 for i in range(12)]
    assert {r["label"] for r in rows} == {f"標籤{i}" for i in range(12)}
    pids = {r["pid"] for r in rows}
    assert len(pids) == 2 and os.getpid() not in pids
    assert not any(r["inherited"] for r in rows)
    for pid in pids:  # one environment per worker, kept for all of its samples
        assert len({r["env"] for r in rows if r["pid"] == pid}) == 1
    # The parent's environment survived the workers, and a second reader of the same files shares it.
    assert reader.env is dataset.parent_env and reader.get(0)[1] == "標籤0"
    assert LmdbReader(store).env is reader.env
