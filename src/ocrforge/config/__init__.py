"""Config loading: YAML + ``_base_`` inheritance + ``-o`` overrides, validated against a typed schema."""

from ..errors import ConfigError
from .loader import deep_merge, load_config, parse_override, to_yaml
from .names import ShippedConfig, resolve_config, shipped_configs
from .plugins import import_plugins, import_recorded_plugins

__all__ = ["ConfigError", "ShippedConfig", "deep_merge", "import_plugins", "import_recorded_plugins", "load_config",
           "parse_override", "resolve_config", "shipped_configs", "to_yaml"]
