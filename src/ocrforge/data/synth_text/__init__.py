"""Synthetic word and short-line images for text recognition: realistic text, many fonts, photographic effects.

``SynthWordsDataset`` is the entry point for training; ``WordRenderer`` and ``TextSampler`` are its parts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from ..charset import Charset
from .corpus import DEFAULT_KINDS, DEFAULT_LANGUAGES, TextSampler
from .fonts_pack import pack_dir
from .render import SynthWord, WordRenderer

__all__ = ["DEFAULT_KINDS", "DEFAULT_LANGUAGES", "SynthWord", "SynthWordsDataset", "TextSampler", "WordRenderer",
           "pack_dir"]


class SynthWordsDataset(Dataset):
    """``num_samples`` rendered words/short lines; ``charset`` is a Charset, a built-in charset name or a dictionary
    file, and restricts the text. Items: ``{"image": HxWx3 uint8, "label": str, "path": "synth://words/<seed>/<i>"}``.
    """

    def __init__(self, num_samples: int = 10000, seed: int = 0, charset: Charset | str | None = None,
                 height: int = 32, fonts_dir: str | Sequence[str] | None = None, include_pack: bool = True,
                 include_matplotlib: bool = True, min_len: int = 1, max_len: int = 25, clean: bool = False,
                 **sampler_kwargs: Any) -> None:
        if isinstance(charset, (str, Path)):
            charset = Charset.load(charset)
        dirs = (fonts_dir,) if isinstance(fonts_dir, (str, Path)) else tuple(fonts_dir or ())
        self.num_samples, self.seed = num_samples, seed
        self.renderer = WordRenderer(dirs, include_pack, include_matplotlib, height, seed, charset, min_len, max_len,
                                     clean=clean, **sampler_kwargs)

    def __len__(self) -> int:
        return self.num_samples

    @property
    def stats(self) -> Counter:
        """Font fallbacks, re-drawn and folded texts so far in this process (each DataLoader worker counts its own)."""
        return self.renderer.stats + getattr(self.renderer.sampler, "stats", Counter())

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.num_samples:
            raise IndexError(index)
        word = self.renderer.render(index)
        return {"image": word.image, "label": word.text, "path": f"synth://words/{self.seed}/{index}"}
