"""YAML loading with ``_base_`` inheritance, dotted command-line overrides and schema validation; shipped configs
by name; plugin imports, recorded in the effective config."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import importlib
import io
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..errors import CheckpointError, ConfigError, DataError
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
    whose ``type`` changes (``scheduler.type=cosine``) or that gets ``_delete_: true`` (``scheduler._delete_=true``
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


def _found_in(module: str, folders: Iterable[Path]) -> Path | None:
    """The one of ``folders`` that the imported ``module`` (its top-level package) was found in, if any."""
    top = sys.modules.get(module.partition(".")[0])
    file = getattr(top, "__file__", None)
    if file is None:
        return None
    root = Path(file).resolve().parent
    if Path(file).name == "__init__.py":
        root = root.parent
    return root if root in {Path(f).resolve() for f in folders} else None


def _plugin_files(entry: str | Path) -> list[Path]:
    path = Path(entry).resolve()
    if path.is_file() and path.suffix == ".py":
        return [path]
    if not path.is_dir():
        raise ConfigError(f"plugins (--plugins or the config's plugins): '{entry}' is not a folder or a .py file")
    return [file for file in sorted(path.glob("*.py")) if file.stem != "__init__"]


def import_plugins(modules: Iterable[str] = (), folders: Iterable[str | Path] = (),
                   search: Iterable[str | Path] = ()) -> list[Path]:
    """Import ``custom_imports`` modules and every module of each plugin folder (``--plugins DIR``, ``plugins:``).

    Decorated classes register themselves; every other ``nn.Module`` subclass that such a module defines is
    registered under its class name (``registry.register_plain_modules`` says where). ``search`` folders (the
    working directory, the config's folder, ``import_paths``) are tried for ``custom_imports`` too: the console
    script, unlike ``python -m``, does not put the working directory on ``sys.path``. Returns the search folders
    that custom_imports were found in, for the effective config to record.
    """
    from ..registry import register_plain_modules

    search = [Path(folder).resolve() for folder in search]
    for folder in search:
        if str(folder) not in sys.path:
            sys.path.append(str(folder))
    found = []
    for name in modules:
        try:
            module = importlib.import_module(name)
        except (ImportError, ValueError, TypeError) as exc:  # ValueError, TypeError: '' or a relative name
            raise ConfigError(f"custom_imports: cannot import '{name}': {exc}") from None
        register_plain_modules(module)
        folder = _found_in(name, search)
        if folder is not None and folder not in found:
            found.append(folder)
    for entry in folders:
        for file in _plugin_files(entry):
            if str(file.parent) not in sys.path:
                sys.path.insert(0, str(file.parent))
            module = importlib.import_module(file.stem)
            if Path(getattr(module, "__file__", "") or "").resolve() != file:
                raise ConfigError(f"plugins: {file} is shadowed by the module '{file.stem}' already imported from "
                                  f"{getattr(module, '__file__', None) or 'elsewhere'}; rename the file")
            register_plain_modules(module)
    return found


def import_recorded_plugins(config: Mapping, source: str | Path) -> None:
    """Import the plugins a run recorded in its effective config (``plugins``, ``custom_imports``, ``import_paths``),
    so that a checkpoint's model is rebuilt by export, predict, test and ocr without ``--plugins``."""
    for folder in config.get("plugins") or []:
        if not Path(folder).exists():
            raise CheckpointError(f"{source} was trained with the plugins in {folder}, which no longer exists "
                                  f"(its model is defined there): restore it")
    try:
        import_plugins(config.get("custom_imports") or [], config.get("plugins") or [],
                       [Path.cwd(), *(config.get("import_paths") or [])])
    except ConfigError as exc:
        raise CheckpointError(f"{source}: the run's plugins: {exc}") from None


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


# --- configs by name -------------------------------------------------------------------------------------------------

CONFIGS_ENV = "OCRFORGE_CONFIGS"
# The shipped configs sit at the repository root, beside src/ (an editable install, as the README's); a
# non-editable install names a copy of them with $OCRFORGE_CONFIGS.
REPO_CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def config_folders() -> list[Path]:
    """Where shipped configs are looked up by name: $OCRFORGE_CONFIGS (folders, os.pathsep-separated), then the
    repository's configs/."""
    folders = [Path(p) for p in os.environ.get(CONFIGS_ENV, "").split(os.pathsep) if p] + [REPO_CONFIGS]
    return list(dict.fromkeys(folder.resolve() for folder in folders))


def _named_configs(folder: Path) -> dict[str, list[Path]]:
    named: dict[str, list[Path]] = {}
    for path in sorted(folder.rglob("*.y*ml")):
        if path.suffix in (".yaml", ".yml") and "_base_" not in path.relative_to(folder).parts:
            named.setdefault(path.stem, []).append(path)
    return named


def is_config_name(config: str | Path) -> bool:
    """A config argument that names a shipped config: not an existing path, no folder part, no YAML suffix."""
    text = str(config)
    return not Path(text).exists() and "/" not in text and os.sep not in text and \
        not text.endswith((".yaml", ".yml"))


def resolve_config(config: str | Path) -> Path:
    """The file of a config argument: a path as given, a name (``lcnet050_cosface_96``) as the shipped config."""
    if not is_config_name(config):
        return Path(config)
    name, known = str(config), set()
    for folder in config_folders():
        named = _named_configs(folder) if folder.is_dir() else {}
        if len(named.get(name, [])) == 1:
            return named[name][0]
        if name in named:
            raise ConfigError(f"config name '{name}' is ambiguous: {', '.join(str(p) for p in named[name])}; "
                              f"give the path")
        known.update(named)
    hint = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.5)
    looked = ", ".join(f"{f}{'' if f.is_dir() else ' (missing)'}" for f in config_folders())
    raise ConfigError(f"config '{name}' is neither a file nor the name of a shipped config"
                      f"{f'; did you mean {hint[0]!r}?' if hint else ''} (names looked up in {looked}; "
                      f"${CONFIGS_ENV} adds a configs folder; `ocrforge config list` shows the names)")


@dataclasses.dataclass
class ShippedConfig:
    name: str
    task: str
    path: Path
    description: str


def _description(path: Path) -> str:
    """The config's first comment line (the shipped configs open with what they train); "…" where it goes on."""
    lines = read_text(path, "config file").splitlines()
    first = next((line.strip() for line in lines if line.strip()), "")
    if not first.startswith("#"):
        return ""
    text = first.lstrip("#").strip()
    return text if text.endswith((".", "!", "?")) else f"{text.rstrip(',;:')} …"


def shipped_configs() -> list[ShippedConfig]:
    """Every config that a name resolves to (``_base_`` files left out), first folder first."""
    found: dict[str, ShippedConfig] = {}
    for folder in config_folders():
        if not folder.is_dir():
            continue
        for name, paths in _named_configs(folder).items():
            for path in paths:
                try:
                    task = str(_load_file(path, {}).get("task", "cls"))
                except ConfigError:
                    task = "?"
                found.setdefault(str(path), ShippedConfig(name, task, path, _description(path)))
    return sorted(found.values(), key=lambda c: (c.task, c.name, str(c.path)))


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
        data = _load_file(path, provenance)
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
