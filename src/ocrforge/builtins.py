"""Built-in components: known by name from the source, imported when a name is first built.

Most component modules import torch, timm or Lightning (seconds). ``register_builtins`` reads every
``@REGISTRY.register(...)`` decorator of the package from the source instead (its registry, name and literal
``aliases=``), so loading and checking a config (``ocrforge config print``) imports none of them. Validation needs
each named component's constructor signature (and a task's ``data_schema``); ``stand_ins.stand_in`` reads those
from the source too:

- a signature from the ``__init__`` (or function) definition, following base classes inside the package, or from
  the fields of a ``@dataclass``; its annotations evaluated against the module's imports, where a module not
  imported yet (torch, numpy) gives an opaque class, which the validator accepts any value for, as it does for the
  real third-party class;
- ``config_children`` (``{key: registry}`` or ``{key: (registry, injected names)}``) / ``config_injected`` from
  literal class attributes;
- a task's ``data_schema`` dataclass executed on its own from its class body, with the names it uses, and its
  ``inference_module`` (a literal dotted module name).

Whatever it cannot read that way (extra decorators, a class whose ``__init__`` comes from outside the package, a
name it cannot resolve) is imported instead: slower, never different. tests/test_config_names_plugins.py checks
every stand-in against the imported object.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

PACKAGE = "ocrforge"
PACKAGE_DIR = Path(__file__).resolve().parent

# --- the index: every registration in the package ------------------------------------------------------------------


@dataclass
class _Module:
    name: str
    path: Path
    tree: ast.Module
    is_package: bool
    defs: dict[str, ast.ClassDef | ast.FunctionDef] = field(default_factory=dict)
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # alias -> (module, attribute)
    assigns: dict[str, ast.expr] = field(default_factory=dict)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _parse(path: Path) -> _Module:
    module = _Module(_module_name(path), path, ast.parse(path.read_text(encoding="utf-8"), str(path)),
                     path.name == "__init__.py")
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    for node in module.tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            module.defs[node.name] = node
        elif isinstance(node, ast.Import):
            for alias in node.names:
                module.imports[alias.asname or alias.name.partition(".")[0]] = (
                    alias.name if alias.asname else alias.name.partition(".")[0], None)
        elif isinstance(node, ast.ImportFrom):
            source = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level \
                else node.module or ""
            for alias in node.names:
                module.imports[alias.asname or alias.name] = (source, alias.name)
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            module.assigns[node.targets[0].id] = node.value
    return module


@cache
def _source(module: str) -> _Module:
    relative = Path(*module.split(".")[1:])
    path = PACKAGE_DIR / relative / "__init__.py"
    return _parse(path if path.is_file() else (PACKAGE_DIR / relative).with_suffix(".py"))


class Builtin(NamedTuple):
    """One ``@REGISTRY.register(...)`` of the package: which registry, under which names, defined where."""

    registry: str  # its key in ALL_REGISTRIES: "task", "rec.head" …
    name: str
    aliases: tuple[str, ...]
    module: str
    definition: str


def _registration(decorator: ast.expr, module: _Module, default: str) -> tuple[str, str, tuple[str, ...]] | None:
    """``@REC_HEADS.register(aliases=("ctc",))`` -> (registry name, name, aliases); None for any other decorator."""
    if not (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)
            and decorator.func.attr == "register" and isinstance(decorator.func.value, ast.Name)):
        return None
    source = module.imports.get(decorator.func.value.id)
    if source is None or source[0] != f"{PACKAGE}.registry" or source[1] is None:
        return None
    from . import registry

    target = getattr(registry, source[1], None)
    if not isinstance(target, registry.Registry):
        return None
    names = [a.value for a in decorator.args[:1] if isinstance(a, ast.Constant)]
    names += [k.value.value for k in decorator.keywords if k.arg == "name" and isinstance(k.value, ast.Constant)]
    aliases = next((k.value for k in decorator.keywords if k.arg == "aliases"), None)
    try:  # a literal by rule: the names must be known without running the module
        alias_names = tuple(ast.literal_eval(aliases)) if aliases is not None else ()
    except ValueError:
        raise ValueError(f"{module.path}: {default}: aliases= must be a literal tuple of strings, got "
                         f"{ast.unparse(aliases)}") from None
    return target.name, names[0] if names else default, alias_names


@cache
def builtin_index() -> tuple[Builtin, ...]:
    """Every top-level ``@REGISTRY.register`` in the package."""
    found = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        if ".register(" not in path.read_text(encoding="utf-8"):  # most files: no parse needed
            continue
        module = _source(_module_name(path))
        for name, node in module.defs.items():
            for decorator in node.decorator_list:
                entry = _registration(decorator, module, name)
                if entry is not None:
                    found.append(Builtin(*entry, module.name, name))
    return tuple(found)


def register_builtins() -> None:
    """Make every built-in name (and old name) known to its registry; its module is imported when the name is
    first built."""
    from .registry import ALL_REGISTRIES

    for entry in builtin_index():
        ALL_REGISTRIES[entry.registry].register_lazy(entry.name, entry.module,
                                                     _describer(entry.registry, entry.module, entry.definition),
                                                     entry.aliases)


def _describer(registry: str, module: str, definition: str) -> Callable[[], Any]:
    def describe() -> Any:
        from .stand_ins import Unreadable, stand_in

        try:
            return stand_in(registry, module, definition)
        except Unreadable:
            return None

    return describe
