"""YAML loading with ``_base_`` inheritance, dotted command-line overrides and schema validation."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError, DataError
from ..text_files import read_text
from .validate import validate

CMDLINE = "command line (-o)"


def _leaf_paths(node: Any, prefix: str = "") -> Iterable[str]:
    if isinstance(node, Mapping) and node:
        for key, value in node.items():
            yield from _leaf_paths(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix


def deep_merge(base: dict, update: Mapping) -> dict:
    """Merge ``update`` into ``base``: mappings merge key by key, anything else (lists too) replaces.

    A mapping with ``_delete_: true`` replaces the base mapping instead of merging into it, so a child config can
    switch e.g. a head's ``type`` without inheriting the old head's arguments.
    """
    for key, value in update.items():
        if isinstance(value, Mapping):
            value = dict(value)
            replace = value.pop("_delete_", False)
            if not replace and isinstance(base.get(key), dict):
                deep_merge(base[key], value)
                continue
            base[key] = deep_merge({}, value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:  # decoded by the rules of every other text input: a bad byte is named by line, UTF-16 with a BOM is read
        text = read_text(path, "config file")
    except DataError as exc:
        raise ConfigError(str(exc)) from None
    try:
        loaded = OmegaConf.to_container(OmegaConf.load(io.StringIO(text)), resolve=False)
    except Exception as exc:  # YAML syntax errors: report file and parser message, not a traceback
        raise ConfigError(f"{path}: cannot parse YAML: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(loaded).__name__}")
    return loaded


def _load_file(path: Path, provenance: dict[str, str], chain: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in chain:
        raise ConfigError(f"circular _base_: {' -> '.join(str(p) for p in (*chain, path))}")
    own = _read_yaml(path)
    bases = own.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    merged: dict = {}
    for base in bases:
        if not (path.parent / base).is_file():
            raise ConfigError(f"{path}: _base_ '{base}' not found (looked for {path.parent / base})")
        merged = deep_merge(merged, _load_file(path.parent / base, provenance, (*chain, path)))
    for leaf in _leaf_paths(own):
        provenance[leaf] = str(path)
    return deep_merge(merged, own)


def parse_override(item: str) -> tuple[str, Any, bool]:
    """``a.b=v`` -> (``a.b``, parsed YAML value, whether ``+`` asked to add a new key)."""
    if "=" not in item:
        raise ConfigError(f"{CMDLINE}: '{item}' is not of the form key.path=value")
    key, raw = item.split("=", 1)
    add = key.startswith("+")
    key = key.lstrip("+").strip()
    if not key:
        raise ConfigError(f"{CMDLINE}: '{item}' has an empty key")
    # OmegaConf's grammar parses values as YAML (lists, 1e-3 as float, null …).
    try:
        value = OmegaConf.to_container(OmegaConf.from_dotlist([f"value={raw}"]))["value"]
    except Exception as exc:  # YAML and OmegaConf grammar errors: name the override, not a parser traceback
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{CMDLINE}: '{item}': cannot parse the value: {message}") from None
    return key, value, add


def _list_index(items: list, part: str, key: str) -> int:
    try:
        index = int(part)
    except ValueError:
        index = None
    if index is None or not -len(items) <= index < len(items):
        raise ConfigError(f"{CMDLINE}: '{key}': '{part}' is not an index of the list there ({len(items)} items)")
    return index


def _set_path(cfg: dict, key: str, value: Any) -> None:
    """Set the dotted ``key`` (``a.b.0.c``: a number indexes a list) to ``value``, creating sections on the way."""
    node: Any = cfg
    parts = key.split(".")
    for part in parts[:-1]:
        slot: Any = _list_index(node, part, key) if isinstance(node, list) else part
        child = node[slot] if isinstance(node, list) else node.get(part)
        if not isinstance(child, (dict, list)):
            child = node[slot] = {}  # a scalar in the way becomes a section; validation then names the key
        node = child
    if isinstance(node, list):
        node[_list_index(node, parts[-1], key)] = value
    else:
        node[parts[-1]] = value


def import_plugins(modules: Iterable[str] = (), plugin_dir: str | Path | None = None,
                   search: Iterable[str | Path] = ()) -> None:
    """Import ``custom_imports`` modules and every module of ``--plugins DIR`` so that their decorators register.

    ``search`` folders (the working directory and the config's folder) are tried for ``custom_imports`` too: the
    console script, unlike ``python -m``, does not put the working directory on ``sys.path``.
    """
    import sys

    for folder in search:
        if str(Path(folder).resolve()) not in sys.path:
            sys.path.append(str(Path(folder).resolve()))
    for name in modules:
        try:
            importlib.import_module(name)
        except (ImportError, ValueError, TypeError) as exc:  # ValueError, TypeError: '' or a relative name
            raise ConfigError(f"custom_imports: cannot import '{name}': {exc}") from None
    if plugin_dir is not None:
        folder = Path(plugin_dir).resolve()
        if not folder.is_dir():
            raise ConfigError(f"--plugins: '{plugin_dir}' is not a folder")
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
        for file in sorted(folder.glob("*.py")):
            if file.stem != "__init__":
                importlib.import_module(file.stem)


def load_config(path: str | Path | None = None, overrides: Iterable[str] = (), *, base: Mapping | None = None,
                plugin_dir: str | Path | None = None) -> DictConfig:
    """Load, merge, override and validate a config; returns the effective config with schema defaults filled in.

    ``base`` is a ready mapping (e.g. the config stored in a checkpoint) used instead of ``path``.
    """
    from ..builtins import register_builtins
    from ..registry import TASKS
    from .schema import RootSchema

    register_builtins()
    provenance: dict[str, str] = {}
    if base is not None:
        data = copy.deepcopy(dict(base))
    elif path is not None:
        data = _load_file(Path(path), provenance)
    else:
        raise ConfigError("load_config needs a path or a base mapping")
    allowed_extra: set[str] = set()
    for item in overrides:
        key, value, add = parse_override(item)
        if add:
            allowed_extra.add(key)
        _set_path(data, key, value)
        for leaf in _leaf_paths(value, key):
            provenance[leaf] = CMDLINE
    search = [Path.cwd()] + ([Path(path).resolve().parent] if path is not None else [])
    modules = data.get("custom_imports") or []
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        # checked before validation, which needs the plugins' registrations
        raise ConfigError(f"{provenance.get('custom_imports', 'config')}: custom_imports: expected a list of module "
                          f"names, got {modules!r}"[:300])
    import_plugins(modules, plugin_dir, search)
    validate(data, provenance, allowed_extra)
    defaults = dataclasses.asdict(RootSchema())
    defaults["data"] = dataclasses.asdict(TASKS.get(data.get("task", defaults["task"])).data_schema())
    effective = deep_merge(defaults, data)
    return OmegaConf.create(effective)


def to_yaml(cfg: DictConfig | Mapping) -> str:
    return OmegaConf.to_yaml(cfg if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg)))
