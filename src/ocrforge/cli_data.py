"""``ocrforge dict …``, ``ocrforge convert …`` and ``ocrforge synth …``: argument parsing only; each command calls
one data function.

``cli.py`` adds these parsers with ``add_parsers(sub)`` and hands every parsed command to ``run(args)`` first;
``run`` returns None for commands that are not its own.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

COMMANDS = ("dict", "convert", "synth")


def add_parsers(subparsers: Any) -> None:
    """Register ``dict``, ``convert`` and ``synth`` on the main parser's ``add_subparsers(dest="command")`` object."""
    p = subparsers.add_parser("dict", help="character dictionary tools")
    dsub = p.add_subparsers(dest="dict_command", required=True)
    q = dsub.add_parser("build", help="build a dictionary (one character per line) from path<TAB>label files")
    q.add_argument("label_files", nargs="+", metavar="LABEL_FILE")
    q.add_argument("--out", required=True, help="dictionary file to write (most frequent character first)")
    q.add_argument("--lowercase", action="store_true", help="fold labels to lower case first")
    q.add_argument("--include-space", action="store_true",
                   help="put ' ' in the dictionary (default: leave it out and train with use_space_char)")
    q.add_argument("--top", type=int, default=20, help="how many of the most frequent characters to print")

    p = subparsers.add_parser("convert", help="convert datasets between formats")
    csub = p.add_subparsers(dest="convert_command", required=True)
    q = csub.add_parser("char-folders", help="folder-per-character set + samples.csv + id2char.json -> "
                                             "train/val lists, dictionary, stats")
    q.add_argument("--data-dir", required=True, help="the <id>/<char>_<n>.png tree (e.g. binarized_data)")
    q.add_argument("--samples", required=True, metavar="CSV", help="samples.csv with a header row")
    q.add_argument("--id2char", required=True, metavar="JSON", help="id2char.json: id -> character")
    q.add_argument("--out", required=True, metavar="DIR")
    q.add_argument("--train-ratio", type=float, default=0.9)
    q.add_argument("--seed", type=int, default=0)

    q = csub.add_parser("to-lmdb", help="path<TAB>label files -> LMDB (every image decoded once to validate it)")
    q.add_argument("label_files", nargs="+", metavar="LABEL_FILE")
    q.add_argument("--out", required=True, metavar="DIR", help="a new folder for the LMDB")
    q.add_argument("--data-root", metavar="DIR", help="image paths are relative to this (default: each file's folder)")
    q.add_argument("--max-length", type=int, help="skip labels longer than this")

    q = csub.add_parser("det-to-crops", help="detection labels -> rectified word crops + labels.txt")
    q.add_argument("--format", required=True, choices=["icdar2015", "paddle"])
    q.add_argument("--images", required=True, metavar="DIR", help="image folder (PaddleOCR: the data_dir)")
    q.add_argument("--labels", required=True, metavar="PATH",
                   help="icdar2015: folder of gt_*.txt (or one file); paddle: the label file")
    q.add_argument("--out", required=True, metavar="DIR")

    q = csub.add_parser("det-format", help="rewrite detection labels in another format (images are not copied)")
    q.add_argument("--from", dest="src", required=True, choices=["icdar2015", "paddle"])
    q.add_argument("--to", dest="dst", required=True, choices=["icdar2015", "paddle"])
    q.add_argument("--images", required=True, metavar="DIR", help="image folder (PaddleOCR: the data_dir)")
    q.add_argument("--labels", required=True, metavar="PATH")
    q.add_argument("--out", required=True, metavar="PATH", help="paddle: a label file; icdar2015: a folder")

    q = csub.add_parser("ppocr", help="a PaddleOCR PP-OCR model (from the ppocr extra, or --onnx) -> ocrforge "
                                      "checkpoint + config, parity-checked against ONNX Runtime")
    q.add_argument("--model", required=True, metavar="NAME",
                   help="ppocrv5-mobile-rec, ppocrv5-mobile-det, ppocrv6-small-rec, ppocrv6-small-det, "
                        "ppocrv4-mobile-rec, ppocrv4-mobile-det, ppocrv5-mobile-cls, ppocr-mobile-v2-cls")
    q.add_argument("--out", required=True, metavar="DIR", help="folder for model.ckpt, config.yaml, dict.txt")
    q.add_argument("--onnx", metavar="FILE", help="use this .onnx instead of the installed package's")
    q.add_argument("--dict", dest="dictionary", metavar="FILE",
                   help="recognition: the model's dictionary (default: the package's or the ONNX metadata)")

    p = subparsers.add_parser("synth", help="write synthetic training data to disk")
    ssub = p.add_subparsers(dest="synth_command", required=True)
    q = ssub.add_parser("rec", help="synthetic word crops -> DIR/images/*.jpg + DIR/labels.txt, or an LMDB")
    q.add_argument("--out", required=True, metavar="DIR")
    q.add_argument("--num", required=True, type=int_at_least(1), metavar="N", help="how many words")
    q.add_argument("--seed", type=int, default=0, help="the same seed writes the same images and labels")
    q.add_argument("--height", type=int_at_least(8), default=32,
                   help="crop height in pixels, at least 8 (width follows the text)")
    q.add_argument("--charset", default="printable_space",
                   help="a built-in charset name or a dictionary file; restricts the text (default: %(default)s)")
    q.add_argument("--fonts-dir", action="append", metavar="DIR",
                   help="more fonts besides the bundled pack and matplotlib's (repeatable)")
    q.add_argument("--lmdb", action="store_true", help="write an LMDB at DIR (JPEG bytes) instead of a folder")
    q = ssub.add_parser("det", help="synthetic document and scene pages with word quads -> DIR/images/*.jpg + "
                                    "DIR/labels.txt (PaddleOCR) or DIR/gt/gt_*.txt (ICDAR 2015)")
    q.add_argument("--out", required=True, metavar="DIR")
    q.add_argument("--num", required=True, type=int_at_least(1), metavar="N", help="how many pages")
    q.add_argument("--seed", type=int, default=0, help="the same seed writes the same images and labels")
    q.add_argument("--size", nargs=2, type=int_at_least(32), default=[640, 640], metavar=("H", "W"),
                   help="page height and width in pixels, at least 32 (default: 640 640)")
    q.add_argument("--format", dest="fmt", choices=["paddle", "icdar2015"], default="paddle",
                   help="label format (default: %(default)s)")
    q.add_argument("--fonts-dir", action="append", metavar="DIR",
                   help="more fonts besides the bundled pack and matplotlib's (repeatable)")


