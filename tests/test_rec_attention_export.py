"""Attention-decoder recognisers: ONNX export, ONNX Runtime parity with PyTorch, numpy greedy decoding."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import write_config
from omegaconf import OmegaConf

from ocrforge.cli import main
from ocrforge.config import load_config
from ocrforge.data.images import normalise
from ocrforge.engine.loading import module_from_checkpoint
from ocrforge.engine.module import TaskModule
from ocrforge.errors import ConfigError
from ocrforge.runners.ocr import _load
from ocrforge.tasks.rec.heads import AttentionHead
from ocrforge.tasks.rec.inference import attention_greedy, decode_outputs, resize_pad

MAX_LENGTH = 9  # decoder steps: max_length + 1 = 10


def attention_config(tmp_path: Path, **sections) -> Path:
    """8 short words memorised in 100 steps (lr 0.01, no dropout): a model whose readings depend on the image,
    so a graph that ignored its input or mixed up its rows could not pass. Validation repeats the training words."""
    words = {"type": "SynthWords", "num_samples": 8, "seed": 0, "max_len": 6, "batch_size": 8, "num_workers": 0}
    cfg = {
        "task": "rec", "project": "tests", "exp_name": "att", "work_dir": str(tmp_path / "work_dirs"),
        "model": {"type": "Recognizer", "backbone": {"type": "crnn_vgg", "width": 0.125},
                  "neck": {"type": "bilstm", "hidden": 16},
                  "head": {"type": "attention", "dim": 32, "max_length": MAX_LENGTH, "dropout": 0.0}},
        "data": {"image_size": [32, 96], "max_text_length": MAX_LENGTH - 1,
                 "charset": {"dict": "printable", "use_space_char": True, "oov": "skip"},
                 "train": words, "val": words},
        "optimizer": {"type": "adamw", "lr": 0.01},
        "train": {"max_epochs": 100, "check_val_every_n_epoch": 100, "progress_bar": False, "log_every_n_steps": 10},
    }
    return write_config(tmp_path / "att.yaml", cfg, sections)


def test_attention_greedy_stops_at_eos_and_skips_specials() -> None:
    tokens = ["<blank>", "a", "b", "c"]  # bos = 4, eos = 5
    probs = np.full((3, 6, 6), 0.02, dtype=np.float32)
    rows = [[(1, 0.9), (0, 0.6), (2, 0.8), (4, 0.7), (5, 0.5), (3, 0.9)],  # a, blank, b, bos, eos, then ignored
            [(5, 0.9), (1, 0.9), (1, 0.9), (1, 0.9), (1, 0.9), (1, 0.9)],  # eos first: empty
            [(3, 0.5), (3, 0.5), (1, 0.4), (2, 0.5), (1, 0.5), (3, 0.5)]]  # no eos; repeats are kept (not CTC)
    for r, row in enumerate(rows):
        for t, (index, p) in enumerate(row):
            probs[r, t, index] = p
    got = attention_greedy(probs, tokens)
    assert [g["text"] for g in got] == ["ab", "", "ccabac"]
    assert got[0]["char_scores"] == pytest.approx([0.9, 0.8]) and got[0]["score"] == pytest.approx(0.72)
    assert got[1] == {"text": "", "score": 0.0, "char_scores": []}
    assert got[2]["score"] == pytest.approx(0.5 ** 5 * 0.4)
    meta = {"decoder": "attention", "tokens": tokens}
    assert decode_outputs({"attn_probs": probs}, {**meta, "beam_width": 0}) == got
    with pytest.raises(ConfigError, match="CTC recognisers only"):
        decode_outputs({"attn_probs": probs}, {**meta, "beam_width": 4})
    with pytest.raises(ConfigError, match="no recognition decoder 'beam'"):
        decode_outputs({"attn_probs": probs}, {**meta, "decoder": "beam"})
    with pytest.raises(ValueError, match="classes"):
        attention_greedy(probs[..., :5], tokens)


def test_attention_head_decoding_paths_agree() -> None:
    torch.manual_seed(0)
    head = AttentionHead(24, 10, dim=32, layers=2, max_length=MAX_LENGTH).eval()
    frames = torch.randn(3, 11, 24)
    with torch.no_grad():
        # The written-out decoder equals the nn.TransformerDecoder whose parameters it runs.
        memory = head.memory(frames)
        tokens = torch.randint(0, 12, (3, 5))
        x = head.embed(tokens) + head.position[:, :5]
        causal = torch.triu(torch.full((5, 5), float("-inf")), diagonal=1)
        assert torch.allclose(head._decode(x, memory), head.decoder(x, memory, tgt_mask=causal), atol=1e-5)
        full = head.greedy_steps(frames, MAX_LENGTH + 1)
        assert full.shape == (3, MAX_LENGTH + 1, 12)
        assert torch.equal(head(frames)["attn_logits"], full)  # no row emits eos: no early exit
        # The eval outputs hold the export output, which the one numpy decoder reads on either path.
        assert torch.equal(head(frames)["attn_probs"], full.softmax(-1))
        (exported,) = head.export_forward(frames)
        assert torch.equal(exported, full.softmax(-1))
        head.out.bias[head.eos] = 100.0  # every row emits eos at once: eval forward stops after one step
        early = head(frames)["attn_logits"]
        assert early.shape == (3, 1, 12)
        assert torch.allclose(early, head.greedy_steps(frames, MAX_LENGTH + 1)[:, :1])


@pytest.mark.slow
def test_ctc_head_with_attention_guidance_exports_ctc_only(tmp_path: Path) -> None:
    model = {"type": "Recognizer", "backbone": {"type": "crnn_vgg", "width": 0.125},
             "neck": {"type": "bilstm", "hidden": 16}, "head": {"type": "ctc"},
             "aux_head": {"type": "attention", "dim": 32, "max_length": MAX_LENGTH}}
    module = TaskModule(OmegaConf.to_container(load_config(attention_config(tmp_path, model=model))))
    task = module.task
    exporter = task.exporter()
    assert list(exporter.output_names()) == ["probs"] and exporter.metadata()["decoder"] == "ctc"
    assert exporter.dynamic_axes()["probs"] == {0: "batch", 1: "frames"}
    (probs,) = exporter.module(module.model).eval()(torch.zeros(1, 3, 32, 96))
    assert probs.shape[-1] == task.charset.num_classes


def _at_own_width(image: np.ndarray, meta: dict) -> np.ndarray:
    """A batch of one crop at the model height and its own width: no padding to the exported width."""
    padded, _ = resize_pad(image, *meta["input_size"], pad_to=0)
    return normalise(padded, meta["mean"], meta["std"])[None]


@pytest.mark.slow
def test_attention_model_exports_and_matches_pytorch(tmp_path: Path) -> None:
    cfg = attention_config(tmp_path)
    assert main(["train", str(cfg)]) == 0
    (run,) = (tmp_path / "work_dirs" / "tests").glob("att_2*")
    ckpt = str(run / "checkpoints" / "last.ckpt")
    onnx_path = tmp_path / "att.onnx"
    assert main(["export", ckpt, "--out", str(onnx_path)]) == 0
    assert json.loads(onnx_path.with_suffix(".parity.json").read_text())["max_abs_diff"]["attn_probs"] < 1e-4

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map["ocrforge"])
    assert meta["decoder"] == "attention" and [o.name for o in session.get_outputs()] == ["attn_probs"]

    module, _ = module_from_checkpoint(ckpt)
    task, model = module.task, module.model.eval()
    wrapper = task.exporter().module(model).eval()
    raw = task.raw_dataset("val")
    images = [raw[i]["image"] for i in range(6)]
    crops = [_at_own_width(image, meta) for image in images]
    assert len({c.shape[3] for c in crops}) >= 3 and min(c.shape[3] for c in crops) < 64  # not only 96 and 64
    batch = np.concatenate([task.exporter().preprocess(image)[None] for image in images])  # 6 rows; exported with 2
    texts = []
    for x in [*crops, batch]:
        got = session.run(None, {"image": x})[0]
        with torch.no_grad():
            expected = wrapper(torch.from_numpy(x))[0].numpy()
            eager = task.decode(model(torch.from_numpy(x)))  # the training-time path: stops early at eos
        assert got.shape == (x.shape[0], MAX_LENGTH + 1, task.charset.num_classes + 2)
        assert np.abs(got - expected).max() < 1e-5
        assert np.array_equal(got.argmax(-1), expected.argmax(-1))  # every step, past eos too
        decoded = decode_outputs({"attn_probs": got}, meta)
        assert [d["text"] for d in decoded] == [e["text"] for e in eager]
        assert np.allclose([d["score"] for d in decoded], [e["score"] for e in eager], atol=1e-5)
        texts += [d["text"] for d in decoded]
    # A model that reads its (memorised) words at the width it trained on, so texts differ from crop to crop.
    labels = [raw[i]["label"] for i in range(6)]
    assert sum(t == label for t, label in zip(texts[6:], labels, strict=True)) >= 4, (texts[6:], labels)

    folder = tmp_path / "crops"
    folder.mkdir()
    for i, image in enumerate(images):
        cv2.imwrite(str(folder / f"w{i}.png"), image[:, :, ::-1])
    out_ckpt, out_onnx = tmp_path / "ckpt.jsonl", tmp_path / "onnx.jsonl"
    assert main(["predict", ckpt, str(folder), "--out", str(out_ckpt)]) == 0
    assert main(["predict", str(onnx_path), str(folder), "--out", str(out_onnx)]) == 0
    a = [json.loads(x) for x in out_ckpt.read_text().splitlines()]
    b = [json.loads(x) for x in out_onnx.read_text().splitlines()]
    assert [x["text"] for x in a] == [x["text"] for x in b] == texts[6:]  # predict pads to the exported width
    assert np.allclose([x["score"] for x in a], [x["score"] for x in b], atol=1e-5)
    assert all(len(x["char_scores"]) == len(x["text"]) for x in b)
    # The OCR pipeline's recogniser (``ocrforge ocr --rec MODEL.onnx``) reads the same.
    assert [r["text"] for r in _load(onnx_path, "rec", "cpu")(images)] == [x["text"] for x in b]
