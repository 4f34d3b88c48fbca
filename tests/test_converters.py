"""Converters on small generated trees (CJK names, broken rows, missing files) and on 3 real ICDAR 2015 images."""

from __future__ import annotations

import argparse
import json
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from ocrforge import cli_data
from ocrforge.data.converters.det_labels import (
    TextRegion,
    parse_icdar2015_line,
    read_icdar2015,
    read_paddle_det,
    write_icdar2015,
)
from ocrforge.data.geometry import order_quad, region_quad
from ocrforge.data.images import read_image
from ocrforge.data.lmdb_store import LmdbReader
from ocrforge.data.rec_labels import read_rec_labels
from ocrforge.errors import DataError

ICDAR = Path("/work/shared/data/icdar2015_train")
needs_icdar = pytest.mark.skipif(not ICDAR.is_dir(), reason="ICDAR 2015 training data not present")


def _run(argv: list[str]) -> int | None:
    parser = argparse.ArgumentParser(prog="ocrforge")
    cli_data.add_parsers(parser.add_subparsers(dest="command", required=True))
    return cli_data.run(parser.parse_args(argv))


def _write_png(path: Path, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imencode(".png", np.full((16, 16, 3), value, np.uint8))[1].tofile(str(path))


# ------------------------------------------------------------------------------------------------- char folders
def _char_tree(tmp_path: Path) -> tuple[Path, Path, Path]:
    data = tmp_path / "binarized_data"
    for n in range(30):
        _write_png(data / "5378" / f"紅_{n}.png")
    for n in range(4):
        _write_png(data / "10474" / f"鰈_{n}.png")
    _write_png(data / "1597" / "棼_0.png")
    _write_png(data / "1597" / "紅_7.png")  # name disagrees with the id: kept, counted
    _write_png(data / "42" / "weird name.png")  # does not follow <char>_<n>: kept, counted
    _write_png(data / "999" / "x_0.png")  # id missing from id2char
    _write_png(data / "5378" / "紅_99.png")  # on disk, not in the CSV
    rows = ["id,path,char"]  # columns in another order than path,char,id
    rows += [f"5378,binarized_data/5378/紅_{n}.png,紅" for n in range(30)]
    rows += [f"10474,binarized_data/10474/鰈_{n}.png,鰈" for n in range(3)]
    rows += [
        "10474,10474/鰈_3.png,鰈",  # relative to the data dir itself: also accepted
        "1597,binarized_data/1597/棼_0.png,棼",
        "1597,binarized_data/1597/紅_7.png,棼",
        "42,binarized_data/42/weird name.png,a",
        "5378,binarized_data/5378/紅_0.png,紅",  # duplicate
        "5378,binarized_data/5378/紅_404.png,紅",  # missing file
        "999,binarized_data/999/x_0.png,x",  # unknown id
        "5378,binarized_data/5378/紅_1.png,魚",  # char disagrees with id2char
        "10474,binarized_data/5378/紅_2.png,鰈",  # folder is another id
        "5378,binarized_data/5378/紅_3.png",  # wrong column count
        "5378,,紅",  # empty field
        "",
    ]
    csv_path = tmp_path / "finetune_data" / "samples.csv"
    csv_path.parent.mkdir()
    csv_path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    id2char = tmp_path / "finetune_data" / "id2char.json"
    id2char.write_text(json.dumps({"5378": "紅", "10474": "鰈", "01597": "棼", "42": "a", "7": ""},
                                  ensure_ascii=False), encoding="utf-8")
    return data, csv_path, id2char


def test_char_folders(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data, csv_path, id2char = _char_tree(tmp_path)
    out = tmp_path / "train_data"
    args = ["convert", "char-folders", "--data-dir", str(data), "--samples", str(csv_path), "--id2char",
            str(id2char), "--out", str(out), "--seed", "1"]
    assert _run(args) == 0
    printed = capsys.readouterr().out
    stats = json.loads((out / "dataset_stats.json").read_text(encoding="utf-8"))
    assert stats["rows"] == 44 and stats["samples"] == 37
    assert stats["problems"] == {"bad_row": 2, "missing_file": 1, "unknown_id": 1, "char_id_mismatch": 1,
                                 "folder_id_mismatch": 1, "duplicate_path": 1, "odd_file_name": 1,
                                 "file_name_char_mismatch": 1, "bad_id2char_entry": 1, "files_not_in_csv": 1}
    assert stats["samples_per_char"] == {"min": 1, "max": 30, "mean": 9.25} and stats["chars"] == 4
    assert "missing_file: 1 (dropped)" in printed and "odd_file_name: 1 (kept)" in printed
    assert str(tmp_path) in printed  # tells the user which data root to train with

    train = (out / "train_list.txt").read_text(encoding="utf-8").splitlines()
    val = (out / "val_list.txt").read_text(encoding="utf-8").splitlines()
    assert len(train) + len(val) == 37 and not set(train) & set(val)
    assert "binarized_data/10474/鰈_3.png\t鰈" in train + val and "binarized_data/42/weird name.png\ta" in train
    val_chars = Counter(line.split("\t")[1] for line in val)
    assert val_chars["紅"] == 3 and "a" not in val_chars  # 10% of each character; a lone sample stays in train
    assert stats["train"] == len(train) and stats["val"] == len(val)
    assert (out / "custom_dict.txt").read_text(encoding="utf-8").splitlines() == ["紅", "鰈", "棼", "a"]
    samples, skips = read_rec_labels([out / "train_list.txt"], data_root=tmp_path)
    assert not skips and all(read_image(p).shape == (16, 16, 3) for p, _ in samples)

    again = tmp_path / "again"
    assert _run([*args[:-3], str(again), "--seed", "1"]) == 0
    assert (again / "val_list.txt").read_text(encoding="utf-8").splitlines() == val


def test_char_folders_unusable_inputs(tmp_path: Path) -> None:
    data, csv_path, id2char = _char_tree(tmp_path)
    bad_header = tmp_path / "bad.csv"
    bad_header.write_text("file_id,label_text\n1,a\n", encoding="utf-8")
    with pytest.raises(DataError, match="needs a path column"):
        _run(["convert", "char-folders", "--data-dir", str(data), "--samples", str(bad_header), "--id2char",
              str(id2char), "--out", str(tmp_path / "o")])
    no_match = tmp_path / "none.json"
    no_match.write_text('{"1": "z"}', encoding="utf-8")
    with pytest.raises(DataError, match=r"no usable samples.*unknown_id"):
        _run(["convert", "char-folders", "--data-dir", str(data), "--samples", str(csv_path), "--id2char",
              str(no_match), "--out", str(tmp_path / "o")])


# ------------------------------------------------------------------------------------------------------ to-lmdb
def test_to_lmdb(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _write_png(tmp_path / "imgs" / "字_1.png", 10)
    _write_png(tmp_path / "imgs" / "b.png", 20)
    (tmp_path / "imgs" / "broken.png").write_bytes(b"\x89PNG truncated")
    labels = tmp_path / "labels" / "train.txt"
    labels.parent.mkdir()
    labels.write_text("imgs/字_1.png\t漢字\nimgs/b.png\tb c\nimgs/broken.png\tx\nimgs/missing.png\ty\n"
                      "no tab\nimgs/b.png\t\n", encoding="utf-8")
    out = tmp_path / "lmdb"
    assert _run(["convert", "to-lmdb", str(labels), "--out", str(out), "--data-root", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["samples"] == 2
    assert report["skipped"] == {"empty_label": 1, "malformed_line": 1, "missing_image": 1, "unreadable_image": 1}
    reader = LmdbReader(out)
    assert [reader.get(i)[1] for i in range(len(reader))] == ["漢字", "b c"]
    assert int(reader.get(0)[0][0, 0, 0]) == 10
    with pytest.raises(DataError, match="already holds"):
        _run(["convert", "to-lmdb", str(labels), "--out", str(out), "--data-root", str(tmp_path)])


# ----------------------------------------------------------------------------------------- detection label files
def test_icdar2015_parser_bom_crlf_commas_and_bad_lines(tmp_path: Path) -> None:
    gt = tmp_path / "gt_img.txt"
    gt.write_bytes("\ufeff1,2,30,2,30,12,1,12,Hello, world\r\n"
                   "5,5,9,5,9,9,5,9,###\r\n"
                   "1,2,3,4,oops\r\n"
                   "\r\n"
                   "1.5,2,30,2,30,12,1,12,$5,000\r\n".encode())
    skips: Counter = Counter()
    regions = read_icdar2015(gt, skips)
    assert skips == Counter(bad_line=1)
    assert [(r.text, r.ignore) for r in regions] == [("Hello, world", False), ("###", True), ("$5,000", False)]
    assert regions[0].points.shape == (4, 2) and regions[2].points[0, 0] == 1.5
    assert parse_icdar2015_line("1,2,3,4,5,6,7,nan,x") is None


def test_paddle_det_parser(tmp_path: Path) -> None:
    labels = tmp_path / "det.txt"
    good = [{"transcription": "日本", "points": [[0, 0], [10, 0], [10, 5], [0, 5]]},
            {"transcription": "*", "points": [[0, 0], [4, 0], [4, 4], [0, 4]]},
            {"transcription": "x", "points": "bad"}]
    labels.write_text(f"imgs/a b.jpg\t{json.dumps(good, ensure_ascii=False)}\nimgs/c.jpg\t[{{broken\n"
                      "no tab at all\n", encoding="utf-8")
    skips: Counter = Counter()
    samples = read_paddle_det(labels, tmp_path, skips)
    assert skips == Counter(bad_line=2, bad_region=1)
    assert samples[0].image == tmp_path / "imgs" / "a b.jpg"
    assert [(r.text, r.ignore) for r in samples[0].regions] == [("日本", False), ("*", True)]


def test_order_quad_is_clockwise_from_the_annotated_start() -> None:
    quad = np.float32([[10, 0], [10, 5], [0, 5], [0, 0]])  # starts top-right
    assert order_quad(quad).tolist() == [[0, 0], [10, 0], [10, 5], [0, 5]]
    counter_clockwise = np.float32([[0, 0], [0, 5], [10, 5], [10, 0]])
    assert order_quad(counter_clockwise, start=counter_clockwise[0]).tolist() == [[0, 0], [10, 0], [10, 5], [0, 5]]
    upside_down = np.float32([[10, 5], [0, 5], [0, 0], [10, 0]])  # text read right to left, upside down
    assert order_quad(upside_down, start=upside_down[0]).tolist() == upside_down.tolist()


# ------------------------------------------------------------------------------------------------ det-to-crops
def _icdar_subset(tmp_path: Path) -> tuple[Path, Path, int]:
    images, gts = tmp_path / "images", tmp_path / "gt"
    images.mkdir()
    gts.mkdir()
    readable = 0
    for name, new in (("img_1", "img_1"), ("img_2", "圖 2"), ("img_8", "img_8")):
        shutil.copy(ICDAR / "ch4_training_images" / f"{name}.jpg", images / f"{new}.jpg")
        gt = ICDAR / "ch4_training_localization_transcription_gt" / f"gt_{name}.txt"
        shutil.copy(gt, gts / f"gt_{new}.txt")
        readable += sum(1 for r in read_icdar2015(gt, Counter()) if not r.ignore)
    # An extra file for img_8 with what real annotations get wrong.
    shutil.copy(images / "img_8.jpg", images / "extra.jpg")
    (gts / "gt_extra.txt").write_text("10,10,10,10,10,10,10,10,dot\n5000,5000,5100,5000,5100,5050,5000,5050,far\n"
                                      "1,2,3\n20,20,120,20,120,60,20,60, \n", encoding="utf-8")
    (gts / "gt_no_image.txt").write_text("1,1,9,1,9,9,1,9,lost\n", encoding="utf-8")
    (gts / "gt_img_1_latin1.txt").write_bytes("1,1,9,1,9,9,1,9,Caf\u00e9\n".encode("latin-1"))
    return images, gts, readable


@needs_icdar
def test_det_to_crops_on_real_icdar_images(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    images, gts, readable = _icdar_subset(tmp_path)
    out = tmp_path / "rec"
    assert _run(["convert", "det-to-crops", "--format", "icdar2015", "--images", str(images), "--labels", str(gts),
                 "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["crops"] == readable == 10
    assert report["skipped"] == {"bad_line": 1, "degenerate_polygon": 1, "dont_care": 7, "empty_text": 1,
                                 "missing_image": 1, "polygon_outside_image": 1, "region_without_image": 1,
                                 "undecodable_label_file": 1}
    samples, skips = read_rec_labels([out / "labels.txt"])
    assert not skips and len(samples) == 10
    assert ("Genaxis Theatre" in {label for _, label in samples}) and any("圖 2_" in p for p, _ in samples)
    for path, _ in samples:
        crop = read_image(path)
        assert crop.size and crop.std() > 5  # real content, not a flat border fill
    first = read_image(samples[0][0])  # "Genaxis Theatre": a wide, upright word
    assert first.shape[1] > 4 * first.shape[0]


@needs_icdar
def test_det_format_round_trip_gives_the_same_crops(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    images, gts, _ = _icdar_subset(tmp_path)
    for extra in ("gt_extra.txt", "gt_no_image.txt", "gt_img_1_latin1.txt"):
        (gts / extra).unlink()
    paddle = tmp_path / "paddle" / "det.txt"
    assert _run(["convert", "det-format", "--from", "icdar2015", "--to", "paddle", "--images", str(images),
                 "--labels", str(gts), "--out", str(paddle)]) == 0
    assert paddle.read_text(encoding="utf-8").startswith("img_1.jpg\t[{\"transcription\": \"Genaxis Theatre\"")
    back = tmp_path / "gt_back"
    assert _run(["convert", "det-format", "--from", "paddle", "--to", "icdar2015", "--images", str(images),
                 "--labels", str(paddle), "--out", str(back)]) == 0
    for gt in gts.iterdir():
        assert [r.text for r in read_icdar2015(back / gt.name, Counter())] == [
            r.text for r in read_icdar2015(gt, Counter())]
    capsys.readouterr()
    for fmt, labels, out in (("icdar2015", gts, tmp_path / "a"), ("paddle", paddle, tmp_path / "b")):
        assert _run(["convert", "det-to-crops", "--format", fmt, "--images", str(images), "--labels", str(labels),
                     "--out", str(out)]) == 0
    a = sorted((tmp_path / "a" / "crops").iterdir())
    b = sorted((tmp_path / "b" / "crops").iterdir())
    assert [p.name for p in a] == [p.name for p in b] and len(a) == 10
    assert np.array_equal(read_image(a[3]), read_image(b[3]))


def test_polygons_become_quads_from_the_right_corner(tmp_path: Path) -> None:
    # A detector's polygon may start anywhere (here top-right): its quad starts at the geometric top-left.
    from_top_right = np.float32([[60, 50], [60, 70], [30, 72], [5, 70], [5, 50], [30, 48]])
    quad = region_quad(from_top_right, annotated=False)
    assert quad[0][0] < 10 and quad[0][1] < 55 and quad[2][0] > 55 and quad[2][1] > 65
    # An annotated polygon keeps its text's own start when written as an ICDAR quad (upside-down text stays so).
    upside_down = np.float32([[60, 70], [30, 72], [5, 70], [5, 50], [30, 48], [60, 50]])  # starts bottom-right
    skips: Counter = Counter()
    write_icdar2015([TextRegion(upside_down, "hex")], tmp_path / "gt_x.txt", skips)
    (region,) = read_icdar2015(tmp_path / "gt_x.txt", Counter())
    assert skips == {"polygon_to_quad": 1}
    assert np.abs(region.points[0] - upside_down[0]).max() <= 3
