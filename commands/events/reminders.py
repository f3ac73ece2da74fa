"""Event reminders: rows in the database, sent at most once, with scheduler jobs only to be
punctual. Jobs are rebuilt from the rows on every start (:func:`rebuild_reminder_jobs`); a
periodic sweep also sends whatever is due, so a reminder planned by another bot process is
not missed. A reminder missed while the bot was down is sent late if the event has not
started (only the one closest to the start), and dropped, with a warning, if it has."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from commands.context import Context, queue_dm
from commands.events.access import sights
from commands.events.render import reminder_message
from commands.services import Services
from config.models import Settings
from storage import events as store
from storage.events import YES, Event

log = logging.getLogger(__name__)


async def deliver_reminder(
    session: AsyncSession, reminder_id: int, now: datetime, settings: Settings
) -> str:
    """Send one due reminder, at most once. Returns ``sent``, ``dropped``, ``superseded``,
    ``cancelled`` or ``skipped`` (not due, or handled already).

    The reminder row is claimed in the same transaction that queues the direct messages. A
    reminder missed while the bot was down is sent late if the event has not started (only
    the one closest to the start when several were missed), and dropped (logged) if it has.
    """
    reminder = await store.get_reminder(session, reminder_id)
    if reminder is None or reminder.status != "pending" or reminder.due_at > now:
        return "skipped"
    event = await store.lock_event(session, reminder.event_id)
    if event is None or event.cancelled:
        await store.claim_reminder(session, reminder_id, "cancelled", now)
        return "cancelled"
    if now >= event.starts_at:
        if await store.claim_reminder(session, reminder_id, "dropped", now):
            log.warning(
                "reminder %d of %s (%d minutes before) dropped: it was due at %s, but the "
                "event started at %s before it could be sent",
                reminder_id,
                event.code,
                reminder.offset_minutes,
                reminder.due_at.isoformat(),
                event.starts_at.isoformat(),
            )
            return "dropped"
        return "skipped"
    if await store.closer_reminder_due(session, reminder, now):
        # Down through two reminder times: only the one closest to the start goes out.
        if await store.claim_reminder(session, reminder_id, "superseded", now):
            log.info("reminder %d of %s superseded by a later one", reminder_id, event.code)
            return "superseded"
        return "skipped"
    if not await store.claim_reminder(session, reminder_id, "sent", now):
        return "skipped"
    prefix = settings.matrix.command_prefix
    zone = settings.cop_timezone(event.cop_code)
    people = await store.people_with_answers(session, event.id, [YES])
    seen = await sights(session, settings, people)
    for person in people:
        if not seen[person].sees(event):
            continue  # no longer a member (nor a guest): the meeting link is not theirs
        message = reminder_message(prefix, event, zone, now)
        await queue_dm(session, person, message.content(), now=now)
    late = now - reminder.due_at
    if late > timedelta(minutes=2):
        log.info("reminder %d of %s sent %s late", reminder_id, event.code, late)
    return "sent"


async def deliver_due(session: AsyncSession, now: datetime, settings: Settings) -> dict[str, int]:
    """Handle every reminder that is due; returns how many ended in which state."""
    counts: dict[str, int] = {}
    for reminder in await store.due_reminders(session, now):
        result = await deliver_reminder(session, reminder.id, now, settings)
        counts[result] = counts.get(result, 0) + 1
    return counts


def job_id(reminder_id: int) -> str:
    return f"event-reminder-{reminder_id}"


def schedule_reminder(services: Services, reminder_id: int, due: datetime) -> None:
    """A scheduler job for one reminder row (late ones run at once; the row decides)."""
    services.scheduler.add_job(
        fire_reminder,
        "date",
        run_date=max(due, services.clock()),
        args=[services, reminder_id],
        id=job_id(reminder_id),
        replace_existing=True,
        misfire_grace_time=None,
    )


async def fire_reminder(services: Services, reminder_id: int) -> str:
    try:
        return await services.run(
            lambda s: deliver_reminder(s, reminder_id, services.clock(), services.settings)
        )
    except Exception:
        log.exception("reminder %d failed; the periodic check tries again", reminder_id)
        return "error"


async def sweep_reminders(services: Services) -> dict[str, int]:
    """The periodic check: a cheap read first, a write transaction only when one is due."""
    try:
        async with services.db.read() as session:
            if not await store.due_reminders(session, services.clock()):
                return {}
        return await services.run(lambda s: deliver_due(s, services.clock(), services.settings))
    except Exception:
        log.exception("checking due reminders failed")
        return {}


async def rebuild_reminder_jobs(services: Services) -> int:
    """Make one job per pending reminder row; returns how many. Missed ones run at once."""
    async with services.db.read() as session:
        pending = await store.pending_reminders(session)
    now = services.clock()
    for reminder in pending:
        schedule_reminder(services, reminder.id, reminder.due_at)
    overdue = sum(1 for r in pending if r.due_at <= now)
    if pending:
        log.info("%d event reminder(s) scheduled, %d of them overdue", len(pending), overdue)
    services.every(
        sweep_reminders,
        services.settings.events.reminder_check,
        "event-reminder-sweep",
        args=[services],
    )
    return len(pending)


async def plan_and_schedule(ctx: Context, event: Event) -> None:
    rows = await store.plan_reminders(ctx.session, event, ctx.settings.events.reminders, ctx.now)
    if ctx.services is not None:
        for row in rows:
            schedule_reminder(ctx.services, row.id, row.due_at)
