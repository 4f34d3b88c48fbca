"""Charset: dictionary files (CJK, space line, CRLF), built-ins, policies for foreign characters, ``dict build``."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import pytest

from ocrforge import cli_data
from ocrforge.data.charset import BLANK, UNKNOWN_TEXT, Charset, build_charset, read_dict_file, write_dict_file
from ocrforge.errors import DataError


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ocrforge")
    cli_data.add_parsers(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_dict_file_cjk_space_line_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "dict.txt"
    path.write_bytes("\ufeff紅\r\n鰈\n \na".encode())  # BOM, CRLF, a space line, no final newline
    assert read_dict_file(path) == ["紅", "鰈", " ", "a"]
    charset = Charset.from_file(path)
    assert charset.num_classes == 5 and charset.tokens[0] == "<blank>"
    ids = charset.encode("紅 a鰈")
    assert ids == [1, 3, 4, 2] and BLANK not in ids
    assert charset.decode(ids) == "紅 a鰈"


def test_bad_dict_lines_are_errors_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "dict.txt"
    path.write_text("a\n\nbc\n\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 2: '' is 0 code points.*line 4: '' is 0"):
        read_dict_file(path)


def test_multi_code_point_entries_keep_class_ids_and_never_match(tmp_path: Path) -> None:
    # PP-OCRv5's dictionary holds flag emoji (two code points each): kept so later ids stay PaddleOCR's.
    path = tmp_path / "dict.txt"
    path.write_text("a\n\U0001F1E9\U0001F1EA\nb\n", encoding="utf-8")
    charset = Charset.from_file(path, oov="skip")
    assert charset.tokens == ["<blank>", "a", "\U0001F1E9\U0001F1EA", "b"]
    assert charset.encode("ab") == [1, 3]
    assert charset.decode([2, 3]) == "\U0001F1E9\U0001F1EAb"
    assert charset.encode_label("\U0001F1E9\U0001F1EA", Counter()) == "out_of_dict"
    with pytest.raises(DataError, match="not found"):
        Charset.from_file(tmp_path / "missing.txt")


def test_builtins_space_and_lowercase() -> None:
    printable = Charset.load("printable")
    assert " " not in printable and len(printable.chars) == 94
    assert " " in Charset.load("printable_space")
    assert " " in Charset.builtin("digits", use_space_char=True)
    assert Charset.builtin("digits", use_space_char=True).decode([1, 11, 2]) == "0 1"
    folded = Charset.builtin("lowercase", lowercase=True)
    assert folded.encode("AbC9") == folded.encode("abc9")
    with pytest.raises(DataError, match="unknown built-in"):
        Charset.builtin("klingon")


def test_duplicates_keep_class_ids_aligned_with_the_file(caplog: pytest.LogCaptureFixture) -> None:
    charset = Charset(["a", "b", "a"], name="dup")
    assert charset.num_classes == 4 and charset.duplicates == ["a"]
    assert charset.encode("a") == [1] and "duplicate" in caplog.text


def test_decode_ctc_collapse_and_range() -> None:
    charset = Charset("ab")
    assert charset.decode([1, 1, 0, 1, 2, 2, 0], collapse_repeats=True) == "aab"
    assert charset.decode([1, 1, 0, 2]) == "aab"
    with pytest.raises(ValueError, match="outside"):
        charset.decode([3])


def test_out_of_dict_policies_are_counted() -> None:
    counts: Counter = Counter()
    with pytest.raises(DataError, match="not in the dictionary"):
        Charset("abc").encode_label("abz", counts)
    assert counts == Counter(out_of_dict_label=1, out_of_dict_char=1)

    counts.clear()
    skip = Charset("abc", oov="skip", lowercase=True)
    assert skip.encode_label("ABC", counts) == [1, 2, 3]
    assert skip.encode_label("zz", counts) == "out_of_dict"
    assert skip.encode_label("", counts) == "empty_label"
    assert counts == Counter(case_folded=1, out_of_dict_label=1, out_of_dict_char=2, empty_label=1)

    counts.clear()
    unk = Charset("abc", oov="unknown")
    assert unk.unknown_id == 4 and unk.tokens[-1] == "<unk>" and unk.num_classes == 5
    assert unk.encode_label("a紅c", counts) == [1, 4, 3]
    assert unk.decode([1, 4, 3]) == f"a{UNKNOWN_TEXT}c"
    assert counts == Counter(out_of_dict_label=1, out_of_dict_char=1, mapped_to_unknown=1)
    with pytest.raises(DataError, match="policy"):
        Charset("abc", oov="ignore")


def test_build_charset_orders_by_frequency_then_code_point(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("a.png\tbab\nb.png\t紅 b\nbroken line\nc.png\t\n", encoding="utf-8")
    stats: Counter = Counter()
    chars, counts = build_charset([labels], stats=stats)
    assert chars == ["b", "a", "紅"] and counts[" "] == 1
    assert stats == Counter(labels=2, malformed_line=1, empty_label=1)
    with_space, _ = build_charset([labels], include_space=True)
    assert with_space == ["b", " ", "a", "紅"]  # ties broken by code point: ' ' < 'a'
    for bad in (["a\nb"], [""], ["x\r"]):  # each would read back as other entries
        with pytest.raises(DataError, match="cannot write"):
            write_dict_file(bad, tmp_path / "x.txt")


def test_dict_build_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("a.png\tHello World\nb.png\t世界\n", encoding="utf-8")
    out = tmp_path / "out" / "dict.txt"
    assert cli_data.run(_parse(["dict", "build", str(labels), "--out", str(out), "--lowercase"])) == 0
    printed = capsys.readouterr().out
    assert "2 labels, 10 distinct characters" in printed and "'l' 3" in printed and "use_space_char" in printed
    charset = Charset.from_file(out, use_space_char=True, lowercase=True)
    assert charset.chars[:2] == ["l", "o"]
    assert charset.decode(charset.encode("Hello World 世界")) == "hello world 世界"
    assert cli_data.run(argparse.Namespace(command="train")) is None
