"""Market intelligence: ``!intel share``, ``list``, ``search``, ``show`` and ``remove``.

Items belong to one CoP. In a CoP room only that CoP's items are shown (the room's
members read the reply); in a direct message or the management room members see the
items of their CoPs and admins see every CoP's. Modules: :mod:`.parse`, :mod:`.render`,
:mod:`.share` and :mod:`.browse`.
"""

from __future__ import annotations

from commands.intel import browse, share
from commands.registry import Registry

__all__ = ["register"]


def register(registry: Registry) -> None:
    registry.register(share.family, browse.family)
