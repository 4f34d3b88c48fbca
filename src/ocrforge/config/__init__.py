"""Config loading: YAML + ``_base_`` inheritance + ``-o`` overrides, validated against a typed schema."""

from .loader import deep_merge, import_plugins, load_config, parse_override, to_yaml
from ..errors import ConfigError

__all__ = ["ConfigError", "deep_merge", "import_plugins", "load_config", "parse_override", "to_yaml"]
