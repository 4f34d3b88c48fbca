"""MyOCR-style Python use (build from YAML, fit, .pth, ``model.pretrained``, ``to_onnx``, predict) and export
settings given at export time (``ocrforge export --opset / -o export.onnx.* / --embedding``, a bare ``.pth``)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from conftest import tiny_cls_config
from omegaconf import OmegaConf

import ocrforge
from ocrforge.cli import main
from ocrforge.config import ConfigError
from ocrforge.engine.module import TaskModule
from ocrforge.errors import CheckpointError

COSFACE = {"type": "Classifier", "backbone": "lcnet_050", "head": {"type": "cosface", "embedding_size": 16}}


def _config(tmp_path: Path, **sections) -> Path:
    return tiny_cls_config(tmp_path, logging={"tensorboard": False, "csv": False}, **sections)


def _image(path: Path) -> Path:
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (40, 72, 3), dtype=np.uint8))
    return path


def _weights_only_checkpoint(config: Path, out: Path) -> Path:
    """A checkpoint as ``ocrforge convert`` writes one (weights + the effective config), without training."""
    module = TaskModule(OmegaConf.to_container(ocrforge.load_config(config)))
    torch.save({"state_dict": {f"model.{k}": v for k, v in module.model.state_dict().items()},
                "hyper_parameters": {"config": OmegaConf.to_container(module.cfg)}}, out)
    return out


@pytest.mark.slow
def test_readme_python_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's Python section, call for call, on a tiny config."""
    monkeypatch.chdir(tmp_path)
    config = _config(tmp_path)
    page = _image(tmp_path / "page.png")

    cfg = ocrforge.load_config(config)
    result = ocrforge.train(cfg)
    model = ocrforge.load_checkpoint(result.best_checkpoint)
    torch.save(model.state_dict(), "orientation.pth")

    cfg = ocrforge.load_config(config, ["model.pretrained=orientation.pth"])
    model = ocrforge.build_model(cfg)
    report = ocrforge.to_onnx(model, "orientation.onnx", cfg=cfg)
    onnx_pred = ocrforge.predict("orientation.onnx", [page])["predictions"]

    assert report["max_abs_diff"]["logits"] <= report["tolerance"]
    torch_pred = ocrforge.predict(result.best_checkpoint, [page])["predictions"]
    assert onnx_pred[0]["label"] == torch_pred[0]["label"]
    assert onnx_pred[0]["score"] == pytest.approx(torch_pred[0]["score"], abs=1e-4)  # the trained weights, loaded
    assert model.training  # to_onnx exported a copy: the caller's model keeps its mode


def test_pretrained_checkpoint_fills_the_training_model_with_a_report(tmp_path: Path) -> None:
    config = _config(tmp_path)
    ckpt = _weights_only_checkpoint(config, tmp_path / "start.ckpt")
    saved = torch.load(ckpt, weights_only=False)["state_dict"]
    # A .pth without the head: the rest loads, the head is reported missing and stays as built.
    partial = {k.removeprefix("model."): v for k, v in saved.items() if not k.startswith("model.head.")}
    torch.save(partial, tmp_path / "backbone.pth")

    for source, missing in ((ckpt, []), (tmp_path / "backbone.pth", ["head.fc.bias", "head.fc.weight"])):
        cfg = ocrforge.load_config(config, [f"model.pretrained={source}"])
        module = TaskModule(OmegaConf.to_container(cfg))  # as training builds it
        assert module.pretrained_report["missing"] == missing
        assert len(module.pretrained_report["loaded"]) == len(partial) + 2 - len(missing)
        key = "backbone.conv_stem.weight"
        assert torch.equal(module.model.state_dict()[key], saved[f"model.{key}"])


