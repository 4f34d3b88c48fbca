"""One registry class for everything that a config can name by ``type``.

Built-ins register with a decorator; plugins use the same decorator, so a user model is found exactly like a
built-in one. The constructor signature of a registered object is what the config validator checks keys against.
The kinds whose interface differs by task (model, backbone, neck, head, loss, dataset) have one registry per task
(``CLS_HEADS``, ``REC_HEADS`` …, ``component_registry(task, kind)``); the others are shared. A name is the class's
own name; ``register(aliases=...)`` keeps older names working for configs and checkpoints written before.

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
    """A named mapping from a config ``type`` string to a class or builder function.

    ``kind`` says what it holds ("head", "optimizer"); ``task`` is set for the kinds whose interface differs by
    task (a cls head takes pooled features, a rec head frames), so a name of one task's registry is unknown to
    another's. The registry's ``name`` (its key in ``ALL_REGISTRIES``) is ``"<task>.<kind>"``, or ``kind`` alone.
    """

    def __init__(self, kind: str, task: str | None = None, fallback: Callable[[str], Any] | None = None,
                 fallback_hint: str = "", fallback_names: Callable[[], Iterable[str]] | None = None) -> None:
        self.kind, self.task = kind, task
        self.name = f"{task}.{kind}" if task else kind
        self._items: dict[str, Any] = {}
        # Other names that configs and checkpoints may still use: alias -> registered name.
        self._aliases: dict[str, str] = {}
        # Names whose module registers them once imported: name -> (module, describe). ``describe`` returns a
        # stand-in that validation reads instead of the object (its signature, config_children …), or None.
        self._lazy: dict[str, tuple[str, Callable[[], Any]]] = {}
        # A fallback resolves names the registry does not hold (e.g. any torchvision transform); fallback_names
        # lists what it resolves, for "did you mean" (asked only when a name is unknown).
        self._fallback, self._fallback_hint, self._fallback_names = fallback, fallback_hint, fallback_names

    def what(self, name: str) -> str:
        """``name`` as messages call it: "head 'CTCHead' for task rec", "optimizer 'AdamW'"."""
        return f"{self.kind} '{name}'" + (f" for task {self.task}" if self.task else "")

    def register(self, name: str | None = None, *, aliases: Iterable[str] = (),
                 force: bool = False) -> Callable[[Any], Any]:
        """Register under ``name`` (default: the object's ``__name__``, the convention); ``aliases`` are older
        names that keep resolving to it (configs and checkpoints written before a rename)."""
        aliases = tuple(aliases)

        def decorator(obj: Any) -> Any:
            key = name or obj.__name__
            if not force:
                for taken in (key, *aliases):
                    self._check_free(taken, key, obj)
            self._items[key] = obj
            self._aliases.update(dict.fromkeys(aliases, key))
            return obj

        return decorator

    def _check_free(self, name: str, key: str, obj: Any) -> None:
        """Raise unless ``name`` is free for ``obj`` registered as ``key`` (or already means exactly that)."""
        held = self._items.get(self.canonical(name))
        if held is not None and held is not obj:
            raise KeyError(f"{self.name} registry already has '{name}' ({held!r})")
        if self.canonical(name) not in (name, key):
            raise KeyError(f"{self.name} registry already has '{name}' (the old name of '{self.canonical(name)}')")
        lazy = self._lazy.get(self.canonical(name))
        if held is None and lazy is not None and lazy[0] != getattr(obj, "__module__", None):
            raise KeyError(f"{self.name} registry already has '{name}' (built-in, from {lazy[0]})")

    def register_lazy(self, name: str, module: str, describe: Callable[[], Any] = lambda: None,
                      aliases: Iterable[str] = ()) -> None:
        """Make ``name`` (and its ``aliases``) known without importing ``module``, which registers it when
        imported."""
        if name not in self._items:
            self._lazy[name] = (module, describe)
            self._aliases.update(dict.fromkeys(aliases, name))

    def canonical(self, name: str) -> str:
        """The registered name that ``name`` stands for (itself, unless it is an alias)."""
        return self._aliases.get(name, name)

    def get(self, name: str) -> Any:
        key = self.canonical(name)
        if key in self._items:
            return self._items[key]
        if key in self._lazy:
            module = self._lazy[key][0]
            importlib.import_module(module)
            if key not in self._items:
                raise KeyError(f"{self.name} '{key}': importing {module} did not register it")
            return self._items[key]
        if self._fallback is not None:
            found = self._fallback(name)
            if found is not None:
                return found
        raise KeyError(self._unknown(name))

    def _unknown(self, name: str) -> str:
        """The message for an unknown ``name``: where else it is registered, the nearest name, the known ones."""
        where = "" if self.task is None else f" for task {self.task}"
        elsewhere = [r for r in ALL_REGISTRIES.values()
                     if self.task is not None and r.kind == self.kind and r.task not in (None, self.task)
                     and (name in r._items or name in r._lazy or name in r._aliases)]
        other = "; ".join(f"'{name}' is a {r.task} {r.kind}" + ("" if r.canonical(name) == name else
                                                                  f", {r.canonical(name)}") for r in elsewhere)
        known = self.names()
        hint = _nearest(name, {**{n: n for n in known}, **self._aliases})
        if hint is None and self._fallback_names is not None:
            hint = _nearest(name, {n: n for n in self._fallback_names()})
        return (f"unknown {self.kind} type '{name}'{where}" + (f" ({other})" if other else "")
                + (f"; did you mean '{hint}'?" if hint else "")
                + f" (known: {', '.join(known) or 'none registered'}"
                + (f"; also {self._fallback_hint}" if self._fallback_hint else "") + ")")

    def describe(self, name: str) -> Any:
        """What validation reads for ``name``: the object itself once imported, else its stand-in from the source
        (same signature, ``config_children``, ``config_injected``, ``data_schema``), else the imported object."""
        key = self.canonical(name)
        if key not in self._items and key in self._lazy:
            stand_in = self._lazy[key][1]()
            if stand_in is not None:
                return stand_in
        return self.get(name)

    def __contains__(self, name: str) -> bool:
        if name in self._items or name in self._lazy or name in self._aliases:
            return True
        return self._fallback is not None and self._fallback(name) is not None

    def names(self) -> list[str]:
        """The registered names (aliases left out: messages offer the current names)."""
        return sorted({*self._items, *self._lazy})

    def aliases(self, name: str) -> list[str]:
        """The older names that resolve to ``name``."""
        return sorted(alias for alias, key in self._aliases.items() if key == name)

    def holds(self, obj: Any) -> bool:
        """Whether ``obj`` is registered here under any name."""
        return any(item is obj for item in self._items.values())

    def build(self, spec: dict[str, Any], **extra: Any) -> Any:
        """Build ``spec['type']`` with the remaining keys plus ``extra`` (values the task derives, e.g. num_classes)
        as keyword arguments. A key in both is passed once when the values agree; arguments that do not fit the
        constructor are a ConfigError naming them, not a TypeError from deep inside the build."""
        kwargs = dict(spec)
        type_name = kwargs.pop("type")
        obj = self.get(type_name)
        for key, value in extra.items():
            if key in kwargs and kwargs[key] != value:
                raise ConfigError(f"{self.what(type_name)}: the config sets {key}={kwargs[key]!r}, but {value!r} is "
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
                        raise ConfigError(f"{self.what(type_name)} does not take {key}, which is derived from the "
                                          f"rest of the config ({value!r}) and always passed: give its constructor "
                                          f"a {key} argument")
            try:
                signature.bind(**kwargs)
            except TypeError as exc:
                given = f" (given: {', '.join(sorted(kwargs))})" if kwargs else ""
                raise ConfigError(f"{self.what(type_name)} cannot be built: {exc}{given}") from None
        return obj(**kwargs)

    def __repr__(self) -> str:
        return f"Registry({self.name}, {len(self.names())} items)"


def _nearest(name: str, candidates: dict[str, str]) -> str | None:
    """The registered name of the candidate (a name or an alias) nearest to ``name``, ignoring case."""
    by_lower = {candidate.lower(): target for candidate, target in candidates.items()}
    hint = difflib.get_close_matches(name.lower(), list(by_lower), n=1)
    return by_lower[hint[0]] if hint else None


def _torchvision_transform(name: str) -> Any:
    # Any torchvision.transforms.v2 class may be named in a config without wrapping it here.
    from torchvision.transforms import v2

    obj = getattr(v2, name, None)
    return obj if isinstance(obj, type) else None


def _torchvision_transform_names() -> list[str]:
    from torchvision.transforms import v2

    return [name for name, obj in vars(v2).items() if isinstance(obj, type) and not name.startswith("_")]


# Every registry, by name: "task", "optimizer" … for the kinds all tasks share, "<task>.<kind>" for the others.
ALL_REGISTRIES: dict[str, Registry] = {}


def _declare(kind: str, task: str | None = None, **options: Any) -> Registry:
    registry = Registry(kind, task, **options)
    ALL_REGISTRIES[registry.name] = registry
    return registry


# Shared by every task.
TASKS = _declare("task")
TRANSFORMS = _declare("transform", fallback=_torchvision_transform,
                      fallback_hint="any torchvision.transforms.v2 class, e.g. ColorJitter",
                      fallback_names=_torchvision_transform_names)
OPTIMIZERS = _declare("optimizer")
SCHEDULERS = _declare("scheduler")
METRICS = _declare("metric")

# One registry per task for each kind whose interface differs by task (cls has no neck).
CLS_MODELS = _declare("model", "cls")
CLS_BACKBONES = _declare("backbone", "cls")
CLS_HEADS = _declare("head", "cls")
CLS_LOSSES = _declare("loss", "cls")
CLS_DATASETS = _declare("dataset", "cls")

REC_MODELS = _declare("model", "rec")
REC_BACKBONES = _declare("backbone", "rec")
REC_NECKS = _declare("neck", "rec")
REC_HEADS = _declare("head", "rec")
REC_LOSSES = _declare("loss", "rec")
REC_DATASETS = _declare("dataset", "rec")

DET_MODELS = _declare("model", "det")
DET_BACKBONES = _declare("backbone", "det")
DET_NECKS = _declare("neck", "det")
DET_HEADS = _declare("head", "det")
DET_LOSSES = _declare("loss", "det")
DET_DATASETS = _declare("dataset", "det")
DET_TARGETS = _declare("targets", "det")
DET_POSTPROCESSORS = _declare("postprocess", "det")


def component_registry(task: str, kind: str) -> Registry:
    """The registry of ``kind`` for ``task`` (``("rec", "head")`` -> REC_HEADS); a shared kind's own registry."""
    registry = ALL_REGISTRIES.get(f"{task}.{kind}") or ALL_REGISTRIES.get(kind)
    if registry is None or registry.task not in (None, task):
        kinds = sorted({r.kind for r in ALL_REGISTRIES.values() if r.task in (None, task)})
        raise KeyError(f"task {task} has no {kind} registry (its kinds: {', '.join(kinds)})")
    return registry


class EveryTaskRegistry:
    """The task-wide registry names of earlier versions (``HEADS``, ``MODELS`` …), kept for plugins written against
    them: ``@HEADS.register("mlp")`` registers into the head registry of every task that has one. Building needs the
    task's own registry (``component_registry(task, kind)``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.registries = [r for r in ALL_REGISTRIES.values() if r.task and r.kind == kind]

    def register(self, name: str | None = None, *, aliases: Iterable[str] = (),
                 force: bool = False) -> Callable[[Any], Any]:
        def decorator(obj: Any) -> Any:
            for registry in self.registries:
                registry.register(name, aliases=aliases, force=force)(obj)
            return obj

        return decorator

    def __repr__(self) -> str:
        return f"EveryTaskRegistry({self.kind}: {', '.join(r.name for r in self.registries)})"


MODELS, BACKBONES, NECKS, HEADS, LOSSES, DATASETS = (EveryTaskRegistry(kind) for kind in
                                                     ("model", "backbone", "neck", "head", "loss", "dataset"))

# Where a plugin's undecorated nn.Module classes go: the registries of network parts of every task, so a plain class
# can be named as a whole model, a part of one or a loss. (Not transforms: a plugin class named like a torchvision
# transform would hide it.)
MODULE_KINDS = ("model", "backbone", "neck", "head", "loss")
MODULE_REGISTRIES: tuple[Registry, ...] = tuple(r for r in ALL_REGISTRIES.values() if r.task and r.kind in MODULE_KINDS)


def register_plain_modules(module: ModuleType) -> None:
    """Register every ``nn.Module`` subclass *defined* in ``module`` (not imported into it) under its class name.

    The rule: a class that a decorator registered already keeps that name and nothing more; any other goes into
    each of ``MODULE_REGISTRIES`` (model, backbone, neck, head, loss of every task), so ``type: MyNet`` finds it as
    a model and ``backbone: {type: MyBackbone}`` as a backbone. A name a built-in or another plugin holds in that
    registry is left to it, except in a model registry, where the clash is an error (the config would silently
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
            elif registry.kind == "model":
                raise ConfigError(f"plugin {module.__name__} ({getattr(module, '__file__', '?')}): class "
                                  f"{cls.__name__} has the name of a registered {registry.task} model; rename it, "
                                  f"or register it under another name with "
                                  f"@{registry.task.upper()}_MODELS.register('...')")
