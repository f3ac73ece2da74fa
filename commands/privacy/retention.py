"""The daily retention job: tried every hour, it runs once per UTC day (the day is claimed
in the database, so two bot processes never both run it) and removes what the bot no
longer needs (see :mod:`storage.retention`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from commands.services import Services
from config.models import Settings
from storage import erasure, retention

log = logging.getLogger(__name__)
JOB_ID = "privacy-retention"
EVERY_HOURS = 1


def policy(settings: Settings, rooms: Iterable[str]) -> retention.Policy:
    p = settings.privacy
    return retention.Policy(
        inbound=p.inbound_retention,
        outbox=p.outbox_retention,
        claims=settings.claims.retention,
        audit=p.audit_retention,
        members=p.member_retention,
        keep=frozenset([*settings.secretariat.admins, settings.matrix.user_id]),
        rooms=frozenset(rooms),
    )


async def run_retention(services: Services) -> dict[str, int] | None:
    """Today's run; None when it ran already today (here or in another process)."""
    settings = services.settings
    now = services.clock()
    configured = settings.privacy.pseudonym_key
    secret = configured.get_secret_value() if configured is not None else None
    rooms = [*services.cop_rooms, services.management_room]

    async def work(session: AsyncSession) -> dict[str, int] | None:
        key = await erasure.pseudonym_key(session, secret, now)
        return await retention.run(
            session, policy(settings, rooms), key=key, actor=settings.matrix.user_id, now=now
        )

    counts = await services.run(work)
    if counts is not None:
        log.info("retention run of %s: %s", now.strftime("%Y-%m-%d"), counts)
    return counts


def schedule(services: Services) -> None:
    async def job() -> None:
        try:
            await run_retention(services)
        except Exception:
            log.exception("the retention run failed; it is tried again within the hour")

    services.every(job, timedelta(hours=EVERY_HOURS), JOB_ID, at_once=True)
