"""Typed configuration of bbwt-bot, read from ``bbwt_bot.toml`` and the environment."""

from config.loader import ConfigError, load_config
from config.models import (
    AUTHORITY_TYPES,
    CopConfig,
    DatabaseConfig,
    HttpConfig,
    MatrixConfig,
    SecretariatConfig,
    Settings,
)

__all__ = [
    "AUTHORITY_TYPES",
    "ConfigError",
    "CopConfig",
    "DatabaseConfig",
    "HttpConfig",
    "MatrixConfig",
    "SecretariatConfig",
    "Settings",
    "load_config",
]
