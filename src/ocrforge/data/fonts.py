"""Font discovery for synthetic data: matplotlib's bundled fonts plus user folders, with glyph coverage checks."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

FONT_SUFFIXES = (".ttf", ".otf", ".woff", ".woff2")
# matplotlib ships these for mathtext: symbol-only or remapped encodings that render boxes for plain text.
_UNUSABLE_PREFIXES = ("cm", "STIXNonUni", "STIXSiz", "LastResort", "DejaVuSansDisplay", "DejaVuSerifDisplay")


@dataclass(frozen=True)
class FontInfo:
    path: str
    codepoints: frozenset[int]

    def covers(self, text: str) -> bool:
        return all(ord(ch) in self.codepoints for ch in text if not ch.isspace())


def matplotlib_font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def _codepoints(path: Path) -> frozenset[int] | None:
    from fontTools.ttLib import TTFont

    try:
        with TTFont(str(path), lazy=True, fontNumber=0) as font:
            cmap = font.getBestCmap() or {}
    except Exception:  # broken or unsupported font file: the caller counts it as skipped
        return None
    return frozenset(cmap)


@lru_cache(maxsize=16)
def discover_fonts(extra_dirs: tuple[str, ...] = (), include_matplotlib: bool = True) -> tuple[FontInfo, ...]:
    """All usable fonts, sorted by path so that a (seed, index) picks the same font on every machine."""
    dirs = [matplotlib_font_dir()] if include_matplotlib else []
    dirs += [Path(d) for d in extra_dirs]
    found = []
    for folder in dirs:
        if not folder.is_dir():
            raise FileNotFoundError(f"fonts_dir '{folder}' is not a folder")
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() not in FONT_SUFFIXES or path.name.startswith(_UNUSABLE_PREFIXES):
                continue
            points = _codepoints(path)
            if points:
                found.append(FontInfo(str(path), points))
    if not found:
        raise FileNotFoundError(f"no usable fonts found in {', '.join(map(str, dirs))}")
    return tuple(found)
