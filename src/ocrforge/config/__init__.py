"""Config loading: YAML + ``_base_`` inheritance + ``-o`` overrides, validated against a typed schema."""

from ..errors import ConfigError
from .loader import (
    ShippedConfig,
    deep_merge,
    import_plugins,
    import_recorded_plugins,
    load_config,
    parse_override,
    resolve_config,
    shipped_configs,
    to_yaml,
)

__all__ = ["ConfigError", "ShippedConfig", "deep_merge", "import_plugins", "import_recorded_plugins", "load_config",
           "parse_override", "resolve_config", "shipped_configs", "to_yaml"]
