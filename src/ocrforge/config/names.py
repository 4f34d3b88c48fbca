"""Configs by name: ``ocrforge train lcnet050_cosface_96`` means the shipped config of that name;
``ocrforge config list`` lists them."""

from __future__ import annotations

import dataclasses
import difflib
import os
from pathlib import Path

from ..errors import ConfigError
from ..text_files import read_text

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
    from .loader import load_file  # loader resolves names through this module

    found: dict[str, ShippedConfig] = {}
    for folder in config_folders():
        if not folder.is_dir():
            continue
        for name, paths in _named_configs(folder).items():
            for path in paths:
                try:
                    task = str(load_file(path, {}).get("task", "cls"))
                except ConfigError:
                    task = "?"
                found.setdefault(str(path), ShippedConfig(name, task, path, _description(path)))
    return sorted(found.values(), key=lambda c: (c.task, c.name, str(c.path)))
