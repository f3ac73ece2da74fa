"""Command families. Each family (a module or a package) has ``register(registry)`` and may
have ``async def setup(services)``; :data:`FAMILIES` lists them in help order. Importing a
family declares its commands (module-level handlers under ``Family`` decorators) and its
exports; ``register`` adds them to a registry."""

from __future__ import annotations

import importlib
from types import ModuleType

from commands.registry import Registry

FAMILIES = (
    "general",
    "membership",
    "events",
    "intel",
    "digest",
    "claims",
    "announce",
    "export",
    "privacy",
)


def families() -> list[ModuleType]:
    return [importlib.import_module(f"commands.{name}") for name in FAMILIES]


def build_registry(prefix: str) -> Registry:
    """A registry with every command family registered."""
    registry = Registry(prefix=prefix)
    for family in families():
        family.register(registry)
    return registry
