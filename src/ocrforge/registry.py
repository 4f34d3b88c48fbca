"""One registry class for everything that a config can name by ``type``.

Built-ins register with a decorator; plugins use the same decorator, so a user model is found exactly like a
built-in one. The constructor signature of a registered object is what the config validator checks keys against.

Built-in names are known before their modules are imported (``builtins.register_builtins`` reads them from the
source): a module is imported when one of its names is first built, so loading and checking a config costs no
torch import. Plugin modules may instead leave their ``nn.Module`` classes undecorated (see ``register_plain_modules``).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import sys
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

from .errors import ConfigError


class Registry:
    """A named mapping from a config ``type`` string to a class or builder function."""

    def __init__(self, name: str, fallback: Callable[[str], Any] | None = None, fallback_hint: str = "",
                 fallback_names: Callable[[], Iterable[str]] | None = None) -> None:
        self.name = name
        self._items: dict[str, Any] = {}
        # Names whose module registers them once imported: name -> (module, describe). ``describe`` returns a
        # stand-in that validation reads instead of the object (its signature, config_children …), or None.
        self._lazy: dict[str, tuple[str, Callable[[], Any]]] = {}
        # A fallback resolves names the registry does not hold (e.g. any torchvision transform); fallback_names
        # lists what it resolves, for "did you mean" (asked only when a name is unknown).
        self._fallback, self._fallback_hint, self._fallback_names = fallback, fallback_hint, fallback_names

    def register(self, name: str | None = None, *, force: bool = False) -> Callable[[Any], Any]:
        def decorator(obj: Any) -> Any:
            key = name or obj.__name__
            if not force:
                taken = self._items.get(key)
                if taken is not None and taken is not obj:
                    raise KeyError(f"{self.name} registry already has '{key}' ({taken!r})")
                lazy = self._lazy.get(key)
                if taken is None and lazy is not None and lazy[0] != getattr(obj, "__module__", None):
                    raise KeyError(f"{self.name} registry already has '{key}' (built-in, from {lazy[0]})")
            self._items[key] = obj
            return obj

        return decorator

    def register_lazy(self, name: str, module: str, describe: Callable[[], Any] = lambda: None) -> None:
        """Make ``name`` known without importing ``module``, which registers it when imported."""
        if name not in self._items:
            self._lazy[name] = (module, describe)

    def get(self, name: str) -> Any:
        if name in self._items:
            return self._items[name]
        if name in self._lazy:
            module = self._lazy[name][0]
            importlib.import_module(module)
            if name not in self._items:
                raise KeyError(f"{self.name} '{name}': importing {module} did not register it")
            return self._items[name]
        if self._fallback is not None:
            found = self._fallback(name)
            if found is not None:
                return found
        known = self.names()
        hint = difflib.get_close_matches(name, known, n=1)
        if not hint and self._fallback_names is not None:
            hint = difflib.get_close_matches(name, list(self._fallback_names()), n=1)
        suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
        extra = f"; also {self._fallback_hint}" if self._fallback_hint else ""
        raise KeyError(f"unknown {self.name} type '{name}'{suggestion} (known: {', '.join(known) or 'none registered'}"
                       f"{extra})")

    def describe(self, name: str) -> Any:
        """What validation reads for ``name``: the object itself once imported, else its stand-in from the source
        (same signature, ``config_children``, ``config_injected``, ``data_schema``), else the imported object."""
        if name not in self._items and name in self._lazy:
            stand_in = self._lazy[name][1]()
            if stand_in is not None:
                return stand_in
        return self.get(name)

    def __contains__(self, name: str) -> bool:
        if name in self._items or name in self._lazy:
            return True
        return self._fallback is not None and self._fallback(name) is not None

    def names(self) -> list[str]:
        return sorted({*self._items, *self._lazy})

    def holds(self, obj: Any) -> bool:
        """Whether ``obj`` is registered here under any name."""
        return any(item is obj for item in self._items.values())

    def build(self, spec: dict[str, Any], **extra: Any) -> Any:
        """Build ``spec['type']`` with the remaining keys plus ``extra`` (values the task derives, e.g. num_classes)
        as keyword arguments. A key in both is passed once when the values agree; arguments that do not fit the
        constructor are a ConfigError naming them, not a TypeError from deep inside the build."""
        kwargs = dict(spec)
        kind = kwargs.pop("type")
        obj = self.get(kind)
        for key, value in extra.items():
            if key in kwargs and kwargs[key] != value:
                raise ConfigError(f"{self.name} '{kind}': the config sets {key}={kwargs[key]!r}, but {value!r} is "
                                  f"derived from the rest of the config (e.g. the number of classes); remove {key} "
                                  f"from the config or make it agree")
            kwargs[key] = value
        try:
            signature = inspect.signature(obj)
        except (TypeError, ValueError):  # some C-implemented callables have none: let the call itself check
            signature = None
        if signature is not None:
            params = signature.parameters
            if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
                for key, value in extra.items():
                    if key not in params:
                        raise ConfigError(f"{self.name} '{kind}' does not take {key}, which is derived from the "
                                          f"rest of the config ({value!r}) and always passed: give its constructor "
                                          f"a {key} argument")
            try:
                signature.bind(**kwargs)
            except TypeError as exc:
                given = f" (given: {', '.join(sorted(kwargs))})" if kwargs else ""
                raise ConfigError(f"{self.name} '{kind}' cannot be built: {exc}{given}") from None
        return obj(**kwargs)

    def __repr__(self) -> str:
        return f"Registry({self.name}, {len(self.names())} items)"


def _torchvision_transform(name: str) -> Any:
    # Any torchvision.transforms.v2 class may be named in a config without wrapping it here.
    from torchvision.transforms import v2

    obj = getattr(v2, name, None)
    return obj if isinstance(obj, type) else None


def _torchvision_transform_names() -> list[str]:
    from torchvision.transforms import v2

    return [name for name, obj in vars(v2).items() if isinstance(obj, type) and not name.startswith("_")]


TASKS = Registry("task")
MODELS = Registry("model")
BACKBONES = Registry("backbone")
NECKS = Registry("neck")
HEADS = Registry("head")
LOSSES = Registry("loss")
DATASETS = Registry("dataset")
METRICS = Registry("metric")
TRANSFORMS = Registry("transform", fallback=_torchvision_transform,
                      fallback_hint="any torchvision.transforms.v2 class, e.g. ColorJitter",
                      fallback_names=_torchvision_transform_names)
OPTIMIZERS = Registry("optimizer")
SCHEDULERS = Registry("scheduler")

ALL_REGISTRIES: dict[str, Registry] = {
    r.name: r
    for r in (TASKS, MODELS, BACKBONES, NECKS, HEADS, LOSSES, DATASETS, METRICS, TRANSFORMS, OPTIMIZERS, SCHEDULERS)
}

# Where a plugin's undecorated nn.Module classes go: the registries of network parts, so a plain class can be named
# as a whole model, a part of one or a loss. (Not transforms: a plugin class named like a torchvision transform
# would hide it.)
MODULE_REGISTRIES: tuple[Registry, ...] = (MODELS, BACKBONES, NECKS, HEADS, LOSSES)


def register_plain_modules(module: ModuleType) -> None:
    """Register every ``nn.Module`` subclass *defined* in ``module`` (not imported into it) under its class name.

    The rule: a class that a decorator registered already keeps that name and nothing more; any other goes into
    each of ``MODULE_REGISTRIES`` (model, backbone, neck, head, loss), so ``type: MyNet`` finds it as a
    model and ``backbone: {type: MyBackbone}`` as a backbone. A name a built-in or another plugin holds in that
    registry is left to it, except in the model registry, where the clash is an error (the config would silently
    build the other model). Re-importing the same plugin (same module and class name) replaces the old class.
    """
    nn = sys.modules.get("torch.nn")
    if nn is None:  # no module imported torch yet, so none defines an nn.Module
        return
    classes = [obj for obj in vars(module).values()
               if inspect.isclass(obj) and issubclass(obj, nn.Module) and obj.__module__ == module.__name__]
    for cls in classes:
        if any(registry.holds(cls) for registry in ALL_REGISTRIES.values()):
            continue
        for registry in MODULE_REGISTRIES:
            held = registry._items.get(cls.__name__)
            same_plugin = held is not None and (held.__module__, held.__qualname__) == (cls.__module__,
                                                                                        cls.__qualname__)
            if cls.__name__ not in registry or same_plugin:
                registry.register(cls.__name__, force=True)(cls)
            elif registry is MODELS:
                raise ConfigError(f"plugin {module.__name__} ({getattr(module, '__file__', '?')}): class "
                                  f"{cls.__name__} has the name of a registered model; rename it, or register it "
                                  f"under another name with @MODELS.register('...')")

