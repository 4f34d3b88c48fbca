"""ocrforge and docTR side by side, in one run on one GPU: training throughput of matching detection and recognition
models, peak memory, and the ratios; one JSON list of rows.

    python benchmarks/side_by_side.py --det-images DIR --det-labels DIR [--det-files LIST] [--workers 15]
        [--seconds 8] [--machine h200] [--out benchmarks/results/side_by_side_<machine>_<date>.json]

ocrforge rows are ``ocrforge bench`` on the shipped configs (bf16, 15 workers; detection channels_last): data only,
model only (forward, loss, backward, optimiser step on one reused batch) and end to end (the loader feeding those
steps). docTR rows (python-doctr, ``pretrained=False``) time the same step on a reused batch: its network with a
loss of the same kind on fixed device targets (detection: BCE on the probability map and L1 on the threshold map;
recognition: CTC) and the same fused AdamW -- ``model_only``; and its own training forward (``model(x, target)``,
which builds its targets on the CPU inside the step) -- ``trained_step``. docTR has no data pipeline to time
(``end_to_end`` null). Pairs (docTR has no ResNet-18 DBNet): DBNet-R18 / db_mobilenet_v3_large, DBNet-R50 /
db_resnet50, crnn_synth / crnn_vgg16_bn, ppocr_mobile_synth / crnn_mobilenet_v3_small.
"""

from __future__ import annotations

import argparse
import json
import string
import time
from collections.abc import Callable
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ocrforge.config import load_config
from ocrforge.engine.rundir import environment_info
from ocrforge.runners.bench import bench

RESULTS = Path(__file__).resolve().parent / "results"
DET_SIZE, REC_SIZE = 640, (32, 128)
# (ocrforge config, docTR architecture, task, batch size)
PAIRS = (("dbnet_r18_icdar2015", "db_mobilenet_v3_large", "det", 16),
         ("dbnet_r50_icdar2015", "db_resnet50", "det", 8),
         ("crnn_synth", "crnn_vgg16_bn", "rec", 512),
         ("ppocr_mobile_synth", "crnn_mobilenet_v3_small", "rec", 1024))


def _bound(data: float | None, model: float, end_to_end: float | None) -> str | None:
    """What limits end-to-end training: the loader (data alone slower than the step), the step, or the two together
    (``contention``: end to end well under both, so loading and computing slow each other down: shared cores, the
    main process collating and copying, host syncs)."""
    if data is None or end_to_end is None:
        return None
    if end_to_end < 0.85 * min(data, model):
        return "contention"
    return "data" if data < model else "step"


def ocrforge_row(config: str, task: str, batch: int, args: argparse.Namespace) -> dict[str, Any]:
    overrides = [f"data.train.batch_size={batch}", f"data.train.num_workers={args.workers}"]
    if task == "det":
        overrides += [f"data.train.images_dir={args.det_images}", f"data.train.labels={args.det_labels}",
                      f"data.train.files={args.det_files or 'null'}"]
    cfg = load_config(f"configs/{task}/{config}.yaml", overrides)
    report = bench(cfg, seconds=args.seconds, warmup_seconds=args.seconds / 2, steps=args.steps, amp=True,
                   channels_last=task == "det", device=args.device)
    model, e2e, data = report["model"], report["end_to_end"], report["data"]
    return {"tool": "ocrforge", "config": config, "task": task, "batch_size": batch, "precision": report["precision"],
            "channels_last": report["channels_last"], "compile": report["compile"],
            "input": list(cfg.data.image_size), "model_only_samples_per_s": model["samples_per_s"],
            "end_to_end_samples_per_s": e2e["samples_per_s"], "data_only_samples_per_s": data["samples_per_s"],
            "data_per_worker_samples_per_s": data["samples_per_s_per_worker"], "workers": data["workers"],
            "data_wait_ms_per_step": e2e["data_wait_ms_per_step"], "split_ms": model["split_ms"],
            "peak_memory_mb": model["peak_memory_mb"], "peak_memory_mb_per_sample": model["peak_memory_mb_per_sample"],
            "bound": _bound(data["samples_per_s"], model["samples_per_s"], e2e["samples_per_s"])}


def _timed(step: Callable[[], None], batch: int, steps: int, warmup: int, device: torch.device
           ) -> tuple[float, float | None]:
    """(samples/s, peak MB on a GPU) over ``steps`` after ``warmup``."""
    cuda = device.type == "cuda"
    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    began = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - began), torch.cuda.max_memory_allocated() / 2**20 if cuda else None


def _random_words(rng: np.random.Generator, count: int, vocab: str) -> list[str]:
    return ["".join(rng.choice(list(vocab), size=int(rng.integers(3, 12)))) for _ in range(count)]


