"""One registry class for everything that a config can name by ``type``.

Built-ins register with a decorator; plugins use the same decorator, so a user model is found exactly like a
built-in one. The constructor signature of a registered object is what the config validator checks keys against.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any


class Registry:
    """A named mapping from a config ``type`` string to a class or builder function."""

    def __init__(self, name: str, fallback: Callable[[str], Any] | None = None, fallback_hint: str = "") -> None:
        self.name = name
        self._items: dict[str, Any] = {}
        # A fallback resolves names the registry does not hold (e.g. any torchvision transform).
        self._fallback, self._fallback_hint = fallback, fallback_hint

    def register(self, name: str | None = None, *, force: bool = False) -> Callable[[Any], Any]:
        def decorator(obj: Any) -> Any:
            key = name or obj.__name__
            if key in self._items and not force and self._items[key] is not obj:
                raise KeyError(f"{self.name} registry already has '{key}' ({self._items[key]!r})")
            self._items[key] = obj
            return obj

        return decorator

    def get(self, name: str) -> Any:
        if name in self._items:
            return self._items[name]
        if self._fallback is not None:
            found = self._fallback(name)
            if found is not None:
                return found
        hint = difflib.get_close_matches(name, list(self._items), n=1)
        suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
        known = ", ".join(sorted(self._items)) or "none registered"
        extra = f"; also {self._fallback_hint}" if self._fallback_hint else ""
        raise KeyError(f"unknown {self.name} type '{name}'{suggestion} (known: {known}{extra})")

    def __contains__(self, name: str) -> bool:
        try:
            self.get(name)
        except KeyError:
            return False
        return True

    def names(self) -> list[str]:
        return sorted(self._items)

    def build(self, spec: dict[str, Any], **extra: Any) -> Any:
        """Build ``spec['type']`` with the remaining keys (plus ``extra``) as keyword arguments."""
        kwargs = dict(spec)
        obj = self.get(kwargs.pop("type"))
        return obj(**kwargs, **extra)

    def __repr__(self) -> str:
        return f"Registry({self.name}, {len(self._items)} items)"


def _torchvision_transform(name: str) -> Any:
    # Any torchvision.transforms.v2 class may be named in a config without wrapping it here.
    from torchvision.transforms import v2

    obj = getattr(v2, name, None)
    return obj if isinstance(obj, type) else None


TASKS = Registry("task")
MODELS = Registry("model")
BACKBONES = Registry("backbone")
NECKS = Registry("neck")
HEADS = Registry("head")
LOSSES = Registry("loss")
DATASETS = Registry("dataset")
METRICS = Registry("metric")
TRANSFORMS = Registry("transform", fallback=_torchvision_transform,
                      fallback_hint="any torchvision.transforms.v2 class, e.g. ColorJitter")
OPTIMIZERS = Registry("optimizer")
SCHEDULERS = Registry("scheduler")

ALL_REGISTRIES: dict[str, Registry] = {
    r.name: r
    for r in (TASKS, MODELS, BACKBONES, NECKS, HEADS, LOSSES, DATASETS, METRICS, TRANSFORMS, OPTIMIZERS, SCHEDULERS)
}
