"""Every registered backbone / neck / head of every task, built tiny and run the way its task runs it (in the style
of timm's tests/test_models.py): built from a config through the task's model, a train-mode forward with the task's
loss and a backward (a finite gradient on every parameter), an eval-mode forward, and an ONNX export through the
task's exporter that ONNX Runtime must match at two input sizes (batch, and width for rec / height and width for
det, the exporter's dynamic axes).

The cases are read from the registries when the tests are collected: the canonical names of the built-in
components (not aliases, not plugins that other tests register). Each task is covered by its full cross product of
backbone x neck x head, less the combinations that ``_excluded`` rules out (each rule says why it cannot work).
Each component is built with its entry of ``TINY``; a component registered without one fails
``test_every_component_has_tiny_settings``.

The whole file takes about a minute and a half on 2 busy cores; the export sweep is ``slow``, so
``pytest -m "not slow"`` still builds and trains every combination once.
"""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from ocrforge.builtins import Builtin, builtin_index, register_builtins
from ocrforge.config import load_config
from ocrforge.engine.module import build_task
from ocrforge.registry import component_registry

# The smallest widths each constructor allows (most of them clamp channels to a floor of 8 or 16 channels).
TINY: dict[str, dict[str, dict[str, Any]]] = {
    "cls.backbone": {
        "PPOCRMobileNetV3Small": {"scale": 0.01},  # every layer at the 8-channel floor
        "TimmClassifierBackbone": {"name": "lcnet_050"},
    },
    "cls.head": {
        "LinearHead": {},
        "CosFaceHead": {"embedding_size": 8},
        "ArcFaceHead": {"embedding_size": 8},
    },
    "rec.backbone": {
        "CRNNBackbone": {"width": 0.015625},  # every layer at the 8-channel floor
        "LCNetRecBackbone": {"scale": 0.01},  # every layer at the 8-channel floor
        "TimmRecBackbone": {"name": "lcnet_050", "width_stride": 8},
        "PPLCNetV3Rec": {"scale": 0.03125},  # every stage at the 16-channel floor
        # Two stride-(2, 1) stages: height /16, as the average pool at the end expects.
        "PPLCNetV4Rec": {"stem_channels": [8, 16],
                         "stages": [[[16, 16, 1, True]], [[16, 16, [2, 1], False]], [[16, 16, [2, 1], True]]]},
    },
    "rec.neck": {
        "BiLSTMNeck": {"hidden": 8, "layers": 1},
        "SVTRNeck": {"dim": 16, "depth": 1, "heads": 2, "out_channels": 16},
        "IdentityNeck": {},
        "PPOCRSVTRNeck": {"dims": 16, "hidden_dims": 16, "depth": 1, "heads": 2},
        "PPOCRLightSVTRNeck": {"dims": 16, "depth": 1, "heads": 2},
    },
    "rec.head": {
        "CTCHead": {},
        "AttentionHead": {"dim": 16, "heads": 2, "layers": 1, "max_length": 4, "dropout": 0.0},
    },
    "det.backbone": {
        "TimmFeaturePyramid": {"name": "lcnet_050"},
        "PPLCNetV3Det": {"scale": 0.0625},  # stages at the 16-channel floor, outputs of 1 to 30 channels
        # Strides 4 (stem), 4, 8, 16, 32, as the necks expect.
        "PPLCNetV4Det": {"stem_channels": [8, 16],
                         "stages": [[[16, 16, 1, True]], [[16, 16, 2, False]], [[16, 16, 2, True]],
                                    [[16, 16, 2, False]]]},
    },
    "det.neck": {
        "DBFPN": {"channels": 16},
        "RSEFPN": {"out_channels": 16},
        "RepLKFPN": {"out_channels": 16},
    },
    "det.head": {
        "DBHead": {},
        "PSEHead": {"hidden": 8},
    },
}
KINDS = {"cls": ("backbone", "head"), "rec": ("backbone", "neck", "head"), "det": ("backbone", "neck", "head")}
# Input sizes [H, W]: the training size (exported and checked first), then another for the dynamic axes' check.
SIZES = {"cls": ([48, 64], [48, 64]), "rec": ([48, 64], [48, 96]), "det": ([64, 96], [96, 64])}
BATCHES = (2, 3)

# Recognition backbones return [B, C, T] sequences, except PaddleOCR's PP-LCNet forms, which return the [B, C, 1, T]
# maps that PaddleOCR's own necks read; the other necks read sequences. ``test_rec_backbones_have_their_layout``
# checks the backbones' side of this.
REC_MAP_PARTS = {"PPLCNetV3Rec", "PPLCNetV4Rec", "PPOCRSVTRNeck", "PPOCRLightSVTRNeck"}