def test_pretrained_errors(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with pytest.raises(ConfigError, match=r"command line \(-o\): model.pretrained: no such file: nope.pth"):
        ocrforge.load_config(config, ["model.pretrained=nope.pth"])
    torch.save({"body.0.weight": torch.zeros(3)}, tmp_path / "foreign.pth")
    cfg = ocrforge.load_config(config, [f"model.pretrained={tmp_path / 'foreign.pth'}"])
    with pytest.raises(CheckpointError, match="none of its 1 tensors fits the model"):
        ocrforge.build_model(cfg)
    # The Classifier's own boolean ``pretrained`` (timm's ImageNet weights) is still its argument.
    ocrforge.load_config(config, ["model.pretrained=false"])


@pytest.mark.slow
def test_export_bare_state_dict_with_config(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = _config(tmp_path)
    weights = tmp_path / "weights.pth"
    torch.save(ocrforge.build_model(ocrforge.load_config(config)).state_dict(), weights)
    assert main(["export", str(weights)]) == 2
    assert "holds no ocrforge config; pass the config file" in capsys.readouterr().err
    assert main(["export", str(weights), "--config", str(config)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["onnx"] == str(tmp_path / "weights.onnx") and report["max_abs_diff"]["logits"] < 1e-4


@pytest.mark.slow
def test_export_settings_at_export_time(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = _weights_only_checkpoint(_config(tmp_path), tmp_path / "model.ckpt")
    out = tmp_path / "renamed.onnx"
    assert main(["export", str(ckpt), "--out", str(out), "--opset", "13", "-o", "export.onnx.input_names=[img]",
                 "export.onnx.output_names=[scores]"]) == 0
    report = json.loads(capsys.readouterr().out)
    graph = onnx.load(str(out))
    assert graph.opset_import[0].version == 13 and report["opset"] == 13
    assert [i.name for i in graph.graph.input] == ["img"] and [o.name for o in graph.graph.output] == ["scores"]
    assert set(report["max_abs_diff"]) == {"scores"}
    # Renamed outputs still decode.
    prediction = ocrforge.predict(out, [_image(tmp_path / "line.png")])["predictions"][0]
    assert prediction["label"] in ("0", "180")


@pytest.mark.parametrize(("overrides", "message"), [
    (["export.onnx.output_names=[feats,extra]"],
     r"command line \(-o\): export.onnx.output_names: 2 names \['feats', 'extra'\] for 1 exported output \(logits\)"),
    (["export.onnx.dynamic_axes={feats: {0: batch}}"],
     r"export.onnx.dynamic_axes.feats: no input or output of this export is called 'feats' \(input: image; "
     r"outputs: logits\)"),
    (["export.onnx.dynamic_axes={image: {5: batch}}"], r"export.onnx.dynamic_axes.image: axis 5 of a 4-dimensional"),
    (["export.onnx.input_names=[a,b]"], r"export.onnx.input_names: takes 1 name"),
    (["export.onnx.outputs=[embedding]"], r"export.onnx.outputs: embedding: not an output of this model; it "
                                          r"exports logits"),
    (["export.onnx.opset=99"], r"export.onnx.opset: 99 is newer than the installed onnx package supports"),
])
def test_export_settings_are_checked_before_exporting(tmp_path: Path, overrides: list[str], message: str) -> None:
    ckpt = _weights_only_checkpoint(_config(tmp_path), tmp_path / "model.ckpt")
    with pytest.raises(ConfigError, match=message):
        ocrforge.export_onnx(ckpt, tmp_path / "bad.onnx", overrides=overrides)
    assert not (tmp_path / "bad.onnx").exists()


@pytest.mark.slow
def test_embedding_only_export_of_a_margin_head(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = _config(tmp_path, model=COSFACE)
    weights = tmp_path / "cosface.pth"
    torch.save(ocrforge.build_model(ocrforge.load_config(config)).state_dict(), weights)
    out = tmp_path / "embedding.onnx"
    assert main(["export", str(weights), "--config", str(config), "--embedding", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["max_abs_diff"]) == {"embedding"} and report["max_abs_diff"]["embedding"] < 1e-4
    assert [o.name for o in onnx.load(str(out)).graph.output] == ["embedding"]
    prediction = ocrforge.predict(out, [_image(tmp_path / "line.png")])["predictions"][0]
    assert len(prediction["embedding"]) == 16
    assert np.linalg.norm(prediction["embedding"]) == pytest.approx(1.0, abs=1e-5)
