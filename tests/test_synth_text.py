"""Synthetic word renderer: realistic text, font pack, glyph fallback, determinism, crops and their padding."""

from __future__ import annotations

import itertools
import os
import pickle
import re
import shutil
import string
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import wordfreq
from PIL import ImageFont

from ocrforge.data.charset import Charset
from ocrforge.data.fonts import discover_fonts
from ocrforge.data.synth_text import DEFAULT_LANGUAGES, SynthWordsDataset, TextSampler, WordRenderer, pack_dir
from ocrforge.data.synth_text.fonts_pack import _NO_LIGATURES, cached_font, has_kerning

CJK_TEXT = "東京 Tokyo"
# Where operating systems keep CJK fonts (.ttc collections are not read by ocrforge.data.fonts, so only single fonts).
_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts", "/Library/Fonts",
              "/System/Library/Fonts", "C:/Windows/Fonts")
_CJK_NAME = re.compile(r"cjk|wqy|droidsansfallback|sourcehan|notosans(sc|tc|jp|kr)|notoserif(sc|tc|jp|kr)|ipag|ipam|"
                       r"takao|simhei|simsun|msyh|hiragino", re.I)


class ScriptedSampler:
    """Returns the given texts in turn (a stand-in for TextSampler)."""

    def __init__(self, *texts: str) -> None:
        self.texts, self.calls = texts, 0

    def sample(self, rng: np.random.Generator) -> str:
        text = self.texts[min(self.calls, len(self.texts) - 1)]
        self.calls += 1
        return text


@pytest.fixture(scope="module")
def renderer() -> WordRenderer:
    return WordRenderer(seed=7)


def test_sampler_is_deterministic_realistic_and_in_length(renderer: WordRenderer) -> None:
    sampler = renderer.sampler
    first = [sampler.sample(np.random.default_rng([1, i])) for i in range(120)]
    again = [sampler.sample(np.random.default_rng([1, i])) for i in range(120)]
    assert first == again
    streams = TextSampler(seed=5), TextSampler(seed=5)
    assert [streams[0].sample() for _ in range(5)] == [streams[1].sample() for _ in range(5)]
    assert all(1 <= len(t) <= 25 and t == t.strip() for t in first)
    words = [t for t in first if t.isalpha()]
    assert len(words) > 25  # real words of the seven languages dominate ...
    # wordfreq's small lists (quick to load) hold the common part of the vocabulary that most draws come from.
    known = [w for w in words if max(wordfreq.zipf_frequency(w, lang, wordlist="small") for lang in DEFAULT_LANGUAGES)]
    assert len(known) >= 0.8 * len(words)
    assert any(any(c.isdigit() for c in t) for t in first)  # ... with numbers, dates, amounts and codes
    assert any(c in "€$£" for t in first for c in t)
    assert len(set(first)) > 100


def test_sampler_restricts_to_charset_and_counts() -> None:
    charset = Charset(string.digits + string.ascii_lowercase)
    sampler = TextSampler(charset=charset, max_len=12)
    texts = [sampler.sample(np.random.default_rng([2, i])) for i in range(200)]
    assert all(set(t) <= set(charset.chars) for t in texts)
    assert sampler.stats["redrawn_out_of_charset"] > 0 and sampler.stats["case_folded"] > 0

    folding = TextSampler(charset=Charset(string.ascii_lowercase + " ", lowercase=True))
    texts = [folding.sample(np.random.default_rng([3, i])) for i in range(100)]
    assert any(c.isupper() for t in texts for c in t)  # kept: the Charset folds case when encoding
    assert all(set(t.lower()) <= set(string.ascii_lowercase + " ") for t in texts)

    digits = TextSampler(charset=Charset(string.digits))
    assert all(digits.sample(np.random.default_rng([4, i])).isdigit() for i in range(20))
    assert digits.stats["redrawn_out_of_charset"] > 0


