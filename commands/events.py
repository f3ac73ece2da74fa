"""Events: create/edit/cancel, announcements, RSVP with waiting lists, guests, attendance,
reminders, calendar files and feeds, and CSV exports.

Times are stored in UTC together with the IANA zone they were given in; everything shown
to people is converted back and names the zone. Reminders are database rows; scheduler
jobs are only a way to be punctual and are rebuilt from the rows on every start (see
:func:`setup`).

``!export`` is declared here once; other families add what can be exported with
:func:`add_exporter` (e.g. ``add_exporter("claims", "travel claims", build)``).
"""

from __future__ import annotations

import csv
import io
import logging
import re
import unicodedata
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import icalendar
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from commands.args import Arg, ArgError, Options, positive_int, prefixed_id, user_id
from commands.context import Context
from commands.errors import CommandError, PermissionDenied, UsageError
from commands.registry import Place, Registry, Role
from commands.services import Services
from commands.text import Message
from config.events import EventsConfig
from config.models import Settings
from storage import events as store
from storage import repo
from storage.events import KINDS, MAYBE, NO, WAITING, YES, Event, RsvpOutcome

log = logging.getLogger(__name__)

SECTION = "Events"
KIND_LABELS = {
    "online-meeting": "online meeting",
    "in-person-meeting": "in-person meeting",
    "study-visit": "study visit",
    "market-dialogue": "market dialogue",
    "pitching-session": "producers' pitching session",
    "industry-meeting": "meeting with industry",
}
ANSWER_LABELS = {YES: "going", NO: "not going", MAYBE: "maybe", WAITING: "on the waiting list"}
REACTION_KEYS = {YES: "✅", NO: "❌", MAYBE: "❔"}
REACTION_ANSWERS = {
    "✅": YES,
    "✔": YES,
    "☑": YES,
    "👍": YES,
    "❌": NO,
    "✖": NO,
    "👎": NO,
    "❔": MAYBE,
    "❓": MAYBE,
    "🤔": MAYBE,
}
UPCOMING_LIMIT = 25
NOTIFY_ANSWERS = (YES, MAYBE, WAITING)


def _config(settings: Settings) -> EventsConfig:
    return settings.events


# --- parsing -------------------------------------------------------------------------------


def parse_kind(token: str) -> str:
    value = token.strip().lower().replace("_", "-")
    if value in KINDS:
        return value
    if re.match(r"^\d{4}-\d{1,2}-\d{1,2}$", value):
        raise ArgError(f"the kind of event is missing before the date (kinds: {', '.join(KINDS)})")
    close = [kind for kind in KINDS if kind.split("-")[0] == value.split("-")[0]]
    hint = f" Did you mean {close[0]}?" if close else ""
    raise ArgError(f"{token!r} is not a kind of event I know.{hint} Kinds: {', '.join(KINDS)}")


def parse_date(token: str) -> date:
    match = re.match(r"^(\d{4})-(\d{1,2})-(\d{1,2})$", token.strip())
    if not match:
        raise ArgError(f"{token!r} is not a date like 2026-05-12 (year-month-day)")
    year, month, day = (int(part) for part in match.groups())
    try:
        value = date(year, month, day)
    except ValueError:
        raise ArgError(f"{token} is not a real date (check the month and the day)") from None
    if year < 2000:
        raise ArgError(f"{token} is too long ago; please check the year")
    return value


def parse_time(token: str) -> time:
    match = re.match(r"^(\d{1,2})[:.h](\d{2})$", token.strip())
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ArgError(f"{token!r} is not a time like 14:30 (24-hour clock)")
    return time(int(match.group(1)), int(match.group(2)))


@dataclass(frozen=True)
class Length:
    """How long an event lasts: whole days follow the local calendar, the rest is exact."""

    days: int = 0
    minutes: int = 0

    def text(self) -> str:
        parts = []
        if self.days:
            parts.append(f"{self.days} day" + ("s" if self.days != 1 else ""))
        hours, minutes = divmod(self.minutes, 60)
        if hours:
            parts.append(f"{hours} hour" + ("s" if hours != 1 else ""))
        if minutes:
            parts.append(f"{minutes} minute" + ("s" if minutes != 1 else ""))
        return " ".join(parts) or "0 minutes"


_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)(?:m|min))?$")


def parse_duration(token: str) -> Length:
    value = token.strip().lower().replace(" ", "")
    match = _DURATION.match(value)
    if not value or not match:
        raise ArgError(f"{token!r} is not a duration like 90m, 2h, 1h30m or 2d")
    days, hours, minutes = (int(part or 0) for part in match.groups())
    if days == hours == minutes == 0:
        raise ArgError("the duration must be longer than zero, e.g. 90m, 2h or 1d")
    return Length(days=days, minutes=hours * 60 + minutes)


@lru_cache(maxsize=1)
def _zones() -> dict[str, str]:
    names = available_timezones() | {"UTC"}
    return {name.lower(): name for name in names}


def parse_zone(token: str) -> str:
    name = _zones().get(token.strip().lower())
    if name is None:
        raise ArgError(
            f"{token!r} is not a time zone I know; use a name such as Europe/Brussels, "
            "Europe/Lisbon or UTC"
        )
    return name


def parse_title(token: str) -> str:
    value = " ".join(token.split())
    if not value:
        raise ArgError("the title is empty")
    if len(value) > 200:
        raise ArgError("the title is too long (200 characters at most)")
    return value


def parse_where(token: str) -> str:
    value = " ".join(token.split())
    if len(value) > 300:
        raise ArgError("where= is too long (300 characters at most)")
    return value


def parse_url(token: str) -> str:
    value = token.strip()
    if value and (not re.match(r"^https?://[^\s/]+\S*$", value) or len(value) > 500):
        raise ArgError(f"{token!r} is not a web link starting with https://")
    return value


def parse_capacity(token: str) -> int | None:
    if token.strip().lower() in ("none", "unlimited", "no", "-"):
        return None
    value = positive_int(token.strip())
    if value > 10000:
        raise ArgError("capacity is too large (10000 seats at most)")
    return value


def parse_answer(token: str) -> str:
    value = token.strip().lower()
    aliases = {"y": YES, "going": YES, "n": NO, "not": NO, "m": MAYBE, "?": MAYBE}
    value = aliases.get(value, value)
    if value in (YES, NO, MAYBE):
        return value
    raise ArgError(f"{token!r} is not an answer; use yes, no or maybe")


_event_number = prefixed_id("E", "an event")


def parse_event_id(token: str) -> int:
    return int(_event_number(token))


def parse_event_or_sub(token: str) -> int:
    """``!event <E#>``; a wrong word gets a hint about the subcommands."""
    try:
        return parse_event_id(token)
    except ArgError:
        raise ArgError(
            f"{token!r} is not an event number such as E12 (or one of: create, edit, cancel)"
        ) from None


def parse_scope(token: str) -> str:
    value = token.strip().upper()
    if value == "ALL":
        return value
    if not re.match(r"^[A-Z][A-Z0-9]{1,11}$", value):
        raise ArgError(f"{token!r} is not a CoP code such as HDEV, or all")
    return value


def parse_user_list(text: str) -> list[str]:
    users: list[str] = []
    for token in re.split(r"[\s,]+", text.strip()):
        if token and (value := user_id(token)) not in users:
            users.append(value)
    if not users:
        raise ArgError("name at least one person, e.g. @anna:example.org")
    return users


# --- times --------------------------------------------------------------------------------


