"""Training-step ceiling without data loading: one real batch of a config's training data, reused, through the
task's forward, loss, backward and optimiser step, in samples/s. Compare with the trainer's own epoch line
(``... samples/s``) to see whether a run is bound by the model, the data, or the trainer's per-step overhead.

    python benchmarks/train_step_speed.py configs/rec/ppocr_mobile_synth.yaml --precision bf16 --steps 100 \
        [--sync-every-step] [--compile] [-o KEY=VALUE ...]

``--sync-every-step`` reads the loss on the host each step, as the trainer's non-finite check does, which stops the
CPU from queueing the next step's kernels while the GPU runs this one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from ocrforge.config import load_config
from ocrforge.engine.data import build_dataloader
from ocrforge.engine.module import build_task
from ocrforge.registry import OPTIMIZERS


def to_device(value: object, device: torch.device) -> object:
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config")
    parser.add_argument("--precision", choices=["32", "bf16"], default="bf16")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=15)
    parser.add_argument("--sync-every-step", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("-o", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = load_config(args.config, [*args.overrides, "data.train.num_workers=0"])
    task = build_task(cfg)
    model = task.build_model().to(device).train()
    criterion = task.build_loss().to(device)
    optimizer = OPTIMIZERS.build(OmegaConf.to_container(cfg.optimizer), params=model.named_parameters())
    batch = to_device(next(iter(build_dataloader(task, "train", training=True))), device)
    size = int(batch["batch_size"])
    forward = torch.compile(model) if args.compile else model
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if args.precision == "bf16"
                else contextlib.nullcontext())

    def step() -> torch.Tensor:
        with autocast:
            loss = criterion(task.forward_train(forward, batch), batch)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
        if args.sync_every_step:
            bool(torch.isfinite(loss))
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - began
    result = {"config": args.config, "overrides": args.overrides, "device": torch.cuda.get_device_name()
              if device.type == "cuda" else platform.processor(), "precision": args.precision,
              "compile": args.compile, "sync_every_step": args.sync_every_step, "batch_size": size,
              "ms_per_step": round(elapsed / args.steps * 1000, 2),
              "samples_per_s": round(size * args.steps / elapsed, 1)}
    print(json.dumps(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