def test_font_pack_loads_and_covers_ascii() -> None:
    pack = pack_dir()
    fonts = discover_fonts((str(pack),), include_matplotlib=False)
    files = sorted(pack.rglob("*.woff"))
    assert len(fonts) == len(files) >= 30
    alnum = string.ascii_letters + string.digits
    for info in fonts:
        assert info.covers(alnum + "€.,-/:"), info.path
        font = ImageFont.truetype(info.path, 24)
        assert font.getbbox("Hg")[2] > 0
    sources = (pack / "SOURCES.md").read_text()
    for family in {f.parent for f in files}:
        assert (family / "OFL.txt").is_file() or (family / "LICENSE.txt").is_file(), family
        assert f"`{family.name}`" in sources
    assert sum(f.stat().st_size for f in pack.rglob("*")) < 6_000_000


def test_render_is_deterministic(renderer: WordRenderer) -> None:
    other = WordRenderer(seed=7)
    for index in (0, 5):
        a, b = renderer.render(index), other.render(index)
        assert a.text == b.text and a.font == b.font
        np.testing.assert_array_equal(a.image, b.image)
    c, d = renderer.render(5), renderer.render(6)
    assert c.text != d.text or c.image.shape != d.image.shape or not np.array_equal(c.image, d.image)


def test_output_shapes_and_dtypes(renderer: WordRenderer) -> None:
    for index in range(30):
        word = renderer.render(index)
        assert word.image.dtype == np.uint8 and word.image.ndim == 3
        assert word.image.shape[0] == 32 and word.image.shape[1] >= 2 and word.image.shape[2] == 3
        assert word.image.flags["C_CONTIGUOUS"] and word.text
    tall = WordRenderer(seed=1, height=48, include_matplotlib=False).render(0)
    assert tall.image.shape[0] == 48


def test_padding_is_the_crops_own_background() -> None:
    clean = WordRenderer(seed=3, clean=True)
    for index in range(20):
        word = clean.render(index)
        image = word.image.astype(int)
        border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
        assert np.abs(np.median(border, axis=0) - word.background).max() <= 2, index
    noisy = WordRenderer(seed=3)
    close = 0
    for index in range(40):
        word = noisy.render(index)
        image = word.image.astype(int)
        # Table rules may cover an edge or two, so judge the border line closest to the ground colour.
        medians = [np.median(line, axis=0) for line in (image[0], image[-1], image[:, 0], image[:, -1])]
        edge = min(medians, key=lambda m: np.abs(m - word.background).max())
        close += np.abs(edge - word.background).max() < 60
        if min(word.background) > 150:  # light ground: the margin is light too, never black padding
            assert edge.mean() > 110, index
    assert close >= 36  # texture and lighting move some edges further


def test_text_no_font_covers_is_redrawn_and_counted() -> None:
    latin = WordRenderer(include_matplotlib=False, sampler=ScriptedSampler(CJK_TEXT, "Tokyo"))
    word = latin.render(0)
    assert word.text == "Tokyo"
    assert latin.stats["text_redrawn_no_font"] == 1


def _system_cjk_font() -> Path | None:
    for folder in _FONT_DIRS:
        root = Path(folder).expanduser()
        if root.is_dir():
            for path in root.rglob("*"):
                if path.suffix.lower() in (".ttf", ".otf", ".woff") and _CJK_NAME.search(path.name):
                    return path
    return None


def test_cjk_text_falls_back_to_a_cjk_font(tmp_path: Path) -> None:
    found = _system_cjk_font()
    if found is None:
        pytest.skip("no CJK .ttf/.otf/.woff font installed in the usual system font folders")
    shutil.copy(found, tmp_path / found.name)
    renderer = WordRenderer(fonts_dirs=(tmp_path,), include_matplotlib=False, sampler=ScriptedSampler(CJK_TEXT))
    words = [renderer.render(i) for i in range(3)]
    assert all(w.text == CJK_TEXT and Path(w.font).name == found.name for w in words)
    assert renderer.stats["font_fallback"] >= 1 and renderer.stats["text_redrawn_no_font"] == 0


def test_shaped_scripts_render_whole() -> None:
    dejavu = next(f.path for f in discover_fonts() if Path(f.path).name == "DejaVuSans.ttf")
    mask, (x0, y0, x1, y1) = cached_font(dejavu, 24).render("שלום", 4)
    assert mask.max() > 200 and x1 > x0 and y1 > y0