# Defects that these tests found, to be fixed where they live: (check, *components) -> what goes wrong. Strict, so a
# fix makes the test fail until its entry is removed here.
KNOWN_DEFECTS = {
    ("train", "TimmRecBackbone"):
        "models/backbones.py TimmFeatures: timm's MobileNetV3 feature models (lcnet_050) keep and run every block "
        "after the last stage asked for, so blocks.3-5 get no gradient (wasted compute; DDP without "
        "find_unused_parameters stops on them)",
}

register_builtins()  # every built-in name known to its registry before the cases are read from them


def registered(task: str, kind: str) -> list[Builtin]:
    """The built-in components that the task's ``kind`` registry holds, by registered name (no aliases)."""
    registry = component_registry(task, kind)
    entries = {b.name: b for b in builtin_index() if b.registry == registry.name}
    return [entries[name] for name in registry.names() if name in entries]


def family(component: Builtin) -> str:
    """The package a component is registered from: a model family's folder (``ocrforge.tasks.det.dbnet``)."""
    return component.module.rpartition(".")[0]


def family_heads(task: str, model: Builtin) -> list[str]:
    """A model family owns its heads (DESIGN.md: a family keeps its head, targets, loss and post-processing in its
    own folder), so a head runs in the models registered from its package: DBHead in DBNet, PSEHead in PSENet; the
    one model of cls (Classifier) and of rec (Recognizer) takes every head of its task."""
    return [head.name for head in registered(task, "head") if family(head) == family(model)]


def _excluded(task: str, parts: dict[str, str]) -> bool:
    """Combinations that cannot work, left out here rather than skipped at run time."""
    if task == "rec":
        # A backbone's output layout must be its neck's input layout (see REC_MAP_PARTS).
        return (parts["backbone"] in REC_MAP_PARTS) != (parts["neck"] in REC_MAP_PARTS)
    return False


def cases(check: str) -> list[Any]:
    """Every combination of the task's registered parts, as ``(task, model, parts)`` parameters, each marked with
    the KNOWN_DEFECTS of ``check`` ("train" or "export") that it shows."""
    found = []
    for task, kinds in KINDS.items():
        for model in registered(task, "model"):
            shared = [[b.name for b in registered(task, kind)] for kind in kinds if kind != "head"]
            for names in itertools.product(*shared, family_heads(task, model)):
                parts = dict(zip(kinds, names, strict=True))
                if _excluded(task, parts):
                    continue
                marks = [pytest.mark.xfail(strict=True, reason=reason) for (where, *culprits), reason
                         in KNOWN_DEFECTS.items() if where == check and set(culprits) <= set(names)]
                found.append(pytest.param(task, model.name, parts, marks=marks,
                                          id="-".join([task, model.name, *names])))
    return found


def tiny_spec(task: str, kind: str, name: str) -> dict[str, Any]:
    settings = TINY.get(f"{task}.{kind}", {}).get(name)
    if settings is None:
        pytest.fail(f"{task} {kind} {name} has no tiny settings: add them to TINY in {__file__}")
    return {"type": name, **settings}


def tiny_config(task: str, model: str, parts: dict[str, str]) -> Any:
    """The effective config (validated) of ``model`` with ``parts``, for inputs of ``SIZES[task][0]``."""
    size = SIZES[task][0]
    data: dict[str, Any] = {
        "cls": {"image_size": size, "classes": ["a", "b", "c"]},
        "rec": {"image_size": size, "max_text_length": 3, "charset": {"dict": "digits"}},
        "det": {"image_size": size, "eval_resize": {"limit_side_len": max(size), "limit_type": "max"}},
    }[task]
    spec = {kind: tiny_spec(task, kind, name) for kind, name in parts.items()}
    return load_config(base={"task": task, "model": {"type": model, **spec}, "data": data})