def resolve_local(day: date, at: time, zone_name: str) -> tuple[datetime, str | None]:
    """The UTC instant of a wall-clock time in a zone, and a note when it was ambiguous.

    A time that does not exist (skipped when the clocks go forward) is refused with the
    time it would become; a time that happens twice (the clocks go back) means the first.
    """
    zone = ZoneInfo(zone_name)
    naive = datetime.combine(day, at)
    first = naive.replace(tzinfo=zone, fold=0)
    second = naive.replace(tzinfo=zone, fold=1)
    back = first.astimezone(UTC).astimezone(zone)
    if back.replace(tzinfo=None) != naive:
        raise ArgError(
            f"{day.isoformat()} {at:%H:%M} does not exist in {zone_name}: the clocks move "
            f"forward that night. Did you mean {back:%H:%M}?"
        )
    if first.utcoffset() != second.utcoffset():
        note = (
            f"{at:%H:%M} happens twice on {day.isoformat()} in {zone_name} because the clocks "
            f"go back that night; I used the first one ({first:%H:%M %Z}, "
            f"{first.astimezone(UTC):%H:%M} UTC)."
        )
        return first.astimezone(UTC), note
    return first.astimezone(UTC), None


def end_of(start: datetime, length: Length, zone_name: str) -> datetime:
    """Whole days keep the local time of day (across clock changes); hours are exact."""
    end = start
    if length.days:
        zone = ZoneInfo(zone_name)
        local = start.astimezone(zone).replace(tzinfo=None) + timedelta(days=length.days)
        end = local.replace(tzinfo=zone).astimezone(UTC)
    return end + timedelta(minutes=length.minutes)


def plan_times(
    day: date,
    at: time,
    length: Length,
    zone_name: str,
    *,
    now: datetime,
    config: EventsConfig,
) -> tuple[datetime, datetime, str | None]:
    """Start and end in UTC for an event given in local time; refuses the past."""
    start, note = resolve_local(day, at, zone_name)
    if start <= now:
        shown = now.astimezone(ZoneInfo(zone_name))
        raise ArgError(
            f"{day.isoformat()} {at:%H:%M} ({zone_name}) is in the past; it is now "
            f"{shown:%Y-%m-%d %H:%M} there"
        )
    if start - now > config.max_ahead:
        raise ArgError(f"{day.isoformat()} is very far ahead; please check the year")
    end = end_of(start, length, zone_name)
    if end - start > config.max_duration:
        raise ArgError(f"an event can last {config.max_duration.days} days at most")
    return start, end, note


def when_text(start: datetime, end: datetime, zone_name: str, *, year: bool = True) -> str:
    """``Tue 12 May 2026, 10:00–11:30 CEST (Europe/Brussels)``."""
    zone = ZoneInfo(zone_name)
    s = start.astimezone(zone)
    e = end.astimezone(zone)
    day_fmt = "%a %d %b %Y" if year else "%a %d %b"
    abbr_s, abbr_e = s.tzname() or "", e.tzname() or ""
    same_day = s.date() == e.date() or (e - s <= timedelta(hours=24) and e.time() == time(0))
    if same_day:
        text = f"{s.strftime(day_fmt)}, {s:%H:%M}–{e:%H:%M}"
        text += f" {abbr_e}" if abbr_s == abbr_e else f" {abbr_s}/{abbr_e}"
    else:
        first = f"{s:%H:%M}" if abbr_s == abbr_e else f"{s:%H:%M} {abbr_s}"
        text = f"{s.strftime(day_fmt)} {first} – {e.strftime(day_fmt)} {e:%H:%M} {abbr_e}"
    if zone_name not in (abbr_s, abbr_e):
        text += f" ({zone_name})"
    return text.replace("  ", " ")


def event_when(event: Event, zone_name: str | None = None, *, year: bool = True) -> str:
    return when_text(event.starts_at, event.ends_at, zone_name or event.timezone, year=year)


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)