def test_dataset_items() -> None:
    dataset = SynthWordsDataset(num_samples=4, seed=3, charset="lowercase", include_matplotlib=False)
    assert len(dataset) == 4
    item = dataset[2]
    assert set(item) == {"image", "label", "path"}
    assert item["path"] == "synth://words/3/2"
    assert item["image"].shape[0] == 32 and item["image"].dtype == np.uint8
    assert set(item["label"]) <= set(string.digits + string.ascii_lowercase)
    assert all(isinstance(v, int) for v in dataset.stats.values())
    with pytest.raises(IndexError):
        dataset[4]
    clone = pickle.loads(pickle.dumps(dataset))  # DataLoader workers started with "spawn" receive a pickle
    assert clone[2]["label"] == item["label"] and np.array_equal(clone[2]["image"], item["image"])


def test_fonts_without_kerning_are_not_measured_and_measure_zero() -> None:
    """Pairs of a font with no 'kern' feature or table get 0 without a layout call; the layout engine agrees."""
    mono = str(next(pack_dir().glob("roboto-mono/*400*.woff")))
    kerned = str(next(pack_dir().glob("roboto/*latin-400-normal.woff")))
    assert not has_kerning(mono) and has_kerning(kerned)
    font = ImageFont.truetype(mono, 50)
    chars = string.ascii_letters + string.digits + ".,-/'"
    singles = {c: font.getlength(c, features=_NO_LIGATURES) for c in chars}
    for a, b in itertools.product(chars, repeat=2):
        assert font.getlength(a + b, features=_NO_LIGATURES) == singles[a] + singles[b], a + b
    assert cached_font(mono, 32)._kerning.adjust("AV") == 0.0
    assert cached_font(kerned, 32)._kerning.adjust("AV") < 0  # a kerning font is still measured


def test_overlapping_glyphs_keep_the_darker_coverage() -> None:
    """Glyphs are copied where the line is still blank and combined by maximum where they overlap (italics,
    negative kerning): the mask equals each glyph drawn alone and combined with np.maximum."""
    font = cached_font(str(next(pack_dir().glob("caveat/*400*.woff"))), 32)
    text = "AVAfjyTy"
    mask, _ = font.render(text, margin=4)
    expected = np.zeros_like(mask)
    for i in range(len(text)):  # glyph i alone: the prefix up to i minus the prefix before it, drawn onto its own
        prefix = font.render(text[:i + 1], margin=4)[0]
        expected[:prefix.shape[0], :prefix.shape[1]] = np.maximum(expected[:prefix.shape[0], :prefix.shape[1]],
                                                                  prefix)
    np.testing.assert_array_equal(mask, expected)


def test_text_is_the_same_in_every_process() -> None:
    """Faker's it_IT cities come from a set, whose order follows PYTHONHASHSEED: sorted, the same (seed, index)
    gives the same city in every process."""
    code = ("import numpy as np; from ocrforge.data.synth_text.corpus import TextSampler; "
            "s = TextSampler(0, kinds={'place': 1.0}, languages={'it': 1.0}); "
            "print([s._fake(np.random.default_rng([0, i]), 'it', 'city') for i in range(20)])")
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": str(hash_seed)}).stdout for hash_seed in (1, 2)}
    assert len(runs) == 1


def test_render_does_not_depend_on_what_was_rendered_before() -> None:
    """Each index draws from its own generator: order and repeats change nothing (DataLoader workers and resumed
    runs see indices in any order)."""
    a, b = WordRenderer(seed=7), WordRenderer(seed=7)
    first = [a.render(i).image for i in (3, 4, 5)]
    b.render(9)
    again = [b.render(i).image for i in (5, 4, 3)][::-1]
    for x, y in zip(first, again, strict=True):
        np.testing.assert_array_equal(x, y)


def test_border_colour_is_the_median_of_the_edge() -> None:
    from ocrforge.data.images import border_colour

    rng = np.random.default_rng(0)
    for shape in ((32, 120, 3), (32, 121, 3), (1, 1, 3), (2, 3, 3)):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        edge = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
        np.testing.assert_array_equal(border_colour(image), np.median(edge, axis=0).astype(np.uint8))
