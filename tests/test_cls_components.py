"""Classification pieces checked against hand-computed values: metric, margin heads, LR schedules, preprocessing."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from ocrforge.engine import optim  # noqa: F401  (registers optimisers and schedules)
from ocrforge.registry import SCHEDULERS
from ocrforge.tasks.cls.heads import ArcFaceHead, CosFaceHead
from ocrforge.tasks.cls.inference import decode, preprocess
from ocrforge.tasks.cls.metric import ClassificationMetric


def test_metric_matches_hand_computation() -> None:
    metric = ClassificationMetric(num_classes=3)
    target = torch.tensor([0, 0, 1, 1, 2, 2])
    pred = torch.tensor([0, 1, 1, 1, 2, 0])
    metric.update({"logits": torch.nn.functional.one_hot(pred, 3).float()}, {"label": target})
    out = metric.compute()
    assert out["acc"].item() == pytest.approx(4 / 6)
    # per class: P = [1/2, 2/3, 1], R = [1/2, 1, 1/2] -> F1 = [1/2, 4/5, 2/3]
    assert out["macro_f1"].item() == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert [out[f"class_acc/{i}"].item() for i in range(3)] == pytest.approx([0.5, 1.0, 0.5])
    assert "top5" not in out  # top-5 of 3 classes would always be 100%


def test_metric_top5_and_accumulation() -> None:
    metric = ClassificationMetric(num_classes=8)
    logits = torch.arange(8, dtype=torch.float32).repeat(4, 1)  # ranking 7 > 6 > ... > 0
    metric.update({"logits": logits[:2]}, {"label": torch.tensor([7, 3])})  # top1 hit, top5 hit (7,6,5,4,3)
    metric.update({"logits": logits[2:]}, {"label": torch.tensor([2, 0])})  # misses
    out = metric.compute()
    assert out["acc"].item() == pytest.approx(1 / 4)
    assert out["top5"].item() == pytest.approx(2 / 4)
    assert out["num_samples"].item() == 4


@pytest.mark.parametrize("head_cls", [CosFaceHead, ArcFaceHead])
def test_margin_heads(head_cls: type) -> None:
    torch.manual_seed(0)
    head = head_cls(in_features=16, num_classes=5, embedding_size=8, scale=10.0, margin=0.3)
    features, labels = torch.randn(4, 16), torch.tensor([0, 1, 2, 3])
    head.eval()
    plain = head(features)
    assert torch.allclose(plain["embedding"].norm(dim=1), torch.ones(4), atol=1e-5)
    cosine = plain["embedding"] @ torch.nn.functional.normalize(head.centres, dim=1).t()
    assert torch.allclose(plain["logits"], 10.0 * cosine, atol=1e-5)
    assert torch.equal(head(features, labels)["logits"], plain["logits"]), "no margin outside training"
    head.train()
    head.neck[1].eval()  # same BatchNorm statistics as above
    with_margin = head(features, labels)["logits"]
    target_cos = cosine[torch.arange(4), labels]
    expected = target_cos - 0.3 if head_cls is CosFaceHead else torch.cos(torch.acos(target_cos) + 0.3)
    assert torch.allclose(with_margin[torch.arange(4), labels], 10.0 * expected, atol=1e-4)
    others = torch.ones_like(with_margin, dtype=torch.bool)
    others[torch.arange(4), labels] = False
    assert torch.allclose(with_margin[others], plain["logits"][others], atol=1e-5)


def _lrs(name: str, total: int = 100, steps_per_epoch: int = 10, **kwargs) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = SCHEDULERS.get(name)(opt, total_steps=total, steps_per_epoch=steps_per_epoch, **kwargs)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_cosine_with_warmup() -> None:
    lrs = _lrs("cosine", warmup_steps=10, min_lr_ratio=0.1)
    assert lrs[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[55] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert min(lrs[10:]) >= 0.1 - 1e-9 and all(a >= b for a, b in itertools.pairwise(lrs[10:]))


def test_onecycle_peaks_at_pct_start() -> None:
    lrs = _lrs("onecycle", pct_start=0.3)
    assert int(np.argmax(lrs)) in (29, 30) and max(lrs) == pytest.approx(1.0, abs=1e-3)
    assert lrs[0] == pytest.approx(1 / 25) and lrs[-1] < 1e-3


def test_poly_and_multistep() -> None:
    poly = _lrs("poly", power=0.9)
    assert poly[0] == pytest.approx(1.0) and poly[50] == pytest.approx(0.5 ** 0.9)
    steps = _lrs("multistep", milestones=[3, 6], gamma=0.1)  # epochs of 10 steps
    assert steps[29] == pytest.approx(1.0) and steps[30] == pytest.approx(0.1) and steps[60] == pytest.approx(0.01)


def test_preprocess_letterbox_uses_border_colour() -> None:
    image = np.full((10, 40, 3), 200, np.uint8)
    image[3:7, 5:35] = 0
    out = preprocess(image, (32, 32), [0.0] * 3, [1.0] * 3, keep_ratio=True)
    assert out.shape == (3, 32, 32) and out.dtype == np.float32
    assert out[:, 0, :].min() == pytest.approx(200 / 255)  # padding rows take the border colour
    stretched = preprocess(image, (32, 32), [0.5] * 3, [0.5] * 3)
    assert stretched.min() == pytest.approx(-1.0) and stretched.max() == pytest.approx(200 / 255 * 2 - 1)


def test_decode_topk() -> None:
    out = decode(np.array([[0.0, 2.0, 1.0]]), ["a", "b", "c"], top_k=2)
    assert out[0]["label"] == "b" and out[0]["class_id"] == 1
    assert [k for k, _ in out[0]["top_k"]] == ["b", "c"]
    assert sum(np.exp([0.0, 2.0, 1.0]) / np.exp([0.0, 2.0, 1.0]).sum()) == pytest.approx(1.0)
    assert out[0]["score"] == pytest.approx(np.exp(2) / (1 + np.exp(1) + np.exp(2)))
