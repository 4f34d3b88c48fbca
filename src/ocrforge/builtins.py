"""Importing the built-in modules runs their registry decorators; configs can then name them by ``type``."""

from __future__ import annotations

import importlib

BUILTIN_MODULES = ("ocrforge.engine.optim", "ocrforge.tasks.cls.task", "ocrforge.tasks.rec.task",
                   "ocrforge.tasks.det.task")


def register_builtins() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
