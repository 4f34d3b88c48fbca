"""YAML loading with ``_base_`` inheritance, dotted command-line overrides and schema validation; shipped configs
by name; plugin imports, recorded in the effective config."""

from __future__ import annotations

import copy
import dataclasses
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError, DataError
from ..text_files import read_text
from .names import resolve_config
from .plugins import import_plugins
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

    A mapping replaces the base mapping instead of merging into it when it has ``_delete_: true`` or names another
    ``type`` than the base mapping's: a child config that switches a head or a scheduler keeps only the keys it
    gives, not the old type's arguments (which the new type would reject, or worse, take).
    """
    return _merge(base, update, replacing=True)


def _merge(base: dict, update: Mapping, replacing: bool) -> dict:
    for key, value in update.items():
        if isinstance(value, Mapping):
            value = dict(value)
            replace = value.pop("_delete_", False) is True or _switches_type(base.get(key), value)
            if not (replacing and replace) and isinstance(base.get(key), dict):
                _merge(base[key], value, replacing)
                continue
            base[key] = _merge({}, value, replacing)
        else:
            base[key] = copy.deepcopy(value)
    return base


def _switches_type(old: Any, new: Mapping) -> bool:
    return isinstance(old, Mapping) and "type" in old and "type" in new and old["type"] != new["type"]


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


def load_file(path: Path, provenance: dict[str, str], chain: tuple[Path, ...] = ()) -> dict:
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
        merged = deep_merge(merged, load_file(path.parent / base, provenance, (*chain, path)))
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


def _get_path(cfg: Any, key: str) -> Any:
    """The value at dotted ``key``, or None where the path does not exist."""
    node = cfg
    for part in key.split("."):
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _replaced_by(cfg: dict, key: str, value: Any) -> list[str]:
    """Mappings that the override ``key=value`` replaces rather than merges into (``_delete_``, another type)."""
    parent, _, last = key.rpartition(".")
    if last == "_delete_":
        return [parent] if parent and value is True else []
    if last == "type":
        old = _get_path(cfg, parent) if parent else None
        return [parent] if isinstance(old, dict) and "type" in old and old["type"] != value else []
    found = []
    if isinstance(value, Mapping):
        if value.get("_delete_") is True or _switches_type(_get_path(cfg, key), value):
            found.append(key)
        for sub, item in value.items():
            found += _replaced_by(cfg, f"{key}.{sub}", item) if isinstance(item, Mapping) else []
    return found


def _apply_overrides(cfg: dict, overrides: Iterable[str], provenance: dict[str, str]) -> set[str]:
    """Apply ``-o`` items in order; returns the keys that ``+`` allowed to be new.

    Overrides follow the rules of a child config: a mapping value merges into the mapping there, and a mapping
    whose ``type`` changes (``scheduler.type=CosineLR``) or that gets ``_delete_: true`` (``scheduler._delete_=true``
    or ``scheduler={_delete_: true, ...}``) is emptied first, keeping only what the command line gives. The
    emptying happens before any item is applied, so the order of the items does not matter.
    """
    parsed = [parse_override(item) for item in overrides]
    for key, value, _ in parsed:
        for replaced in _replaced_by(cfg, key, value):
            if isinstance(_get_path(cfg, replaced), dict):
                _set_path(cfg, replaced, {})
    allowed_extra: set[str] = set()
    for key, value, add in parsed:
        if add:
            allowed_extra.add(key)
        if key.rpartition(".")[2] == "_delete_":
            continue
        if isinstance(value, Mapping):  # the emptying is done (above): _delete_ itself is no key to set
            value = _merge({}, {k: v for k, v in value.items() if k != "_delete_"}, replacing=False)
        target = _get_path(cfg, key)
        if isinstance(value, dict) and isinstance(target, dict):
            _merge(target, value, replacing=False)
        else:
            _set_path(cfg, key, value)
        for leaf in _leaf_paths(value, key):
            provenance[leaf] = CMDLINE
    return allowed_extra


def _string_list(data: Mapping, key: str, provenance: Mapping[str, str]) -> list[str]:
    # Checked before validation, which needs the plugins' registrations.
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{provenance.get(key, 'config')}: {key}: expected a list of "
                          f"{'module names' if key == 'custom_imports' else 'folders'}, got {value!r}"[:300])
    return value


def _config_paths(data: Mapping, key: str, provenance: Mapping[str, str]) -> list[str]:
    """``key``'s paths made absolute: relative to the folder of the config file that gives them (on the command
    line, or in a checkpoint's config, to the working directory). Each must exist."""
    source = provenance.get(key)
    folder = Path(source).parent if source not in (None, CMDLINE) else Path.cwd()
    paths = []
    for entry in _string_list(data, key, provenance):
        path = (folder / entry).resolve()
        if not path.exists():
            raise ConfigError(f"{source or 'config'}: {key}: '{entry}' not found (looked for {path})")
        paths.append(str(path))
    return paths


def load_config(path: str | Path | None = None, overrides: Iterable[str] = (), *, base: Mapping | None = None,
                plugin_dir: str | Path | None = None) -> DictConfig:
    """Load, merge, override and validate a config; returns the effective config with schema defaults filled in.

    ``path`` is a file or the name of a shipped config (see ``resolve_config``); ``base`` is a ready mapping (e.g.
    the config stored in a checkpoint) used instead. ``plugin_dir`` (``--plugins``: a folder or a .py file) joins
    the config's ``plugins``; the effective config records them as absolute paths, and the folders that
    ``custom_imports`` were found in as ``import_paths``, so that the run's checkpoints rebuild anywhere.
    """
    from ..builtins import register_builtins
    from ..registry import TASKS
    from .schema import RootSchema

    register_builtins()
    provenance: dict[str, str] = {}
    if base is not None:
        data = copy.deepcopy(dict(base))
    elif path is not None:
        path = resolve_config(path)
        data = load_file(path, provenance)
    else:
        raise ConfigError("load_config needs a path or a base mapping")
    allowed_extra = _apply_overrides(data, overrides, provenance)
    modules = _string_list(data, "custom_imports", provenance)
    plugins, import_paths = _config_paths(data, "plugins", provenance), _config_paths(data, "import_paths", provenance)
    if plugin_dir is not None:
        if not Path(plugin_dir).exists():
            raise ConfigError(f"--plugins: '{plugin_dir}' is not a folder or a .py file")
        plugins.append(str(Path(plugin_dir).resolve()))
    search = [Path.cwd(), *([Path(path).resolve().parent] if path is not None else []), *map(Path, import_paths)]
    found = import_plugins(modules, plugins, search)
    if plugins:
        data["plugins"] = list(dict.fromkeys(plugins))
    if found or import_paths:
        data["import_paths"] = list(dict.fromkeys([*import_paths, *map(str, found)]))
    validate(data, provenance, allowed_extra)
    defaults = dataclasses.asdict(RootSchema())
    defaults["data"] = dataclasses.asdict(TASKS.describe(data.get("task", defaults["task"])).data_schema())
    effective = deep_merge(defaults, data)
    return OmegaConf.create(effective)


def to_yaml(cfg: DictConfig | Mapping) -> str:
    return OmegaConf.to_yaml(cfg if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg)))
