"""Stand-ins for built-in components, read from their source: what config validation needs of a component (its
constructor signature, ``config_children`` / ``config_injected``, a task's ``data_schema`` and
``inference_module``) without importing torch. See ``ocrforge.builtins`` for the rules; whatever cannot be read
this way raises ``Unreadable`` and the real module is imported instead.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import sys
from functools import cache
from types import SimpleNamespace
from typing import Any

from .builtins import PACKAGE, _Module, _registration, _source

# ocrforge modules a stand-in may import for real: they import nothing heavy.
LIGHT_MODULES = frozenset({"ocrforge.config.schema", "ocrforge.errors", "ocrforge.registry"})


class Unreadable(Exception):
    """The source does not tell (e.g. a name bound at run time): import the module instead."""


class Opaque:
    """Stands for a class of a module that is not imported (``torch.Tensor``): no constraint on a config value."""

    def __class_getitem__(cls, item: Any) -> type:
        return cls


class _OpaqueModule:
    def __getattr__(self, name: str) -> type:
        return Opaque


# --- resolving names without importing ------------------------------------------------------------------------------


def _is_stdlib(module: str) -> bool:
    return module.partition(".")[0] in sys.stdlib_module_names


def _imported(module: str, attribute: str | None, annotation: bool) -> Any:
    """The value of ``from module import attribute`` (``import module`` when attribute is None)."""
    if module in sys.modules or _is_stdlib(module) or module in LIGHT_MODULES:
        loaded = importlib.import_module(module)
        if attribute is None:
            return loaded
        if hasattr(loaded, attribute):
            return getattr(loaded, attribute)
        if module in sys.modules and f"{module}.{attribute}" in sys.modules:  # a submodule
            return sys.modules[f"{module}.{attribute}"]
        raise Unreadable(f"{module}.{attribute}")
    if module.partition(".")[0] == PACKAGE and attribute is not None:
        try:
            return _resolve(_source(module), attribute, annotation)
        except (FileNotFoundError, Unreadable):
            if annotation:
                return Opaque
            raise
    if annotation:
        return _OpaqueModule() if attribute is None else Opaque
    raise Unreadable(f"{module} is not imported")


def _resolve(module: _Module, name: str, annotation: bool) -> Any:
    """What ``name`` means at the top level of ``module``, read from the source."""
    if name in module.imports:
        return _imported(*module.imports[name], annotation)
    node = module.defs.get(name)
    if isinstance(node, ast.ClassDef):
        if annotation and not any(_is_dataclass(d, module) for d in node.decorator_list):
            return Opaque  # validation reads a class annotation no further, as it does a third-party one
        try:
            return static_class(module.name, name)
        except Unreadable:
            if annotation:
                return Opaque
            raise
    if name in module.assigns:
        return _evaluate(module.assigns[name], module, annotation)
    if hasattr(builtins, name):
        return getattr(builtins, name)
    if annotation:
        return Opaque
    raise Unreadable(f"{module.name}.{name}")


def _evaluate(expr: ast.expr, module: _Module, annotation: bool) -> Any:
    names = {n.id: _resolve(module, n.id, annotation) for n in ast.walk(expr) if isinstance(n, ast.Name)}
    try:
        return eval(compile(ast.Expression(expr), str(module.path), "eval"), {"__builtins__": builtins}, names)
    except Exception as exc:  # an expression that needs the run time (a call into torch …)
        if annotation:
            return Opaque
        raise Unreadable(ast.unparse(expr)) from exc


def _free_names(node: ast.AST) -> tuple[set[str], set[str]]:
    """(names used as values, names used only in annotations) that ``node`` does not bind itself."""
    bound: set[str] = set()
    values: set[str] = set()
    annotations: set[str] = set()

    def visit(sub: ast.AST, in_annotation: bool) -> None:
        if isinstance(sub, ast.Name):
            (bound.add if isinstance(sub.ctx, (ast.Store, ast.Del)) else
             (annotations if in_annotation else values).add)(sub.id)
        elif isinstance(sub, ast.arg):
            bound.add(sub.arg)
        elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(sub.name)
        for name, child in ast.iter_fields(sub):
            is_annotation = in_annotation or name in ("annotation", "returns")
            for item in child if isinstance(child, list) else [child]:
                if isinstance(item, ast.AST):
                    visit(item, is_annotation)

    visit(node, False)
    return values - bound, annotations - bound - values


# --- stand-ins ------------------------------------------------------------------------------------------------------


@cache
def static_class(module_name: str, name: str) -> type:
    """A class (a data schema dataclass) executed from its class body alone, with the names it uses resolved."""
    module = _source(module_name)
    node = module.defs.get(name)
    if not isinstance(node, ast.ClassDef):
        raise Unreadable(f"{module_name}.{name}")
    node = _without_method_annotations(node)
    values, annotations = _free_names(node)
    namespace: dict[str, Any] = {"__name__": module_name, "__builtins__": builtins}
    namespace.update({n: _resolve(module, n, annotation=False) for n in values})
    namespace.update({n: _resolve(module, n, annotation=True) for n in annotations})
    try:
        # Compiled without ``from __future__ import annotations`` (the module's, or this one's: dont_inherit): field
        # annotations are evaluated here, against this namespace, so typing.get_type_hints needs no module.
        exec(compile(ast.Module(body=[node], type_ignores=[]), str(module.path), "exec", dont_inherit=True),
             namespace)
    except Exception as exc:  # a base class or decorator that needs the run time
        raise Unreadable(f"{module_name}.{name}") from exc
    return namespace[name]


def _without_method_annotations(node: ast.ClassDef) -> ast.ClassDef:
    """The class without its methods' annotations, which may name the class itself (evaluated eagerly here)."""
    node = ast.parse(ast.unparse(node)).body[0]
    for sub in ast.walk(node):
        if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
            sub.returns = None
            for arg in (*sub.args.posonlyargs, *sub.args.args, *sub.args.kwonlyargs, sub.args.vararg,
                        sub.args.kwarg):
                if arg is not None:
                    arg.annotation = None
    return node


