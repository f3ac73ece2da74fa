"""Membership: profiles, applying (with a question-and-answer dialogue in a direct
message), deciding applications, members-only CoP rooms, moderators and their power
levels, member lists and the audit log.

One topic per module: :mod:`.rules` (eligibility, countries, types), :mod:`.render`,
:mod:`.apply`, :mod:`.decide`, :mod:`.rooms`, :mod:`.roles` and :mod:`.lists`.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from commands.membership import apply, decide, lists, roles, rooms
from commands.membership.rooms import sync_power
from commands.registry import Registry
from commands.services import Services
from storage import membership as ms

__all__ = ["register", "setup", "sync_power"]
log = logging.getLogger(__name__)
REFRESH_SECONDS = 30


def register(registry: Registry) -> None:
    registry.register(apply.family, decide.family, rooms.family, roles.family, lists.family)


async def setup(services: Services) -> None:
    """Listen again to the dialogues that were open, and bring power levels in step."""

    async def prepare(session: AsyncSession) -> None:
        services.registry.listening.update(await ms.dialogue_users(session))
        await sync_power(session, services.settings, services.clock())

    await services.run(prepare)

    async def refresh() -> None:
        # Another bot process may have opened a dialogue; only ever add (see Registry).
        try:
            async with services.db.read() as session:
                services.registry.listening.update(await ms.dialogue_users(session))
        except Exception:
            log.exception("could not refresh the open join dialogues")

    services.every(refresh, timedelta(seconds=REFRESH_SECONDS), "membership-dialogues")
