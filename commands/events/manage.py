"""Moderators plan events: ``!event create``, ``!event edit`` and ``!event cancel``.

An event is announced in its CoP room with ✅ ❌ ❔ to answer by reaction; a change or a
cancellation is told to everyone who answered yes or maybe or is waiting, and noted in
the room.
"""

from __future__ import annotations

from datetime import date, time
from typing import Any
from zoneinfo import ZoneInfo

from commands.args import Arg, ArgError, Options, cop_or_all
from commands.context import Context
from commands.errors import CommandError
from commands.events.access import EVENT
from commands.events.parse import (
    Length,
    event_arg,
    parse_capacity,
    parse_date,
    parse_duration,
    parse_kind,
    parse_time,
    parse_title,
    parse_url,
    parse_where,
    parse_zone,
)
from commands.events.reminders import plan_and_schedule
from commands.events.render import (
    announcement,
    details,
    event_heading,
    kind_label,
    promotion_message,
    seats_count,
)
from commands.events.times import duration_of, event_when, plan_times, reminder_list
from commands.registry import Family
from commands.roles import Role
from commands.scope import cop_arg, numbered
from commands.text import Message, plural
from config.models import CopConfig
from storage import events as store
from storage import repo
from storage.events import KINDS, MAYBE, NO, WAITING, YES, Event

family = Family()
REACTION_KEYS = {YES: "✅", NO: "❌", MAYBE: "❔"}
NOTIFY_ANSWERS = (YES, MAYBE, WAITING)


def still_changeable(ctx: Context, event: Event, if_cancelled: str, verb: str) -> Event:
    """The event, if a moderator may still change it: not cancelled, not yet started."""
    if event.cancelled:
        raise CommandError(Message().append(event_heading(event)).text(f" {if_cancelled}."))
    if ctx.now >= event.starts_at:
        raise CommandError(
            Message()
            .append(event_heading(event))
            .text(f" has already started; it can't be {verb}.")
        )
    return event


async def notify(
    ctx: Context, event: Event, message: Message, *, room_note: Message | None = None
) -> int:
    """DM everyone who answered yes, maybe or is waiting (not the actor); note in the room."""
    people = await store.people_with_answers(ctx.session, event.id, NOTIFY_ANSWERS)
    told = 0
    for person in people:
        if person != ctx.sender:
            await ctx.dm(person, message)
            told += 1
    room = await ctx.cop_room(event.cop_code)
    if room_note is not None and room is not None:
        await ctx.send(room, room_note)
    return told


