"""``path<TAB>label`` files -> recognition LMDB, decoding every image once so that no broken sample gets in."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..images import SampleSkipped, decode_image
from ..lmdb_store import LmdbWriter
from ..rec_labels import read_rec_labels


def labels_to_lmdb(label_files: Sequence[str | Path], out: str | Path, data_root: str | Path | None = None,
                   max_length: int | None = None, commit_every: int = 1000) -> dict:
    """Store the original encoded bytes of every decodable image with its label; skips are counted by reason
    (label-file reasons from ``read_rec_labels``, plus ``missing_image`` and ``unreadable_image``)."""
    samples, skips = read_rec_labels(label_files, data_root, max_length=max_length)
    if not samples:
        raise DataError(f"no usable lines in {', '.join(map(str, label_files))} (skipped: {dict(skips) or 'none'})")
    writer: LmdbWriter | None = None
    try:
        for path, label in samples:
            try:
                data = np.fromfile(path, dtype=np.uint8)  # np.fromfile: non-ASCII paths, same as read_image
            except OSError:
                skips["missing_image"] += 1
                continue
            try:
                decode_image(data, path)
            except SampleSkipped as exc:
                skips[exc.reason] += 1
                continue
            # Opened on the first good image, so a run with nothing usable leaves no database behind.
            writer = writer or LmdbWriter(out, commit_every=commit_every)
            writer.add(data.tobytes(), label)
    except BaseException:
        if writer is not None:
            writer.close(complete=False)
        raise
    if writer is None:
        raise DataError(f"none of the {len(samples)} images could be read (skipped: {dict(skips)})")
    writer.close()
    return {"samples": writer.count, "listed": len(samples), "skipped": dict(sorted(skips.items())), "out": str(out)}
