"""``data.augment.on_device`` (and ``decode_on_device``) against the CPU path on real images, and what each costs;
writes JSON.

    python benchmarks/det_on_device.py --images DIR --labels DIR --files LIST --out OUT.json [--batch 16]

Always: the CPU work per sample of each path in this process (what a DataLoader worker does), and the device part
of a batch run on CPU tensors against the CPU path (JPEG decoding there on the CPU). With CUDA also: the same
checks on the GPU (images within two grey levels, binary maps equal, threshold maps within float16 rounding,
compiled and eager) and the milliseconds per batch of the device part there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from ocrforge.config import load_config
from ocrforge.engine.module import build_task
from ocrforge.tasks.det.dbnet.device_targets import threshold_map
from ocrforge.tasks.det.device_augment import warp_batch


def _batch(task, count: int, seed: int) -> dict:
    dataset = task.build_dataset("train")
    samples = []
    for index in range(count):
        np.random.seed(seed + index)
        samples.append(dataset[index])
    return task.collate(samples)


def _per_sample_ms(task, count: int) -> float:
    dataset = task.build_dataset("train")
    began = time.perf_counter()
    for index in range(count):
        np.random.seed(index)
        dataset[index % len(dataset)]
    return round((time.perf_counter() - began) * 1e3 / count, 2)


def _timed_ms(function, where: torch.device, repeats: int = 5) -> float:
    def sync() -> None:
        if where.type == "cuda":
            torch.cuda.synchronize()

    function()
    sync()
    began = time.perf_counter()
    for _ in range(repeats):
        function()
    sync()
    return round((time.perf_counter() - began) * 1e3 / repeats, 2)


def _compare(task, device_batch: dict, cpu_batch: dict, where: torch.device, fused: bool) -> dict:
    size = tuple(int(v) for v in task.cfg.data.image_size)
    images = [s.to(where) if isinstance(s, torch.Tensor) else s for s in device_batch["image"]]
    warp = {k: v.to(where) for k, v in device_batch["warp"].items()}
    edges = device_batch["device_targets"]["border_edges"].to(where)
    pad, targets = task.augment_config.pad_value, task.targets
    difference = (warp_batch(images, warp, size, pad)[0].cpu() - cpu_batch["image"].float()).abs()
    reference = cpu_batch["targets"]["threshold_map"].float()
    out = {"image_max_grey_levels": float(difference.max()), "image_mean_grey_levels": float(difference.mean()),
           "binary_maps_equal": all(torch.equal(device_batch["targets"][k], cpu_batch["targets"][k])
                                    for k in ("shrink_map", "shrink_mask", "threshold_mask")),
           "edges_in_batch": int(edges.shape[1])}
    timings = {"warp_and_colour": lambda: warp_batch(images, warp, size, pad),
               "threshold_map_eager": lambda: threshold_map(edges, *size, targets.thresh_min, targets.thresh_max,
                                                            fused=False)}
    variants = {"eager": False, "fused": True} if fused else {"eager": False}
    for name, flag in variants.items():
        got = threshold_map(edges, *size, targets.thresh_min, targets.thresh_max, fused=flag).cpu()
        out[f"threshold_{name}_max_abs"] = float((got - reference).abs().max())
    if fused:
        timings["threshold_map_fused"] = lambda: threshold_map(edges, *size, targets.thresh_min,
                                                               targets.thresh_max, fused=True)
    out["ms_per_batch"] = {name: _timed_ms(function, where) for name, function in timings.items()}
    return out


def _bytes(source: object) -> int:
    return source.numel() if isinstance(source, torch.Tensor) else source.data.size


def _machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    return {"cpu": cpu, "cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "torch_threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", required=True)
    parser.add_argument("--labels", required=True)
    parser.add_argument("--files", required=True)
    parser.add_argument("--config", default="configs/det/dbnet_r18_icdar2015.yaml")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--samples", type=int, default=64, help="samples timed per path")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    data = [f"data.train.images_dir={args.images}", f"data.train.labels={args.labels}",
            f"data.train.files={args.files}"]
    cpu_task = build_task(load_config(args.config, [*data, "data.augment.on_device=false"]))
    device_task = build_task(load_config(args.config, [*data, "data.augment.on_device=true"]))
    cpu = _batch(cpu_task, args.batch, seed=100)
    device = _batch(device_task, args.batch, seed=100)
    decode_task = build_task(load_config(args.config, [*data, "data.augment.on_device=true",
                                                       "data.augment.decode_on_device=true"]))
    decoded = _batch(decode_task, args.batch, seed=100)
    report = {"machine": _machine(), "config": args.config, "batch": args.batch,
              "source_bytes_per_sample": {name: int(sum(_bytes(s) for s in b["image"]) / args.batch)
                                          for name, b in (("on_device", device), ("decode_on_device", decoded))},
              "output_bytes_per_sample": int(cpu["image"].numel() / args.batch),
              "cpu_ms_per_sample_one_process": {"cpu_path": _per_sample_ms(cpu_task, args.samples),
                                                "on_device": _per_sample_ms(device_task, args.samples),
                                                "decode_on_device": _per_sample_ms(decode_task, args.samples)},
              "on_cpu_tensors": _compare(device_task, device, cpu, torch.device("cpu"), fused=False),
              "decoded_on_cpu_tensors": _compare(decode_task, decoded, cpu, torch.device("cpu"), fused=False)}
    if torch.cuda.is_available():
        report["on_cuda"] = _compare(device_task, device, cpu, torch.device("cuda"), fused=True)
        report["decoded_on_cuda"] = _compare(decode_task, decoded, cpu, torch.device("cuda"), fused=True)
    print(json.dumps(report, indent=1))
    with open(args.out, "w") as file:
        file.write(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
