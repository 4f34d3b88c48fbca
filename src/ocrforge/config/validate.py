"""Check a merged config against the typed schema; every error names the source, the key path and a fix.

Registry sections are checked against the registered constructor. The kinds whose interface differs by task
(model, backbone, neck, head, loss, dataset) are looked up in the config's task's registry, so a rec head named in a
cls config is an unknown name here rather than a TypeError once training builds it."""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Union

from ..errors import ConfigError
from ..registry import ALL_REGISTRIES, TASKS, Registry, component_registry

_MISSING = object()


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def matches_type(value: Any, tp: Any) -> bool:
    """Lenient structural check: unknown annotation kinds pass, YAML ints pass as floats."""
    if tp is Any or tp is inspect.Parameter.empty or tp is object:
        return True
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return any(matches_type(value, arg) for arg in typing.get_args(tp))
    if origin is Literal:
        return value in typing.get_args(tp)
    if tp is type(None) or tp is None:
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is bool:
        return isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin in (list, Sequence, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return len(args) != 1 or all(matches_type(v, args[0]) for v in value)
    if origin in (dict, Mapping) or tp is dict:
        return isinstance(value, Mapping)
    if dataclasses.is_dataclass(tp):
        return isinstance(value, Mapping)
    return True  # tensors, callables, paths given as strings …: leave to the constructor


def _closest(key: str, valid: Sequence[str]) -> str:
    hint = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    return f"; did you mean '{hint[0]}'?" if hint else f"; valid keys: {', '.join(sorted(valid))}"


@dataclasses.dataclass
class _Context:
    provenance: dict[str, str]
    allowed_extra: set[str]
    task: str | None = None  # the config's task, once known to be one: what task-scoped kinds are looked up for
    errors: list[str] = dataclasses.field(default_factory=list)

    def source(self, path: str) -> str:
        if path in self.provenance:
            return self.provenance[path]
        for key, src in self.provenance.items():
            if key.startswith(path + "."):
                return src
        parent = path.rpartition(".")[0]
        return self.source(parent) if parent else "defaults"

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{self.source(path)}: {path}: {message}")

    def is_extra(self, path: str) -> bool:
        return any(path == p or path.startswith(p + ".") for p in self.allowed_extra)

    def leads_to_extra(self, path: str) -> bool:
        """A new section created only to hold a ``+`` key (``+some.new_key=3`` creates ``some``)."""
        return any(p.startswith(path + ".") for p in self.allowed_extra)


def constructor_params(obj: Any) -> tuple[dict[str, inspect.Parameter], dict[str, Any], bool]:
    """Parameters a registered object accepts, their type hints, and whether it takes ``**kwargs``."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return {}, {}, True
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # annotations of third-party classes may not resolve; skip type checks for them
        hints = {}
    params = {
        n: p
        for n, p in sig.parameters.items()
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD) and n != "self"
    }
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    return params, hints, var_kw


def child_spec(spec: str | Sequence[Any]) -> tuple[str, tuple[str, ...]]:
    """A ``config_children`` value -> (registry, argument names the parent passes the child).

    ``("rec.head", ("in_channels", "num_classes"))``: the registry and what the parent injects; a plain string
    (``"head"``, the older form plugins may use) names the registry alone, the child's ``config_injected`` saying
    what it is given."""
    if isinstance(spec, str):
        return spec, ()
    registry, injected = spec
    return registry, tuple(injected)


def _registry(ref: str, path: str, ctx: _Context) -> Registry | None:
    """The registry that ``ref`` names: a full name ("rec.head", "optimizer") as it is, a task-scoped kind ("head")
    for the config's task; None when there is none to check against (an unknown task is reported on its own)."""
    if ref in ALL_REGISTRIES:
        return ALL_REGISTRIES[ref]
    if ctx.task is None:
        return None
    try:
        return component_registry(ctx.task, ref)
    except KeyError as exc:
        ctx.error(path, str(exc.args[0]))
        return None


def _check_registry_node(node: Any, registry: str, extra: type | None, path: str, ctx: _Context,
                         injected: Sequence[str] = (), checks: Mapping[str, Any] | None = None,
                         supplied: Sequence[str] = (), passed_by: str | None = None) -> None:
    """``injected``: arguments that ``passed_by`` (the parent model, the engine) gives the constructor itself."""
    if node is None:
        return
    if not isinstance(node, Mapping):
        ctx.error(path, f"expected a mapping with a 'type' key, got {type(node).__name__} {node!r}")
        return
    reg = _registry(registry, path, ctx)
    if reg is None:
        return
    if "type" not in node:
        where = f" for task {reg.task}" if reg.task else ""
        ctx.error(path, f"missing 'type' (a {reg.kind} name{where}, one of: {', '.join(reg.names())})")
        return
    if not isinstance(node["type"], str):
        ctx.error(f"{path}.type", f"expected a {reg.kind} name, got {type(node['type']).__name__} {node['type']!r}")
        return
    try:
        obj = reg.describe(node["type"])  # a built-in's signature without importing its module
    except KeyError as exc:
        ctx.error(f"{path}.type", str(exc.args[0]))
        return
    params, hints, var_kw = constructor_params(obj)
    if passed_by is not None and not var_kw:
        for name in injected:
            if name not in params:
                ctx.error(path, f"{reg.what(node['type'])} does not take {name}, which {passed_by} passes")
    extra_fields = {f.name: f for f in dataclasses.fields(extra)} if extra else {}
    extra_hints = typing.get_type_hints(extra) if extra else {}
    children: dict[str, Any] = getattr(obj, "config_children", {})
    # Arguments the parent fills in itself (e.g. num_classes from the class list) are not config keys.
    injected = (*injected, *getattr(obj, "config_injected", ()))
    valid = [k for k in params if k not in injected] + list(extra_fields) + ["type"]
    for key, value in node.items():
        sub = f"{path}.{key}"
        if key == "type" or ctx.is_extra(sub):
            continue
        # A key that is both an extra and a constructor argument goes where its type fits: ``model.pretrained`` is
        # a weights path for ocrforge, a boolean for the Classifier (timm's ImageNet weights).
        if key in extra_fields and (key not in params or matches_type(value, extra_hints[key])):
            _check_field(value, extra_fields[key], extra_hints[key], sub, ctx)
        elif key in children:
            child_registry, passed = child_spec(children[key])
            items = enumerate(value) if isinstance(value, list) else [(None, value)]
            for i, item in items:
                _check_registry_node(item, child_registry, None, sub if i is None else f"{sub}.{i}", ctx, passed,
                                     passed_by=reg.canonical(node["type"]))
        elif key in params and key not in injected:
            hint = hints.get(key, params[key].annotation)
            if not matches_type(value, hint):
                ctx.error(sub, f"expected {_type_name(hint)}, got {type(value).__name__} {value!r}")
            elif checks and key in checks:
                _check_value(value, checks[key], sub, ctx)
        elif not var_kw and not ctx.leads_to_extra(sub):
            ctx.error(sub, f"unknown key for {reg.what(node['type'])}{_closest(key, valid)}")
    for name, param in params.items():
        if param.default is inspect.Parameter.empty and name not in node and name not in (*injected, *supplied):
            ctx.error(f"{path}.{name}", f"required by {reg.what(node['type'])} but not set")


def _check_field(value: Any, fld: dataclasses.Field, hint: Any, path: str, ctx: _Context) -> None:
    if "registry" in fld.metadata:
        _check_registry_node(value, fld.metadata["registry"], fld.metadata.get("extra"), path, ctx,
                             fld.metadata.get("injected", ()), fld.metadata.get("checks"),
                             fld.metadata.get("supplied", ()), passed_by="the engine")
    elif "registry_list" in fld.metadata:
        if not isinstance(value, list):
            ctx.error(path, f"expected a list of {{type: ...}} mappings, got {type(value).__name__}")
            return
        for i, item in enumerate(value):
            _check_registry_node(item, fld.metadata["registry_list"], None, f"{path}.{i}", ctx)
    elif dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        check_dataclass(value, hint, path, ctx)
    elif not matches_type(value, hint):
        ctx.error(path, f"expected {_type_name(hint)}, got {type(value).__name__} {value!r}")
    elif "check" in fld.metadata:
        _check_value(value, fld.metadata["check"], path, ctx)


def _check_value(value: Any, check: Any, path: str, ctx: _Context) -> None:
    """A range or similar check on a value of the right type (see ``schema.checked``)."""
    problem = check(value)
    if problem is not None:
        ctx.error(path, problem)


def check_dataclass(node: Mapping, schema: type, path: str, ctx: _Context) -> None:
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    for key, value in node.items():
        sub = f"{path}.{key}" if path else str(key)
        if ctx.is_extra(sub) or (key == "data" and not path):
            continue
        if key not in fields:
            if ctx.leads_to_extra(sub):
                continue
            where = f"in '{path}'" if path else "at the top level"
            ctx.error(sub, f"unknown key {where}{_closest(str(key), list(fields))}")
            continue
        _check_field(value, fields[key], hints[key], sub, ctx)


def validate(cfg: Mapping, provenance: dict[str, str], allowed_extra: set[str]) -> None:
    """Raise ConfigError listing every unknown key, wrong type and unknown registry name in ``cfg``."""
    from .schema import RootSchema

    ctx = _Context(provenance, allowed_extra)
    task_name = cfg.get("task", RootSchema.task)
    task_cls, task_problem = None, None
    if isinstance(task_name, str):  # another type is reported by the schema check
        try:
            task_cls = TASKS.describe(task_name)
            ctx.task = TASKS.canonical(task_name)
        except KeyError as exc:
            task_problem = str(exc.args[0])
    check_dataclass(cfg, RootSchema, "", ctx)
    if task_problem is not None:
        ctx.error("task", task_problem)
    if task_cls is not None:
        data = cfg.get("data") or {}
        if not isinstance(data, Mapping):
            ctx.error("data", f"expected a mapping, got {type(data).__name__}")
        else:
            check_dataclass(data, task_cls.data_schema, "data", ctx)
    if ctx.errors:
        lines = "\n  ".join(ctx.errors)
        raise ConfigError(f"invalid config ({len(ctx.errors)} problem{'s' * (len(ctx.errors) > 1)}):\n  {lines}")