def tiny_batch(task: Any, size: list[int], batch_size: int) -> dict[str, Any]:
    """A collated batch of noise images with labels the task's loss can learn from."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch_size, 3, *size), dtype=torch.uint8, generator=generator)
    if task.name == "cls":
        return {"image": images, "label": torch.arange(batch_size) % len(task.classes)}
    if task.name == "rec":
        texts = ["12", "3", "456"][:batch_size]
        samples = [{"image": image, "ids": task.charset.encode_label(text, Counter()), "text": text, "index": i,
                    "path": f"{i}.png"} for i, (image, text) in enumerate(zip(images, texts, strict=True))]
        return task.collate(samples)
    height, width = size
    quad = np.float32([[8, 8], [width - 8, 8], [width - 8, 28], [8, 28]])  # one word across the page
    samples = []
    for i, image in enumerate(images):
        maps = task.targets([quad], [False], height, width, Counter())
        samples.append({"image": image, "index": i, "path": f"{i}.png", "size": (height, width),
                        "targets": {k: torch.from_numpy(maps[k].astype(t)) for k, t in task.targets.maps.items()}})
    return task.collate(samples)


def onnx_session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def tiny_model(task_name: str, model_name: str, parts: dict[str, str]) -> tuple[Any, Any, torch.nn.Module]:
    """(config, task, model) of a tiny ``model_name`` made of ``parts``, built as training builds it."""
    torch.manual_seed(0)
    cfg = tiny_config(task_name, model_name, parts)
    task = build_task(cfg)
    return cfg, task, task.build_model()


@pytest.mark.parametrize(("task_name", "model_name", "parts"), cases("train"))
def test_train_step(task_name: str, model_name: str, parts: dict[str, str], one_torch_thread: None) -> None:
    _, task, model = tiny_model(task_name, model_name, parts)
    batch = tiny_batch(task, SIZES[task_name][0], BATCHES[0])
    model.train()
    losses = task.build_loss()(task.forward_train(model, batch), batch)
    assert torch.isfinite(losses["loss"]), losses
    losses["loss"].backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(parameter.grad).all(), f"{name}: non-finite gradient"


@pytest.mark.slow
# Tracing warns where a shape is read as a Python number (nn.LSTM's checks); the second input size tests for that.
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize(("task_name", "model_name", "parts"), cases("export"))
def test_eval_and_onnx_export(task_name: str, model_name: str, parts: dict[str, str], tmp_path: Path,
                              one_torch_thread: None) -> None:
    cfg, task, model = tiny_model(task_name, model_name, parts)
    exporter = task.exporter()
    model.eval()
    with torch.no_grad():
        outputs = task.forward_eval(model, tiny_batch(task, SIZES[task_name][0], BATCHES[0]))
    for name in exporter.output_names():  # the eval outputs hold what an exported model returns
        assert outputs[name].shape[0] == BATCHES[0] and torch.isfinite(outputs[name]).all(), name

    wrapper = exporter.module(model).eval()
    path = tmp_path / "model.onnx"
    inputs = [torch.randn(batch_size, 3, *size) for batch_size, size in zip(BATCHES, SIZES[task_name], strict=True)]
    with torch.no_grad():
        torch.onnx.export(wrapper, (inputs[0],), str(path), input_names=list(exporter.input_names()),
                          output_names=list(exporter.output_names()), dynamic_axes=exporter.dynamic_axes(),
                          opset_version=cfg.export.onnx.opset, dynamo=cfg.export.onnx.dynamo)
    session = onnx_session(path)
    for image in inputs:
        with torch.no_grad():
            expected = wrapper(image)
        got = session.run(None, {exporter.input_names()[0]: image.numpy()})
        for name, ours, theirs in zip(exporter.output_names(), expected, got, strict=True):
            np.testing.assert_allclose(theirs, ours.numpy(), rtol=1e-4, atol=cfg.export.onnx.tolerance,
                                       err_msg=f"{name} at input {list(image.shape)}")


def test_every_component_has_tiny_settings() -> None:
    names = {f"{task}.{kind}": {b.name for b in registered(task, kind)} for task, kinds in KINDS.items()
             for kind in kinds}
    assert names == {key: set(entries) for key, entries in TINY.items()}, "TINY and the registries differ"


def test_every_head_has_a_model_family() -> None:
    for task in KINDS:
        owned = {head for model in registered(task, "model") for head in family_heads(task, model)}
        assert owned == {b.name for b in registered(task, "head")}, f"{task}: a head outside every model's package"


@pytest.mark.parametrize("name", [b.name for b in registered("rec", "backbone")])
def test_rec_backbones_have_their_layout(name: str, one_torch_thread: None) -> None:
    """``_excluded``'s rule holds: the backbones in REC_MAP_PARTS return [B, C, 1, T] maps, the others sequences."""
    backbone = component_registry("rec", "backbone").build(tiny_spec("rec", "backbone", name)).eval()
    with torch.no_grad():
        features = backbone(torch.zeros(1, 3, *SIZES["rec"][0]))
    if name in REC_MAP_PARTS:
        assert features.dim() == 4 and features.shape[2] == 1, features.shape
    else:
        assert features.dim() == 3, features.shape
