"""Imported PP-OCR models on real ICDAR 2015 data, before and after fine-tuning (one JSON report per stage).

Stages (each writes OUT/<stage>.json; run from the repository root):
  rec-eval     imported recognisers on word crops (``ocrforge test``), and the original ONNX files run by ONNX
               Runtime directly on the same preprocessed crops: accuracy of both and their agreement per crop
  rec-finetune ``ocrforge train`` of a fine-tune config on train crops (a fixed recipe, its last EMA weights), then
               ``ocrforge test`` on the evaluation crops; wall-clock seconds of both
  det-eval     ``ocrforge test`` of a detector (an imported name or a checkpoint) on ICDAR 2015-format images
  det-finetune ``ocrforge train`` of configs/det/ppocrv5_mobile_det_finetune.yaml, then ``ocrforge test``
  cpu-speed    ONNX Runtime on this machine's CPU: ms per word crop and per image (recognisers, detectors, DBNet-R18)
Crops come from ``ocrforge convert det-to-crops``. Usage: python benchmarks/ppocr_icdar2015.py STAGE --out OUT ...
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

OCRFORGE = [sys.executable, "-m", "ocrforge.cli"]


def run(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(OCRFORGE + args, check=True)
    return round(time.perf_counter() - start, 1)


def newest(pattern: str, root: Path) -> Path:
    found = sorted(root.glob(pattern), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"nothing matches {root}/{pattern}")
    return found[-1]


def rec_loader(labels: str, batch: int = 128) -> str:
    return f"{{type: RecLabelFile, label_files: [{labels}], batch_size: {batch}, num_workers: 4}}"


def test_metrics(config: str, ckpt: str, work: Path, overrides: list[str]) -> dict:
    seconds = run(["test", config, ckpt, "--save-preds", "--work-dir", str(work), "-o", *overrides])
    result = json.loads(newest("*/*_test_*/metrics.json", work).read_text())
    return {"seconds": seconds, **result}


def rec_eval(args: argparse.Namespace) -> dict:
    import numpy as np
    import onnxruntime as ort

    from ocrforge.data.images import read_image
    from ocrforge.pretrained.ppocr import cache_dir, lookup, packaged_file, read_dictionary, resolve_checkpoint
    from ocrforge.tasks.rec.inference import ctc_greedy, prepare

    report = {}
    onnx_files = dict(item.split("=", 1) for item in args.onnx)
    for name in args.models:
        ckpt = resolve_checkpoint(name, "rec")
        config = str(ckpt.parent / "config.yaml")
        work = Path(args.out) / "work" / name
        result = test_metrics(config, str(ckpt), work, [f"data.val={rec_loader(args.crops)}"])
        preds = [json.loads(line) for line in newest("*/*_test_*/predictions.jsonl", work).open(encoding="utf-8")]
        # The original file run by ONNX Runtime on the same preprocessing: must read the same text.
        entry = lookup(name)
        onnx_path = Path(onnx_files.get(name) or packaged_file(entry))
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        tokens = ["<blank>", *read_dictionary(entry, onnx_path), " "]
        meta = {"input_size": [48, 320], "mean": [0.5] * 3, "std": [0.5] * 3, "color": "BGR"}
        same, exact = 0, 0
        for start in range(0, len(preds), 64):
            chunk = preds[start:start + 64]
            batch = np.stack([prepare(read_image(p["path"]), meta) for p in chunk])
            decoded = ctc_greedy(session.run(None, {"x": batch})[0], tokens)
            same += sum(d["text"] == p["text"] for d, p in zip(decoded, chunk, strict=True))
            exact += sum(d["text"] == p["gt"] for d, p in zip(decoded, chunk, strict=True))
        result["onnxruntime_original"] = {"file": str(onnx_path), "same_text_as_ocrforge": same,
                                          "crops": len(preds), "acc": exact / max(1, len(preds))}
        report[name] = result
    report["cache"] = str(cache_dir())
    return report


def rec_finetune(args: argparse.Namespace) -> dict:
    work = Path(args.out) / "work" / Path(args.config).stem
    train_seconds = run(["train", args.config, "--work-dir", str(work), "-o", "train.progress_bar=false",
                         f"data.train.label_files=[{args.train}]", f"data.val={rec_loader(args.holdout)}",
                         *args.overrides])
    run_dir = newest("*/*/checkpoints/last.ckpt", work).parent.parent
    last = str(run_dir / "checkpoints" / "last.ckpt")
    # The same overrides (a dictionary, a model size) describe the model under test too.
    result = test_metrics(args.config, last, work / "test", [f"data.val={rec_loader(args.crops)}", *args.overrides])
    return {"config": args.config, "overrides": args.overrides, "train_seconds": train_seconds,
            "train_metrics": json.loads((run_dir / "metrics.json").read_text()), "checkpoint": last,
            "test_on_eval_crops": result}


def det_eval(args: argparse.Namespace) -> dict:
    overrides = [f"data.val.images_dir={args.images}", f"data.val.labels={args.gt}",
                 f"data.val.files={args.files}", *args.overrides]
    return test_metrics(args.config, args.checkpoint, Path(args.out) / "work" / "det_eval", overrides)


def det_finetune(args: argparse.Namespace) -> dict:
    work = Path(args.out) / "work" / "det_finetune"
    data = [f"data.{split}.{key}={value}" for split in ("train", "val")
            for key, value in (("images_dir", args.images), ("labels", args.gt))]
    train_seconds = run(["train", args.config, "--work-dir", str(work), "-o", "train.progress_bar=false", *data,
                         *args.overrides])
    last = str(newest("*/*/checkpoints/last.ckpt", work))
    return {"config": args.config, "overrides": args.overrides, "train_seconds": train_seconds, "checkpoint": last}


def cpu_speed(args: argparse.Namespace) -> dict:
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    report = {"threads": args.threads}
    for item in args.onnx:
        name, path = item.split("=", 1)
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        shape = (1, 3, 48, 320) if "rec" in name else (1, 3, 736, 1312)
        x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
        input_name = session.get_inputs()[0].name
        for _ in range(3):
            session.run(None, {input_name: x})
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            session.run(None, {input_name: x})
            times.append(time.perf_counter() - start)
        report[name] = {"input": list(shape), "ms_median": round(1000 * float(np.median(times)), 2),
                        "ms_min": round(1000 * min(times), 2)}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["rec-eval", "rec-finetune", "det-eval", "det-finetune", "cpu-speed"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--models", nargs="*", default=["ppocrv5-mobile-rec", "ppocrv6-small-rec"])
    parser.add_argument("--onnx", nargs="*", default=[], metavar="NAME=FILE")
    parser.add_argument("--crops", help="evaluation crops: a path<TAB>text label file")
    parser.add_argument("--train", help="training crops label file (rec-finetune)")
    parser.add_argument("--holdout", help="held-out training crops for checkpoint selection (rec-finetune)")
    parser.add_argument("--config", default="configs/det/ppocrv5_mobile_det_finetune.yaml")
    parser.add_argument("--checkpoint", default="ppocrv5-mobile-det")
    parser.add_argument("--images")
    parser.add_argument("--gt")
    parser.add_argument("--files", default="configs/det/splits/icdar2015_val.txt")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("-o", dest="overrides", nargs="*", default=[])
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    stage = {"rec-eval": rec_eval, "rec-finetune": rec_finetune, "det-eval": det_eval,
             "det-finetune": det_finetune, "cpu-speed": cpu_speed}[args.stage]
    report = {"stage": args.stage, "machine": f"{platform.node()} {platform.processor() or platform.machine()}",
              "argv": sys.argv[1:], **stage(args)}
    out = Path(args.out) / f"{args.stage}{'_' + Path(args.config).stem if 'finetune' in args.stage else ''}.json"
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "argv"}, indent=2, ensure_ascii=False)[:4000])


if __name__ == "__main__":
    main()
