"""Configs by name, `config list`, auto-registered plugin modules recorded in checkpoints, num_classes passed once,
type-changing overrides and `_delete_`, transform-name suggestions, and config loading without torch."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import subprocess
import sys
import textwrap
import types
import typing
import uuid
from pathlib import Path

import cv2
import pytest
import yaml
from conftest import REPO, tiny_cls_config, write_config

from ocrforge.cli import main
from ocrforge.config import load_config
from ocrforge.errors import ConfigError
from ocrforge.registry import ALL_REGISTRIES, CLS_MODELS, MODULE_REGISTRIES
from ocrforge.tasks.cls.synth import SynthOrientationDataset


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def _config(tmp_path: Path, replace: dict, **sections) -> Path:
    """The tiny config with whole sections replaced (``tiny_cls_config`` merges them one level deep)."""
    path = tiny_cls_config(tmp_path, **sections)
    return write_config(path, {**yaml.safe_load(path.read_text()), **replace}, {})


def _error(*args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(*args, **kwargs)
    return str(info.value)


# --- configs by name ------------------------------------------------------------------------------------------------


def test_a_shipped_config_is_found_by_its_name(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # not the repository: the name is looked up beside the package source
    cfg = load_config("lcnet050_cosface_96")
    assert cfg.exp_name == "lcnet050_cosface_96" and cfg.model.head.type == "CosFaceHead"
    assert cfg == load_config(REPO / "configs" / "cls" / "lcnet050_cosface_96.yaml")


def test_an_unknown_name_suggests_the_nearest_and_says_where_it_looked(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    message = _error("lcnet050_cosface")
    assert "did you mean 'lcnet050_cosface_96'?" in message
    assert str(REPO / "configs") in message and "OCRFORGE_CONFIGS" in message
    assert "nor the name of a shipped config" in _error("runtime")  # _base_ files have no names
    # A path stays a path: its own error, no name lookup.
    assert "config file not found" in _error("missing/lcnet050_cosface_96.yaml")


def test_ocrforge_configs_adds_a_folder_and_ambiguous_names_are_an_error(monkeypatch, tmp_path):
    mine = tmp_path / "my_configs"
    write_config(mine / "cls" / "my_exp.yaml", {"task": "cls", "exp_name": "mine"}, {})
    write_config(mine / "a" / "twice.yaml", {"seed": 1}, {})
    write_config(mine / "b" / "twice.yaml", {"seed": 2}, {})
    monkeypatch.setenv("OCRFORGE_CONFIGS", str(mine))
    monkeypatch.chdir(tmp_path)
    assert load_config("my_exp").exp_name == "mine"
    assert load_config("crnn_synth").task == "rec"  # the repository's configs are still found
    message = _error("twice")
    assert "ambiguous" in message and str(mine / "a" / "twice.yaml") in message


def test_every_command_takes_a_name(capsys):
    assert main(["config", "print", "orientation_lcnet050_synth", "-o", "seed=7"]) == 0
    assert "exp_name: orientation_lcnet050_synth" in capsys.readouterr().out
    assert main(["data", "check", "lcnet050_cosfac"]) == 2
    assert "did you mean 'lcnet050_cosface_96'" in capsys.readouterr().err


def test_config_list_shows_name_task_path_and_description(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    assert main(["config", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = next(line for line in lines if line.startswith("lcnet050_cosface_96 "))
    assert row.split()[1:3] == ["cls", "configs/cls/lcnet050_cosface_96.yaml"]
    assert "Metric-learning classifier" in row
    assert any(line.startswith("crnn_synth ") and line.split()[1] == "rec" for line in lines)
    shipped = {p.stem for p in (REPO / "configs").rglob("*.yaml") if "_base_" not in p.parts}
    assert {line.split()[0] for line in lines} == shipped  # _base_/runtime.yaml left out


# --- plugins: plain nn.Module classes, recorded in checkpoints ------------------------------------------------------

PLAIN_MODEL = """
    import torch
    from torch import nn
    from torch.nn import Linear  # imported, not defined here: not registered

    from ocrforge.registry import CLS_HEADS


    class {model}(nn.Module):
        def __init__(self, num_classes: int, width: int = 4) -> None:
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, width, 3, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                          nn.Flatten())
            self.fc = Linear(width, num_classes)

        def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
            return {{"logits": self.fc(self.features(images))}}


    @CLS_HEADS.register("{head}")
    class DecoratedHead(nn.Module):
        config_injected = ("in_features", "num_classes")

        def __init__(self, in_features: int, num_classes: int) -> None:
            super().__init__()
            self.fc = nn.Linear(in_features, num_classes)

        def forward(self, features, labels=None):
            return {{"logits": self.fc(features)}}
