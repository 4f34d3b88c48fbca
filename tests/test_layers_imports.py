"""Layering: every import in the package, read from the source with ``ast`` (imports inside functions included),
points down or sideways, never up, and no task folder imports another task's.

Layers, top to bottom: cli -> api/runners -> export/engine/pretrained -> tasks -> models/data/config (with registry,
errors and the other small top-level modules they use).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "src" / "ocrforge"
# The first part of a module's name below ``ocrforge`` -> its layer (higher imports lower).
LAYERS = {
    "cli": 4, "cli_data": 4,
    "api": 3, "runners": 3,
    "export": 2, "engine": 2, "pretrained": 2,
    "tasks": 1,
    "models": 0, "data": 0, "config": 0, "registry": 0, "errors": 0, "builtins": 0, "stand_ins": 0, "text_files": 0,
}


def _module_name(path: Path, package_dir: Path) -> str:
    parts = path.relative_to(package_dir.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path, package_dir: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every ``ocrforge`` module that ``path`` imports, relative imports resolved;
    ``from X import name`` counts as ``X.name`` (the name may be a submodule)."""
    module = _module_name(path, package_dir)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name.split(".")[0] == "ocrforge"]


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def _task(module: str, package_dir: Path) -> str | None:
    """The task folder (``cls``, ``det``, ``rec``) a module lies in; None for tasks/base.py and everything else."""
    parts = module.split(".")
    if len(parts) > 2 and parts[1] == "tasks" and (package_dir / "tasks" / parts[2]).is_dir():
        return parts[2]
    return None


def _violations(package_dir: Path = PACKAGE_DIR) -> list[str]:
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        importer = _module_name(path, package_dir)
        for line, imported in _imported(path, package_dir):
            where = f"{path.relative_to(package_dir.parent)}:{line} imports {imported}"
            low, high = _layer(imported), _layer(importer)
            if low is not None and high is not None and low > high:
                found.append(f"{where} (a higher layer)")
            own, other = _task(importer, package_dir), _task(imported, package_dir)
            if own and other and own != other:
                found.append(f"{where} (another task)")
    return found


def test_every_top_level_module_has_a_layer() -> None:
    names = {p.stem for p in PACKAGE_DIR.glob("*.py") if p.stem != "__init__"}
    names |= {p.name for p in PACKAGE_DIR.iterdir() if (p / "__init__.py").is_file()}
    assert names <= set(LAYERS), f"give these modules a layer: {sorted(names - set(LAYERS))}"


def test_no_import_points_up_a_layer_or_into_another_task() -> None:
    violations = _violations()
    assert not violations, "\n".join(violations)


@pytest.mark.parametrize(("importer", "source", "expected"), [
    ("tasks/det/x.py", "from ...runners.test import test", "(a higher layer)"),
    ("tasks/det/x.py", "def f():\n    from ..rec.heads import CTCHead", "(another task)"),
    ("models/x.py", "import ocrforge.engine.module", "(a higher layer)"),
])
def test_the_checker_sees_upward_and_cross_task_imports(tmp_path: Path, importer: str, source: str,
                                                        expected: str) -> None:
    root = tmp_path / "ocrforge"
    for folder in ("tasks/det", "tasks/rec", "models", "runners", "engine"):
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / "__init__.py").write_text("")
    (root / importer).write_text(source + "\n")
    assert [v.endswith(expected) for v in _violations(root)] == [True]
