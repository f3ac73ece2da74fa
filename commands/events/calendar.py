"""Calendars: ``!calendar`` (an .ics file and a personal feed link), ``!calendar reset``
and the feed served at ``/calendar/<token>.ics`` with the events the person may see."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from commands.args import Arg, cop_or_all
from commands.context import Context
from commands.errors import CommandError
from commands.events.access import sight
from commands.events.render import ANSWER_LABELS, kind_label
from commands.events.times import event_when
from commands.registry import Family, Place
from commands.roles import Role
from commands.scope import CopSet, Missing, cop_arg
from commands.services import Services
from commands.text import Message
from config.models import CopConfig, Settings
from storage import events as store
from storage.events import NO, Event

family = Family()


def build_calendar(
    events: Sequence[Event],
    answers: dict[int, str],
    settings: Settings,
    *,
    name: str,
) -> bytes:
    """An iCalendar file; times in UTC, one VEVENT per event with a stable UID."""
    # Imported when first needed: it is a fifth of the bot's start-up (0.2 s), and the bot
    # starts (and catches up on what it missed) before anyone asks for a calendar.
    import icalendar

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
    seen = await sight(session, settings, user)
    cops = seen.cops if cop is None else seen.cops & {cop}
    extra = seen.guest_events
    events = await store.list_events(
        session,
        cops=cops,
        extra_ids=extra,
        ends_after=since,
        include_cancelled=include_cancelled,
    )
    if cop is not None:
        events = [event for event in events if event.cop_code == cop]
    events = [event for event in events if seen.sees(event)]
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
            since = services.clock() - settings.events.feed_history
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
    if upcoming == 0:
        msg = intro.text("No upcoming events yet: the file above is empty for now.")
    elif upcoming == 1:
        msg = intro.text("1 upcoming event with your answer is in the file above.")
    else:
        msg = intro.text(f"{upcoming} upcoming events with your answers are in the file above.")
    msg.text(" To keep your calendar up to date, ")
    msg.text("subscribe to your personal link in Outlook, Thunderbird or Google Calendar:")
    msg.br().link(url).para()
    msg.text("Keep the link to yourself: anyone who has it can see your events. ")
    msg.code(f"{ctx.prefix}calendar reset").text(" makes a new link and stops the old one.")
    await ctx.private_file(
        filename,
        "text/calendar",
        data,
        msg,
        room_note="I sent your calendar to you in a direct message (the link in it is personal).",
    )


@family.command(
    "calendar",
    help="Get your events as a calendar file, and a personal link to subscribe to.",
    section="Events",
    args=[Arg("cop", cop_or_all, optional=True, metavar="[COP]")],
    role=Role.MEMBER,
    guests=True,
    cop=cop_arg(missing=Missing.MINE, all_word=True, topic="events"),
    places=Place.EVERYWHERE,
    examples=["!calendar", "!calendar HDEV"],
)
async def calendar(ctx: Context, cop: CopConfig | CopSet) -> None:
    code = cop.code if isinstance(cop, CopConfig) else None
    if code is None:
        seen = await sight(ctx.session, ctx.settings, ctx.sender)
        if not seen.cops and not seen.guest_events:
            raise CommandError(
                Message("You are not a member of any CoP yet, so your calendar would be empty. ")
                .code(f"{ctx.prefix}cops")
                .text(" lists the CoPs and how to join.")
            )
    token = await store.calendar_token(ctx.session, ctx.sender, now=ctx.now)
    await send_calendar(ctx, code, token, Message("📅 Here is your BBWT calendar. "))


@family.command(
    "calendar reset",
    help="Make a new personal calendar link; the old one stops working.",
    section="Events",
    places=Place.EVERYWHERE,
    examples=["!calendar reset"],
)
async def calendar_reset(ctx: Context) -> None:
    token = await store.reset_calendar_token(ctx.session, ctx.sender, now=ctx.now)
    await send_calendar(
        ctx, None, token, Message("🔑 Done: your old calendar link no longer works. ")
    )
