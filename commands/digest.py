"""The weekly digest of each CoP room: ``!digest preview``, ``!digest send`` and the schedule.

A digest has sections, each made by a *section provider*. The built-in ones are new
members, new market intelligence, upcoming events and travel-claim deadlines (the two event
sections read ``storage.events``; claim deadlines follow ``[claims]`` ``deadline_days`` and
``eligible_kinds``). Another family can add a section with :func:`add_section`.

Posting is claimed per (CoP, ISO week) in the transaction that queues the message, so a
restart, a late job, a manual ``!digest send`` or a second bot process never posts a week
twice. On start the jobs are rebuilt from the configuration and a digest missed while the
bot was down is posted if its week is still running.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.ext.asyncio import AsyncSession

from commands.args import Arg, ArgError, cop_code
from commands.context import Context
from commands.errors import CommandError
from commands.registry import Place, Registry, Role
from commands.services import Services
from commands.text import Message
from config.digest import DigestSchedule
from config.models import CopConfig, Settings
from storage import digest as store
from storage import events as events_store
from storage import intel as intel_store
from storage import repo

log = logging.getLogger(__name__)

SECTION = "Moderation"
WINDOW = timedelta(days=7)
"""A digest tells what is new in the seven days before it."""
EVENTS_AHEAD = timedelta(days=28)
CLAIMS_WITHIN = timedelta(days=7)
MAX_TITLE = 100

KIND_LABELS = {
    "online-meeting": "Online meeting",
    "in-person-meeting": "In-person meeting",
    "study-visit": "Study visit",
    "market-dialogue": "Market dialogue",
    "pitching-session": "Pitching session",
    "industry-meeting": "Industry meeting",
}


# --- sections -------------------------------------------------------------------------------


@dataclass
class DigestScope:
    """What a section provider gets: which CoP, which week, how to write times."""

    settings: Settings
    cop: CopConfig
    now: datetime
    start: datetime
    """Start of the seven days the digest looks back on."""
    tz: ZoneInfo

    @property
    def prefix(self) -> str:
        return self.settings.matrix.command_prefix

    @property
    def max_items(self) -> int:
        return self.settings.digest.max_items

    def local(self, when: datetime) -> datetime:
        return when.astimezone(self.tz)


@dataclass
class DigestSection:
    title: str
    items: list[Message]
    more: Message | None = None
    """A closing line, e.g. "…and 4 more: !intel list"."""


SectionProvider = Callable[[AsyncSession, DigestScope], Awaitable[DigestSection | None]]


@dataclass(order=True)
class _Provider:
    order: int
    name: str
    provider: SectionProvider = field(compare=False)


_PROVIDERS: dict[str, _Provider] = {}


def add_section(name: str, provider: SectionProvider, *, order: int) -> None:
    """Add (or replace) a digest section. Sections appear by ``order``; the built-in ones
    are members 10, intel 20, events 30, claim deadlines 40. A provider returns None or a
    section without items when it has nothing to say; it must show nothing private."""
    _PROVIDERS[name] = _Provider(order=order, name=name, provider=provider)


def sections() -> list[str]:
    return [p.name for p in sorted(_PROVIDERS.values())]


def _shorten(text: str, limit: int = MAX_TITLE) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _more(count: int, scope: DigestScope, command: str) -> Message | None:
    if count <= 0:
        return None
    return Message(f"…and {count} more: ").code(f"{scope.prefix}{command}")


async def members_section(session: AsyncSession, scope: DigestScope) -> DigestSection | None:
    people = await store.new_members(session, scope.cop.code, scope.start, scope.now)
    items = []
    for person in people[: scope.max_items]:
        line = Message()
        if person.org:
            line.bold(person.org)
            if person.country:
                line.text(f" ({person.country})")
            line.text(f" · {person.user_id}")
        else:
            line.text(person.user_id)
        items.append(line)
    more = _more(len(people) - len(items), scope, f"members {scope.cop.code}")
    return DigestSection("Welcome to our new members", items, more)


async def intel_section(session: AsyncSession, scope: DigestScope) -> DigestSection | None:
    page = await intel_store.items_between(
        session, scope.cop.code, scope.start, scope.now, limit=scope.max_items
    )
    items = []
    for item in page.items:
        line = Message().bold(f"I{item.id}").text(" ")
        urls = list(item.urls or [])
        if urls:
            line.link(urls[0], _shorten(item.title))
        else:
            line.text(_shorten(item.title))
        if item.file_url:
            line.text(" 📎")
        if item.tag_list:
            line.text(" · " + " ".join(f"#{t}" for t in item.tag_list[:4]))
        line.text(f" · by {item.author}")
        items.append(line)
    more = _more(page.total - len(items), scope, "intel list")
    return DigestSection("New market intelligence", items, more)


def _when(scope: DigestScope, start: datetime, end: datetime) -> str:
    first, last = scope.local(start), scope.local(end)
    text = f"{first:%a %d %b, %H:%M}"
    if last.date() == first.date():
        return text + f"–{last:%H:%M}"
    return text + f" – {last:%a %d %b, %H:%M}"


async def events_section(session: AsyncSession, scope: DigestScope) -> DigestSection | None:
    events = await events_store.digest_upcoming_events(
        session, scope.cop.code, scope.now, scope.now + EVENTS_AHEAD, limit=scope.max_items + 1
    )
    items = []
    for event in events[: scope.max_items]:
        line = Message().bold(f"E{event.id}").text(" ")
        line.text(f"{KIND_LABELS.get(event.kind, event.kind)}: {_shorten(event.title)}")
        line.text(f" — {_when(scope, event.starts_at, event.ends_at)}")
        counts = f"{event.yes} going"
        if event.maybe:
            counts += f", {event.maybe} maybe"
        if event.capacity is not None:
            left = max(event.capacity - event.yes, 0)
            counts += f", {left} of {event.capacity} seats left"
        if event.waiting:
            counts += f", {event.waiting} waiting"
        items.append(line.text(f" · {counts}"))
    more = None
    if len(events) > len(items):  # asked for one more than shown: there are more
        more = Message("…and more: ").code(f"{scope.prefix}events {scope.cop.code}")
    section = DigestSection("Coming up in the next four weeks", items, more)
    if items:
        section.more = (section.more or Message()).append(
            Message(" Answer with ").code(f"{scope.prefix}rsvp E<number> yes|no|maybe")
        )
    return section


async def claims_section(session: AsyncSession, scope: DigestScope) -> DigestSection | None:
    rules = scope.settings.claims
    events = await events_store.digest_claim_deadlines(
        session,
        scope.cop.code,
        scope.now,
        scope.now + CLAIMS_WITHIN,
        deadline_days=rules.deadline_days,
        kinds=rules.eligible_kinds,
        limit=scope.max_items,
    )
    items = []
    for event in events:
        line = Message().bold(f"E{event.id}").text(f" {_shorten(event.title)}")
        if event.claim_deadline is not None:
            line.text(f" — claims until {scope.local(event.claim_deadline):%a %d %b, %H:%M}")
        items.append(line)
    section = DigestSection("Travel claims closing within a week", items)
    if items:
        section.more = Message("If you attended, send ").code(f"{scope.prefix}claim new E<number>")
        section.more.text(" in a direct message with me.")
    return section


add_section("members", members_section, order=10)
add_section("intel", intel_section, order=20)
add_section("events", events_section, order=30)
add_section("claims", claims_section, order=40)


# --- building ---------------------------------------------------------------------------------


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
    row = await repo.enqueue(
        session, room_id=cop.room_id, payload=digest.message.content(), tag=digest.tag, now=now
    )
    if post is not None:
        await store.record_post(session, post, outbox_id=row.id, skipped=False)
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
    """On start: post each CoP's digest that was due this week and not posted yet."""
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
        log.exception("the scheduled digest of %s failed; it is retried on the next start", code)


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