_READ_DEFAULT = object()  # validation only asks whether a parameter has a default, never what it is


def _signature(function: ast.FunctionDef, module: _Module, drop_first: bool) -> tuple[list[inspect.Parameter],
                                                                                      dict[str, Any]]:
    args = function.args
    positional = [*args.posonlyargs, *args.args]
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    params, hints = [], {}
    kinds = ([inspect.Parameter.POSITIONAL_ONLY] * len(args.posonlyargs)
             + [inspect.Parameter.POSITIONAL_OR_KEYWORD] * len(args.args))
    entries = list(zip(positional, defaults, kinds, strict=True))[1 if drop_first else 0:]
    if args.vararg is not None:
        entries.append((args.vararg, None, inspect.Parameter.VAR_POSITIONAL))
    entries += [(a, d, inspect.Parameter.KEYWORD_ONLY) for a, d in zip(args.kwonlyargs, args.kw_defaults,
                                                                         strict=True)]
    if args.kwarg is not None:
        entries.append((args.kwarg, None, inspect.Parameter.VAR_KEYWORD))
    for arg, default, kind in entries:
        hint = inspect.Parameter.empty if arg.annotation is None else _evaluate(arg.annotation, module, True)
        if arg.annotation is not None:
            hints[arg.arg] = hint
        params.append(inspect.Parameter(arg.arg, kind, annotation=hint,
                                        default=inspect.Parameter.empty if default is None else _READ_DEFAULT))
    return params, hints


def _class_chain(module: _Module, node: ast.ClassDef) -> list[tuple[_Module, ast.ClassDef]]:
    """The class and its base classes inside the package, depth first (the MRO of single inheritance)."""
    chain = [(module, node)]
    for base in node.bases:
        if isinstance(base, ast.Name) and base.id in module.defs:
            chain += _class_chain(module, module.defs[base.id])
        elif isinstance(base, ast.Name) and base.id in module.imports:
            source, attribute = module.imports[base.id]
            if source.partition(".")[0] == PACKAGE and attribute is not None:
                owner = _source(source)
                if not isinstance(owner.defs.get(attribute), ast.ClassDef):
                    raise Unreadable(f"base {attribute} of {node.name}")
                chain += _class_chain(owner, owner.defs[attribute])
    return chain


def _class_attribute(chain: list[tuple[_Module, ast.ClassDef]], name: str) -> ast.expr | None:
    for _, node in chain:
        for statement in node.body:
            targets = statement.targets if isinstance(statement, ast.Assign) else \
                [statement.target] if isinstance(statement, ast.AnnAssign) and statement.value is not None else []
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return statement.value
    return None


_DATACLASS_OPTIONS = {"frozen", "eq", "order", "repr", "unsafe_hash", "slots"}  # ones that keep __init__ as read


