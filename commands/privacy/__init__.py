"""Privacy: ``!privacy`` (the notice, :mod:`.notice`), ``!mydata`` (a copy of everything,
:mod:`.mydata`), ``!forgetme`` (erasure, :mod:`.forget`) and the daily retention job
(:mod:`.retention`)."""

from __future__ import annotations

from commands.privacy import forget, mydata, notice, retention
from commands.registry import Registry
from commands.services import Services

__all__ = ["register", "setup"]


def register(registry: Registry) -> None:
    registry.register(notice.family, mydata.family, forget.family)


async def setup(services: Services) -> None:
    retention.schedule(services)
