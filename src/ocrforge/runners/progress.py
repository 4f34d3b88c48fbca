"""Progress and streamed results for runs over many images (``predict``, ``ocr``): a long run must never be silent,
and what is done must be on disk when the run is interrupted."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import TextIO

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

log = logging.getLogger("ocrforge")

# Without a bar (stderr not a terminal: a log file, a batch job), a count line this often.
PROGRESS_EVERY_S = 30.0


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


class Progress:
    """Images done out of ``total``, on stderr: a tqdm bar when stderr is a terminal and ``bar`` is set, else a line
    such as ``predict: 120/500 images (2.1/s, about 3 min left)`` every ``PROGRESS_EVERY_S`` seconds. Use it as a
    context manager; an interrupted run says how far it got."""

    def __init__(self, total: int, what: str, bar: bool = True) -> None:
        self.total, self.what, self.done = total, what, 0
        self._start = self._last = time.monotonic()
        self._bar = (tqdm(total=total, desc=what, unit="img", file=sys.stderr, dynamic_ncols=True)
                     if bar and sys.stderr.isatty() else None)
        self._stack = ExitStack()

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._stack.callback(self._bar.close)
            if log.handlers:  # the CLI's console handler: warnings (a skipped image) go above the bar, not into it
                self._stack.enter_context(logging_redirect_tqdm([log]))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self._stack.close()
        if exc_type is KeyboardInterrupt:
            print(f"{self.what}: interrupted after {self.done} of {self.total} images", file=sys.stderr, flush=True)

    def advance(self, count: int) -> None:
        """``count`` more images done (unreadable ones included)."""
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
            return
        now = time.monotonic()
        if now - self._last >= PROGRESS_EVERY_S and self.done < self.total:
            self._last = now
            rate = self.done / max(now - self._start, 1e-9)
            print(f"{self.what}: {self.done}/{self.total} images ({rate:.1f}/s, about "
                  f"{_duration((self.total - self.done) / rate) if rate else '?'} left)", file=sys.stderr, flush=True)

    def emit(self, handle: TextIO, rows: list[dict]) -> None:
        """Write ``rows`` as JSON lines and flush them: each result is in the file (or on the screen) as soon as its
        batch is done, and stays there if the run is interrupted."""
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        # With a bar, lift it while rows go to the same terminal (stdout and stderr on one screen).
        with tqdm.external_write_mode(file=handle) if self._bar is not None else nullcontext():
            handle.write(text)
            handle.flush()


@contextmanager
def open_output(out: str | Path | TextIO | None) -> Iterator[TextIO | None]:
    """``out`` as a text stream: a path is created (folder included) and closed afterwards, a stream (stdout) is
    used as it is, None stays None."""
    if out is None or not isinstance(out, (str, Path)):
        yield out
        return
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        yield handle
