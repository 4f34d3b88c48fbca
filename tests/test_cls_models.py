"""timm backbones by name, margin-head export, optimiser choices and trainer switches on tiny runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import tiny_cls_config

from ocrforge.config import load_config
from ocrforge.engine.optim import sgd
from ocrforge.export.onnx_export import export_onnx
from ocrforge.runners.train import train
from ocrforge.tasks.cls.model import Classifier


@pytest.mark.slow  # full-size timm models
@pytest.mark.parametrize("backbone", ["lcnet_050", "resnet18", "mobilenetv3_small_100", "hgnetv2_b0"])
def test_timm_backbones_by_name(backbone: str) -> None:
    model = Classifier(num_classes=3, backbone=backbone).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 64, 64))
    assert out["logits"].shape == (2, 3)


def test_unknown_backbone_names_similar_ones() -> None:
    with pytest.raises(ValueError, match="unknown timm backbone 'resnet181'"):
        Classifier(num_classes=2, backbone="resnet181")


def test_timm_backbone_mapping_is_the_name_form_spelled_out() -> None:
    """``backbone: {type: TimmClassifierBackbone, name: …}`` builds what the bare name builds, with the same keys,
    so checkpoints of either form load into the other."""
    short = Classifier(num_classes=3, backbone="resnet18", drop_rate=0.2, backbone_kwargs={"drop_path_rate": 0.1})
    spelled = Classifier(num_classes=3, backbone={"type": "TimmClassifierBackbone", "name": "resnet18",
                                                  "drop_rate": 0.2, "drop_path_rate": 0.1})
    assert [(k, v.shape) for k, v in short.state_dict().items()] == [
        (k, v.shape) for k, v in spelled.state_dict().items()]
    assert short.backbone.drop_rate == spelled.backbone.drop_rate == 0.2
    spelled.load_state_dict(short.state_dict())
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(short.eval()(images)["logits"], spelled.eval()(images)["logits"])
    with pytest.raises(ValueError, match=r"model\.drop_rate: only with a timm model name"):
        Classifier(num_classes=3, backbone={"type": "TimmClassifierBackbone", "name": "resnet18"}, drop_rate=0.2)


@pytest.mark.slow
def test_cosface_export_outputs_normalised_embedding(tmp_path: Path) -> None:
    cfg = load_config(tiny_cls_config(tmp_path, model={"type": "Classifier", "backbone": "lcnet_050",
                                                       "head": {"type": "cosface", "embedding_size": 16}}))
    result = train(cfg)
    out = tmp_path / "cosface.onnx"
    report = export_onnx(result.last_checkpoint, out)
    assert set(report["max_abs_diff"]) == {"logits", "embedding"}
    session = ort.InferenceSession(str(out))
    logits, embedding = session.run(None, {"image": np.random.default_rng(0).standard_normal(
        (3, 3, 32, 32)).astype(np.float32)})
    assert logits.shape == (3, 2) and embedding.shape == (3, 16)
    assert np.allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-5)
    meta = json.loads(session.get_modelmeta().custom_metadata_map["ocrforge"])
    assert meta["outputs"] == ["logits", "embedding"]


@pytest.mark.slow
def test_gradient_accumulation_and_clipping(tmp_path: Path) -> None:
    cfg = load_config(tiny_cls_config(tmp_path, train={"accumulate_grad_batches": 3, "gradient_clip_val": 0.5,
                                                       "max_epochs": 1, "progress_bar": False},
                                      optimizer={"type": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True},
                                      deterministic=True))
    result = train(cfg)
    ckpt = torch.load(result.last_checkpoint, weights_only=False)
    assert ckpt["global_step"] == 1  # 3 batches, one optimiser step
    group = ckpt["optimizer_states"][0]["param_groups"][0]
    assert group["nesterov"] is True and group["momentum"] == 0.9


def test_sgd_splits_weight_decay() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    opt = sgd(model.named_parameters(), lr=0.1, weight_decay=1e-4, nesterov=True)
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 1e-4 and all(p.ndim > 1 for p in decayed["params"])
    assert plain["weight_decay"] == 0.0 and len(plain["params"]) == 3  # conv bias, bn weight, bn bias
