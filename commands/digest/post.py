"""Building and posting a CoP's weekly digest, at most once per (CoP, ISO week).

Posting is claimed per (CoP, ISO week) in the transaction that queues the message, so a
restart, a late job, a manual ``!digest send`` or a second bot process never posts a week
twice. On start the jobs are rebuilt from the configuration and a digest missed while the
bot was down is posted if its week is still running.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.ext.asyncio import AsyncSession

from commands.digest.sections import _PROVIDERS, DigestScope, DigestSection
from commands.services import Services
from commands.text import Message
from config.digest import DigestSchedule
from config.models import Settings
from storage import digest as store
from storage import repo

log = logging.getLogger(__name__)
WINDOW = timedelta(days=7)
"""A digest tells what is new in the seven days before it."""


@dataclass
class Digest:
    cop: str
    iso_year: int
    iso_week: int
    message: Message
    empty: bool

    @property
    def tag(self) -> str:
        return f"digest:{self.cop}:{self.iso_year}-W{self.iso_week:02d}"


def cop_zone(settings: Settings, code: str) -> ZoneInfo:
    return ZoneInfo(settings.cop_timezone(code))


def iso_week(settings: Settings, code: str, when: datetime) -> tuple[int, int]:
    year, week, _ = when.astimezone(cop_zone(settings, code)).isocalendar()
    return year, week


async def build_digest(
    session: AsyncSession, settings: Settings, code: str, now: datetime
) -> Digest:
    """The digest of CoP ``code`` as it would be posted at ``now``."""
    cop = settings.cop(code)
    if cop is None:
        raise ValueError(f"unknown CoP {code}")
    tz = cop_zone(settings, code)
    scope = DigestScope(settings=settings, cop=cop, now=now, start=now - WINDOW, tz=tz)
    year, week = iso_week(settings, code, now)
    filled: list[DigestSection] = []
    for provider in sorted(_PROVIDERS.values()):
        section = await provider.provider(session, scope)
        if section is not None and section.items:
            filled.append(section)
    since = scope.local(scope.start)
    head = Message().bold(f"Weekly digest · {cop.name} ({cop.code})").text(f" — week {week}")
    if not filled:
        head.text(f": a quiet week, nothing new since {since:%A %d %B}. ")
        head.text("Found something worth sharing? Send ")
        head.code(f"{scope.prefix}intel share <title>").text(".")
        return Digest(cop.code, year, week, head, empty=True)
    head.text(f". What is new since {since:%A %d %B}:")
    for section in filled:
        head.para().bold(section.title).bullets(section.items)
        if section.more is not None:
            head.append(section.more)
    head.para().text(f"Times are in {tz.key}. ")
    head.code(f"{scope.prefix}intel list").text(" shows all shared intelligence and ")
    head.code(f"{scope.prefix}help").text(" everything else I can do.")
    return Digest(cop.code, year, week, head, empty=False)


# --- posting ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    status: str
    """``posted``, ``skipped`` (empty week), ``claimed`` (done before), ``no-room``."""
    digest: Digest | None = None
    earlier: store.DigestPost | None = None


async def post_digest(
    session: AsyncSession,
    settings: Settings,
    code: str,
    now: datetime,
    *,
    kind: str,
    requested_by: str | None = None,
    again: bool = False,
) -> Outcome:
    """Claim this week for CoP ``code`` and queue its digest, in the caller's transaction.

    ``again`` posts without claiming (a moderator's explicit second digest of a week).
    """
    cop = await repo.get_cop(session, code)
    if cop is None or not cop.room_id:
        return Outcome("no-room")
    year, week = iso_week(settings, code, now)
    post: store.DigestPost | None = None
    if not again:
        post = await store.claim_week(
            session, code, year, week, kind=kind, requested_by=requested_by, at=now
        )
        if post is None:
            return Outcome("claimed", earlier=await store.week_post(session, code, year, week))
    digest = await build_digest(session, settings, code, now)
    if digest.empty and settings.digest.empty_week == "skip" and kind != "manual":
        if post is not None:
            await store.record_post(session, post, outbox_id=None, skipped=True)
        return Outcome("skipped", digest=digest)
    outbox_id = await repo.enqueue(
        session, room_id=cop.room_id, payload=digest.message.content(), tag=digest.tag, now=now
    )
    if post is not None:
        await store.record_post(session, post, outbox_id=outbox_id, skipped=False)
    return Outcome("posted", digest=digest)


def due_moment(schedule: DigestSchedule, tz: ZoneInfo, now: datetime) -> datetime:
    """When the digest of the ISO week containing ``now`` (in ``tz``) is due."""
    local = now.astimezone(tz)
    monday = local.date() - timedelta(days=local.weekday())
    day = monday + timedelta(days=schedule.weekday_index)
    return datetime.combine(day, schedule.clock_time, tzinfo=tz)


async def run_scheduled(services: Services, code: str, *, catch_up: bool = False) -> str:
    """The job: post this week's digest of ``code`` if it is due and nobody posted it.

    With ``catch_up`` (on start) a CoP the bot did not know yet at the due moment is left
    alone: a new installation waits for the next regular digest.
    """
    settings = services.settings
    schedule = settings.digest.schedule_for(code)
    if not schedule.enabled or settings.cop(code) is None:
        return "disabled"
    now = services.clock()
    due = due_moment(schedule, cop_zone(settings, code), now)
    if now < due - timedelta(minutes=1):  # a cron job may fire a hair early
        return "not-due"

    async def work(session: AsyncSession) -> str:
        if catch_up:
            known_since = await store.cop_created_at(session, code)
            if known_since is None or known_since > due:
                return "new-cop"
        outcome = await post_digest(
            session, settings, code, now, kind="catch-up" if catch_up else "scheduled"
        )
        return outcome.status

    status = await services.run(work)
    if status in ("posted", "skipped"):
        log.info("digest of %s for this week: %s", code, status)
    return status


async def catch_up(services: Services) -> dict[str, str]:
    """On start and every ``digest.retry_every``: post each CoP's digest that was due this
    week and not posted yet (a no-op for the weeks already posted)."""
    results: dict[str, str] = {}
    for cop in services.settings.cops:
        try:
            results[cop.code] = await run_scheduled(services, cop.code, catch_up=True)
        except Exception:
            log.exception("could not catch up on the digest of %s", cop.code)
            results[cop.code] = "error"
    return results


async def _job(services: Services, code: str) -> None:
    try:
        await run_scheduled(services, code)
    except Exception:
        log.exception("the scheduled digest of %s failed; the periodic catch-up retries it", code)


def schedule_jobs(services: Services) -> list[str]:
    """(Re)build one cron job per CoP from the configuration; returns the job ids."""
    settings = services.settings
    ids: list[str] = []
    for cop in settings.cops:
        job_id = f"digest:{cop.code}"
        schedule = settings.digest.schedule_for(cop.code)
        if not schedule.enabled:
            if services.scheduler.get_job(job_id) is not None:
                services.scheduler.remove_job(job_id)
            continue
        at = schedule.clock_time
        if services.scheduler.get_job(job_id) is not None:
            services.scheduler.remove_job(job_id)
        services.scheduler.add_job(
            _job,
            CronTrigger(
                day_of_week=schedule.weekday[:3],
                hour=at.hour,
                minute=at.minute,
                timezone=cop_zone(settings, cop.code),
            ),
            args=[services, cop.code],
            id=job_id,
            name=f"weekly digest of {cop.code}",
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
        )
        ids.append(job_id)
    unknown = sorted(set(settings.digest.cops) - {cop.code for cop in settings.cops})
    if unknown:
        log.warning("[digest.cops] names CoPs that are not configured: %s", ", ".join(unknown))
    return ids
