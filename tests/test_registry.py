"""Registries: register/get/build, name suggestions, the torchvision transform fallback, and plugins."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import torch
from torchvision.transforms import v2

from ocrforge.api import build_model
from ocrforge.builtins import register_builtins
from ocrforge.config import load_config
from ocrforge.errors import ConfigError
from ocrforge.registry import HEADS, OPTIMIZERS, TRANSFORMS, Registry


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


def test_builtins_are_registered():
    register_builtins()
    assert {"adam", "adamw", "sgd"} <= set(OPTIMIZERS.names())
    assert {"linear", "cosface", "arcface"} <= set(HEADS.names())


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
            type: SynthOrientation
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

    from ocrforge.registry import HEADS


    @HEADS.register("{head}")
    class TinyHead(nn.Module):
        config_injected = ("in_features", "num_classes")

        def __init__(self, in_features: int, num_classes: int, hidden: int = 8) -> None:
            super().__init__()
            self.in_features = in_features
            self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

        def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
            return {{"logits": self.net(features)}}
"""

DATASET_PLUGIN = """
    from torch.utils.data import Dataset

    from ocrforge.registry import DATASETS


    @DATASETS.register("{dataset}")
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
def one_torch_thread():
    """Tiny models: torch's intra-op thread pool costs more than it saves (about 1 s a forward on some hosts)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
    assert isinstance(model.head, HEADS.get(head))
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
    assert head not in HEADS
    path = _plugin_model_config(tmp_path / "cfg.yaml", head,
                                "{type: SynthOrientation, mode: page, num_samples: 4}",
                                extra=f"custom_imports: [{module}]")
    cfg = load_config(path)
    assert list(cfg.custom_imports) == [module]
    assert head in HEADS
    assert list(cfg.data.train.keys()) == ["type", "mode", "num_samples"]
    _check_plugin_model(cfg, head, num_classes=4)  # 'page' mode: 0/90/180/270


def test_custom_imports_plugin_with_explicit_classes(tmp_path, monkeypatch, forget_modules, one_torch_thread):
    module, head = unique("my_plugin_mod"), unique("tiny_head")
    forget_modules.append(module)
    write(tmp_path / f"{module}.py", HEAD_PLUGIN.format(head=head))
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _plugin_model_config(tmp_path / "cfg.yaml", head,
                                "{type: SynthOrientation, mode: line, num_samples: 4}",
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
    assert head in HEADS
    _check_plugin_model(cfg, head, num_classes=3)  # classes discovered from the plugin dataset


def test_plugin_dir_that_is_not_a_folder_is_a_config_error(tmp_path):
    path = write(tmp_path / "cfg.yaml", "seed: 1\n")
    with pytest.raises(ConfigError, match="--plugins"):
        load_config(path, plugin_dir=tmp_path / "missing_dir")
