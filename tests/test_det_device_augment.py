"""``data.augment.on_device``: the workers plan each sample and draw the binary maps; the warp, colour change and
DB's threshold map run batched on the training device. On CPU tensors they give what the CPU path gives: the same
polygons and binary maps exactly, images within two grey levels (OpenCV's fixed-point bilinear weights against
float ones), threshold maps within float16's rounding."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import QUIET, assert_same_training_state, tiny_det_config
from PIL import Image

from ocrforge.cli import main
from ocrforge.config import load_config
from ocrforge.data.collate import COUNT_KEY
from ocrforge.engine.module import build_task
from ocrforge.tasks.det.augment import DetAugment, DetAugmentConfig, WarpPlan
from ocrforge.tasks.det.dbnet.device_targets import border_map, threshold_map
from ocrforge.tasks.det.dbnet.targets import DBTargets, make_db_targets
from ocrforge.tasks.det.device_augment import EncodedImage, pyr_down, warp_batch
from ocrforge.tasks.det.synth_pages import SynthPagesDataset

SIZE = (128, 160)
GREY_LEVELS = 2  # the largest difference allowed in any pixel
MEAN_GREY_LEVELS = 0.25  # and on average over an image


def _pages(count: int) -> list[dict]:
    pages = SynthPagesDataset(height=224, width=288, num_samples=count, seed=5)
    return [pages[i] for i in range(count)]


def _device_task(tmp_path: Path, on_device: bool, **augment):
    cfg = load_config(tiny_det_config(tmp_path, data={"image_size": list(SIZE),
                                                      "augment": {"on_device": on_device, **augment}}))
    return build_task(cfg)


def _batch(task, seeds: list[int]) -> dict:
    """Training samples of synthetic pages, the same random draws for the same seeds in either path."""
    dataset = task.build_dataset("train")
    samples = []
    for index, seed in enumerate(seeds):
        np.random.seed(seed)
        samples.append(dataset[index % len(dataset)])
    counts = [s[COUNT_KEY] for s in samples]
    return {**task.collate(samples), COUNT_KEY: counts}


@pytest.mark.parametrize("pad_value", [0, 114])
def test_batched_warp_gives_the_cpu_images(pad_value: int) -> None:
    # scale (0.3, 3): samples halved before the warp, zoomed in; rotation on half of them; colour on most
    augment = DetAugment(size=SIZE, scale=(0.3, 3.0), rotation=20.0, pad_value=pad_value)
    pages = _pages(4)
    expected, parts, warps, rotated, halved = [], [], [], 0, 0
    for seed in range(24):
        page = pages[seed % len(pages)]
        image, polygons, _ = augment(page["image"], page["polygons"], page["ignore"], np.random.default_rng(seed))
        plan = augment.plan(page["image"].shape[:2], page["polygons"], page["ignore"], np.random.default_rng(seed))
        assert all(np.array_equal(a, b) for a, b in zip(polygons, plan.polygons, strict=True))
        part, warp = plan.for_device(page["image"])
        assert part.shape[0] <= page["image"].shape[0] and part.shape[1] <= page["image"].shape[1]
        expected.append(image)
        parts.append(part)
        warps.append(warp)
        rotated += not plan.axis_aligned
        halved += plan.halvings > 0
    assert 0 < rotated < 24 and 0 < halved < 24
    stacked = {k: torch.stack([torch.from_numpy(w[k]) for w in warps]) for k in warps[0]}
    images, unreadable = warp_batch([torch.from_numpy(np.ascontiguousarray(p)) for p in parts], stacked, SIZE,
                                    pad_value)
    assert unreadable == []
    assert images.shape == (len(parts), 3, *SIZE)
    for got, want in zip(images, expected):
        difference = (got.permute(1, 2, 0) - torch.from_numpy(want).float()).abs()
        assert difference.max() <= GREY_LEVELS and difference.mean() <= MEAN_GREY_LEVELS


def test_device_threshold_map_is_the_cpu_one() -> None:
    targets = DBTargets()
    page = _pages(1)[0]
    height, width = page["image"].shape[:2]
    maps, inputs = targets.host_part(page["polygons"], page["ignore"], height, width)
    cpu = make_db_targets(page["polygons"], page["ignore"], height, width)
    for key in maps:  # drawn in uint8 here, in float32 there
        assert np.array_equal(maps[key], cpu[key].astype(np.uint8)), key
    edges = torch.from_numpy(inputs["border_edges"])[None]
    assert len(edges[0]) == 4 * sum(not flag for flag in page["ignore"])  # quads: four edges each
    got = threshold_map(edges, height, width, targets.thresh_min, targets.thresh_max)[0].numpy()
    assert np.abs(got - cpu["threshold_map"]).max() < 1e-5
    assert cpu["threshold_map"].max() > targets.thresh_min + 0.3  # the map is not flat: the test can fail
    # padding rows (an empty box) add nothing, and the chunked eager evaluation equals the dense one
    padded = torch.cat([edges, torch.zeros(1, 5, 9)], dim=1)
    assert torch.equal(border_map(padded, height, width), border_map(edges, height, width))


def test_device_batches_give_the_cpu_batches(tmp_path: Path) -> None:
    seeds = [3, 4, 5, 6]
    cpu_task, device_task = _device_task(tmp_path / "cpu", False), _device_task(tmp_path / "dev", True)
    cpu, device = _batch(cpu_task, seeds), _batch(device_task, seeds)
    assert all(part.shape[-1] == 3 for part in device["image"])  # HWC source parts travel, not the output
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.warns(UserWarning, match="meant for GPU training"):
        images = device_task.augment_on_device(device)  # under bf16 autocast the augmentation stays fp32
    assert torch.equal(images, warp_batch(device["image"], device["warp"], SIZE, 0)[0])
    difference = (images - cpu["image"].float()).abs()
    assert difference.max() <= GREY_LEVELS and difference.mean() <= MEAN_GREY_LEVELS
    for key in ("shrink_map", "shrink_mask", "threshold_mask"):
        assert torch.equal(device["targets"][key], cpu["targets"][key]), key
    threshold = device["targets"]["threshold_map"]
    assert threshold.dtype == torch.float32
    assert (threshold - cpu["targets"]["threshold_map"].float()).abs().max() < 1e-3  # float16 in the CPU batch
    assert cpu[COUNT_KEY] == device[COUNT_KEY]


def test_a_sample_without_text_still_batches(tmp_path: Path) -> None:
    task = _device_task(tmp_path, True)
    maps, inputs = task.targets.host_part([], [], *SIZE)
    assert inputs["border_edges"].shape == (0, 9) and maps["shrink_mask"].all()
    threshold = threshold_map(torch.zeros(2, 1, 9), *SIZE, 0.3, 0.7)
    assert torch.allclose(threshold, torch.full((2, *SIZE), 0.3))


@pytest.mark.slow
def test_training_on_device_augmentation_is_reproducible_and_psenet_trains_too(tmp_path: Path) -> None:
    checkpoints = []
    for name in ("first", "second"):
        config = tiny_det_config(tmp_path / name, **QUIET, data={"augment": {"on_device": True}},
                                 ema={"enabled": True})
        assert main(["train", str(config)]) == 0
        (run,) = (tmp_path / name / "work_dirs" / "tests").glob("det_2*")
        final = json.loads((run / "metrics.json").read_text())["final"]
        assert np.isfinite(final["val/loss"])
        checkpoints.append(torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False))
    assert checkpoints[0]["global_step"] == 2
    assert_same_training_state(checkpoints[0], checkpoints[1], "same seed, on-device augmentation")
    # A family without a device part (PSENet draws all its maps in the workers): only the pixels move.
    task = build_task(load_config(tiny_det_config(
        tmp_path / "pse", data={"augment": {"on_device": True}},
        model={"type": "PSENet", "backbone": {"type": "TimmFeaturePyramid", "name": "lcnet_050"},
               "neck": {"type": "DBFPN", "channels": 32}})))
    batch = _batch(task, [1, 2])
    assert batch["device_targets"] == {}
    model, loss = task.build_model(), task.build_loss()
    losses = loss(task.forward_train(model, batch), batch)
    assert torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert Counter(type(p.grad) for p in model.parameters() if p.requires_grad)[torch.Tensor] > 0


def test_sync_free_hard_negative_mining_is_topk_mining() -> None:
    from ocrforge.tasks.det.dbnet.loss import _balanced_bce_on_device, balanced_bce

    generator = torch.Generator().manual_seed(0)
    prob = torch.rand(2, 40, 50, generator=generator)
    gt = (torch.rand(2, 40, 50, generator=generator) < 0.1).float()
    mask = (torch.rand(2, 40, 50, generator=generator) < 0.9).float()
    for ratio in (0.5, 3.0, 1000.0):  # a few, many, more negatives than there are
        expected = balanced_bce(prob, gt, mask, ratio)  # CPU: topk of a count read back
        loss = torch.nn.functional.binary_cross_entropy(prob.clamp(1e-6, 1 - 1e-6), gt, reduction="none")
        got = _balanced_bce_on_device(loss * (1 - gt) * mask, (loss * gt * mask).sum(),
                                      torch.count_nonzero(gt * mask), torch.count_nonzero((1 - gt) * mask), ratio)
        assert torch.allclose(got, expected, rtol=1e-5), ratio


@pytest.mark.slow
def test_compiled_threshold_map_is_the_eager_one_without_recompiling() -> None:
    """The fused path (torch.compile, the default on CUDA; here the CPU backend) over chunks of edges: several edge
    counts and batch sizes, one graph."""
    import torch._dynamo

    from ocrforge.tasks.det.dbnet import device_targets

    page = _pages(1)[0]
    height, width = page["image"].shape[:2]
    _, inputs = DBTargets().host_part(page["polygons"], page["ignore"], height, width)
    edges = torch.from_numpy(inputs["border_edges"])
    edges = torch.cat([edges, edges[:40]])[None].repeat(3, 1, 1)  # more than one chunk
    torch._dynamo.reset()
    device_targets._compiled_border_map = None
    with torch._dynamo.config.patch(recompile_limit=1, fail_on_recompile_limit_hit=True):
        for batch, count in ((3, edges.shape[1]), (2, 5), (3, 7)):
            eager = threshold_map(edges[:batch, :count], height, width, 0.3, 0.7, fused=False)
            fused = threshold_map(edges[:batch, :count], height, width, 0.3, 0.7, fused=True)
            assert (eager - fused).abs().max() < 1e-6


def test_pyr_down_on_the_device_is_opencvs() -> None:
    generator = np.random.default_rng(0)
    for height, width in ((37, 50), (64, 41), (3, 9), (2, 50), (1, 5), (5, 1)):
        image = cv2.GaussianBlur(generator.integers(0, 256, (height, width, 3), dtype=np.uint8), (3, 3), 1)
        got = pyr_down(torch.from_numpy(image).permute(2, 0, 1).float()).permute(1, 2, 0).numpy()
        expected = cv2.pyrDown(image)
        assert got.shape == expected.shape
        assert np.abs(got - expected.reshape(got.shape)).max() <= 1  # OpenCV rounds halves up, torch to even


def test_a_warp_that_reads_only_outside_the_image_still_reads_one_pixel() -> None:
    above = WarpPlan(0, np.array([[1.0, 0, 0], [0, 1.0, 500.0]]), (10, 10), True, None, [], [])  # rows -500..-491
    x0, y0, x1, y1 = above.read_box((100, 80))
    assert 0 <= x0 < x1 <= 80 and (y0, y1) == (0, 1)
    part, warp = above.for_device(np.zeros((100, 80, 3), np.uint8))
    assert part.shape[:2] == (1, x1 - x0)
    images, _ = warp_batch([torch.from_numpy(np.ascontiguousarray(part))], {k: torch.from_numpy(v)[None]
                                                                             for k, v in warp.items()}, (32, 32), 0)
    assert images.shape == (1, 3, 32, 32)


def _icdar_folder(root: Path, pages: list[dict]) -> tuple[Path, Path]:
    """The pages as ICDAR 2015 files: baseline JPEGs, and, to be decoded by the workers, one PNG and one JPEG
    with an EXIF rotation of 1 (none: still decodable on the device) and one of 6 (not)."""
    images, labels = root / "images", root / "gt"
    images.mkdir(parents=True)
    labels.mkdir()
    for i, page in enumerate(pages):
        bgr = cv2.cvtColor(page["image"], cv2.COLOR_RGB2BGR)
        name = f"img_{i}.png" if i == 1 else f"img_{i}.jpg"
        if i in (2, 3):
            exif = Image.Exif()
            exif[274] = 1 if i == 2 else 6
            Image.fromarray(page["image"]).save(images / name, "JPEG", quality=95, exif=exif)
        else:
            cv2.imwrite(str(images / name), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95] if i != 1 else [])
        lines = [",".join(map(str, np.rint(polygon).astype(int).reshape(-1))) + (",###" if flag else ",word")
                 for polygon, flag in zip(page["polygons"], page["ignore"])]
        (labels / f"gt_img_{i}.txt").write_text("\n".join(lines) + "\n")
    return images, labels


def test_jpeg_files_decoded_on_the_device_give_the_cpu_batches(tmp_path: Path) -> None:
    pages = _pages(6)
    images, labels = _icdar_folder(tmp_path / "icdar", pages)
    dataset = {"type": "Icdar2015Dataset", "images_dir": str(images), "labels": str(labels), "batch_size": 2,
               "num_workers": 0}
    augment = {"scale": [0.4, 1.5]}  # 64x96 crops of 224x288 pages: zooms below 0.5, halved before the warp

    def task(**options):
        return build_task(load_config(tiny_det_config(tmp_path / str(len(options)), data={
            "image_size": [64, 96], "train": dataset, "augment": {**augment, **options}})))

    seeds = list(range(6)) * 2
    cpu = _batch(task(), seeds)
    device_task = task(on_device=True, decode_on_device=True)
    device = _batch(device_task, seeds)
    kinds = [type(source).__name__ for source in device["image"]]
    assert kinds.count("EncodedImage") == 8 and kinds.count("Tensor") == 4  # the PNG and the EXIF 6 JPEG: workers
    assert any(s.halvings for s in device["image"] if isinstance(s, EncodedImage))
    got = device_task.augment_on_device(device)
    difference = (got - cpu["image"].float()).abs()
    assert difference.mean() <= MEAN_GREY_LEVELS
    assert (difference > GREY_LEVELS).float().mean() < 1e-3  # pyrDown's rounding, amplified by the warp: rare
    for key in ("shrink_map", "shrink_mask", "threshold_mask"):
        assert torch.equal(device["targets"][key], cpu["targets"][key]), key
    assert [tuple(size) for size in device["size"]] == [tuple(size) for size in cpu["size"]]


def test_decoding_on_the_device_needs_the_warp_there() -> None:
    with pytest.raises(ValueError, match="decode_on_device"):
        DetAugmentConfig(decode_on_device=True)


def test_a_file_the_device_decoder_rejects_is_decoded_by_opencv_or_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    from ocrforge.tasks.det import device_augment

    image = _pages(1)[0]["image"]
    good = np.frombuffer(cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes(), np.uint8)
    files = [EncodedImage(good, 0, "good.jpg"), EncodedImage(good[:100].copy(), 0, "broken.jpg")]

    def strict_decoder(data, mode, device):  # as a device decoder that rejects what it cannot read
        if isinstance(data, list):
            return [strict_decoder(d, mode, device) for d in data]
        if len(data) < 1000:
            raise RuntimeError("nvjpeg: bad bitstream")
        return torch.from_numpy(cv2.cvtColor(cv2.imdecode(data.numpy(), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                                ).permute(2, 0, 1)

    monkeypatch.setattr(device_augment, "decode_jpeg", strict_decoder)
    monkeypatch.setattr(device_augment, "decode_image", lambda data, path: image)  # OpenCV reads it
    decoded = device_augment._decode(files, torch.device("cpu"))
    assert [tuple(d.shape) for d in decoded] == [(3, *image.shape[:2])] * 2
    monkeypatch.setattr(device_augment, "decode_image", _unreadable)  # nor does OpenCV
    with pytest.warns(UserWarning, match=r"broken\.jpg"):
        assert device_augment._decode(files, torch.device("cpu"))[1] is None


def _unreadable(data, path):
    from ocrforge.data.images import SampleSkipped

    raise SampleSkipped("unreadable_image", path)


def test_the_devices_bce_keeps_a_nan_for_the_non_finite_check() -> None:
    from ocrforge.tasks.det.dbnet.loss import bce_keeping_nan

    prob = torch.rand(3, 20, 20, generator=torch.Generator().manual_seed(1)).clamp(1e-6, 1 - 1e-6)
    gt = (prob > 0.7).float()
    expected = torch.nn.functional.binary_cross_entropy(prob, gt, reduction="none")
    assert torch.allclose(bce_keeping_nan(prob, gt), expected, atol=1e-5)
    prob[0, 0, 0] = float("nan")
    assert torch.isnan(bce_keeping_nan(prob, gt).sum())  # F.binary_cross_entropy raises (asserts on CUDA) here