async def setup(services: Services) -> None:
    schedule_jobs(services)
    await catch_up(services)


# --- commands ---------------------------------------------------------------------------------


def _local_text(settings: Settings, code: str, when: datetime) -> str:
    tz = cop_zone(settings, code)
    return f"{when.astimezone(tz):%a %d %b at %H:%M} ({tz.key})"


async def _target_cop(ctx: Context, cop: str | None) -> str:
    code = ctx.resolve_cop(cop).code
    if ctx.place is Place.COP_ROOM and ctx.room_cop and code != ctx.room_cop:
        raise CommandError(
            f"This is the {ctx.room_cop} room; I will not show {code}'s digest here. "
            f"Ask in the {code} room or in the management room."
        )
    await ctx.require(Role.MODERATOR, code)
    return code


def register(reg: Registry) -> None:
    places = Place.COP_ROOM | Place.MANAGEMENT | Place.DM

    @reg.command(
        "digest preview",
        help="Show what this week's digest of a CoP would say, without posting it.",
        section=SECTION,
        args=[Arg("cop", parser=cop_code, optional=True, metavar="[COP]")],
        role=Role.MODERATOR,
        places=places,
        examples=["!digest preview HDEV"],
    )
    async def preview(ctx: Context, cop: str | None) -> None:
        code = await _target_cop(ctx, cop)
        digest = await build_digest(ctx.session, ctx.settings, code, ctx.now)
        msg = Message("Preview of the ").bold(f"{code} digest").text(" (not posted):")
        msg.para().append(digest.message).para()
        earlier = await store.week_post(ctx.session, code, digest.iso_year, digest.iso_week)
        schedule = ctx.settings.digest.schedule_for(code)
        if earlier is not None:
            what = "skipped as empty" if earlier.skipped else "posted"
            msg.text(f"This week's digest was {what} on ")
            msg.text(_local_text(ctx.settings, code, earlier.claimed_at) + ".")
        elif schedule.enabled:
            due = due_moment(schedule, cop_zone(ctx.settings, code), ctx.now)
            if due < ctx.now:
                due += timedelta(days=7)
            msg.text(f"It goes to the {code} room on {_local_text(ctx.settings, code, due)}.")
        else:
            msg.text(f"Weekly digests are switched off for {code}.")
        if digest.empty and ctx.settings.digest.empty_week == "skip":
            msg.text(" An empty week is not posted.")
        msg.text(" To post it now send ").code(f"{ctx.prefix}digest send {code}").text(".")
        await ctx.reply(msg)

    @reg.command(
        "digest send",
        help="Post this week's digest to a CoP room now.\n"
        "Each week's digest is posted once; add `again` to post an updated one anyway.",
        section=SECTION,
        args=[
            Arg("cop", parser=cop_code, optional=True, metavar="[COP]"),
            Arg("again", parser=_again, optional=True, metavar="[again]"),
        ],
        role=Role.MODERATOR,
        places=places,
        examples=["!digest send HDEV", "!digest send HDEV again"],
    )
    async def send(ctx: Context, cop: str | None, again: str | None) -> None:
        if cop == "AGAIN" and again is None and ctx.settings.cop("AGAIN") is None:
            cop, again = None, "again"
        code = await _target_cop(ctx, cop)
        outcome = await post_digest(
            ctx.session,
            ctx.settings,
            code,
            ctx.now,
            kind="manual",
            requested_by=ctx.sender,
            again=again is not None,
        )
        if outcome.status == "no-room":
            raise CommandError(f"I do not know the room of {code} yet, so I cannot post there.")
        if outcome.status == "claimed":
            earlier = outcome.earlier
            when = _local_text(ctx.settings, code, earlier.claimed_at) if earlier else "earlier"
            what = "was skipped as an empty week" if earlier and earlier.skipped else "went out"
            raise CommandError(
                Message(f"This week's {code} digest {what} on {when}. To post an updated one ")
                .text("anyway, send ")
                .code(f"{ctx.prefix}digest send {code} again")
                .text(".")
            )
        assert outcome.digest is not None
        await repo.audit(
            ctx.session,
            actor=ctx.sender,
            action="digest.send",
            cop_code=code,
            target=outcome.digest.tag,
            detail="again" if again else "",
            now=ctx.now,
        )
        where = "here" if ctx.place is Place.COP_ROOM else f"to the {code} room"
        await ctx.reply(
            Message(f"Done: the digest of week {outcome.digest.iso_week} is posted {where}.")
        )


def _again(token: str) -> str:
    if token.lower() != "again":
        raise ArgError(f"{token!r} is not understood here; only 'again' may follow the CoP")
    return "again"


__all__ = [
    "Digest",
    "DigestScope",
    "DigestSection",
    "Outcome",
    "add_section",
    "build_digest",
    "catch_up",
    "due_moment",
    "post_digest",
    "run_scheduled",
    "schedule_jobs",
    "sections",
    "setup",
]