def _is_dataclass(decorator: ast.expr, module: _Module) -> bool:
    """``@dataclass`` or ``@dataclass(frozen=True …)`` with options that leave ``__init__`` as its fields say."""
    call = decorator if isinstance(decorator, ast.Call) else None
    name = call.func if call is not None else decorator
    return (isinstance(name, ast.Name) and module.imports.get(name.id) == ("dataclasses", "dataclass")
            and (call is None or (not call.args and {k.arg for k in call.keywords} <= _DATACLASS_OPTIONS)))


def _only_registered(node: ast.ClassDef | ast.FunctionDef, module: _Module) -> bool:
    return all(_registration(d, module, node.name) is not None or
               (isinstance(node, ast.ClassDef) and _is_dataclass(d, module)) for d in node.decorator_list)


def _dataclass_signature(node: ast.ClassDef, module: _Module) -> tuple[list[inspect.Parameter], dict[str, Any]]:
    """The ``__init__`` that ``@dataclass`` generates from the class's own annotated fields."""
    if node.bases or any(isinstance(s, ast.FunctionDef) and s.name == "__init__" for s in node.body):
        raise Unreadable(f"{node.name}: a dataclass with base classes or its own __init__")
    params, hints = [], {}
    for statement in node.body:
        if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
            continue
        kind = ast.unparse(statement.annotation).partition("[")[0].rpartition(".")[2]
        if kind == "ClassVar":
            continue
        if kind in ("InitVar", "KW_ONLY"):
            raise Unreadable(f"{node.name}.{statement.target.id}: {kind}")
        value = statement.value
        options = {k.arg: k.value for k in value.keywords} if isinstance(value, ast.Call) and \
            isinstance(value.func, ast.Name) and module.imports.get(value.func.id) == ("dataclasses", "field") else None
        if options is not None and "init" in options:
            raise Unreadable(f"{node.name}.{statement.target.id}: field(init=...)")
        required = value is None or (options is not None and not {"default", "default_factory"} & set(options))
        hints[statement.target.id] = _evaluate(statement.annotation, module, True)
        params.append(inspect.Parameter(statement.target.id, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                        annotation=hints[statement.target.id],
                                        default=inspect.Parameter.empty if required else _READ_DEFAULT))
    return params, hints


@cache
def stand_in(registry: str, module_name: str, definition: str) -> Any:
    """What validation reads of a registered definition, from its source (raises Unreadable where it cannot)."""
    module = _source(module_name)
    node = module.defs[definition]
    if not _only_registered(node, module):
        raise Unreadable(f"{definition} has other decorators")
    if registry == "task":
        chain = _class_chain(module, node)
        schema, inference = _class_attribute(chain, "data_schema"), _class_attribute(chain, "inference_module")
        if not isinstance(schema, ast.Name):
            raise Unreadable(f"{definition}.data_schema")
        if inference is not None and not (isinstance(inference, ast.Constant) and isinstance(inference.value, str)):
            raise Unreadable(f"{definition}.inference_module")
        task = SimpleNamespace(__name__=definition, data_schema=_resolve(module, schema.id, annotation=False))
        if inference is not None:
            task.inference_module = inference.value
        return task
    attributes: dict[str, Any] = {}
    if isinstance(node, ast.FunctionDef):
        params, hints = _signature(node, module, drop_first=False)
    else:
        chain = _class_chain(module, node)
        init = next(((m, s) for m, c in chain for s in c.body
                     if isinstance(s, ast.FunctionDef) and s.name == "__init__"), None)
        if any(isinstance(s, ast.FunctionDef) and s.name in ("__new__", "__signature__")
               for _, c in chain for s in c.body):
            raise Unreadable(f"{definition}: __new__ or __signature__")
        if any(_is_dataclass(d, module) for d in node.decorator_list):
            params, hints = _dataclass_signature(node, module)
        elif init is None:
            raise Unreadable(f"{definition}: no __init__ of its own in the package")
        else:
            params, hints = _signature(init[1], init[0], drop_first=True)
        for name in ("config_children", "config_injected"):
            value = _class_attribute(chain, name)
            if value is not None:
                try:
                    attributes[name] = ast.literal_eval(value)
                except ValueError as exc:
                    raise Unreadable(f"{definition}.{name}") from exc

    def described(**kwargs: Any) -> None:
        """Stand-in: validation reads its signature and attributes; building imports the real object."""

    described.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    described.__annotations__ = hints
    described.__name__ = described.__qualname__ = definition
    described.__dict__.update(attributes)
    return described