def duration_of(event: Event) -> Length:
    """Whole local days when the event ends at the time of day it starts, else minutes."""
    zone = ZoneInfo(event.timezone)
    start, end = event.starts_at.astimezone(zone), event.ends_at.astimezone(zone)
    if end.date() > start.date() and end.time() == start.time():
        return Length(days=(end.date() - start.date()).days)
    return Length(minutes=int((event.ends_at - event.starts_at).total_seconds() // 60))


# --- who may see what -------------------------------------------------------------------------


@dataclass
class Scope:
    """What one person may see: whole CoPs, and single events they were invited to."""

    cops: set[str]
    guest_events: set[int] = field(default_factory=set)

    def sees(self, event: Event) -> bool:
        return event.cop_code in self.cops or event.id in self.guest_events


async def scope_of(session: AsyncSession, settings: Settings, user: str) -> Scope:
    codes = {cop.code for cop in settings.cops}
    if user in settings.secretariat.admins:
        cops = codes
    else:
        member = {c for c, s in (await repo.memberships_of(session, user)).items() if s == "member"}
        cops = (member | await repo.moderated_cops(session, user)) & codes
    return Scope(cops=cops, guest_events=await store.guest_event_ids(session, user))


async def may_see(ctx: Context, event: Event) -> bool:
    if await ctx.role_in(event.cop_code) >= Role.MEMBER:
        return True
    return await store.is_guest(ctx.session, event.id, ctx.sender)


def _not_found(ctx: Context, event_id: int) -> CommandError:
    return CommandError(
        Message(f"I can't find event E{event_id} among the events you can see. ")
        .code(f"{ctx.prefix}events")
        .text(" lists them.")
    )


async def visible_event(ctx: Context, event_id: int, *, lock: bool = False) -> Event:
    event = await (store.lock_event if lock else store.get_event)(ctx.session, event_id)
    if event is None or not await may_see(ctx, event):
        raise _not_found(ctx, event_id)
    return event


async def managed_event(ctx: Context, event_id: int, *, lock: bool = False) -> Event:
    """An event the caller may manage (a moderator of its CoP or an admin)."""
    event = await (store.lock_event if lock else store.get_event)(ctx.session, event_id)
    if event is None:
        raise CommandError(
            Message(f"There is no event E{event_id}. ")
            .code(f"{ctx.prefix}events all")
            .text(" lists the upcoming ones.")
        )
    await ctx.require(Role.MODERATOR, event.cop_code)
    return event


# --- sending ----------------------------------------------------------------------------------


async def queue_dm(session: AsyncSession, user: str, message: Message, now: datetime) -> None:
    """A direct message outside a command (reminders); the sender opens the room if needed."""
    room_id = await repo.get_direct_room(session, user)
    if room_id is not None:
        await repo.enqueue(session, room_id=room_id, payload=message.content(), now=now)
    else:
        await repo.enqueue(session, to_user=user, payload=message.content(), now=now)


async def changeable_event(ctx: Context, event: int, if_cancelled: str, verb: str) -> Event:
    """The event a moderator may still change (locked): not cancelled, not yet started."""
    ev = await managed_event(ctx, event, lock=True)
    if ev.cancelled:
        raise CommandError(Message().append(event_heading(ev)).text(f" {if_cancelled}."))
    if ctx.now >= ev.starts_at:
        raise CommandError(
            Message().append(event_heading(ev)).text(f" has already started; it can't be {verb}.")
        )
    return ev


async def cop_room(session: AsyncSession, code: str) -> str | None:
    cop = await repo.get_cop(session, code)
    return cop.room_id if cop else None


def event_heading(event: Event) -> Message:
    return Message().bold(event.code).text(" “").bold(event.title).text("”")


def details(event: Event, zone_name: str) -> Message:
    """Kind, time, place and link: the facts every message about an event repeats."""
    msg = Message(kind_label(event.kind).capitalize()).text(" · ")
    msg.text(event_when(event, zone_name))
    if zone_name != event.timezone:
        msg.text(f" — {event_when(event)} local time")
    if event.location:
        msg.br().text("Where: ").text(event.location)
    if event.url:
        msg.br().text("Link: ").link(event.url)
    return msg


def seats_text(capacity: int | None) -> str:
    if capacity is None:
        return "no seat limit"
    return f"{capacity} seat" + ("s" if capacity != 1 else "")


def rsvp_hint(ctx_prefix: str, event: Event) -> Message:
    return Message("Answer with ").code(f"{ctx_prefix}rsvp {event.code} yes|no|maybe").text(".")


def announcement(prefix: str, event: Event, zone_name: str, cop_name: str) -> Message:
    msg = Message("📅 New event in ").text(cop_name).text(": ").append(event_heading(event))
    msg.br().append(details(event, zone_name))
    seats = seats_text(event.capacity)
    msg.br().text(f"Seats: {seats}")
    msg.para().text("Coming? React with ✅ (yes), ❌ (no) or ❔ (maybe), or send ")
    msg.code(f"{prefix}rsvp {event.code} yes").text(". Details: ").code(
        f"{prefix}event {event.code}"
    )
    msg.text(".")
    return msg


def promotion_message(prefix: str, event: Event, zone_name: str) -> Message:
    msg = Message("Good news: a seat freed up at ").append(event_heading(event))
    msg.text(" and it is yours. ").br().append(details(event, zone_name))
    msg.para().text("If you can no longer come, send ")
    msg.code(f"{prefix}rsvp {event.code} no").text(" so the next person gets the seat.")
    return msg


def reminder_list(config: EventsConfig) -> str:
    return " and ".join(_offset_text(offset) for offset in config.reminders)


def _offset_text(offset: timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    if minutes % 1440 == 0 and minutes >= 2880:
        days = minutes // 1440
        return f"{days} day" + ("s" if days != 1 else "")
    if minutes % 60 == 0:
        hours = minutes // 60
        return f"{hours} hour" + ("s" if hours != 1 else "")
    return f"{minutes} minutes"


def _in_text(delta: timedelta) -> str:
    minutes = max(1, round(delta.total_seconds() / 60))
    if minutes < 90:
        return f"{minutes} minute" + ("s" if minutes != 1 else "")
    hours = round(minutes / 60)
    if hours < 48:
        return f"{hours} hours"
    return f"{round(hours / 24)} days"


# --- answering --------------------------------------------------------------------------------


async def answer_event(
    ctx: Context,
    event_id: int,
    answer: str | None,
    *,
    user: str | None = None,
    reaction_event_id: str | None = None,
) -> tuple[Event, RsvpOutcome]:
    """Change one person's answer under the event's lock; tells people who got a seat."""
    who = user or ctx.sender
    event = await store.lock_event(ctx.session, event_id)
    if event is None or (who == ctx.sender and not await may_see(ctx, event)):
        raise _not_found(ctx, event_id)
    if event.cancelled:
        raise CommandError(Message().append(event_heading(event)).text(" was cancelled."))
    if ctx.now >= event.starts_at:
        raise CommandError(
            Message()
            .append(event_heading(event))
            .text(" has already started, so answers can no longer be changed.")
        )
    outcome = await store.set_rsvp(
        ctx.session, event, who, answer, ctx.now, reaction_event_id=reaction_event_id
    )
    zone = ctx.settings.cop_timezone(event.cop_code)
    for person in outcome.promoted:
        await ctx.dm(person, promotion_message(ctx.prefix, event, zone))
    return event, outcome


def outcome_message(ctx: Context, event: Event, outcome: RsvpOutcome) -> Message:
    zone = ctx.settings.cop_timezone(event.cop_code)
    msg = Message()
    if outcome.answer == YES:
        if outcome.previous == YES:
            msg.text("You already have a seat at ").append(event_heading(event)).text(".")
        else:
            msg.text("You're going to ").append(event_heading(event)).text(". See you there!")
        msg.br().append(details(event, zone))
        if _config(ctx.settings).reminders:
            msg.br().text(f"I'll remind you {reminder_list(_config(ctx.settings))} before.")
    elif outcome.answer == WAITING:
        seats = f"{event.capacity} seat" + ("s" if event.capacity != 1 else "")
        msg.append(event_heading(event)).text(f" is full ({seats}), so you are ")
        msg.bold(f"number {outcome.position}").text(" on the waiting list. ")
        msg.text("If a seat frees up it goes to the first one waiting, and I'll tell you in a ")
        msg.text("direct message.")
    elif outcome.answer == MAYBE:
        msg.text("Noted: maybe for ").append(event_heading(event)).text(".")
    elif outcome.answer == NO:
        msg.text("Noted: you're not going to ").append(event_heading(event)).text(".")
        if outcome.previous == YES and event.capacity is not None:
            msg.text(" Your seat is free for someone else now.")
    else:
        msg.text("Your answer to ").append(event_heading(event)).text(" is withdrawn.")
    return msg


# --- reminders --------------------------------------------------------------------------------


def reminder_message(prefix: str, event: Event, zone_name: str, now: datetime) -> Message:
    msg = Message("⏰ Reminder: ").append(event_heading(event))
    msg.text(f" starts in {_in_text(event.starts_at - now)}.").br()
    msg.append(details(event, zone_name))
    msg.para().text("Can't make it? Send ").code(f"{prefix}rsvp {event.code} no")
    msg.text(" so someone else can have your seat.")
    return msg


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
    for person in people:
        await queue_dm(session, person, reminder_message(prefix, event, zone, now), now=now)
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
    services.scheduler.add_job(
        sweep_reminders,
        "interval",
        seconds=_config(services.settings).reminder_check.total_seconds(),
        args=[services],
        id="event-reminder-sweep",
        replace_existing=True,
        coalesce=True,
        max_instances=1,
    )
    return len(pending)


async def plan_and_schedule(ctx: Context, event: Event) -> None:
    rows = await store.plan_reminders(ctx.session, event, _config(ctx.settings).reminders, ctx.now)
    if ctx.services is not None:
        for row in rows:
            schedule_reminder(ctx.services, row.id, row.due_at)


# --- calendars ----------------------------------------------------------------------------------


def build_calendar(
    events: Sequence[Event],
    answers: dict[int, str],
    settings: Settings,
    *,
    name: str,
) -> bytes:
    """An iCalendar file; times in UTC, one VEVENT per event with a stable UID."""
    prefix = settings.matrix.command_prefix
    server = settings.matrix.server_name
    cal = icalendar.Calendar()
    cal.add("prodid", "-//Big Buyers Working Together//bbwt-bot//EN")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", name)
    for event in events:
        cop = settings.cop(event.cop_code)
        item = icalendar.Event()
        item.add("uid", f"bbwt-event-{event.id}@{server}")
        item.add("dtstamp", event.updated_at.astimezone(UTC))
        item.add("last-modified", event.updated_at.astimezone(UTC))
        item.add("dtstart", event.starts_at.astimezone(UTC))
        item.add("dtend", event.ends_at.astimezone(UTC))
        item.add("sequence", event.sequence)
        item.add("summary", event.title)
        item.add("status", "CANCELLED" if event.cancelled else "CONFIRMED")
        item.add("categories", [kind_label(event.kind)])
        if event.location:
            item.add("location", event.location)
        if event.url:
            item.add("url", event.url)
        lines = [
            f"{event.code}: {kind_label(event.kind)} of {cop.name if cop else event.cop_code}.",
            f"Local time: {event_when(event)}.",
        ]
        if event.cancelled:
            lines.append("CANCELLED" + (f": {event.cancel_reason}" if event.cancel_reason else "."))
        answer = answers.get(event.id)
        lines.append(f"Your answer: {ANSWER_LABELS[answer] if answer else 'none yet'}.")
        if not event.cancelled:
            lines.append(f"Answer in the chat with {prefix}rsvp {event.code} yes|no|maybe.")
        if event.url:
            lines.append(f"Link: {event.url}")
        item.add("description", "\n".join(lines))
        item.add("transp", "TRANSPARENT" if answer in (NO, None) else "OPAQUE")
        cal.add_component(item)
    return bytes(cal.to_ical())


async def calendar_events(
    session: AsyncSession,
    settings: Settings,
    user: str,
    *,
    cop: str | None,
    since: datetime,
    include_cancelled: bool,
) -> tuple[list[Event], dict[int, str]]:
    """The events one person may see (optionally of one CoP) and their answers."""
    scope = await scope_of(session, settings, user)
    cops = scope.cops if cop is None else scope.cops & {cop}
    extra = scope.guest_events
    events = await store.list_events(
        session,
        cops=cops,
        extra_ids=extra,
        ends_after=since,
        include_cancelled=include_cancelled,
    )
    if cop is not None:
        events = [event for event in events if event.cop_code == cop]
    events = [event for event in events if scope.sees(event)]
    answers = await store.answers_of(session, user, [event.id for event in events])
    return events, answers


def feed_base(settings: Settings) -> str:
    public = settings.http.public_url.rstrip("/")
    return public or f"http://{settings.http.host}:{settings.http.port}"


def feed_url(settings: Settings, token: str, cop: str | None = None) -> str:
    url = f"{feed_base(settings)}/calendar/{token}.ics"
    return f"{url}?cop={cop}" if cop else url


def make_feed_handler(services: Services) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def feed(request: web.Request) -> web.Response:
        token = request.match_info.get("token", "")
        if not re.match(r"^[A-Za-z0-9_\-]{16,64}$", token):
            raise web.HTTPNotFound(text="No such calendar.\n")
        cop = (request.query.get("cop") or "").upper() or None
        settings = services.settings
        async with services.db.read() as session:  # read-only: never waits for writers
            user = await store.user_of_calendar_token(session, token)
            if user is None:
                raise web.HTTPNotFound(text="No such calendar (the link may have been reset).\n")
            since = services.clock() - _config(settings).feed_history
            events, answers = await calendar_events(
                session, settings, user, cop=cop, since=since, include_cancelled=True
            )
        body = build_calendar(
            events, answers, settings, name=f"BBWT events{f' ({cop})' if cop else ''}"
        )
        return web.Response(
            body=body,
            content_type="text/calendar",
            charset="utf-8",
            headers={"Cache-Control": "private, max-age=300"},
        )

    return feed


# --- exports ----------------------------------------------------------------------------------

ExportBuilder = Callable[[Context, list[str]], Awaitable[tuple[str, bytes]]]
"""``await build(ctx, cop_codes)`` -> (file name, CSV bytes) for the CoPs the caller moderates."""


@dataclass(frozen=True)
class Exporter:
    name: str
    description: str
    build: ExportBuilder


EXPORTERS: dict[str, Exporter] = {}
"""What ``!export`` can produce, by name. Other families call :func:`add_exporter` from their
``register`` (the command reads this at run time, so the order of families does not matter)."""


def add_exporter(name: str, description: str, build: ExportBuilder) -> None:
    EXPORTERS[name.lower()] = Exporter(name.lower(), description, build)


def csv_cell(value: object) -> str:
    """Text for a CSV cell; free text that a spreadsheet would run as a formula is defused."""
    if value is None:
        return ""
    text = str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not re.match(r"^@[^\s:]+:\S+$", text):
        return "'" + text
    return text


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([csv_cell(value) for value in row])
    return buffer.getvalue().encode("utf-8-sig")


def _local(dt: datetime, zone_name: str) -> str:
    return dt.astimezone(ZoneInfo(zone_name)).strftime("%Y-%m-%d %H:%M")


def _utc(dt: datetime | None) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if dt else ""


async def export_events(ctx: Context, cops: list[str]) -> tuple[str, bytes]:
    events = await store.list_events(ctx.session, cops=cops, include_cancelled=True)
    ids = [event.id for event in events]
    counts = await store.rsvp_counts(ctx.session, ids)
    attended = await store.attendance_counts(ctx.session, ids)
    header = [
        "event", "cop", "kind", "title", "start_local", "end_local", "timezone", "start_utc",
        "end_utc", "where", "url", "capacity", "status", "yes", "maybe", "waiting", "no",
        "attended",
    ]  # fmt: skip
    rows = [
        [
            e.code,
            e.cop_code,
            e.kind,
            e.title,
            _local(e.starts_at, e.timezone),
            _local(e.ends_at, e.timezone),
            e.timezone,
            _utc(e.starts_at),
            _utc(e.ends_at),
            e.location,
            e.url,
            e.capacity if e.capacity is not None else "",
            e.status,
            counts[e.id].yes,
            counts[e.id].maybe,
            counts[e.id].waiting,
            counts[e.id].no,
            attended.get(e.id, 0),
        ]  # fmt: skip
        for e in events
    ]
    return "events", csv_bytes(header, rows)


async def export_rsvps(ctx: Context, cops: list[str]) -> tuple[str, bytes]:
    events = await store.list_events(ctx.session, cops=cops, include_cancelled=True)
    by_id = {event.id: event for event in events}
    rsvps = await store.rsvps_of_events(ctx.session, list(by_id))
    marked = await store.attended_set(ctx.session, list(by_id))
    people = await store.profiles(ctx.session, [r.user_id for r in rsvps])
    guests: dict[int, set[str]] = {}
    for event_id in by_id:
        guests[event_id] = set(await store.guests_of(ctx.session, event_id))
    positions: dict[tuple[int, str], int] = {}
    for event_id in by_id:
        waiting = sorted(
            (r for r in rsvps if r.event_id == event_id and r.answer == WAITING),
            key=lambda r: (r.queue_no, r.id),
        )
        for place, r in enumerate(waiting, start=1):
            positions[(event_id, r.user_id)] = place
    header = [
        "event", "cop", "title", "start_utc", "user", "organisation", "country", "answer",
        "waiting_position", "answered_at_utc", "guest", "attended",
    ]  # fmt: skip
    rows = []
    for r in rsvps:
        event = by_id[r.event_id]
        position = positions.get((r.event_id, r.user_id), "")
        person = people.get(r.user_id)
        rows.append(
            [
                event.code,
                event.cop_code,
                event.title,
                _utc(event.starts_at),
                r.user_id,
                person.org if person else "",
                person.country if person else "",
                r.answer,
                position,
                _utc(r.answered_at),
                "yes" if r.user_id in guests[r.event_id] else "no",
                "yes" if (r.event_id, r.user_id) in marked else "no",
            ]  # fmt: skip
        )
    return "rsvps", csv_bytes(header, rows)


add_exporter("events", "events with their answer counts", export_events)
add_exporter("rsvps", "answers to events, with waiting lists and attendance", export_rsvps)


def parse_export_kind(token: str) -> str:
    value = token.strip().lower()
    if value not in EXPORTERS:
        known = ", ".join(sorted(EXPORTERS))
        raise ArgError(f"{token!r} is not something I can export; choose one of: {known}")
    return value


# --- commands -----------------------------------------------------------------------------------


def _usage(reg: Registry, ctx: Context, problem: str) -> UsageError:
    command = ctx.command
    if command is None:  # pragma: no cover - set by dispatch
        return UsageError(problem)
    return UsageError(reg.usage_message(command, problem))


async def _notify(
    ctx: Context, event: Event, message: Message, *, room_note: Message | None = None
) -> int:
    """DM everyone who answered yes, maybe or is waiting (not the actor); note in the room."""
    people = await store.people_with_answers(ctx.session, event.id, NOTIFY_ANSWERS)
    told = 0
    for person in people:
        if person != ctx.sender:
            await ctx.dm(person, message)
            told += 1
    room = await cop_room(ctx.session, event.cop_code)
    if room_note is not None and room is not None:
        await ctx.send(room, room_note)
    return told


def register(reg: Registry) -> None:  # noqa: PLR0915 - one declaration per command
    p = reg.prefix
    event_arg = Arg("event", parse_event_id, metavar="<E#>")

    # --- create ---------------------------------------------------------------------------
    @reg.command(
        "event create",
        help="Create an event and announce it in its CoP room.\n"
        "Kinds: " + ", ".join(KINDS) + ". The date and time are in the CoP's time zone unless "
        "you add tz=<zone>. Durations: 90m, 2h, 1h30m, 2d. Put a title with spaces in quotes.",
        section=SECTION,
        args=[
            Arg("cop", parse_scope, optional=True, metavar="<COP>"),
            Arg("kind", parse_kind, metavar="<kind>"),
            Arg("day", parse_date, metavar="<YYYY-MM-DD>"),
            Arg("at", parse_time, metavar="<HH:MM>"),
            Arg("duration", parse_duration, metavar="<duration>"),
            Arg("title", parse_title, metavar='"<title>"'),
        ],
        options=Options(
            {"where": parse_where, "url": parse_url, "capacity": parse_capacity, "tz": parse_zone}
        ),
        role=Role.MODERATOR,
        examples=[
            f'{p}event create HDEV market-dialogue 2026-05-12 10:00 90m "Electric buses" '
            "url=https://meet.example.org/bus capacity=30",
            f'{p}event create SOLAR study-visit 2026-06-02 09:00 2d "Solar parks in Portugal" '
            'where="Évora, Portugal" tz=Europe/Lisbon capacity=12',
        ],
    )
    async def create(
        ctx: Context,
        *,
        cop: str | None,
        kind: str,
        day: date,
        at: time,
        duration: Length,
        title: str,
        options: dict[str, Any],
    ) -> None:
        if cop == "ALL":
            raise _usage(reg, ctx, "an event belongs to one CoP, not all")
        cop_cfg = ctx.resolve_cop(cop)
        await ctx.require(Role.MODERATOR, cop_cfg.code)
        zone = options.get("tz") or ctx.settings.cop_timezone(cop_cfg.code)
        config = _config(ctx.settings)
        try:
            start, end, note = plan_times(day, at, duration, zone, now=ctx.now, config=config)
        except ArgError as exc:
            raise _usage(reg, ctx, str(exc)) from None
        event = await store.create_event(
            ctx.session,
            cop_code=cop_cfg.code,
            kind=kind,
            title=title,
            starts_at=start,
            ends_at=end,
            timezone=zone,
            created_by=ctx.sender,
            location=options.get("where", ""),
            url=options.get("url", ""),
            capacity=options.get("capacity"),
            now=ctx.now,
        )
        await plan_and_schedule(ctx, event)
        cop_zone = ctx.settings.cop_timezone(cop_cfg.code)
        room = await cop_room(ctx.session, cop_cfg.code)
        if room is not None:
            await ctx.send(room, announcement(p, event, cop_zone, cop_cfg.name), tag=event.tag)
            for key in REACTION_KEYS.values():
                await repo.enqueue(
                    ctx.session,
                    room_id=room,
                    kind="reaction",
                    payload={"relates_to_tag": event.tag, "key": key},
                    now=ctx.now,
                )
        await repo.audit(
            ctx.session,
            actor=ctx.sender,
            action="event.create",
            cop_code=cop_cfg.code,
            target=event.code,
            detail=f"{kind} {start.isoformat()} {title}",
            now=ctx.now,
        )
        msg = Message("Created ").append(event_heading(event)).text(".").br()
        msg.append(details(event, zone))
        seats = seats_text(event.capacity)
        msg.br().text(f"Seats: {seats}")
        if note:
            msg.para().text(note)
        msg.para()
        if room is not None:
            msg.text(f"I announced it in the {cop_cfg.code} room. ")
        else:
            msg.text(f"The {cop_cfg.code} room is not set up, so I could not announce it. ")
        if config.reminders:
            msg.text(f"People who say yes get a reminder {reminder_list(config)} before. ")
        msg.text("Change it with ").code(f"{p}event edit {event.code} field=value")
        msg.text(", cancel it with ").code(f"{p}event cancel {event.code} [reason]").text(".")
        await ctx.reply(msg)

    # --- edit -----------------------------------------------------------------------------
    @reg.command(
        "event edit",
        help="Change an event; everyone who answered yes or maybe, or is waiting, is told.\n"
        "Fields: title, kind, date, time, duration, where, url, capacity (a number or none), "
        "tz. A new tz keeps the date and time and reads them in the new zone.",
        section=SECTION,
        args=[event_arg],
        options=Options(
            {
                "title": parse_title,
                "kind": parse_kind,
                "date": parse_date,
                "time": parse_time,
                "duration": parse_duration,
                "where": parse_where,
                "url": parse_url,
                "capacity": parse_capacity,
                "tz": parse_zone,
            },
            name="changes",
        ),
        role=Role.MODERATOR,
        examples=[
            f'{p}event edit E12 time=14:00 where="Room 2, Berlaymont"',
            f"{p}event edit E12 capacity=40",
        ],
    )
    async def edit(ctx: Context, event: int, changes: dict[str, Any]) -> None:
        if not changes:
            raise _usage(reg, ctx, "say what to change, e.g. time=14:00")
        ev = await changeable_event(ctx, event, "is cancelled", "changed")
        cop_zone = ctx.settings.cop_timezone(ev.cop_code)
        before_when = event_when(ev, cop_zone)
        changed: list[Message] = []
        if {"date", "time", "duration", "tz"} & changes.keys():
            zone = changes.get("tz", ev.timezone)
            local = ev.starts_at.astimezone(ZoneInfo(ev.timezone))
            length = changes.get("duration") or duration_of(ev)
            try:
                start, end, note = plan_times(
                    changes.get("date", local.date()),
                    changes.get("time", local.time().replace(second=0, microsecond=0)),
                    length,
                    zone,
                    now=ctx.now,
                    config=_config(ctx.settings),
                )
            except ArgError as exc:
                raise _usage(reg, ctx, str(exc)) from None
            if (start, end, zone) != (ev.starts_at, ev.ends_at, ev.timezone):
                ev.starts_at, ev.ends_at, ev.timezone = start, end, zone
                after_when = event_when(ev, cop_zone)
                if after_when != before_when:
                    changed.append(Message(f"When: {before_when} → {after_when}"))
                if zone != cop_zone:
                    changed.append(Message(f"Local time: {event_when(ev)}"))
                if note:
                    changed.append(Message(note))
        for key, attr, label in (
            ("title", "title", "Title"),
            ("kind", "kind", "Kind"),
            ("where", "location", "Where"),
            ("url", "url", "Link"),
        ):
            if key in changes and changes[key] != getattr(ev, attr):
                old, new = getattr(ev, attr), changes[key]
                setattr(ev, attr, new)
                if key == "kind":
                    old, new = kind_label(old), kind_label(new)
                changed.append(Message(f"{label}: ").text(old or "—").text(" → ").text(new or "—"))
        promoted: list[str] = []
        if "capacity" in changes and changes["capacity"] != ev.capacity:
            old_cap = "no limit" if ev.capacity is None else str(ev.capacity)
            ev.capacity = changes["capacity"]
            new_cap = "no limit" if ev.capacity is None else str(ev.capacity)
            changed.append(Message(f"Seats: {old_cap} → {new_cap}"))
            await ctx.session.flush()
            promoted = await store.fill_free_seats(ctx.session, ev, ctx.now)
        if not changed:
            await ctx.reply(
                Message("Nothing changed: ")
                .append(event_heading(ev))
                .text(" already looks like that.")
            )
            return
        await store.touch_event(ctx.session, ev, ctx.now)
        if {"date", "time", "duration", "tz"} & changes.keys():
            await plan_and_schedule(ctx, ev)
        for person in promoted:
            await ctx.dm(person, promotion_message(p, ev, cop_zone))
        dm = Message("📅 ").append(event_heading(ev)).text(" has changed:").bullets(changed)
        dm.append(details(ev, cop_zone))
        dm.para().text("Your answer stays as it was; to change it send ")
        dm.code(f"{p}rsvp {ev.code} yes|no|maybe").text(".")
        note_msg = Message("📅 ").append(event_heading(ev)).text(" has changed:").bullets(changed)
        note_msg.text("Details: ").code(f"{p}event {ev.code}")
        told = await _notify(ctx, ev, dm, room_note=note_msg)
        await repo.audit(
            ctx.session,
            actor=ctx.sender,
            action="event.edit",
            cop_code=ev.cop_code,
            target=ev.code,
            detail="; ".join(m.plain for m in changed),
            now=ctx.now,
        )
        reply = Message("Updated ").append(event_heading(ev)).text(":").bullets(changed)
        reply.text(f"I told {told} " + ("person" if told == 1 else "people"))
        reply.text(" who answered yes or maybe or are waiting, and posted the change in the room.")
        if ev.capacity is not None:
            counts = (await store.rsvp_counts(ctx.session, [ev.id]))[ev.id]
            if counts.yes > ev.capacity:
                reply.text(
                    f" {counts.yes} people already have a seat; nobody loses it, and new yes "
                    "answers wait until seats free up."
                )
        if promoted:
            reply.text(f" {len(promoted)} " + ("person" if len(promoted) == 1 else "people"))
            verb = "was" if len(promoted) == 1 else "were"
            reply.text(f" from the waiting list got a seat and {verb} told.")
        await ctx.reply(reply)

    # --- cancel ---------------------------------------------------------------------------
    @reg.command(
        "event cancel",
        help="Cancel an event; everyone who answered yes or maybe, or is waiting, is told.",
        section=SECTION,
        args=[event_arg, Arg("reason", optional=True, rest=True, default="")],
        role=Role.MODERATOR,
        examples=[f"{p}event cancel E12 The venue is closed; a new date follows."],
    )
    async def cancel(ctx: Context, event: int, reason: str) -> None:
        ev = await changeable_event(ctx, event, "is already cancelled", "cancelled")
        reason = " ".join(reason.split())[:500]
        await store.cancel_event(ctx.session, ev, reason, ctx.now)
        cop_zone = ctx.settings.cop_timezone(ev.cop_code)
        dm = Message("❌ ").append(event_heading(ev)).text(" is cancelled.")
        dm.br().text(f"It was planned for {event_when(ev, cop_zone)}.")
        if reason:
            dm.br().text("Reason: ").text(reason)
        note_msg = (
            Message("❌ ")
            .append(event_heading(ev))
            .text(f" ({event_when(ev, cop_zone)}) is cancelled.")
        )
        if reason:
            note_msg.br().text("Reason: ").text(reason)
        told = await _notify(ctx, ev, dm, room_note=note_msg)
        await repo.audit(
            ctx.session,
            actor=ctx.sender,
            action="event.cancel",
            cop_code=ev.cop_code,
            target=ev.code,
            detail=reason,
            now=ctx.now,
        )
        reply = Message("Cancelled ").append(event_heading(ev)).text(".")
        reply.text(f" I told {told} " + ("person" if told == 1 else "people"))
        reply.text(" who answered yes or maybe or were waiting, and posted it in the room.")
        await ctx.reply(reply)

    # --- details ----------------------------------------------------------------------------
    @reg.command(
        "event",
        help="Show an event: when, where, seats, answers and your own answer.\n"
        "Moderators also use event create, event edit and event cancel.",
        section=SECTION,
        args=[Arg("event", parse_event_or_sub, metavar="<E#>")],
        examples=[f"{p}event E12"],
    )
    async def show(ctx: Context, event: int) -> None:
        ev = await visible_event(ctx, event)
        cop = ctx.settings.cop(ev.cop_code)
        cop_zone = ctx.settings.cop_timezone(ev.cop_code)
        counts = (await store.rsvp_counts(ctx.session, [ev.id]))[ev.id]
        mine = await store.rsvp_of(ctx.session, ev.id, ctx.sender)
        msg = Message().append(event_heading(ev))
        if ev.cancelled:
            msg.text(" — ").bold("CANCELLED")
            if ev.cancel_reason:
                msg.text(" (").text(ev.cancel_reason).text(")")
        msg.br().text(f"{cop.name if cop else ev.cop_code} ({ev.cop_code})").br()
        msg.append(details(ev, cop_zone))
        msg.br().text(f"Duration: {duration_of(ev).text()}")
        if ev.capacity is None:
            msg.br().text(f"Seats: no limit · {counts.yes} going")
        else:
            left = max(ev.capacity - counts.yes, 0)
            msg.br().text(f"Seats: {counts.yes} of {ev.capacity} taken, {left} free")
            if counts.waiting:
                msg.text(f" · {counts.waiting} waiting")
        msg.br().text(f"Answers: {counts.yes} yes, {counts.maybe} maybe, {counts.no} no")
        msg.br().text("Your answer: ")
        if mine == WAITING:
            position = await store.waiting_position(ctx.session, ev.id, ctx.sender)
            msg.bold(f"waiting list, number {position}")
        else:
            msg.bold(ANSWER_LABELS.get(mine or "", "none yet"))
        if not ev.cancelled and ctx.now < ev.starts_at:
            msg.para().append(rsvp_hint(p, ev))
        if await ctx.role_in(ev.cop_code) >= Role.MODERATOR:
            msg.text(" Who's coming: ").code(f"{p}attendees {ev.code}").text(".")
        await ctx.reply(msg)

    # --- list --------------------------------------------------------------------------------
    @reg.command(
        "events",
        help="List upcoming events with their answer counts and your own answer.\n"
        "Give a CoP code for one CoP, or all for every CoP you belong to.",
        section=SECTION,
        args=[Arg("cop", parse_scope, optional=True, metavar="<COP|all>")],
        examples=[f"{p}events", f"{p}events HDEV", f"{p}events all"],
    )
    async def list_(ctx: Context, cop: str | None) -> None:
        scope = await scope_of(ctx.session, ctx.settings, ctx.sender)
        if cop is None and ctx.room_cop is not None:
            cop = ctx.room_cop
        if cop is not None and cop != "ALL":
            cop_cfg = ctx.resolve_cop(cop)
            if cop_cfg.code not in scope.cops:
                raise PermissionDenied(
                    Message(f"Only members of {cop_cfg.code} can see its events. To apply, send ")
                    .code(f"{p}join {cop_cfg.code}")
                    .text(".")
                )
            cops: set[str] = {cop_cfg.code}
            extra: set[int] = set()
            title = f"Upcoming events of {cop_cfg.code}"
        else:
            cops, extra = scope.cops, scope.guest_events
            title = "Upcoming events"
        if not cops and not extra:
            raise CommandError(
                Message("You are not a member of any CoP yet, so there are no events to show. ")
                .code(f"{p}cops")
                .text(" lists the CoPs and how to join.")
            )
        events = await store.list_events(
            ctx.session, cops=cops, extra_ids=extra, ends_after=ctx.now
        )
        events = [e for e in events if e.cop_code in cops or e.id in extra]
        if not events:
            msg = Message(f"{title}: none planned.")
            if await ctx.highest_role() >= Role.MODERATOR:
                msg.text(" Create one with ").code(f"{p}event create").text(".")
            await ctx.reply(msg)
            return
        shown = events[:UPCOMING_LIMIT]
        ids = [e.id for e in shown]
        counts = await store.rsvp_counts(ctx.session, ids)
        answers = await store.answers_of(ctx.session, ctx.sender, ids)
        zones = {ctx.settings.cop_timezone(e.cop_code) for e in shown}
        one_zone = next(iter(zones)) if len(zones) == 1 else None
        items = []
        for e in shown:
            zone = ctx.settings.cop_timezone(e.cop_code)
            c = counts[e.id]
            line = Message().bold(e.code).text(" · ")
            when = event_when(e, zone)
            if one_zone is not None:
                when = when.replace(f" ({one_zone})", "")
            line.text(when).text(" · ").bold(e.title)
            line.text(f" · {kind_label(e.kind)}")
            if len(cops) > 1 or e.id in extra:
                line.text(f" · {e.cop_code}")
            seats = "" if e.capacity is None else f" of {e.capacity}"
            line.text(f" · {c.yes}{seats} yes, {c.maybe} maybe")
            if c.waiting:
                line.text(f", {c.waiting} waiting")
            line.text(" · you: ").text(ANSWER_LABELS.get(answers.get(e.id, ""), "no answer"))
            items.append(line)
        header = title + (f" (times in {one_zone})" if one_zone else "") + ":"
        msg = Message(header).bullets(items)
        if len(events) > len(shown):
            msg.text(f"…and {len(events) - len(shown)} more. ")
        msg.text("Details: ").code(f"{p}event <E#>").text(" · answer: ")
        msg.code(f"{p}rsvp <E#> yes|no|maybe")
        await ctx.reply(msg)

    # --- rsvp -------------------------------------------------------------------------------
    @reg.command(
        "rsvp",
        help="Say whether you are coming to an event: yes, no or maybe.\n"
        "When the event is full, a yes puts you on the waiting list; you get the first seat "
        "that frees up. You can also react ✅ ❌ ❔ to the event's announcement.",
        section=SECTION,
        args=[event_arg, Arg("answer", parse_answer, metavar="yes|no|maybe")],
        examples=[f"{p}rsvp E12 yes", f"{p}rsvp E12 no"],
    )
    async def rsvp(ctx: Context, event: int, answer: str) -> None:
        ev, outcome = await answer_event(ctx, event, answer)
        await ctx.reply(outcome_message(ctx, ev, outcome))

    @reg.on("reaction")
    async def on_reaction(ctx: Context, raw: dict[str, Any]) -> None:
        relates = (raw.get("content") or {}).get("m.relates_to") or {}
        if not isinstance(relates, dict) or relates.get("rel_type") != "m.annotation":
            return
        key = unicodedata.normalize("NFC", str(relates.get("key", ""))).replace("\ufe0f", "")
        answer = REACTION_ANSWERS.get(key.strip())
        target = relates.get("event_id")
        if answer is None or not isinstance(target, str):
            return
        tag = await repo.tag_of_sent_event(ctx.session, target)
        if not tag or not tag.startswith("event:") or not tag[6:].isdigit():
            return
        ev, outcome = await answer_event(ctx, int(tag[6:]), answer, reaction_event_id=ctx.event_id)
        if outcome.changed or outcome.answer == WAITING:
            await ctx.dm(ctx.sender, outcome_message(ctx, ev, outcome))

    @reg.on("redaction")
    async def on_redaction(ctx: Context, raw: dict[str, Any]) -> None:
        redacts = raw.get("redacts") or (raw.get("content") or {}).get("redacts")
        if not isinstance(redacts, str):
            return
        answer_row = await store.rsvp_by_reaction(ctx.session, redacts)
        if answer_row is None:
            return
        ev, outcome = await answer_event(ctx, answer_row.event_id, None, user=answer_row.user_id)
        msg = Message("You removed your reaction, so ").append(outcome_message(ctx, ev, outcome))
        msg.text(" Answer again with ").code(f"{p}rsvp {ev.code} yes|no|maybe").text(".")
        await ctx.dm(answer_row.user_id, msg)

    # --- moderators: attendees, attendance, guests ---------------------------------------------
    @reg.command(
        "attendees",
        help="Who is coming to an event: seats, waiting list (in order), maybe, no, guests "
        "and attendance.",
        section=SECTION,
        args=[event_arg],
        role=Role.MODERATOR,
        examples=[f"{p}attendees E12"],
    )
    async def attendees(ctx: Context, event: int) -> None:
        ev = await managed_event(ctx, event)
        rows = await store.rsvps_of_event(ctx.session, ev.id)
        guests = set(await store.guests_of(ctx.session, ev.id))
        marked = set(await store.attendees_marked(ctx.session, ev.id))
        people = await store.profiles(
            ctx.session, [r.user_id for r in rows] + list(marked | guests)
        )

        def who(user: str) -> Message:
            line = Message(user)
            person = people.get(user)
            if person is not None and person.org:
                line.text(" — ").text(person.org)
                if person.country:
                    line.text(f" ({person.country})")
            if user in guests:
                line.text(" · guest")
            if user in marked:
                line.text(" · attended ✓")
            return line

        msg = Message("Answers to ").append(event_heading(ev)).text(f" — {event_when(ev)}:")
        cap = "" if ev.capacity is None else f" of {ev.capacity}"
        for answer, label in (
            (YES, "Going"),
            (WAITING, "Waiting list, in order"),
            (MAYBE, "Maybe"),
            (NO, "Not going"),
        ):
            users = [r.user_id for r in rows if r.answer == answer]
            if not users:
                continue
            count = f"{len(users)}{cap}" if answer == YES else str(len(users))
            msg.para().bold(f"{label} ({count})")
            msg.bullets(who(u) for u in users)
        answered = {r.user_id for r in rows}
        silent = sorted(guests - answered)
        if silent:
            msg.para().bold(f"Invited guests without an answer ({len(silent)})").bullets(
                who(u) for u in silent
            )
        walk_ins = sorted(marked - {r.user_id for r in rows if r.answer == YES})
        if walk_ins:
            msg.para().bold("Attended without a yes").bullets(who(u) for u in walk_ins)
        if not rows and not guests and not marked:
            msg.para().text("Nobody has answered yet.")
        if ctx.now >= ev.starts_at and not ev.cancelled:
            msg.para().text("Mark who came with ").code(f"{p}attended {ev.code} @name:server …")
        await ctx.reply(msg)

    @reg.command(
        "attended",
        help="Mark people as having attended an event (travel claims need it).",
        section=SECTION,
        args=[event_arg, Arg("people", parse_user_list, rest=True, metavar="<@user> …")],
        role=Role.MODERATOR,
        examples=[f"{p}attended E12 @anna:example.org @ben:example.org"],
    )
    async def attended_(ctx: Context, event: int, people: list[str]) -> None:
        ev = await managed_event(ctx, event)
        if ev.cancelled:
            raise CommandError(Message().append(event_heading(ev)).text(" was cancelled."))
        if ctx.now < ev.starts_at:
            raise CommandError(
                Message("Attendance can be marked once ")
                .append(event_heading(ev))
                .text(f" has started ({event_when(ev)}).")
            )
        added, already, not_yes = [], [], []
        for user in people:
            if await store.mark_attended(ctx.session, ev.id, user, ctx.sender, ctx.now):
                added.append(user)
            else:
                already.append(user)
            if await store.rsvp_of(ctx.session, ev.id, user) != YES:
                not_yes.append(user)
        if added:
            await repo.audit(
                ctx.session,
                actor=ctx.sender,
                action="event.attended",
                cop_code=ev.cop_code,
                target=ev.code,
                detail=" ".join(added),
                now=ctx.now,
            )
        msg = Message("Attendance at ").append(event_heading(ev)).text(":")
        items = [Message("Marked: ").text(", ".join(added))] if added else []
        if already:
            items.append(Message("Already marked: ").text(", ".join(already)))
        if not_yes:
            items.append(Message("Had not answered yes (marked anyway): ").text(", ".join(not_yes)))
        msg.bullets(items)
        await ctx.reply(msg)

    @reg.command(
        "guest invite",
        help="Invite a market actor (supplier, industry association) to one event as a guest.\n"
        "They get the event in a direct message and may answer for that event only.",
        section=SECTION,
        args=[Arg("user", user_id, metavar="<@user>"), event_arg],
        role=Role.MODERATOR,
        examples=[f"{p}guest invite @sales:supplier.example E12"],
    )
    async def guest_invite(ctx: Context, user: str, event: int) -> None:
        ev = await managed_event(ctx, event)
        if ev.cancelled or ctx.now >= ev.starts_at:
            raise CommandError(
                Message().append(event_heading(ev)).text(" is cancelled or has already started.")
            )
        if user == ctx.settings.matrix.user_id:
            raise CommandError("I can't invite myself.")
        membership = (await repo.memberships_of(ctx.session, user)).get(ev.cop_code)
        if membership == "member":
            raise CommandError(
                Message(f"{user} is already a member of {ev.cop_code} and can answer directly.")
            )
        if not await store.add_guest(ctx.session, ev.id, user, ctx.sender, now=ctx.now):
            raise CommandError(
                Message(f"{user} is already invited to ").append(event_heading(ev)).text(".")
            )
        cop = ctx.settings.cop(ev.cop_code)
        cop_zone = ctx.settings.cop_timezone(ev.cop_code)
        dm = Message("Hello! You are invited as a guest to ").append(event_heading(ev))
        dm.text(f" of the BBWT Community of Practice “{cop.name if cop else ev.cop_code}”.")
        dm.br().append(details(ev, cop_zone))
        dm.para().text("Please tell us whether you are coming: send ")
        dm.code(f"{p}rsvp {ev.code} yes").text(", ").code(f"{p}rsvp {ev.code} no").text(" or ")
        dm.code(f"{p}rsvp {ev.code} maybe").text(" here. Details at any time: ")
        dm.code(f"{p}event {ev.code}").text(".")
        await ctx.dm(user, dm)
        await repo.audit(
            ctx.session,
            actor=ctx.sender,
            action="event.guest",
            cop_code=ev.cop_code,
            target=ev.code,
            detail=user,
            now=ctx.now,
        )
        await ctx.reply(
            Message(f"Invited {user} as a guest to ")
            .append(event_heading(ev))
            .text(". I sent them the details in a direct message.")
        )

    # --- calendar ---------------------------------------------------------------------------
    async def send_calendar(ctx: Context, cop: str | None, token: str, intro: Message) -> None:
        events, answers = await calendar_events(
            ctx.session, ctx.settings, ctx.sender, cop=cop, since=ctx.now, include_cancelled=True
        )
        data = build_calendar(
            events, answers, ctx.settings, name=f"BBWT events{f' ({cop})' if cop else ''}"
        )
        filename = f"bbwt-events{f'-{cop.lower()}' if cop else ''}.ics"
        url = feed_url(ctx.settings, token, cop)
        upcoming = sum(1 for e in events if not e.cancelled)
        msg = intro.text(f"{upcoming} upcoming " + ("event" if upcoming == 1 else "events"))
        msg.text(" with your answers are in the file above. To keep your calendar up to date, ")
        msg.text("subscribe to your personal link in Outlook, Thunderbird or Google Calendar:")
        msg.br().link(url).para()
        msg.text("Keep the link to yourself: anyone who has it can see your events. ")
        msg.code(f"{p}calendar reset").text(" makes a new link and stops the old one.")
        await ctx.private_file(
            filename,
            "text/calendar",
            data,
            msg,
            room_note="I sent your calendar to you in a direct message "
            "(the link in it is personal).",
        )

    @reg.command(
        "calendar",
        help="Get your events as a calendar file, and a personal link to subscribe to.",
        section=SECTION,
        args=[Arg("cop", parse_scope, optional=True, metavar="<COP>")],
        examples=[f"{p}calendar", f"{p}calendar HDEV"],
    )
    async def calendar(ctx: Context, cop: str | None) -> None:
        code: str | None = None
        scope = await scope_of(ctx.session, ctx.settings, ctx.sender)
        if cop is not None and cop != "ALL":
            code = ctx.resolve_cop(cop).code
            if code not in scope.cops:
                raise PermissionDenied(
                    Message(f"Only members of {code} can see its events. To apply, send ")
                    .code(f"{p}join {code}")
                    .text(".")
                )
        elif not scope.cops and not scope.guest_events:
            raise CommandError(
                Message("You are not a member of any CoP yet, so your calendar would be empty. ")
                .code(f"{p}cops")
                .text(" lists the CoPs and how to join.")
            )
        token = await store.calendar_token(ctx.session, ctx.sender, now=ctx.now)
        await send_calendar(ctx, code, token, Message("📅 Your BBWT calendar: "))

    @reg.command(
        "calendar reset",
        help="Make a new personal calendar link; the old one stops working.",
        section=SECTION,
        examples=[f"{p}calendar reset"],
    )
    async def calendar_reset(ctx: Context) -> None:
        token = await store.reset_calendar_token(ctx.session, ctx.sender, now=ctx.now)
        await send_calendar(
            ctx, None, token, Message("🔑 Done: your old calendar link no longer works. ")
        )

    # --- export -----------------------------------------------------------------------------
    @reg.command(
        "export",
        help="Download a CSV file for the CoPs you moderate (or one CoP).\n"
        "What can be exported depends on the installed features, e.g. events and rsvps.",
        section="Moderation",
        args=[
            Arg("what", parse_export_kind, metavar="<what>"),
            Arg("cop", parse_scope, optional=True, metavar="<COP>"),
        ],
        role=Role.MODERATOR,
        places=Place.DM | Place.MANAGEMENT,
        examples=[f"{p}export events HDEV", f"{p}export rsvps"],
    )
    async def export(ctx: Context, what: str, cop: str | None) -> None:
        if cop is not None and cop != "ALL":
            code = ctx.resolve_cop(cop).code
            await ctx.require(Role.MODERATOR, code)
            cops = [code]
        elif ctx.is_admin:
            cops = [c.code for c in ctx.settings.cops]
        else:
            cops = sorted(await ctx.moderates())
        exporter = EXPORTERS[what]
        name, data = await exporter.build(ctx, cops)
        suffix = cops[0].lower() if len(cops) == 1 else "all"
        stamp = ctx.now.astimezone(UTC).strftime("%Y%m%d")
        filename = f"bbwt-{name}-{suffix}-{stamp}.csv"
        await ctx.reply_file(filename, "text/csv", data)
        rows = max(len(list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))) - 1, 0)
        await repo.audit(
            ctx.session,
            actor=ctx.sender,
            action=f"export.{what}",
            cop_code=cops[0] if len(cops) == 1 else None,
            detail=", ".join(cops),
            now=ctx.now,
        )
        await ctx.reply(
            Message(f"Export of {exporter.description} for {', '.join(cops)}: ").text(
                f"{rows} " + ("row" if rows == 1 else "rows") + f" in {filename}."
            )
        )


async def setup(services: Services) -> None:
    """Serve calendar feeds and rebuild the reminder jobs from the database."""
    services.http.router.add_get("/calendar/{token}.ics", make_feed_handler(services))
    await rebuild_reminder_jobs(services)
