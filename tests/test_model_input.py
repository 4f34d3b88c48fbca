"""Batches carry uint8 images and are normalised on the device: the model must see exactly what the exported
model's numpy preprocessing (``Task.preprocess``, used by ``predict``/``ocr``/ONNX) gives it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ocrforge.config import load_config
from ocrforge.data.collate import make_collate
from ocrforge.engine.module import build_task


@pytest.mark.parametrize("config", ["configs/cls/orientation_lcnet050_synth.yaml",
                                    "configs/cls/line_orientation_lcnet050_synth.yaml",
                                    "configs/rec/crnn_synth.yaml", "configs/det/dbnet_r18_synth.yaml"])
def test_device_normalisation_matches_export_preprocessing(config):
    task = build_task(load_config(config, ["data.val.num_samples=3"]))
    samples = task.build_dataset("val")
    raw = task.raw_dataset("val")
    batch = make_collate(task.collate)([samples[i] for i in range(3)])
    assert batch["image"].dtype == torch.uint8
    model_input = task.model_input(batch).numpy()
    for i in range(3):
        expected = task.exporter().preprocess(raw[i]["image"])
        h, w = expected.shape[1:]
        np.testing.assert_array_equal(model_input[i, :, :h, :w], expected)  # same float32 ops, same order


def test_float_batches_are_refused():
    task = build_task(load_config("configs/rec/crnn_synth.yaml"))
    with pytest.raises(TypeError, match="uint8"):
        task.model_input({"image": torch.zeros(1, 3, 32, 100)})