"""


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A plugin folder with an undecorated model; what it registers is removed again afterwards."""
    tag = uuid.uuid4().hex[:8]
    names = types.SimpleNamespace(module=f"plain_models_{tag}", model=f"TinyNet{tag}", head=f"decorated_{tag}",
                                  folder=tmp_path / "plugins")
    _write(names.folder / f"{names.module}.py", PLAIN_MODEL.format(model=names.model, head=names.head))
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield names
    forget(names)


def forget(names: types.SimpleNamespace) -> None:
    """As a fresh process would be: the plugin module not imported, its classes in no registry."""
    sys.modules.pop(names.module, None)
    for registry in ALL_REGISTRIES.values():
        for name in (names.model, names.head, "DecoratedHead"):
            held = registry._items.get(name)
            if held is not None and held.__module__ == names.module:
                del registry._items[name]
    while str(names.folder) in sys.path:
        sys.path.remove(str(names.folder))


def test_plugin_folder_registers_plain_modules_under_their_class_names(tmp_path, plugin):
    cfg_path = _config(tmp_path, {"model": {"type": plugin.model, "width": 3}})
    assert f"unknown model type '{plugin.model}'" in _error(cfg_path)  # without the plugins
    cfg = load_config(cfg_path, plugin_dir=plugin.folder)
    for registry in MODULE_REGISTRIES:  # every registry of network parts
        assert registry.get(plugin.model).__name__ == plugin.model
    assert "Linear" not in CLS_MODELS  # imported into the plugin, not defined there
    assert "DecoratedHead" not in CLS_MODELS and ALL_REGISTRIES["cls.head"].get(plugin.head).__name__ == "DecoratedHead"
    assert list(cfg.plugins) == [str(plugin.folder)]  # recorded, absolute


def test_plugins_key_is_relative_to_the_config_file(tmp_path, plugin, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg_path = _config(tmp_path, {"model": {"type": plugin.model}, "plugins": ["plugins"]})
    assert list(load_config(cfg_path).plugins) == [str(plugin.folder)]


def test_custom_imports_register_plain_modules_and_record_their_folder(tmp_path, plugin, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg_path = _config(plugin.folder, {"model": {"type": plugin.model}, "custom_imports": [plugin.module]})
    cfg = load_config(cfg_path)  # found beside the config
    assert plugin.model in CLS_MODELS
    assert list(cfg.import_paths) == [str(plugin.folder)]


def test_plugin_model_gets_num_classes_once(tmp_path, plugin):
    from ocrforge.api import build_model

    agreeing = load_config(_config(tmp_path, {"model": {"type": plugin.model, "num_classes": 2}}),
                           plugin_dir=plugin.folder)
    assert build_model(agreeing).fc.out_features == 2  # data.classes: 0, 180
    omitted = load_config(_config(tmp_path, {"model": {"type": plugin.model}}), plugin_dir=plugin.folder)
    assert build_model(omitted).fc.out_features == 2
    differing = load_config(_config(tmp_path, {"model": {"type": plugin.model, "num_classes": 3}}),
                            plugin_dir=plugin.folder)
    with pytest.raises(ConfigError, match=f"model '{plugin.model}' for task cls: the config sets num_classes=3, "
                                                f"but 2"):
        build_model(differing)


@pytest.mark.slow
def test_a_run_with_plugins_is_tested_exported_and_predicted_without_flags(tmp_path, plugin, capsys,
                                                                           monkeypatch):
    cfg_path = _config(tmp_path, {"model": {"type": plugin.model, "num_classes": 2}},
                       logging={"tensorboard": False, "csv": False})
    assert main(["train", str(cfg_path), "--plugins", str(plugin.folder)]) == 0
    ckpt = next((tmp_path / "work_dirs" / "tests").glob("tiny_2*/checkpoints/last.ckpt"))
    monkeypatch.chdir(REPO)  # another working directory

    forget(plugin)
    onnx_path = tmp_path / "plain.onnx"
    assert main(["export", str(ckpt), "--out", str(onnx_path)]) == 0, capsys.readouterr().err
    assert onnx_path.is_file() and plugin.model in CLS_MODELS

    forget(plugin)
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), SynthOrientationDataset(1, mode="line", seed=3)[0]["image"])
    out = tmp_path / "pred.jsonl"
    assert main(["predict", str(ckpt), str(images), "--out", str(out)]) == 0, capsys.readouterr().err
    assert json.loads(out.read_text().splitlines()[0])["label"] in ("0", "180")

    forget(plugin)
    assert main(["test", str(cfg_path), str(ckpt)]) == 0, capsys.readouterr().err

    # The recorded folder is gone: a clear error that names it.
    forget(plugin)
    plugin.folder.rename(tmp_path / "moved")
    capsys.readouterr()
    assert main(["export", str(ckpt), "--out", str(onnx_path)]) == 2
    err = capsys.readouterr().err
    assert f"plugins in {plugin.folder}, which no longer exists" in err and len(err.splitlines()) == 1


