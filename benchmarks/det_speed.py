"""Detection inference speed: network forward (images/s at the eval size, fp32 and bf16) and DB post-processing
(ms per image on the ground truth's own shrink maps, i.e. with a realistic number of regions).

The network's speed does not depend on its weights, so an untrained model from the config is measured unless
``--ckpt`` is given. Usage:
    python benchmarks/det_speed.py configs/det/dbnet_r18_icdar2015.yaml --images DIR --gt DIR --out result.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from ocrforge.config import load_config
from ocrforge.data.converters.det_labels import read_icdar2015_dataset
from ocrforge.data.images import read_image
from ocrforge.engine.loading import module_from_checkpoint
from ocrforge.engine.module import TaskModule
from ocrforge.tasks.det.dbnet.targets import make_db_targets
from ocrforge.tasks.det.inference import build_postprocess, detect_image, prepare, resized_shape


def forward_images_per_second(model: torch.nn.Module, shape: tuple[int, int], batch: int, device: str,
                              bf16: bool, repeats: int = 20) -> float:
    images = torch.randn(batch, 3, *shape, device=device)
    with torch.inference_mode(), torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
        for _ in range(3):
            model.forward_inference(images)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            model.forward_inference(images)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return batch * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config")
    parser.add_argument("--ckpt")
    parser.add_argument("--images", required=True)
    parser.add_argument("--gt", required=True)
    parser.add_argument("--num-images", type=int, default=50)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    cfg = load_config(args.config)
    module = module_from_checkpoint(args.ckpt, cfg)[0] if args.ckpt else TaskModule(dict(cfg))
    task, model = module.task, module.model.eval().to(args.device)
    meta = task.inference_meta()
    samples = read_icdar2015_dataset(args.images, args.gt, Counter())[: args.num_images]
    first = read_image(samples[0].image)
    shape = resized_shape(*first.shape[:2], meta["limit_side_len"], meta["limit_type"])

    forward = {f"{'bf16' if bf16 else 'fp32'}_batch{batch}": round(forward_images_per_second(
        model, shape, batch, args.device, bf16), 1) for bf16 in (False, True) for batch in (1, 8)}

    postprocess = build_postprocess(meta["postprocess"])
    prepare_ms, post_ms, regions = [], [], []
    for sample in samples:
        image = read_image(sample.image)
        start = time.perf_counter()
        prepare(image, meta)
        prepare_ms.append(1000 * (time.perf_counter() - start))
        h, w = resized_shape(*image.shape[:2], meta["limit_side_len"], meta["limit_type"])
        scale = np.float32([w / image.shape[1], h / image.shape[0]])
        maps = make_db_targets([r.points * scale for r in sample.regions], [r.ignore for r in sample.regions], h, w)
        start = time.perf_counter()
        found = detect_image({"prob": maps["shrink_map"][None]}, image.shape[:2], meta, postprocess)
        post_ms.append(1000 * (time.perf_counter() - start))
        regions.append(len(found))

    result = {"config": args.config, "device": args.device,
              "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
              "cpu": platform.processor() or platform.machine(), "input_size": list(shape),
              "forward_images_per_s": forward,
              "preprocess_ms_per_image": round(float(np.mean(prepare_ms)), 2),
              "postprocess_ms_per_image": round(float(np.mean(post_ms)), 2),
              "regions_per_image": round(float(np.mean(regions)), 1), "images": len(samples),
              "torch": torch.__version__}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
