"""``ocrforge`` command line: argument parsing only; every command calls one function of the Python API."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from . import cli_data


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--cfg-options", dest="overrides", nargs="+", action="extend", default=[],
                        metavar="KEY=VALUE", help="override config keys (a.b.c=value, YAML values; +a.b=v adds a key)")
    parser.add_argument("--plugins", metavar="DIR", help="import every module in DIR (or a .py file): decorated "
                        "components register, and every other nn.Module class under its class name (recorded in "
                        "the run's config and checkpoints)")


def _progress_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar (none either when stderr is not a terminal); a count line every 30 s")


def _launcher_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none",
                        help="started by torchrun (tools/dist_*.sh) or srun (tools/slurm_*.sh): one process per "
                             "device, ranks from their environment")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ocrforge", description="Train, evaluate, export and run OCR models.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from a config")
    p.add_argument("config")
    p.add_argument("--work-dir", help="put the run folder under this directory (default: work_dir in the config)")
    p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CKPT",
                   help="continue a run: the newest last.ckpt under the work dir, or CKPT")
    p.add_argument("--load-from", metavar="CKPT", help="initialise weights only (reports missing/unexpected keys)")
    p.add_argument("--load-from-partial", action="store_true",
                   help="accept a --load-from file of which no tensor fits the model (else an error)")
    p.add_argument("--amp", action="store_true",
                   help="mixed precision: bf16 where the device computes it natively, fp16 on older GPUs, fp32 on a "
                        "CPU without native bf16")
    p.add_argument("--auto-scale-lr", action="store_true", help="scale lr linearly from auto_scale_lr.base_batch_size")
    p.add_argument("--devices", help="devices per node (e.g. 2, or 'auto')")
    p.add_argument("--num-nodes", type=int)
    _launcher_arg(p)
    _config_args(p)

    p = sub.add_parser("test", help="evaluate a checkpoint on the test split (or val)")
    p.add_argument("config")
    p.add_argument("checkpoint")
    p.add_argument("--work-dir")
    p.add_argument("--save-preds", action="store_true", help="write predictions.jsonl")
    p.add_argument("--show-dir", help="write pictures of predictions here")
    _launcher_arg(p)
    _config_args(p)

    p = sub.add_parser("predict", help="run a checkpoint or an ONNX model on images or folders")
    p.add_argument("model", help="a .ckpt or an exported .onnx")
    p.add_argument("inputs", nargs="+", help="images or folders")
    p.add_argument("--out", help="write one JSON line per image here")
    p.add_argument("--batch-size", type=cli_data.int_at_least(1), default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--beam", type=int, default=0, metavar="N", help="recognition: CTC prefix beam search of width N")
    _progress_arg(p)

    p = sub.add_parser("ocr", help="full OCR: detect, orient (optional), recognise; checkpoints or ONNX models")
    p.add_argument("inputs", nargs="+", help="images or folders")
    p.add_argument("--det", required=True, help="detection model (.ckpt or .onnx)")
    p.add_argument("--rec", required=True, help="recognition model (.ckpt or .onnx)")
    p.add_argument("--cls", help="optional 0/180 text-line orientation model (.ckpt or .onnx)")
    p.add_argument("--out", help="write one JSON line per image here")
    p.add_argument("--show-dir", help="write a picture per image here (polygons and recognised text)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--rec-batch-size", type=cli_data.int_at_least(1), default=32)
    p.add_argument("--drop-score", type=float, default=0.5, help="drop words recognised with a lower score")
    p.add_argument("--cls-threshold", type=float, default=0.9, help="turn a line only this sure it is upside down")
    p.add_argument("--det-thresh", type=float, help="detection: override the probability binarisation threshold")
    p.add_argument("--det-box-thresh", type=float, help="detection: override the minimum mean box probability")
    p.add_argument("--det-unclip-ratio", type=float, help="detection: override the unclip ratio")
    _progress_arg(p)

    p = sub.add_parser("export", help="export a checkpoint to ONNX and check parity with ONNX Runtime")
    p.add_argument("checkpoint", help="a .ckpt, or a .pth state dict with --config")
    p.add_argument("--config", help="the model's config (needed for a .pth; replaces a checkpoint's stored config)")
    p.add_argument("--out", help="output .onnx (default: next to the checkpoint)")
    p.add_argument("--no-ema", action="store_true", help="export the raw weights even if EMA weights exist")
    p.add_argument("--opset", type=cli_data.int_at_least(7), help="ONNX opset (export.onnx.opset)")
    p.add_argument("--embedding", action="store_true",
                   help="metric-learning classifiers: export the L2-normalised embedding only (export.onnx.outputs)")
    _config_args(p)

    p = sub.add_parser("bench", help="training throughput: data only, model only, end to end (JSON)")
    p.add_argument("config")
    p.add_argument("--seconds", type=float, default=20.0, help="time budget of the data-only measurement")
    p.add_argument("--warmup-seconds", type=float, default=10.0, help="untimed loading first (workers, caches)")
    p.add_argument("--steps", type=cli_data.int_at_least(1), default=50, help="timed model and end-to-end steps")
    p.add_argument("--amp", action="store_true", help="mixed precision: bf16 where supported, else fp16")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--out", help="also write the JSON report here")
    _config_args(p)

    p = sub.add_parser("config", help="config tools")
    csub = p.add_subparsers(dest="config_command", required=True)
    q = csub.add_parser("print", help="print the effective config (bases merged, overrides applied, defaults)")
    q.add_argument("config", help="a config file, or the name of a shipped config (see config list)")
    _config_args(q)
    csub.add_parser("list", help="the shipped configs, which any command also takes by name")

    p = sub.add_parser("data", help="data tools")
    dsub = p.add_subparsers(dest="data_command", required=True)
    q = dsub.add_parser("check", help="read every sample of the configured splits and report skips by reason")
    q.add_argument("config")
    q.add_argument("--show", type=cli_data.int_at_least(0), default=10, metavar="N",
                   help="list the first N skipped samples of each reason with file and line (at most 1000)")
    _config_args(q)
    cli_data.add_parsers(sub)
    return parser


def _load(args: argparse.Namespace):
    from .config import load_config

    overrides = list(args.overrides)
    if getattr(args, "work_dir", None):
        overrides.append(f"work_dir={args.work_dir}")
    if args.command == "test" and args.plugins is None:
        # The config may name a model of the plugins the checkpoint's run recorded: import them first.
        from .config import import_recorded_plugins
        from .engine.checkpoint import read_checkpoint
        from .pretrained.ppocr import resolve_checkpoint

        stored = (read_checkpoint(resolve_checkpoint(args.checkpoint)).get("hyper_parameters") or {}).get("config")
        import_recorded_plugins(stored or {}, args.checkpoint)
    return load_config(args.config, overrides, plugin_dir=args.plugins)


def _shown_path(path: Path) -> str:
    """Relative to the working directory when below it (copy-pasteable), else absolute."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _launcher_settings(args: argparse.Namespace) -> dict:
    """Under torchrun / srun, Lightning reads ranks from the environment; we only pick DDP and the device count.
    The accelerator stays the config's (``auto``: CUDA where there is one, else CPU, whose DDP Lightning runs on
    gloo), so ``GPUS=2 tools/dist_train.sh`` on a machine without a GPU trains two CPU processes."""
    import os

    settings: dict = {"devices": getattr(args, "devices", None), "num_nodes": getattr(args, "num_nodes", None)}
    if args.launcher == "pytorch":
        local = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
        settings.update(strategy="ddp", devices=settings["devices"] or local,
                        num_nodes=settings["num_nodes"] or int(os.environ.get("WORLD_SIZE", local)) // local)
    elif args.launcher == "slurm":
        nodes = int(os.environ.get("SLURM_NNODES", 1))
        # SLURM_NTASKS_PER_NODE is there only when srun was given --ntasks-per-node (tools/slurm_*.sh give it)
        per_node = int(os.environ.get("SLURM_NTASKS_PER_NODE") or int(os.environ.get("SLURM_NTASKS", nodes)) // nodes)
        settings.update(strategy="ddp", devices=settings["devices"] or per_node,
                        num_nodes=settings["num_nodes"] or nodes)
    if settings["devices"] is not None and str(settings["devices"]).isdigit():
        settings["devices"] = int(settings["devices"])
    return settings


def _interrupted(out: str | None) -> int:
    """Ctrl-C in predict / ocr: what was done is already written; say where, exit as shells expect (128 + SIGINT)."""
    if out:
        print(f"the results of the images done so far are in {out}", file=sys.stderr)
    return 130


def _run(args: argparse.Namespace) -> int:
    if args.command == "train":
        from .runners.train import train

        result = train(_load(args), resume=args.resume, load_from=args.load_from,
                       load_from_partial=args.load_from_partial, amp=args.amp, auto_scale_lr=args.auto_scale_lr,
                       **_launcher_settings(args))
        print(f"run folder: {result.run_dir}\nbest: {result.metrics['best']}\nstopped by: "
              f"{result.metrics['stopped_by']}")
    elif args.command == "test":
        from .runners.test import test

        test(_load(args), args.checkpoint, save_preds=args.save_preds, show_dir=args.show_dir,
             **_launcher_settings(args))
    elif args.command == "predict":
        from .runners.predict import predict

        try:  # rows stream to --out (or stdout) as they are done
            result = predict(args.model, args.inputs, out=args.out or sys.stdout, batch_size=args.batch_size,
                             device=args.device, beam_width=args.beam, progress=args.progress)
        except KeyboardInterrupt:
            return _interrupted(args.out)
        print(f"{len(result['predictions'])} predicted, skipped {result['skipped'] or 'none'}", file=sys.stderr)
    elif args.command == "ocr":
        from .runners.ocr import ocr

        overrides = {k: v for k, v in (("thresh", args.det_thresh), ("box_thresh", args.det_box_thresh),
                                       ("unclip_ratio", args.det_unclip_ratio)) if v is not None}
        try:  # rows stream to --out (or stdout) as they are done
            result = ocr(args.inputs, args.det, args.rec, args.cls, out=args.out or sys.stdout,
                         show_dir=args.show_dir, device=args.device, rec_batch_size=args.rec_batch_size,
                         drop_score=args.drop_score, cls_threshold=args.cls_threshold, det_postprocess=overrides,
                         progress=args.progress)
        except KeyboardInterrupt:
            return _interrupted(args.out)
        words = sum(len(r["words"]) for r in result["results"])
        print(f"{len(result['results'])} images, {words} words, skipped {result['skipped'] or 'none'}",
              file=sys.stderr)
    elif args.command == "export":
        from .export.onnx_export import export_onnx

        flags = ([f"export.onnx.opset={args.opset}"] if args.opset is not None else []) + (
            ["export.onnx.outputs=[embedding]"] if args.embedding else [])
        report = export_onnx(args.checkpoint, args.out, use_ema=not args.no_ema, config=args.config,
                             overrides=[*args.overrides, *flags], plugin_dir=args.plugins)
        print(json.dumps(report, indent=2))
    elif args.command == "bench":
        from .runners.bench import bench

        report = bench(_load(args), seconds=args.seconds, warmup_seconds=args.warmup_seconds, steps=args.steps,
                       amp=args.amp, compile_model=args.compile, channels_last=args.channels_last, device=args.device)
        text = json.dumps(report, indent=2)
        if args.out:
            Path(args.out).write_text(text + "\n")
        print(text)
    elif args.command == "config" and args.config_command == "list":
        from .config import shipped_configs

        rows = [(c.name, c.task, _shown_path(c.path), c.description) for c in shipped_configs()]
        widths = [max(len(row[i]) for row in rows) for i in range(3)] if rows else [0, 0, 0]
        for row in rows:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[3])
    elif args.command == "config":
        from .config import to_yaml

        print(to_yaml(_load(args)), end="")
    elif args.command == "data":
        from .runners.data_check import check_data, summary

        report = check_data(_load(args), show=args.show)
        print(json.dumps(report, indent=2, ensure_ascii=False))
        print(summary(report), file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from .errors import OcrforgeError

    logging.getLogger("ocrforge").addHandler(logging.StreamHandler())
    args = _build_parser().parse_args(argv)
    try:
        code = cli_data.run(args)
        return _run(args) if code is None else code
    except (OcrforgeError, FileNotFoundError) as exc:
        print(f"ocrforge {args.command}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        _end_process_group()


def _end_process_group() -> None:
    """Destroy the process group a distributed run leaves behind. Left to interpreter exit, gloo's threads can be
    torn down while still joinable, which aborts a process that has finished its work ("terminate called without
    an active exception", exit -6). Looked up in sys.modules: commands that never imported torch stay without it."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
