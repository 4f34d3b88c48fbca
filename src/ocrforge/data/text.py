"""Random text for synthetic images whose content does not matter beyond looking like writing."""

from __future__ import annotations

import numpy as np

# English letter frequencies (per mille): pseudo-words then have realistic ascender/descender/x-height mixes,
# which is what orientation classifiers key on.
_LETTERS = "etaoinshrdlcumwfgypbvkjxqz"
_FREQ = np.array([127, 91, 82, 75, 70, 67, 63, 61, 60, 43, 40, 28, 28, 24, 24, 22, 20, 20, 19, 15, 10, 8, 2, 2, 1, 1],
                 dtype=np.float64)
_FREQ /= _FREQ.sum()
_PUNCT = [",", ".", ":", ";", "!", "?", ""]


def pseudo_word(rng: np.random.Generator) -> str:
    kind = rng.random()
    if kind < 0.08:
        return str(rng.integers(0, 10 ** int(rng.integers(1, 6))))
    length = int(rng.integers(1, 10))
    word = "".join(rng.choice(list(_LETTERS), size=length, p=_FREQ))
    if kind < 0.25:
        word = word.capitalize()
    elif kind < 0.28:
        word = word.upper()
    if rng.random() < 0.12:
        word += _PUNCT[int(rng.integers(0, len(_PUNCT)))]
    return word


def pseudo_line(rng: np.random.Generator, min_words: int = 1, max_words: int = 7) -> str:
    return " ".join(pseudo_word(rng) for _ in range(int(rng.integers(min_words, max_words + 1))))
