"""User components: ``custom_imports`` modules and ``--plugins`` / ``plugins:`` folders, imported so that their
classes register (decorated or not), and re-imported from what a checkpoint recorded."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..errors import CheckpointError, ConfigError


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
