"""Recognition through the CLI and API: synthetic words, label files, LMDB, test/export/predict, dictionary change."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import write_config
from omegaconf import OmegaConf

from ocrforge.cli import main
from ocrforge.config import load_config
from ocrforge.data.synth_text import SynthWordsDataset
from ocrforge.engine.checkpoint import model_state
from ocrforge.engine.module import TaskModule
from ocrforge.export.onnx_export import export_onnx
from ocrforge.runners.train import train
from ocrforge.tasks.rec.finetune import remap_charset_rows

pytestmark = pytest.mark.slow  # each test trains a recogniser


def rec_config(tmp_path: Path, **sections) -> Path:
    cfg = {
        "task": "rec", "project": "tests", "exp_name": "rec", "work_dir": str(tmp_path / "work_dirs"),
        "model": {"type": "Recognizer", "backbone": {"type": "crnn_vgg", "width": 0.125},
                  "neck": {"type": "bilstm", "hidden": 16}, "head": {"type": "ctc"}},
        "data": {
            "image_size": [32, 96], "max_text_length": 12,
            "charset": {"dict": "printable", "use_space_char": True, "oov": "skip"},
            "train": {"type": "SynthWords", "num_samples": 32, "seed": 0, "max_len": 10, "batch_size": 16,
                      "num_workers": 0},
            "val": {"type": "SynthWords", "num_samples": 16, "seed": 1, "max_len": 10, "batch_size": 16,
                    "num_workers": 0},
        },
        "optimizer": {"type": "adamw", "lr": 0.003},
        "train": {"max_epochs": 1, "progress_bar": False, "log_every_n_steps": 1},
    }
    return write_config(tmp_path / "rec.yaml", cfg, sections)


def _write_crops(folder: Path, count: int, seed: int = 3) -> list[tuple[str, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    data = SynthWordsDataset(count, seed, charset="printable_space", max_len=10)
    rows = []
    for i in range(count):
        sample = data[i]
        name = f"w{i}.png"
        cv2.imwrite(str(folder / name), sample["image"][:, :, ::-1])
        rows.append((f"{folder.name}/{name}", sample["label"]))
    return rows


def test_rec_train_test_export_predict(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = rec_config(tmp_path)
    assert main(["train", str(cfg)]) == 0
    (run,) = (tmp_path / "work_dirs" / "tests").glob("rec_2*")
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("val/acc", "val/acc_ignore_case", "val/acc_ignore_case_symbols", "val/norm_edit_dis",
                "val/char_precision", "val/char_recall"):
        assert 0.0 <= metrics["final"][key] <= 1.0, key
    ckpt = str(run / "checkpoints" / "last.ckpt")

    show = tmp_path / "show"
    assert main(["test", str(cfg), ckpt, "--save-preds", "--show-dir", str(show)]) == 0
    (test_dir,) = (tmp_path / "work_dirs" / "tests").glob("rec_test_*")
    preds = [json.loads(x) for x in (test_dir / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) + sum(json.loads((test_dir / "metrics.json").read_text())["skipped_samples"]
                            ["while_loading"].values()) == 16
    assert (test_dir / "worst_errors.jsonl").is_file() and list(show.glob("predictions_*.png"))

    onnx_path = tmp_path / "rec.onnx"
    assert main(["export", ckpt, "--out", str(onnx_path)]) == 0
    parity = json.loads(onnx_path.with_suffix(".parity.json").read_text())
    assert parity["max_abs_diff"]["probs"] < 1e-4

    crops = tmp_path / "crops"
    _write_crops(crops, 4)
    capsys.readouterr()
    out_a, out_b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert main(["predict", ckpt, str(crops), "--out", str(out_a)]) == 0
    assert main(["predict", str(onnx_path), str(crops), "--out", str(out_b)]) == 0
    a = [json.loads(x) for x in out_a.read_text().splitlines()]
    b = [json.loads(x) for x in out_b.read_text().splitlines()]
    assert [x["text"] for x in a] == [x["text"] for x in b]
    assert np.allclose([x["score"] for x in a], [x["score"] for x in b], atol=1e-4)
    out_beam = tmp_path / "beam.jsonl"
    assert main(["predict", str(onnx_path), str(crops), "--beam", "4", "--out", str(out_beam)]) == 0
    beam = [json.loads(x) for x in out_beam.read_text().splitlines()]
    assert len(beam) == 4 and all("char_scores" not in x and 0.0 <= x["score"] <= 1.0 for x in beam)


def test_rec_label_files_and_lmdb(tmp_path: Path) -> None:
    rows = _write_crops(tmp_path / "images", 12)
    labels = tmp_path / "train.txt"
    labels.write_text("".join(f"{p}\t{t}\n" for p, t in rows) + "images/missing.png\tghost\n", encoding="utf-8")
    assert main(["convert", "to-lmdb", str(labels), "--out", str(tmp_path / "lmdb")]) == 0
    files = {"type": "RecLabelFile", "label_files": [str(labels)], "batch_size": 6, "num_workers": 0}
    lmdb = {"type": "RecLMDB", "roots": [str(tmp_path / "lmdb")], "batch_size": 6, "num_workers": 0}
    result = train(load_config(rec_config(tmp_path, data={"image_size": [32, 96], "max_text_length": 12,
                                                          "train": files, "val": lmdb})))
    skipped = result.metrics["skipped_samples"]["while_loading"]["train"]
    assert skipped.get("missing_image") == 1  # the ghost line: counted, never silent
    assert result.metrics["final"]["val/num_samples"] == 12.0


def test_dictionary_change_fine_tune_keeps_shared_rows(tmp_path: Path) -> None:
    digits = rec_config(tmp_path / "a", data={"charset": {"dict": "digits", "oov": "skip"}})
    source = train(load_config(digits))
    dict_file = tmp_path / "new_dict.txt"
    dict_file.write_text("0\n1\n2\nA\nB\n", encoding="utf-8")  # keeps 0-2, drops 3-9, adds A, B
    target_cfg = rec_config(tmp_path / "b", data={"charset": {"dict": str(dict_file), "oov": "skip"}})
    result = train(load_config(target_cfg), load_from=source.last_checkpoint)
    report = json.loads((result.run_dir / "load_from_report.json").read_text())
    remap = report["charset_remap"]
    assert remap["kept_chars"] == 3 and remap["new_chars"] == ["A", "B"]
    assert remap["dropped_chars"] == list("3456789") and report["shape_mismatched"] == []
    # The rows themselves: blank and 0-2 come from the trained model, A and B keep the new model's initialisation.
    trained = model_state(torch.load(source.last_checkpoint, weights_only=False))
    fresh = TaskModule(OmegaConf.to_container(load_config(target_cfg))).model.state_dict()
    state, _ = remap_charset_rows(trained, fresh, ["<blank>", *"0123456789"], ["<blank>", "0", "1", "2", "A", "B"])
    for key in ("head.fc.weight", "head.fc.bias"):
        assert state[key].shape[0] == 6
        assert torch.equal(state[key][:4], trained[key][:4])
        assert torch.equal(state[key][4:], fresh[key][4:])


def test_mobile_model_with_attention_guidance_exports_with_dynamic_width(tmp_path: Path) -> None:
    model = {"type": "Recognizer", "backbone": {"type": "lcnet_rec", "scale": 0.25},
             "neck": {"type": "svtr", "dim": 32, "depth": 1, "heads": 4, "out_channels": 48},
             "head": {"type": "ctc"}, "aux_head": {"type": "attention", "dim": 32, "max_length": 13}}
    result = train(load_config(rec_config(tmp_path, model=model, loss={"type": "rec", "attention_weight": 0.5})))
    assert result.metrics["final"]["train/attention_epoch"] > 0  # the guidance head trained
    report = export_onnx(result.last_checkpoint, tmp_path / "mobile.onnx")
    assert report["max_abs_diff"]["probs"] < 1e-4  # checked at 96 px and 64 px wide inputs


def test_attention_head_alone_trains_and_decodes(tmp_path: Path) -> None:
    model = {"type": "Recognizer", "backbone": {"type": "crnn_vgg", "width": 0.125},
             "neck": {"type": "bilstm", "hidden": 16}, "head": {"type": "attention", "dim": 32, "max_length": 13}}
    result = train(load_config(rec_config(tmp_path, model=model)))
    assert 0.0 <= result.metrics["final"]["val/norm_edit_dis"] <= 1.0
    assert "train/attention_epoch" in result.metrics["final"] and "train/ctc_epoch" not in result.metrics["final"]