# --- a mapping whose type changes is replaced; _delete_ ---------------------------------------------------------------


def _onecycle_config(tmp_path: Path) -> Path:
    return _config(tmp_path, {"scheduler": {"type": "OneCycleLR", "pct_start": 0.2, "div_factor": 10.0}})


def test_override_that_changes_type_replaces_the_mapping(tmp_path):
    path = _onecycle_config(tmp_path)
    assert dict(load_config(path, ["scheduler.type=CosineLR"]).scheduler) == {"type": "CosineLR"}
    # in either order: replacing comes before the items are applied
    for items in (["scheduler.type=CosineLR", "scheduler.warmup_ratio=0.1"],
                  ["scheduler.warmup_ratio=0.1", "scheduler.type=CosineLR"],
                  ["scheduler={type: CosineLR, warmup_ratio: 0.1}"]):
        assert dict(load_config(path, items).scheduler) == {"type": "CosineLR", "warmup_ratio": 0.1}, items
    # the same type merges as before
    assert dict(load_config(path, ["scheduler.type=OneCycleLR", "scheduler.pct_start=0.3"]).scheduler) == \
        {"type": "OneCycleLR", "pct_start": 0.3, "div_factor": 10.0}


def test_delete_in_overrides(tmp_path):
    path = _onecycle_config(tmp_path)
    for items in (["scheduler._delete_=true", "scheduler.type=OneCycleLR"],
                  ["scheduler.type=OneCycleLR", "scheduler._delete_=true"],
                  ["scheduler={_delete_: true, type: OneCycleLR}"]):
        assert dict(load_config(path, items).scheduler) == {"type": "OneCycleLR"}, items
    # a mapping value without _delete_ merges into the mapping there, as a child config's does
    assert dict(load_config(path, ["scheduler={pct_start: 0.5}"]).scheduler) == \
        {"type": "OneCycleLR", "pct_start": 0.5, "div_factor": 10.0}


def test_child_config_that_changes_type_replaces_the_mapping(tmp_path):
    base = tiny_cls_config(tmp_path, model={"head": {"type": "CosFaceHead", "embedding_size": 16, "margin": 0.3}})
    child = write_config(tmp_path / "child.yaml",
                         {"_base_": [base.name], "model": {"head": {"type": "LinearHead"}}}, {})
    cfg = load_config(child)
    assert dict(cfg.model.head) == {"type": "LinearHead"} and cfg.model.backbone == "lcnet_050"


# --- transform names -------------------------------------------------------------------------------------------------


def test_transform_name_typo_suggests_the_torchvision_transform(tmp_path):
    spec = {"type": "SynthOrientationDataset", "mode": "line", "num_samples": 4,
            "transforms": [{"type": "RandomRotation", "degrees": 3}, {"type": "ColorJitte", "brightness": 0.2}]}
    path = tiny_cls_config(tmp_path, data={"image_size": [32, 32], "train": spec})
    message = _error(path)
    assert f"{path}: data.train.transforms.1.type: unknown transform type 'ColorJitte'; did you mean " \
           f"'ColorJitter'?" in message


# --- loading a config imports no torch -------------------------------------------------------------------------------


