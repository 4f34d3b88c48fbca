"""Registries: register/get/build, aliases, name suggestions, per-task registries, the torchvision transform fallback,
and plugins."""

from __future__ import annotations

import sys
import textwrap
import types
import uuid
from pathlib import Path

import pytest
import torch
from torchvision.transforms import v2

from ocrforge.api import build_model
from ocrforge.builtins import register_builtins
from ocrforge.config import load_config
from ocrforge.errors import CheckpointError, ConfigError
from ocrforge.registry import (
    ALL_REGISTRIES,
    CLS_HEADS,
    DET_POSTPROCESSORS,
    DET_TARGETS,
    MODULE_REGISTRIES,
    OPTIMIZERS,
    REC_HEADS,
    TRANSFORMS,
    Registry,
    component_registry,
    register_plain_modules,
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def unique(prefix: str) -> str:
    # Registries are process-global and a name can be registered only once: every test picks fresh names.
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


# --- Registry itself ------------------------------------------------------------------------------------------------


class _Thing:
    def __init__(self, size: int = 1, colour: str = "red") -> None:
        self.size, self.colour = size, colour


def test_register_get_and_default_name():
    reg = Registry("thing")

    @reg.register("small")
    class Small(_Thing):
        """A distinct registrable class."""

    @reg.register()
    class Large(_Thing):
        """A distinct registrable class."""

    assert reg.get("small") is Small
    assert reg.get("Large") is Large  # no name given: the object's __name__
    assert reg.names() == ["Large", "small"]
    assert "small" in reg and "Small" not in reg  # names are case-sensitive
    assert Small.__name__ == "Small"  # the decorator returns the object unchanged


def test_register_plain_function():
    reg = Registry("builder")

    @reg.register("double")
    def double(x: int) -> int:
        return 2 * x

    assert reg.build({"type": "double", "x": 21}) == 42


def test_build_passes_spec_and_extra_kwargs_without_mutating_spec():
    reg = Registry("thing")
    reg.register("thing")(_Thing)
    spec = {"type": "thing", "colour": "blue"}
    obj = reg.build(spec, size=5)
    assert isinstance(obj, _Thing)
    assert (obj.size, obj.colour) == (5, "blue")
    assert spec == {"type": "thing", "colour": "blue"}
    assert reg.build({"type": "thing", "size": 5}, size=5).size == 5  # in both, agreeing: passed once
    with pytest.raises(ConfigError, match="the config sets size=1, but 2"):
        reg.build({"type": "thing", "size": 1}, size=2)


def test_duplicate_name_raises():
    reg = Registry("thing")
    reg.register("a")(_Thing)

    class Other(_Thing):
        """A distinct registrable class."""

    with pytest.raises(KeyError, match="already has 'a'"):
        reg.register("a")(Other)
    assert reg.get("a") is _Thing  # the first registration is kept


def test_re_registering_the_same_object_or_forcing_is_allowed():
    reg = Registry("thing")
    reg.register("a")(_Thing)
    reg.register("a")(_Thing)  # e.g. a module imported twice under the same object

    class Other(_Thing):
        """A distinct registrable class."""

    reg.register("a", force=True)(Other)
    assert reg.get("a") is Other


def test_unknown_name_suggests_the_closest():
    reg = Registry("model")
    for name in ("resnet", "mobilenet", "vit"):
        reg.register(name)(type(name, (), {}))
    with pytest.raises(KeyError) as info:
        reg.get("resnt")
    message = info.value.args[0]
    assert "unknown model type 'resnt'" in message
    assert "did you mean 'resnet'?" in message
    assert "known: mobilenet, resnet, vit" in message


def test_unknown_name_without_close_match_has_no_suggestion():
    reg = Registry("model")
    reg.register("resnet")(_Thing)
    with pytest.raises(KeyError) as info:
        reg.get("zzzzzz")
    assert "did you mean" not in info.value.args[0]
    assert "resnet" in info.value.args[0]


def test_fallback_is_used_only_for_unknown_names():
    calls = []

    def fallback(name):
        calls.append(name)
        return _Thing if name == "from_fallback" else None

    reg = Registry("thing", fallback=fallback)
    reg.register("local")(dict)
    assert reg.get("local") is dict
    assert calls == []
    assert reg.get("from_fallback") is _Thing
    assert "from_fallback" not in reg.names()  # resolved, not registered
    with pytest.raises(KeyError):
        reg.get("neither")
    assert calls == ["from_fallback", "neither"]


def test_builtins_are_registered_under_their_class_names_with_the_old_names_as_aliases():
    register_builtins()
    assert {"Adam", "AdamW", "SGD"} <= set(OPTIMIZERS.names())
    assert {"LinearHead", "CosFaceHead", "ArcFaceHead"} <= set(CLS_HEADS.names())
    assert "linear" not in CLS_HEADS.names() and "linear" in CLS_HEADS  # an alias: accepted, not listed
    assert CLS_HEADS.canonical("cosface") == "CosFaceHead" and OPTIMIZERS.canonical("adamw") == "AdamW"
    assert CLS_HEADS.get("linear") is CLS_HEADS.get("LinearHead")


# --- aliases ---------------------------------------------------------------------------------------------------------


def test_aliases_resolve_to_the_registered_name_and_messages_offer_that_name():
    reg = Registry("thing")

    @reg.register(aliases=("small", "tiny"))
    class SmallThing(_Thing):
        """A distinct registrable class."""

    assert reg.get("small") is reg.get("tiny") is reg.get("SmallThing") is SmallThing
    assert reg.names() == ["SmallThing"] and reg.aliases("SmallThing") == ["small", "tiny"]
    assert reg.build({"type": "small", "size": 3}).size == 3
    with pytest.raises(KeyError) as info:
        reg.get("smal")  # nearest to an alias: the registered name is offered
    assert "did you mean 'SmallThing'?" in info.value.args[0] and "known: SmallThing)" in info.value.args[0]
    with pytest.raises(KeyError) as info:
        reg.get("smallthng")  # case is ignored when looking for the nearest
    assert "did you mean 'SmallThing'?" in info.value.args[0]


def test_an_alias_cannot_take_a_name_another_object_holds():
    reg = Registry("thing")
    reg.register("a")(_Thing)

    class Other(_Thing):
        """A distinct registrable class."""

    with pytest.raises(KeyError, match="already has 'a'"):
        reg.register("b", aliases=("a",))(Other)
    reg.register("b", aliases=("old_b",))(Other)
    with pytest.raises(KeyError, match="already has 'old_b'"):
        reg.register("old_b")(type("Third", (), {}))
    reg.register("b", aliases=("old_b",))(Other)  # the same registration again (a module imported twice)
    assert reg.get("old_b") is Other


# --- one registry per task and kind -----------------------------------------------------------------------------------


def test_task_registries_are_named_by_task_and_kind():
    assert component_registry("rec", "head") is REC_HEADS and ALL_REGISTRIES["rec.head"] is REC_HEADS
    assert component_registry("det", "targets") is DET_TARGETS is ALL_REGISTRIES["det.targets"]
    assert component_registry("det", "postprocess") is DET_POSTPROCESSORS is ALL_REGISTRIES["det.postprocess"]
    assert component_registry("cls", "optimizer") is OPTIMIZERS  # a shared kind: the same for every task
    assert {"task", "transform", "optimizer", "scheduler", "metric"} <= set(ALL_REGISTRIES)
    assert "head" not in ALL_REGISTRIES and "model" not in ALL_REGISTRIES
    with pytest.raises(KeyError, match="task cls has no neck registry"):
        component_registry("cls", "neck")


def test_a_name_of_another_task_says_which_task_it_belongs_to():
    register_builtins()
    with pytest.raises(KeyError) as info:
        CLS_HEADS.get("ctc")
    message = info.value.args[0]
    assert message.startswith("unknown head type 'ctc' for task cls ('ctc' is a rec head, CTCHead)")
    assert "known: ArcFaceHead, CosFaceHead, LinearHead" in message
    with pytest.raises(KeyError, match="'DBHead' is a det head\\)"):
        REC_HEADS.get("DBHead")
    assert "ctc" not in CLS_HEADS


def test_build_errors_name_the_task_registry():
    reg = Registry("head", task="cls")
    reg.register()(_Thing)
    with pytest.raises(ConfigError, match="head '_Thing' for task cls cannot be built"):
        reg.build({"type": "_Thing", "colour": "red", "weight": 3})


# --- TRANSFORMS: torchvision.transforms.v2 by name ------------------------------------------------------------------


def test_transforms_fall_back_to_torchvision_v2_classes():
    assert TRANSFORMS.get("ColorJitter") is v2.ColorJitter
    assert "RandomRotation" in TRANSFORMS
    jitter = TRANSFORMS.build({"type": "ColorJitter", "brightness": 0.3})
    assert isinstance(jitter, v2.ColorJitter)
    assert jitter.brightness == pytest.approx((0.7, 1.3))
    image = torch.full((3, 8, 8), 128, dtype=torch.uint8)
    out = jitter(image)
    assert out.shape == image.shape and out.dtype == torch.uint8


def test_transform_fallback_rejects_non_classes_and_unknown_names():
    assert hasattr(v2, "functional")  # a module in the v2 namespace, not a transform class
    assert "functional" not in TRANSFORMS
    with pytest.raises(KeyError, match="unknown transform type 'ColorJiter'"):
        TRANSFORMS.get("ColorJiter")


def _transform_config(tmp_path: Path, transform: str) -> Path:
    return write(tmp_path / "cfg.yaml", f"""
        task: cls
        model: {{type: Classifier, backbone: lcnet_050}}
        data:
          image_size: [32, 32]
          train:
            type: SynthOrientationDataset
            mode: line
            num_samples: 2
            transforms: [{transform}]
    """)


def test_valid_torchvision_transform_in_config_is_accepted_and_built(tmp_path):
    from ocrforge.engine.module import build_task

    cfg = load_config(_transform_config(tmp_path, "{type: ColorJitter, brightness: 0.2, contrast: 0.1}"))
    assert dict(cfg.data.train.transforms[0]) == {"type": "ColorJitter", "brightness": 0.2, "contrast": 0.1}
    dataset = build_task(cfg).build_dataset("train")
    assert isinstance(dataset.augment, v2.Compose)
    assert isinstance(dataset.augment.transforms[0], v2.ColorJitter)
    sample = dataset[0]
    assert sample["image"].shape == (3, 32, 32)
    assert sample["label"] in (0, 1)


@pytest.mark.parametrize(
    ("transform", "fragment"),
    [("{type: ColorJitter, brightnes: 0.2}", "did you mean 'brightness'"),
     ("{type: ColorJiter, brightness: 0.2}", "unknown transform type 'ColorJiter'")],
)
def test_validator_checks_transform_kwargs_and_types(tmp_path, transform, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(_transform_config(tmp_path, transform))
    assert "data.train.transforms.0" in str(info.value)
    assert fragment in str(info.value)


# --- plugins ---------------------------------------------------------------------------------------------------------

HEAD_PLUGIN = """
    import torch
    from torch import nn

    from ocrforge.registry import CLS_HEADS


    @CLS_HEADS.register("{head}")
    class TinyHead(nn.Module):

        def __init__(self, in_features: int, num_classes: int, hidden: int = 8) -> None:
            super().__init__()
            self.in_features = in_features
            self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

        def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
            return {{"logits": self.net(features)}}
"""

DATASET_PLUGIN = """
    from torch.utils.data import Dataset

    from ocrforge.registry import CLS_DATASETS


    @CLS_DATASETS.register("{dataset}")
    class ThreeClasses(Dataset):
        def __init__(self, num_samples: int = 4) -> None:
            self.num_samples = num_samples

        @staticmethod
        def discover_classes(**_):
            return ["a", "b", "c"]

        def __len__(self):
            return self.num_samples
"""


@pytest.fixture
def forget_modules():
    """Names of plugin modules imported by a test; removed from sys.modules afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        sys.modules.pop(name, None)


def _plugin_model_config(path: Path, head: str, dataset_node: str, extra: str = "") -> Path:
    return write(path, f"""
        {extra}
        task: cls
        model:
          type: Classifier
          backbone: lcnet_050
          head: {{type: {head}, hidden: 5}}
        data:
          image_size: [32, 32]
          train: {dataset_node}
    """)


def _check_plugin_model(cfg, head: str, num_classes: int) -> None:
    model = build_model(cfg).eval()
    assert isinstance(model.head, CLS_HEADS.get(head))
    assert model.head.net[0].out_features == 5  # the config's kwarg reached the plugin
    # in_features was injected from the backbone's output width.
    width = getattr(model.backbone, "head_hidden_size", None) or model.backbone.num_features
    assert model.head.in_features == width
    with torch.no_grad():
        logits = model(torch.zeros(2, 3, 32, 32))["logits"]
    assert logits.shape == (2, num_classes)


def test_custom_imports_plugin_registers_a_head(tmp_path, monkeypatch, forget_modules, one_torch_thread):
    module, head = unique("my_plugin_mod"), unique("tiny_head")
    forget_modules.append(module)
    write(tmp_path / "plugins" / f"{module}.py", HEAD_PLUGIN.format(head=head))
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    assert head not in CLS_HEADS
    path = _plugin_model_config(tmp_path / "cfg.yaml", head,
                                "{type: SynthOrientationDataset, mode: page, num_samples: 4}",
                                extra=f"custom_imports: [{module}]")
    cfg = load_config(path)
    assert list(cfg.custom_imports) == [module]
    assert head in CLS_HEADS
    assert list(cfg.data.train.keys()) == ["type", "mode", "num_samples"]
    _check_plugin_model(cfg, head, num_classes=4)  # 'page' mode: 0/90/180/270


def test_custom_imports_plugin_with_explicit_classes(tmp_path, monkeypatch, forget_modules, one_torch_thread):
    module, head = unique("my_plugin_mod"), unique("tiny_head")
    forget_modules.append(module)
    write(tmp_path / f"{module}.py", HEAD_PLUGIN.format(head=head))
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _plugin_model_config(tmp_path / "cfg.yaml", head,
                                "{type: SynthOrientationDataset, mode: line, num_samples: 4}",
                                extra=f"custom_imports: [{module}]")
    cfg = load_config(path, ["data.classes=[x,y,z]"])  # explicit classes win over discovery (line: 2)
    _check_plugin_model(cfg, head, num_classes=3)


def test_plugin_head_kwargs_are_validated_like_builtins(tmp_path, monkeypatch, forget_modules):
    module, head = unique("my_plugin_mod"), unique("tiny_head")
    forget_modules.append(module)
    write(tmp_path / f"{module}.py", HEAD_PLUGIN.format(head=head))
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write(tmp_path / "cfg.yaml", f"""
        custom_imports: [{module}]
        model: {{type: Classifier, head: {{type: {head}, hiden: 4, in_features: 3}}}}
    """)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "model.head.hiden" in message and "did you mean 'hidden'" in message
    assert "model.head.in_features" in message  # injected by the model, not a config key


def test_custom_imports_of_a_missing_module_is_a_config_error(tmp_path):
    missing = unique("no_such_plugin")
    path = write(tmp_path / "cfg.yaml", f"custom_imports: [{missing}]\n")
    with pytest.raises(ConfigError, match=f"custom_imports: cannot import '{missing}'"):
        load_config(path)


def test_plugin_dir_imports_every_module_in_the_folder(tmp_path, monkeypatch, forget_modules, one_torch_thread):
    # import_plugins puts the folder on sys.path itself: give it a copy to change, restored afterwards.
    monkeypatch.setattr(sys, "path", list(sys.path))
    head_module, data_module = unique("plugin_heads"), unique("plugin_data")
    head, dataset = unique("tiny_head"), unique("ThreeClasses")
    forget_modules.extend([head_module, data_module])
    plugins = tmp_path / "plugins"
    write(plugins / f"{head_module}.py", HEAD_PLUGIN.format(head=head))
    write(plugins / f"{data_module}.py", DATASET_PLUGIN.format(dataset=dataset))
    write(plugins / "__init__.py", "raise RuntimeError('__init__ must not be imported as a plugin')\n")
    write(plugins / "notes.txt", "not python\n")
    path = _plugin_model_config(tmp_path / "cfg.yaml", head, f"{{type: {dataset}, num_samples: 2}}")

    with pytest.raises(ConfigError, match="unknown head type"):
        load_config(path)  # without --plugins the names are unknown
    cfg = load_config(path, plugin_dir=plugins)
    assert head in CLS_HEADS
    _check_plugin_model(cfg, head, num_classes=3)  # classes discovered from the plugin dataset


def test_plugin_dir_that_is_not_a_folder_is_a_config_error(tmp_path):
    path = write(tmp_path / "cfg.yaml", "seed: 1\n")
    with pytest.raises(ConfigError, match="--plugins"):
        load_config(path, plugin_dir=tmp_path / "missing_dir")


HEAD_WITHOUT_IN_FEATURES = """
    from torch import nn

    from ocrforge.registry import CLS_HEADS


    @CLS_HEADS.register("{head}")
    class NoWidthHead(nn.Module):
        def __init__(self, num_classes: int, hidden: int = 8) -> None:
            super().__init__()
"""

OLD_STYLE_MODEL = """
    from torch import nn

    from ocrforge.registry import CLS_HEADS, CLS_MODELS


    @CLS_HEADS.register("{head}")
    class OldStyleHead(nn.Module):
        config_injected = ("width", "num_classes")  # the child says what it is given (no parent declaration)

        def __init__(self, width: int, num_classes: int, scale: float = 1.0) -> None:
            super().__init__()


    @CLS_MODELS.register("{model}")
    class OldStyleModel(nn.Module):
        config_children = {{"head": "head"}}  # a plain kind: looked up for the config's task
        config_injected = ("num_classes",)

        def __init__(self, num_classes: int, head: dict | None = None) -> None:
            super().__init__()
"""


def _plugin_config(tmp_path: Path, monkeypatch, forget_modules, source: str, model_node: str, **names: str) -> Path:
    module = unique("plugin_mod")
    forget_modules.append(module)
    write(tmp_path / f"{module}.py", source.format(**names))
    monkeypatch.syspath_prepend(str(tmp_path))
    return write(tmp_path / "cfg.yaml", f"custom_imports: [{module}]\nmodel: {model_node}\n")


def test_a_child_that_cannot_take_what_its_parent_passes_is_a_config_error(tmp_path, monkeypatch, forget_modules):
    head = unique("NoWidthHead")
    path = _plugin_config(tmp_path, monkeypatch, forget_modules, HEAD_WITHOUT_IN_FEATURES,
                          f"{{type: Classifier, head: {{type: {head}, hidden: 4}}}}", head=head)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"model.head: head '{head}' for task cls does not take in_features, which Classifier passes" in \
        str(info.value)
    assert "(1 problem)" in str(info.value)  # num_classes it takes; hidden is a key of its own


def test_plain_string_children_and_config_injected_of_plugins_keep_working(tmp_path, monkeypatch, forget_modules):
    head, model = unique("OldStyleHead"), unique("OldStyleModel")
    path = _plugin_config(tmp_path, monkeypatch, forget_modules, OLD_STYLE_MODEL,
                          f"{{type: {model}, head: {{type: {head}, scale: 2.0}}}}", head=head, model=model)
    assert load_config(path).model.head.scale == 2.0
    with pytest.raises(ConfigError) as info:
        load_config(path, [f"model.head={{type: {head}, width: 3}}"])
    assert "model.head.width: unknown key" in str(info.value)  # injected, so not a config key
    with pytest.raises(ConfigError, match="unknown head type 'CTCHead' for task cls"):
        load_config(path, ["model.head.type=CTCHead"])  # the plain kind is the config's task's


@pytest.fixture
def plain_module():
    """A module object whose nn.Module classes a test defines; they are taken out of every registry afterwards."""
    module = types.ModuleType(unique("plain_plugin"))
    yield module
    for registry in ALL_REGISTRIES.values():
        for name, obj in list(registry._items.items()):
            if getattr(obj, "__module__", None) == module.__name__:
                del registry._items[name]


def _define(module: types.ModuleType, name: str) -> type:
    cls = type(name, (torch.nn.Module,), {"__module__": module.__name__})
    setattr(module, name, cls)
    return cls


def test_plain_plugin_modules_go_into_every_task_registry_of_network_parts(plain_module):
    register_builtins()
    net = _define(plain_module, unique("PlainNet"))
    clashing = _define(plain_module, "LinearHead")  # the name of a built-in cls head
    register_plain_modules(plain_module)
    assert {r.name for r in MODULE_REGISTRIES} == {f"{task}.{kind}" for task in ("cls", "rec", "det")
                                                   for kind in ("model", "backbone", "neck", "head", "loss")} - \
        {"cls.neck"}
    assert all(registry.get(net.__name__) is net for registry in MODULE_REGISTRIES)
    assert CLS_HEADS.get("LinearHead") is not clashing  # left to the built-in
    assert REC_HEADS.get("LinearHead") is clashing  # free there
    assert net.__name__ not in OPTIMIZERS and net.__name__ not in TRANSFORMS


def test_a_plain_plugin_module_named_like_a_model_is_an_error(plain_module):
    register_builtins()
    _define(plain_module, "Recognizer")
    with pytest.raises(ConfigError, match="class Recognizer has the name of a registered rec model"):
        register_plain_modules(plain_module)


# --- old names: configs and checkpoints written before the rename ---------------------------------------------------


def _old_and_new_configs(tmp_path: Path):
    from conftest import tiny_cls_config

    old = {"model": {"type": "Classifier", "backbone": "lcnet_050", "head": {"type": "cosface", "embedding_size": 8}},
           "optimizer": {"type": "adamw", "lr": 0.003}, "scheduler": {"type": "poly"},
           "loss": {"type": "cross_entropy"}}
    new = {"model": {"type": "Classifier", "backbone": "lcnet_050",
                     "head": {"type": "CosFaceHead", "embedding_size": 8}},
           "optimizer": {"type": "AdamW", "lr": 0.003}, "scheduler": {"type": "PolyLR"},
           "loss": {"type": "CrossEntropyLoss"}}
    old_data = {"image_size": [32, 32], "train": {"type": "SynthOrientation", "mode": "line", "num_samples": 4}}
    new_data = {"image_size": [32, 32], "train": {"type": "SynthOrientationDataset", "mode": "line", "num_samples": 4}}
    return (load_config(tiny_cls_config(tmp_path / "old", **old, data=old_data)),
            load_config(tiny_cls_config(tmp_path / "new", **new, data=new_data)))


def test_a_config_with_old_names_validates_and_builds_the_same_classes(tmp_path, one_torch_thread):
    from ocrforge.engine.module import build_task
    from ocrforge.registry import CLS_LOSSES, SCHEDULERS

    old, new = _old_and_new_configs(tmp_path)
    models = build_model(old), build_model(new)
    assert type(models[0]) is type(models[1]) and type(models[0].head) is type(models[1].head)
    assert type(models[0].head).__name__ == "CosFaceHead"
    assert type(build_task(old).raw_dataset("train")) is type(build_task(new).raw_dataset("train"))
    assert OPTIMIZERS.get(old.optimizer.type) is OPTIMIZERS.get(new.optimizer.type)
    assert SCHEDULERS.get(old.scheduler.type) is SCHEDULERS.get(new.scheduler.type)
    losses = build_task(old).build_loss(), build_task(new).build_loss()
    assert type(losses[0]) is type(losses[1]) is CLS_LOSSES.get("CrossEntropyLoss")


@pytest.mark.slow
def test_a_checkpoint_with_old_names_loads_and_resumes_with_the_new_ones(tmp_path, one_torch_thread):
    from omegaconf import OmegaConf

    from ocrforge.api import load_checkpoint
    from ocrforge.engine.checkpoint import check_resumable

    old, new = _old_and_new_configs(tmp_path)
    model = build_model(old)
    stored = OmegaConf.to_container(old)
    path = tmp_path / "old.ckpt"
    torch.save({"hyper_parameters": {"config": stored}, "loops": {}, "optimizer_states": [],
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    loaded = load_checkpoint(path)
    assert type(loaded.head) is type(model.head)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    check_resumable(torch.load(path, weights_only=False), path, OmegaConf.to_container(new))  # adamw == AdamW
    with pytest.raises(CheckpointError, match="trained with optimizer 'adamw', the config has 'SGD'"):
        check_resumable(torch.load(path, weights_only=False), path,
                        {**OmegaConf.to_container(new), "optimizer": {"type": "SGD"}})


# --- the command line: another task's name is a config error, not a traceback ---------------------------------------


@pytest.mark.parametrize("command", ["config print", "train"])
def test_a_rec_head_in_a_cls_config_is_a_one_line_config_error(command, tmp_path, capsys):
    from conftest import tiny_cls_config

    from ocrforge.cli import main

    config = str(tiny_cls_config(tmp_path)) if command == "train" else "configs/cls/lcnet050_cosface_96.yaml"
    assert main([*command.split(), config, "-o", "model.head.type=ctc"]) != 0
    err = capsys.readouterr().err
    assert "command line (-o): model.head.type: unknown head type 'ctc' for task cls ('ctc' is a rec head, " \
           "CTCHead)" in err
    assert "Traceback" not in err and "TypeError" not in err
    assert len(err.strip().splitlines()) == 2  # the header and the one problem


def test_the_task_wide_names_of_earlier_versions_register_a_plugin_for_every_task():
    from ocrforge.registry import HEADS

    name = unique("OldStyleHead")

    @HEADS.register(name, aliases=(name.lower(),))
    class OldStyleHead(torch.nn.Module):
        pass

    for task in ("cls", "rec", "det"):
        registry = component_registry(task, "head")
        assert registry.get(name) is OldStyleHead and registry.get(name.lower()) is OldStyleHead
