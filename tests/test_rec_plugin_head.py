"""A third recognition head needs only its own class, config and tests: one defined here (not in the package)
trains, has its own loss term and label-length checks, exports to ONNX and decodes through ONNX Runtime with
no change to the task, loss, inference or export code."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import write_config
from torch import nn

from ocrforge.config import load_config
from ocrforge.data.synth_text import SynthWordsDataset
from ocrforge.engine.module import build_task
from ocrforge.export.onnx_export import export_onnx
from ocrforge.export.runtime import OnnxModel
from ocrforge.registry import REC_HEADS
from ocrforge.runners.predict import predict
from ocrforge.runners.train import train
from ocrforge.tasks.rec.heads import RecHead
from ocrforge.tasks.rec.inference import ctc_greedy, decode_outputs


@REC_HEADS.register()
class MLPCTCHead(RecHead):
    """CTC over a two-layer MLP (a hidden layer in front of the classifier), with a loss term of its own."""

    config_injected = ("in_channels", "num_classes")
    decoder_name = "ctc"
    export_outputs = ("probs",)
    export_axes: ClassVar[dict[str, dict[int, str]]] = {"probs": {0: "batch", 1: "frames"}}
    loss_name = "mlp_ctc"
    frames_follow_width = True

    def __init__(self, in_channels: int, num_classes: int, hidden: int = 32) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_channels, hidden), nn.GELU(), nn.Linear(hidden, num_classes))

    def forward(self, frames: torch.Tensor, targets: dict | None = None) -> dict[str, torch.Tensor]:
        logits = self.mlp(frames)
        return {"mlp_logits": logits} if self.training else {"mlp_logits": logits,
                                                              "probs": logits.float().softmax(-1)}

    def export_forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (self.mlp(frames).float().softmax(-1),)

    @classmethod
    def loss(cls, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
             label_smoothing: float = 0.0) -> torch.Tensor | None:
        if "mlp_logits" not in outputs:
            return None
        log_probs = outputs["mlp_logits"].float().log_softmax(-1).transpose(0, 1)
        frames = torch.full((log_probs.shape[1],), log_probs.shape[0], dtype=torch.long)
        return F.ctc_loss(log_probs, targets["ids"], frames, targets["lengths"], zero_infinity=True)


def plugin_config(tmp_path: Path) -> Path:
    words = {"type": "SynthWordsSource", "num_samples": 16, "seed": 0, "max_len": 8, "batch_size": 8, "num_workers": 0}
    cfg = {
        "task": "rec", "project": "tests", "exp_name": "plugin", "work_dir": str(tmp_path / "work_dirs"),
        "model": {"type": "Recognizer", "backbone": {"type": "CRNNBackbone", "width": 0.125},
                  "neck": {"type": "BiLSTMNeck", "hidden": 16}, "head": {"type": "MLPCTCHead", "hidden": 24}},
        "loss": {"type": "RecognitionLoss", "weights": {"mlp_ctc": 0.5}},
        "data": {"image_size": [32, 96], "max_text_length": 10,
                 "charset": {"dict": "printable", "use_space_char": True, "oov": "skip"},
                 "train": words, "val": words},
        "optimizer": {"type": "AdamW", "lr": 0.003},
        "train": {"max_epochs": 1, "max_steps": 2, "progress_bar": False, "log_every_n_steps": 1},
    }
    return write_config(tmp_path / "plugin.yaml", cfg, {})


def test_plugin_head_declares_its_loss_term_and_label_checks(tmp_path: Path) -> None:
    task = build_task(load_config(plugin_config(tmp_path)))
    model = task.build_model()
    with torch.no_grad():
        frames = model.eval()(torch.zeros(1, 3, 32, 96))["probs"].shape[1]
    assert task.output_frames == frames  # probed because the head's frames follow the width

    dataset = task.build_dataset("train")
    batch = task.collate([dataset[i] for i in range(4)])
    loss = task.build_loss()
    outputs = model.train()(task.model_input(batch), batch["targets"])
    losses = loss(outputs, batch)
    assert set(losses) == {"mlp_ctc", "loss"}
    assert torch.allclose(losses["loss"], 0.5 * losses["mlp_ctc"])  # weighted by loss.weights.mlp_ctc


@pytest.mark.slow
def test_plugin_head_trains_exports_and_decodes_through_onnx_runtime(tmp_path: Path) -> None:
    result = train(load_config(plugin_config(tmp_path)))
    assert result.metrics["final"]["train/mlp_ctc_epoch"] > 0
    onnx_path = tmp_path / "plugin.onnx"
    report = export_onnx(result.last_checkpoint, onnx_path)
    assert report["outputs"] == ["probs"] and report["max_abs_diff"]["probs"] < 1e-4

    session = OnnxModel(onnx_path, providers=["CPUExecutionProvider"])
    assert session.meta["decoder"] == "ctc"
    words = SynthWordsDataset(3, 5, charset="printable_space", max_len=8)
    images = [words[i]["image"] for i in range(3)]
    batch = np.stack([session.processing.prepare(image, session.meta) for image in images])
    probs = session.run(batch)["probs"]
    decoded = decode_outputs({"probs": probs}, session.meta)
    assert decoded == ctc_greedy(probs, session.meta["tokens"])

    folder = tmp_path / "crops"
    folder.mkdir()
    for i, image in enumerate(images):
        cv2.imwrite(str(folder / f"w{i}.png"), image[:, :, ::-1])
    by_onnx = predict(onnx_path, [folder], progress=False)["predictions"]
    by_ckpt = predict(result.last_checkpoint, [folder], progress=False)["predictions"]
    assert [p["text"] for p in by_onnx] == [p["text"] for p in by_ckpt] == [d["text"] for d in decoded]
    assert np.allclose([p["score"] for p in by_onnx], [p["score"] for p in by_ckpt], atol=1e-5)


def test_models_exported_before_the_decoder_was_recorded_decode_as_ctc() -> None:
    probs = np.array([[[0.1, 0.9, 0.0], [0.9, 0.1, 0.0], [0.1, 0.0, 0.9]]], dtype=np.float32)
    tokens = ["<blank>", "a", "b"]
    assert decode_outputs({"probs": probs}, {"tokens": tokens}) == ctc_greedy(probs, tokens)