def doctr_row(arch: str, task: str, batch: int, steps: int, device: torch.device) -> dict[str, Any]:
    from doctr.models import detection, recognition

    rng = np.random.default_rng(0)
    zoo = detection if task == "det" else recognition
    model = getattr(zoo, arch)(pretrained=False, pretrained_backbone=False).to(device).train()
    if task == "det":
        model.to(memory_format=torch.channels_last)
        images = torch.rand(batch, 3, DET_SIZE, DET_SIZE, device=device).contiguous(memory_format=torch.channels_last)
        maps = (torch.rand(batch, 1, DET_SIZE, DET_SIZE, device=device) > 0.8).float()

        def network_loss() -> torch.Tensor:
            feats = model.feat_extractor(images)
            merged = model.fpn([feats[str(i)] for i in range(len(feats))])
            prob, thresh = model.prob_head(merged), model.thresh_head(merged)
            return (F.binary_cross_entropy_with_logits(prob.float(), maps)
                    + F.l1_loss(torch.sigmoid(thresh.float()), maps))

        boxes = []
        for _ in range(batch):  # 20 word boxes per page, relative (xmin, ymin, xmax, ymax)
            corner = rng.random((20, 2)) * 0.8
            boxes.append({"words": np.concatenate([corner, corner + np.array([0.15, 0.04])], 1).astype(np.float32)})

        def trained_loss() -> torch.Tensor:
            return model(images, target=boxes)["loss"]
    else:
        images = torch.rand(batch, 3, *REC_SIZE, device=device)
        words = _random_words(rng, batch, string.ascii_letters + string.digits)

        def network_logits() -> torch.Tensor:  # exportable: logits, no loss (a training forward still wants words)
            model.exportable = True
            out = model(images, target=words)["logits"]
            model.exportable = False
            return out

        with torch.no_grad():
            frames = network_logits().shape[1]
        ids = torch.randint(1, len(model.vocab), (batch, 10), device=device)
        lengths = torch.full((batch,), 10, dtype=torch.long)  # lengths on the host: no copy back in the step
        input_lengths = torch.full((batch,), frames, dtype=torch.long)

        def network_loss() -> torch.Tensor:
            log_probs = network_logits().float().log_softmax(-1).transpose(0, 1)
            return F.ctc_loss(log_probs, ids, input_lengths, lengths, blank=len(model.vocab), zero_infinity=True)

        def trained_loss() -> torch.Tensor:
            return model(images, target=words)["loss"]

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")

    def step_with(loss_fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def step() -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = loss_fn()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return step

    model_rate, peak = _timed(step_with(network_loss), batch, steps, 5, device)
    trained_rate, _ = _timed(step_with(trained_loss), batch, max(3, steps // 3), 2, device)
    return {"tool": "doctr", "config": arch, "task": task, "batch_size": batch, "precision": "bf16-mixed",
            "channels_last": task == "det", "compile": False,
            "input": [DET_SIZE, DET_SIZE] if task == "det" else list(REC_SIZE),
            "model_only_samples_per_s": round(model_rate, 1), "end_to_end_samples_per_s": None,
            "trained_step_samples_per_s": round(trained_rate, 1),
            "peak_memory_mb": None if peak is None else round(peak, 1),
            "peak_memory_mb_per_sample": None if peak is None else round(peak / batch, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--det-images", required=True, help="ICDAR 2015 training images")
    parser.add_argument("--det-labels", required=True, help="their gt_*.txt files")
    parser.add_argument("--det-files", help="a list of the image names to use (default: all)")
    parser.add_argument("--workers", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=8.0, help="data-only and end-to-end time budget per row")
    parser.add_argument("--tasks", nargs="+", default=["det", "rec"], choices=["det", "rec"])
    parser.add_argument("--machine", default="h200")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=30, help="timed model-only steps per row")
    parser.add_argument("--batch-scale", type=float, default=1.0, help="scale every batch size (a quick CPU try)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import doctr

    rows = []
    device = torch.device(args.device)
    for config, arch, task, full_batch in PAIRS:
        if task not in args.tasks:
            continue
        batch = max(2, round(full_batch * args.batch_scale))
        runs = (("ocrforge", config, partial(ocrforge_row, config, task, batch, args)),
                ("doctr", arch, partial(doctr_row, arch, task, batch, args.steps, device)))
        for tool, name, run in runs:
            began = time.perf_counter()
            try:
                row = run()
            except Exception as exc:  # one failing model must not lose the others' figures
                row = {"tool": tool, "config": name, "task": task, "error": f"{type(exc).__name__}: {exc}"}
            row["seconds"] = round(time.perf_counter() - began, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
        mine, theirs = rows[-2], rows[-1]
        if "error" not in mine and "error" not in theirs:
            ratio = mine["model_only_samples_per_s"] / theirs["model_only_samples_per_s"]
            mine["model_only_vs_doctr"] = round(ratio, 2)
    machine = environment_info()
    for row in rows:
        row.update(machine_name=args.machine, gpu=(machine.get("cuda_devices") or [None])[0],
                   torch=machine["packages"].get("torch"), doctr=doctr.__version__)
    out = args.out or RESULTS / f"side_by_side_{args.machine}_{date.today().isoformat()}.json"
    out.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