def int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    parse.__name__ = "int"  # argparse names the type in "invalid int value" messages
    return parse


def _print_json(report: dict) -> None:
    print(json.dumps(report, indent=2, ensure_ascii=False))


def _dict_build(args: argparse.Namespace) -> None:
    from collections import Counter

    from .data.charset import build_charset, write_dict_file

    stats: Counter = Counter()
    chars, counts = build_charset(args.label_files, lowercase=args.lowercase, include_space=args.include_space,
                                  stats=stats)
    write_dict_file(chars, args.out)
    print(f"{stats['labels']} labels, {len(counts)} distinct characters; wrote {len(chars)} to {args.out}")
    if counts[" "] and not args.include_space:
        print(f"space: {counts[' ']} occurrences, left out of the dictionary (train with use_space_char)")
    print("top: " + ", ".join(f"{c!r} {counts[c]}" for c in chars[:args.top]))
    skipped = {k: v for k, v in stats.items() if k != "labels" and v}
    print(f"skipped: {skipped or 'none'}")


def run(args: argparse.Namespace) -> int | None:
    """Run a ``dict``/``convert``/``synth`` command; None if ``args.command`` belongs to another module."""
    if args.command not in COMMANDS:
        return None
    if args.command == "dict":
        _dict_build(args)
    elif args.command == "synth" and args.synth_command == "det":
        from .tasks.det.synth_pages import export_synth_det, summarize

        print(summarize(export_synth_det(args.out, args.num, seed=args.seed, height=args.size[0], width=args.size[1],
                                         fmt=args.fmt, fonts_dir=args.fonts_dir)))
    elif args.command == "synth":
        from .data.synth_text.export import export_synth_rec, summarize

        print(summarize(export_synth_rec(args.out, args.num, seed=args.seed, charset=args.charset,
                                         height=args.height, fonts_dir=args.fonts_dir, lmdb=args.lmdb)))
    elif args.convert_command == "char-folders":
        from .data.converters.char_folders import convert_char_folders, summarize

        print(summarize(convert_char_folders(args.data_dir, args.samples, args.id2char, args.out,
                                             train_ratio=args.train_ratio, seed=args.seed)))
    elif args.convert_command == "to-lmdb":
        from .data.converters.to_lmdb import labels_to_lmdb

        _print_json(labels_to_lmdb(args.label_files, args.out, data_root=args.data_root, max_length=args.max_length))
    elif args.convert_command == "det-to-crops":
        from .data.converters.det_to_crops import det_to_crops

        _print_json(det_to_crops(args.format, args.images, args.labels, args.out))
    elif args.convert_command == "ppocr":
        from .pretrained.ppocr import convert

        report = convert(args.model, args.out, onnx=args.onnx, dictionary=args.dictionary)
        _print_json({k: report[k] for k in ("checkpoint", "config", "package", "package_version",
                                            "parity_max_abs_diff", "records")})
    elif args.convert_command == "det-format":
        from .data.converters.det_labels import convert_det_labels

        _print_json(convert_det_labels(args.src, args.dst, args.images, args.labels, args.out))
    return 0