def test_config_print_imports_no_torch():
    code = ("import sys\nfrom ocrforge.cli import main\n"
            "assert main(['config', 'print', 'orientation_lcnet050_synth']) == 0\n"
            "heavy = sorted(m for m in ('torch', 'lightning', 'timm', 'cv2', 'torchvision') if m in sys.modules)\n"
            "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "exp_name: orientation_lcnet050_synth" in result.stdout


_SCALARS = (int, float, bool, str, list, tuple, dict, type(None), typing.Any)


def _same_hint(static: typing.Any, real: typing.Any) -> bool:
    from ocrforge.stand_ins import Opaque

    if static is Opaque:  # only where the validator accepts any value for the real hint too
        return typing.get_origin(real) is None and real not in _SCALARS and not dataclasses.is_dataclass(real)
    if dataclasses.is_dataclass(static) and dataclasses.is_dataclass(real):
        return _same_schema(static, real)
    if typing.get_origin(static) is not None or typing.get_origin(real) is not None:
        def origin(hint):
            return typing.Union if typing.get_origin(hint) is types.UnionType else typing.get_origin(hint)

        args = typing.get_args(static), typing.get_args(real)
        return origin(static) == origin(real) and len(args[0]) == len(args[1]) and all(
            _same_hint(a, b) for a, b in zip(*args, strict=True))
    return static == real


def _same_schema(static: type, real: type) -> bool:
    hints = typing.get_type_hints(static), typing.get_type_hints(real)
    fields = dataclasses.fields(static), dataclasses.fields(real)
    assert [f.name for f in fields[0]] == [f.name for f in fields[1]], real
    for a, b in zip(*fields, strict=True):
        assert _same_hint(hints[0][a.name], hints[1][b.name]), (real, a.name)
        assert a.metadata.keys() == b.metadata.keys(), (real, a.name)
        for key, value in a.metadata.items():
            other = b.metadata[key]
            if inspect.isfunction(value):  # checks: the same factory (closures differ by identity)
                assert value.__qualname__ == other.__qualname__, (real, a.name, key)
            elif dataclasses.is_dataclass(value):
                assert _same_schema(value, other)
            else:
                assert value == other, (real, a.name, key)
    assert dataclasses.asdict(static()) == dataclasses.asdict(real()), real
    return True


def test_stand_ins_read_from_the_source_match_the_imported_objects():
    """What validation reads without importing (see ocrforge.builtins) is what it would read from the imports."""
    from ocrforge.builtins import builtin_index
    from ocrforge.config.validate import constructor_params
    from ocrforge.stand_ins import stand_in

    index = builtin_index()
    stand_ins = {(entry.registry, entry.name): stand_in(entry.registry, entry.module, entry.definition)
                 for entry in index}
    for module in {entry.module for entry in index}:
        importlib.import_module(module)
    registered = {(r.name, name) for r in ALL_REGISTRIES.values() for name, obj in r._items.items()
                  if obj.__module__.startswith("ocrforge.")}
    assert set(stand_ins) == registered
    for entry in index:  # the old names read from the decorators are the ones the imported registries hold
        assert ALL_REGISTRIES[entry.registry].aliases(entry.name) == sorted(entry.aliases), entry
    for (registry, name), static in stand_ins.items():
        real = ALL_REGISTRIES[registry].get(name)
        if registry == "task":
            _same_schema(static.data_schema, real.data_schema)
            assert getattr(static, "inference_module", None) == getattr(real, "inference_module", None), name
            continue
        (params, hints, var_kw), (real_params, real_hints, real_var_kw) = (constructor_params(static),
                                                                          constructor_params(real))
        assert var_kw == real_var_kw, name
        assert [(p.name, p.kind, p.default is p.empty) for p in params.values()] == \
            [(p.name, p.kind, p.default is p.empty) for p in real_params.values()], name
        for key, param in params.items():
            assert _same_hint(hints.get(key, param.annotation),
                              real_hints.get(key, real_params[key].annotation)), (name, key)
        for attribute, default in (("config_children", {}), ("config_injected", ())):
            assert getattr(static, attribute, default) == getattr(real, attribute, default), (name, attribute)


def test_every_built_in_is_registered_under_its_class_name():
    """One convention: the key is the class name (builder functions: the name of what they build)."""
    from ocrforge.builtins import builtin_index

    for entry in builtin_index():
        if entry.registry == "task":  # cls, rec, det
            continue
        assert entry.name[0].isupper() and "_" not in entry.name, entry
        if entry.definition[0].isupper():  # a class, not a builder function
            assert entry.name == entry.definition, entry
    optimizers = {e.name for e in builtin_index() if e.registry in ("optimizer", "scheduler")}
    assert {"AdamW", "Adam", "SGD", "CosineLR", "MultiStepLR", "OneCycleLR", "PolyLR", "ConstantLR"} <= optimizers


def test_children_name_task_registries_and_what_the_parent_passes():
    """Every built-in model names, for each child, a registry of its own task and the arguments it passes."""
    from ocrforge.builtins import builtin_index
    from ocrforge.config.validate import child_spec

    models = [e for e in builtin_index() if e.registry.endswith(".model")]
    assert {e.name for e in models} >= {"Classifier", "Recognizer", "DBNet"}
    for entry in models:
        children = ALL_REGISTRIES[entry.registry].describe(entry.name).config_children
        for key, spec in children.items():
            registry, passed = child_spec(spec)
            assert registry in ALL_REGISTRIES and registry.startswith(entry.registry.split(".")[0] + "."), (entry, key)
            assert isinstance(spec, tuple) and all(isinstance(name, str) for name in passed), (entry, key)
