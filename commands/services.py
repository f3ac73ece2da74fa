"""What command families get at start-up: scheduler, HTTP routes, database, clock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncSession

from commands.registry import Registry
from config.models import Settings
from storage import Database, repo

T = TypeVar("T")


@dataclass
class Services:
    """Passed to each command family's optional ``async def setup(services)``.

    ``setup`` runs once on start, after the rooms are known and before the HTTP server
    starts (so it may add routes) and before any event is handled. Scheduled jobs must be
    rebuilt from the database here: the database is the source of truth for schedules.
    """

    settings: Settings
    db: Database
    registry: Registry
    scheduler: AsyncIOScheduler
    http: web.Application
    clock: Callable[[], datetime]
    wake_sender: Callable[[], None]
    cop_rooms: dict[str, str]
    """Room id -> CoP code."""
    management_room: str
    bot_user: str
    fetch_event: Callable[[str, str], Awaitable[dict[str, Any] | None]] | None = None
    """Read one event from the homeserver: ``await fetch_event(room_id, event_id)`` gives its
    raw JSON (``type``, ``sender``, ``content``...) or None when it cannot be read. For the
    rare command that needs a message the bot never stored (e.g. the file a command replies
    to); one HTTP request per call."""

    def room_of(self, cop_code: str) -> str | None:
        return next((room for room, code in self.cop_rooms.items() if code == cop_code), None)

    async def run(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run ``work`` in one transaction (e.g. a scheduled job writing to the outbox),
        then let the sender deliver what it queued. On PostgreSQL the outbox rows it queues
        (a reminder's direct messages) are written together (``repo.batch_outbox``)."""
        async with self.db.session() as session:
            await repo.batch_outbox(session)
            result = await work(session)
        self.wake_sender()
        return result

    def every(
        self,
        job: Callable[..., Awaitable[Any]],
        interval: timedelta,
        job_id: str,
        *,
        args: Sequence[Any] = (),
        at_once: bool = False,
    ) -> None:
        """Run ``job(*args)`` every ``interval`` under ``job_id`` (replacing an earlier job of
        that id; never two runs at once, and missed runs collapse into one); with ``at_once``
        the first run is now rather than one interval from now."""
        first = {"next_run_time": self.clock()} if at_once else {}
        self.scheduler.add_job(
            job,
            "interval",
            seconds=interval.total_seconds(),
            args=list(args),
            id=job_id,
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            **first,
        )
