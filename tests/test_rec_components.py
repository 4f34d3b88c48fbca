"""Recognition parts checked against hand-computed numbers: CTC decoding, metrics, resizing, ``ocrforge synth rec``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ocrforge.cli import main
from ocrforge.data.images import border_colour, read_image
from ocrforge.data.lmdb_store import LmdbReader, image_key
from ocrforge.tasks.rec.inference import UNKNOWN_TEXT, ctc_beam_search, ctc_greedy, resize_pad
from ocrforge.tasks.rec.metric import RecognitionMetric, char_matches, strip_symbols

TOKENS = ["<blank>", "a", "b"]

# Frames over (blank, a, b). Best path: a a _ a b b _  ->  "aab".
AAB = [[0.1, 0.6, 0.3],
       [0.2, 0.7, 0.1],  # repeated a: merged into the first a, whose score becomes max(0.6, 0.7)
       [0.8, 0.1, 0.1],  # blank: separates the two a's
       [0.3, 0.5, 0.2],  # a second a
       [0.1, 0.2, 0.7],
       [0.1, 0.1, 0.8],  # repeated b: score max(0.7, 0.8)
       [0.6, 0.2, 0.2]]
# Best path: a a a _ _ _ _  ->  "a" (no blank between the a's, so they are one character).
A_ONLY = [[0.1, 0.8, 0.1],
          [0.2, 0.6, 0.2],
          [0.3, 0.5, 0.2],
          [0.6, 0.3, 0.1], [0.6, 0.3, 0.1], [0.6, 0.3, 0.1], [0.6, 0.3, 0.1]]
# Blank wins every frame: the empty text, scored by the mean blank probability.
BLANKS = [[0.9, 0.05, 0.05], [0.7, 0.2, 0.1], [0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.9, 0.05, 0.05],
          [0.7, 0.2, 0.1], [0.8, 0.1, 0.1]]


def test_ctc_greedy_merges_repeats_and_drops_blanks() -> None:
    probs = np.array([AAB, A_ONLY, BLANKS], dtype=np.float64)
    aab, a_only, empty = ctc_greedy(probs, TOKENS)

    assert aab["text"] == "aab"
    assert aab["char_scores"] == pytest.approx([0.7, 0.5, 0.8])  # max frame probability within each run
    assert aab["score"] == pytest.approx((0.7 + 0.5 + 0.8) / 3)  # the mean, as PaddleOCR

    assert a_only["text"] == "a"
    assert a_only["char_scores"] == pytest.approx([0.8])
    assert a_only["score"] == pytest.approx(0.8)

    assert empty["text"] == "" and empty["char_scores"] == []
    assert empty["score"] == pytest.approx((0.9 + 0.7 + 0.8 + 0.6 + 0.9 + 0.7 + 0.8) / 7)


def test_ctc_greedy_unknown_token_prints_replacement_character() -> None:
    probs = np.array([[[0.1, 0.9, 0.0, 0.0], [0.9, 0.1, 0.0, 0.0], [0.1, 0.0, 0.0, 0.9]]])
    (result,) = ctc_greedy(probs, [*TOKENS, "<unk>"])
    assert result["text"] == "a" + UNKNOWN_TEXT


def test_ctc_beam_search_agrees_with_greedy_on_peaked_frames() -> None:
    # Each frame puts 0.9 on one class: a a _ a b b _ and b _ a, and no other labelling comes close.
    def peaked(path: str) -> list[list[float]]:
        return [[0.9 if "_ab".index(c) == k else 0.05 for k in range(3)] for c in path]

    probs = np.array([peaked("aa_abb_"), peaked("b_a____")])
    greedy = ctc_greedy(probs, TOKENS)
    beam = ctc_beam_search(probs, TOKENS, beam_width=5)
    assert [r["text"] for r in beam] == [r["text"] for r in greedy] == ["aab", "ba"]
    # The beam sums every alignment of the label, so it is at least the single best path's probability.
    for g, b in zip(greedy, beam, strict=True):
        assert b["score"] >= 0.9 ** 7 and 0.0 < b["score"] <= 1.0 + 1e-9
        assert g["score"] == pytest.approx(0.9)  # mean of the characters' best frames


def test_ctc_beam_search_finds_label_that_no_single_path_wins() -> None:
    # Two frames over (blank, a, b):
    #   t0: blank 0.25, a 0.35, b 0.40        t1: blank 0.40, a 0.35, b 0.25
    # Best path (argmax per frame) is (b, blank) with probability 0.40 * 0.40 = 0.16, so greedy reads "b".
    # Summing alignments (a path collapses to its label by merging repeats, then dropping blanks):
    #   "b" = bb + b_ + _b = 0.40*0.25 + 0.40*0.40 + 0.25*0.25 = 0.1 + 0.16 + 0.0625 = 0.3225
    #   "a" = aa + a_ + _a = 0.35*0.35 + 0.35*0.40 + 0.25*0.35 = 0.1225 + 0.14 + 0.0875 = 0.35
    #   ""  = 0.25*0.40 = 0.1;  "ab" = 0.35*0.25 = 0.0875;  "ba" = 0.40*0.35 = 0.14   (all five sum to 1)
    # "a" is the most probable label although none of its paths (best: a_ at 0.14) beats the path of "b" (0.16).
    probs = np.array([[[0.25, 0.35, 0.40], [0.40, 0.35, 0.25]]])
    (greedy,) = ctc_greedy(probs, TOKENS)
    assert greedy["text"] == "b" and greedy["score"] == pytest.approx(0.40)
    # A beam wide enough to keep every prefix (7 of them) loses no mass, so the score is P("a") itself.
    (beam,) = ctc_beam_search(probs, TOKENS, beam_width=10)
    assert beam["text"] == "a"
    assert beam["score"] == pytest.approx(0.35)
    # Width 2 drops the empty prefix after t0 and with it the paths _a and _b: "a" keeps 0.1225 + 0.14 = 0.2625,
    # "b" keeps 0.1 + 0.16 = 0.26, so "a" still (narrowly) wins.
    (narrow,) = ctc_beam_search(probs, TOKENS, beam_width=2)
    assert narrow["text"] == "a"


class _FixedDecode:
    """A decode function that ignores the model outputs and returns the next batch of fixed predictions."""

    def __init__(self, *batches: list[str]) -> None:
        self.batches = iter(batches)

    def __call__(self, outputs: dict) -> list[str]:
        return next(self.batches)


def test_recognition_metric_by_hand() -> None:
    #  pred      gt       exact  ignore-case  ignore-case+symbols  Levenshtein / max len   chars of gt kept
    #  Hello     Hello    yes    yes          yes                  0 / 5                   5
    #  hello!    Hello    no     no           yes                  2 / 6 (H->h, +!)        4 (H replaced)
    #  WORLD     world    no     yes          yes                  5 / 5                   0 (all replaced)
    #  cat       carts    no     no           no                   2 / 5 (-r, -s)          3 (r, s deleted)
    metric = RecognitionMetric(_FixedDecode(["Hello", "hello!"], ["WORLD", "cat"]))
    metric.update({}, {"text": ["Hello", "Hello"]})
    metric.update({}, {"text": ["world", "carts"]})
    result = {k: float(v) for k, v in metric.compute().items()}
    assert result["num_samples"] == 4
    assert result["acc"] == pytest.approx(1 / 4)
    assert result["acc_ignore_case"] == pytest.approx(2 / 4)
    assert result["acc_ignore_case_symbols"] == pytest.approx(3 / 4)
    assert result["norm_edit_dis"] == pytest.approx(1 - (0 + 2 / 6 + 5 / 5 + 2 / 5) / 4)  # 17/30
    hits, pred_chars, gt_chars = 5 + 4 + 0 + 3, 5 + 6 + 5 + 3, 5 + 5 + 5 + 5
    assert result["char_precision"] == pytest.approx(hits / pred_chars)  # 12/19
    assert result["char_recall"] == pytest.approx(hits / gt_chars)  # 12/20


def test_metric_helpers() -> None:
    assert char_matches("cat", "carts") == 3
    assert char_matches("", "abc") == 0 and char_matches("abc", "") == 0
    assert char_matches("xabcx", "abc") == 3  # insertions cost precision, not recall
    assert strip_symbols("«Total: 12,50 €!»") == "total1250"


def _bordered(h: int, w: int, border=(10, 20, 30), inside=(200, 100, 50)) -> np.ndarray:
    image = np.empty((h, w, 3), np.uint8)
    image[:] = border
    image[2:-2, 2:-2] = inside
    image[0, 0] = (255, 255, 255)  # one odd border pixel: the median ignores it
    return image


def test_resize_pad_keeps_aspect_and_pads_with_border_colour() -> None:
    image = _bordered(20, 50)
    assert border_colour(image).tolist() == [10, 20, 30]

    out, fraction = resize_pad(image, 32, 100)  # 50 * 32/20 = 80 wide, padded to 100
    assert out.shape == (32, 100, 3) and out.dtype == np.uint8
    assert fraction == pytest.approx(0.8)
    assert (out[:, 80:] == (10, 20, 30)).all()
    assert out[16, 40].tolist() == [200, 100, 50]

    out, fraction = resize_pad(image, 32, 100, pad_to=120)
    assert out.shape == (32, 120, 3) and fraction == pytest.approx(80 / 120)
    assert (out[:, 80:] == (10, 20, 30)).all()
    out, fraction = resize_pad(image, 32, 100, pad_to=50)  # never narrower than the resized text
    assert out.shape == (32, 80, 3) and fraction == 1.0

    out, fraction = resize_pad(_bordered(10, 100), 32, 100)  # 320 wide: capped at 100, no padding
    assert out.shape == (32, 100, 3) and fraction == 1.0

    out, fraction = resize_pad(_bordered(64, 48), 32, 100)  # shrunk: 48 * 32/64 = 24 wide
    assert out.shape == (32, 100, 3) and fraction == pytest.approx(0.24)
    assert (out[:, 24:] == (10, 20, 30)).all()


def _labels(folder: Path) -> list[tuple[str, str]]:
    lines = (folder / "labels.txt").read_text(encoding="utf-8").splitlines()
    return [tuple(line.split("\t")) for line in lines]


def test_synth_rec_cli_folder_and_lmdb(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder, again, db = tmp_path / "words", tmp_path / "again", tmp_path / "db"
    assert main(["synth", "rec", "--out", str(folder), "--num", "5", "--seed", "7"]) == 0
    summary = capsys.readouterr().out.strip()
    assert "\n" not in summary and "5 words" in summary and "words/s" in summary
    assert "font_fallback=" in summary and "text_redrawn_no_font=" in summary

    rows = _labels(folder)
    assert [path for path, _ in rows] == [f"images/{i:08d}.jpg" for i in range(5)]
    assert all(text for _, text in rows)
    for path, _ in rows:
        assert read_image(folder / path).shape[0] == 32
    assert not (folder / "labels.txt.partial").exists()

    # Same seed: the same labels and byte-identical JPEGs, in a folder or in an LMDB.
    assert main(["synth", "rec", "--out", str(again), "--num", "5", "--seed", "7"]) == 0
    assert _labels(again) == rows
    assert main(["synth", "rec", "--out", str(db), "--num", "5", "--seed", "7", "--lmdb"]) == 0
    reader = LmdbReader(db)
    try:
        assert len(reader) == 5
        assert [reader.label(i) for i in range(5)] == [text for _, text in rows]
        with reader.env.begin() as txn:
            for i, (path, _) in enumerate(rows):
                assert txn.get(image_key(i + 1)) == (folder / path).read_bytes() == (again / path).read_bytes()
        image, label = reader.get(0)
        assert image.shape[0] == 32 and image.shape[2] == 3 and label == rows[0][1]
    finally:
        reader.close()

    other = tmp_path / "other"
    assert main(["synth", "rec", "--out", str(other), "--num", "5", "--seed", "8"]) == 0
    assert [t for _, t in _labels(other)] != [t for _, t in rows]

    capsys.readouterr()
    assert main(["synth", "rec", "--out", str(folder), "--num", "5"]) == 2  # never overwrites
    assert "already exists" in capsys.readouterr().err
    assert main(["synth", "rec", "--out", str(db), "--num", "5", "--lmdb"]) == 2
    assert "already holds an LMDB" in capsys.readouterr().err


def test_synth_rec_cli_charset_file_and_height(tmp_path: Path) -> None:
    dict_file = tmp_path / "abc.txt"
    dict_file.write_text("a\nb\nc\n", encoding="utf-8")
    out = tmp_path / "abc"
    assert main(["synth", "rec", "--out", str(out), "--num", "3", "--seed", "1", "--height", "24",
                 "--charset", str(dict_file)]) == 0
    rows = _labels(out)
    assert len(rows) == 3 and all(set(text) <= set("abc") for _, text in rows)
    assert all(read_image(out / path).shape[0] == 24 for path, _ in rows)
    with pytest.raises(SystemExit):
        main(["synth", "rec", "--out", str(tmp_path / "none"), "--num", "0"])
    with pytest.raises(SystemExit):
        main(["synth", "rec", "--out", str(tmp_path / "none"), "--num", "1", "--height", "7"])
    assert not (tmp_path / "none").exists()
