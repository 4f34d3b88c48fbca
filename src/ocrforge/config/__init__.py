"""Config loading: YAML + ``_base_`` inheritance + ``-o`` overrides, validated against a typed schema."""

from ..errors import ConfigError
from .loader import deep_merge, import_plugins, load_config, parse_override, to_yaml

__all__ = ["ConfigError", "deep_merge", "import_plugins", "load_config", "parse_override", "to_yaml"]
