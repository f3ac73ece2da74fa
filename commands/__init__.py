"""Command families. Each module has ``register(registry)``; :func:`build_registry` calls them."""

from __future__ import annotations

from commands.registry import Registry


def build_registry(prefix: str) -> Registry:
    """A registry with every command family registered."""
    from commands import general

    registry = Registry(prefix=prefix)
    for family in (general,):
        family.register(registry)
    return registry
