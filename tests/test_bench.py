"""``ocrforge bench``: the three measurements come back as JSON for classification and recognition configs."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_cls_config, tiny_rec_config

from ocrforge.cli import main


@pytest.mark.slow
@pytest.mark.parametrize("make_config", [tiny_cls_config, tiny_rec_config])
def test_bench_reports_data_model_and_end_to_end(tmp_path, capsys, make_config):
    out = tmp_path / "bench.json"
    code = main(["bench", str(make_config(tmp_path)), "--seconds", "0.3", "--warmup-seconds", "0.1", "--steps", "2",
                 "--device", "cpu", "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report == json.loads(capsys.readouterr().out)
    assert report["device"] == "cpu" and report["precision"] == "32" and report["machine"]["cpu_count"] >= 1
    assert report["data"]["samples"] > 0 and report["data"]["samples_per_s"] > 0
    model = report["model"]
    assert model["batch_size"] in (8, 16) and model["samples_per_s"] > 0 and model["peak_memory_mb"] is None
    assert set(model["split_ms"]) == {"forward", "backward", "optimizer"} and model["split_ms"]["backward"] > 0
    assert report["end_to_end"]["steps"] >= 2 and report["end_to_end"]["step_ms"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_bench_on_missing_cuda_fails_clearly(tmp_path, capsys):
    assert main(["bench", str(tiny_cls_config(tmp_path)), "--device", "cuda", "--steps", "1"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