@family.command(
    "event create",
    help="Create an event and announce it in its CoP room.\n"
    "Kinds: " + ", ".join(KINDS) + ". The date and time are in the CoP's time zone unless "
    "you add tz=<zone>. Durations: 90m, 2h, 1h30m, 2d. Put a title with spaces in quotes.",
    section="Events",
    args=[
        Arg("cop", cop_or_all, optional=True, metavar="<COP>"),
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
    cop=cop_arg(topic="events"),
    examples=[
        '!event create HDEV market-dialogue 2026-05-12 10:00 90m "Electric buses" '
        "url=https://meet.example.org/bus capacity=30",
        '!event create SOLAR study-visit 2026-06-02 09:00 2d "Solar parks in Portugal" '
        'where="Évora, Portugal" tz=Europe/Lisbon capacity=12',
    ],
)
async def create(
    ctx: Context,
    *,
    cop: CopConfig,
    kind: str,
    day: date,
    at: time,
    duration: Length,
    title: str,
    options: dict[str, Any],
) -> None:
    cop_cfg = cop
    zone = options.get("tz") or ctx.settings.cop_timezone(cop_cfg.code)
    config = ctx.settings.events
    try:
        start, end, note = plan_times(day, at, duration, zone, now=ctx.now, config=config)
    except ArgError as exc:
        raise ctx.usage_error(str(exc)) from None
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
    room = await ctx.cop_room(cop_cfg.code)
    if room is not None:
        await ctx.send(room, announcement(ctx.prefix, event, cop_zone, cop_cfg.name), tag=event.tag)
        for key in REACTION_KEYS.values():
            await repo.enqueue(
                ctx.session,
                room_id=room,
                kind="reaction",
                payload={"relates_to_tag": event.tag, "key": key},
                now=ctx.now,
            )
    await ctx.audit(
        "event.create",
        cop_code=cop_cfg.code,
        target=event.code,
        detail=f"{kind} {start.isoformat()} {title}",
    )
    msg = Message("Created ").append(event_heading(event)).text(".").br()
    msg.append(details(event, zone))
    msg.br().text(f"Seats: {seats_count(event.capacity)}")
    if note:
        msg.para().text(note)
    msg.para()
    if room is not None:
        msg.text(f"I announced it in the {cop_cfg.code} room. ")
    else:
        msg.text(f"The {cop_cfg.code} room is not set up, so I could not announce it. ")
    reminders = reminder_list(config, event.starts_at, ctx.now)
    if reminders:
        msg.text(f"People who say yes get a reminder {reminders} before. ")
    msg.text("Change it with ").code(f"{ctx.prefix}event edit {event.code} field=value")
    msg.text(", cancel it with ").code(f"{ctx.prefix}event cancel {event.code} [reason]")
    msg.text(".")
    await ctx.reply(msg)


@family.command(
    "event edit",
    help="Change an event; everyone who answered yes or maybe, or is waiting, is told.\n"
    "Fields: title, kind, date, time, duration, where, url, capacity (a number or none), "
    "tz. A new tz keeps the date and time and reads them in the new zone.",
    section="Events",
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
    cop=numbered("event", EVENT, lock=True),
    examples=[
        '!event edit E12 time=14:00 where="Room 2, Berlaymont"',
        "!event edit E12 capacity=40",
    ],
)
async def edit(ctx: Context, event: Event, changes: dict[str, Any]) -> None:
    if not changes:
        raise ctx.usage_error("say what to change, e.g. time=14:00")
    ev = still_changeable(ctx, event, "is cancelled", "changed")
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
                config=ctx.settings.events,
            )
        except ArgError as exc:
            raise ctx.usage_error(str(exc)) from None
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
            Message("Nothing changed: ").append(event_heading(ev)).text(" already looks like that.")
        )
        return
    await store.touch_event(ctx.session, ev, ctx.now)
    if {"date", "time", "duration", "tz"} & changes.keys():
        await plan_and_schedule(ctx, ev)
    for person in promoted:
        await ctx.dm(person, promotion_message(ctx.prefix, ev, cop_zone))
    dm = Message("📅 ").append(event_heading(ev)).text(" has changed:").bullets(changed)
    dm.append(details(ev, cop_zone))
    dm.para().text("Your answer stays as it was; to change it send ")
    dm.code(f"{ctx.prefix}rsvp {ev.code} yes|no|maybe").text(".")
    note_msg = Message("📅 ").append(event_heading(ev)).text(" has changed:").bullets(changed)
    note_msg.text("Details: ").code(f"{ctx.prefix}event {ev.code}")
    told = await notify(ctx, ev, dm, room_note=note_msg)
    await ctx.audit(
        "event.edit",
        cop_code=ev.cop_code,
        target=ev.code,
        detail="; ".join(m.plain for m in changed),
    )
    reply = Message("Updated ").append(event_heading(ev)).text(":").bullets(changed)
    reply.text(f"I told {plural(told, 'person', 'people')}")
    reply.text(" who answered yes or maybe or are waiting, and posted the change in the room.")
    if ev.capacity is not None:
        counts = (await store.rsvp_counts(ctx.session, [ev.id]))[ev.id]
        if counts.yes > ev.capacity:
            reply.text(
                f" {plural(counts.yes, 'person', 'people')} already "
                f"{'has' if counts.yes == 1 else 'have'} a seat; nobody loses it, and new yes "
                "answers wait until seats free up."
            )
    if promoted:
        reply.text(f" {plural(len(promoted), 'person', 'people')}")
        verb = "was" if len(promoted) == 1 else "were"
        reply.text(f" from the waiting list got a seat and {verb} told.")
    await ctx.reply(reply)


@family.command(
    "event cancel",
    help="Cancel an event; everyone who answered yes or maybe, or is waiting, is told.",
    section="Events",
    args=[event_arg, Arg("reason", optional=True, rest=True, default="")],
    role=Role.MODERATOR,
    cop=numbered("event", EVENT, lock=True),
    examples=["!event cancel E12 The venue is closed; a new date follows."],
)
async def cancel(ctx: Context, event: Event, reason: str) -> None:
    ev = still_changeable(ctx, event, "is already cancelled", "cancelled")
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
    told = await notify(ctx, ev, dm, room_note=note_msg)
    await ctx.audit("event.cancel", cop_code=ev.cop_code, target=ev.code, detail=reason)
    reply = Message("Cancelled ").append(event_heading(ev)).text(".")
    reply.text(f" I told {plural(told, 'person', 'people')}")
    reply.text(" who answered yes or maybe or were waiting, and posted it in the room.")
    await ctx.reply(reply)
