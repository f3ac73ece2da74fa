"""What members and guests do with events: ``!events``, ``!event <E#>`` and ``!rsvp``, and
answering by reacting ✅ ❌ ❔ to an announcement (removing the reaction withdraws)."""

from __future__ import annotations

import unicodedata
from typing import Any

from commands.args import Arg, cop_or_all
from commands.context import Context
from commands.errors import CommandError
from commands.events.access import EVENT, sight
from commands.events.parse import event_arg, parse_answer, parse_event_or_sub
from commands.events.render import (
    ANSWER_LABELS,
    details,
    event_heading,
    kind_label,
    outcome_message,
    promotion_message,
    rsvp_hint,
)
from commands.events.times import duration_of, event_when
from commands.registry import Family
from commands.roles import Role
from commands.scope import CopSet, Missing, cop_arg, numbered
from commands.text import Message
from config.models import CopConfig
from storage import events as store
from storage import repo
from storage.events import MAYBE, NO, WAITING, YES, Event, RsvpOutcome

family = Family()
UPCOMING_LIMIT = 25
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


async def answer_event(
    ctx: Context,
    event_id: int,
    answer: str | None,
    *,
    user: str | None = None,
    reaction_event_id: str | None = None,
) -> tuple[Event, RsvpOutcome]:
    """Change one person's answer under the event's lock; tells people who got a seat."""
    event = await store.lock_event(ctx.session, event_id)
    if event is None:  # pragma: no cover - resolved before; events are never deleted
        raise CommandError(f"Event E{event_id} is gone.")
    if event.cancelled:
        raise CommandError(Message().append(event_heading(event)).text(" was cancelled."))
    if ctx.now >= event.starts_at:
        raise CommandError(
            Message()
            .append(event_heading(event))
            .text(" has already started, so answers can no longer be changed.")
        )
    outcome = await store.set_rsvp(
        ctx.session,
        event,
        user or ctx.sender,
        answer,
        ctx.now,
        reaction_event_id=reaction_event_id,
    )
    zone = ctx.settings.cop_timezone(event.cop_code)
    for person in outcome.promoted:
        await ctx.dm(person, promotion_message(ctx.prefix, event, zone))
    return event, outcome


@family.command(
    "event",
    help="Show an event: when, where, seats, answers and your own answer.\n"
    "Moderators also use event create, event edit and event cancel.",
    section="Events",
    args=[Arg("event", parse_event_or_sub, metavar="<E#>")],
    role=Role.MEMBER,
    guests=True,
    cop=numbered("event", EVENT),
    examples=["!event E12"],
)
async def show(ctx: Context, event: Event) -> None:
    ev = event
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
        msg.para().append(rsvp_hint(ctx.prefix, ev))
    if ctx.scope is not None and ctx.scope.role >= Role.MODERATOR:
        msg.text(" Who's coming: ").code(f"{ctx.prefix}attendees {ev.code}").text(".")
    await ctx.reply(msg)


@family.command(
    "events",
    help="List upcoming events with their answer counts and your own answer.\n"
    "Give a CoP code for one CoP, or all for every CoP you belong to.",
    section="Events",
    args=[Arg("cop", cop_or_all, optional=True, metavar="<COP|all>")],
    role=Role.MEMBER,
    guests=True,
    cop=cop_arg(missing=Missing.ROOM_OR_MINE, all_word=True, topic="events"),
    examples=["!events", "!events HDEV", "!events all"],
)
async def list_(ctx: Context, cop: CopConfig | CopSet) -> None:
    if isinstance(cop, CopConfig):
        cops: set[str] = {cop.code}
        extra: set[int] = set()
        title = f"Upcoming events of {cop.code}"
    else:
        seen = await sight(ctx.session, ctx.settings, ctx.sender)
        cops, extra = set(cop.codes), seen.guest_events
        title = "Upcoming events"
    if not cops and not extra:
        raise CommandError(
            Message("You are not a member of any CoP yet, so there are no events to show. ")
            .code(f"{ctx.prefix}cops")
            .text(" lists the CoPs and how to join.")
        )
    events = await store.list_events(ctx.session, cops=cops, extra_ids=extra, ends_after=ctx.now)
    events = [e for e in events if e.cop_code in cops or e.id in extra]
    if not events:
        msg = Message(f"{title}: none planned.")
        if await ctx.highest_role() >= Role.MODERATOR:
            msg.text(" Create one with ").code(f"{ctx.prefix}event create").text(".")
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
    msg.text("Details: ").code(f"{ctx.prefix}event <E#>").text(" · answer: ")
    msg.code(f"{ctx.prefix}rsvp <E#> yes|no|maybe")
    await ctx.reply(msg)


@family.command(
    "rsvp",
    help="Say whether you are coming to an event: yes, no or maybe.\n"
    "When the event is full, a yes puts you on the waiting list; you get the first seat "
    "that frees up. You can also react ✅ ❌ ❔ to the event's announcement.",
    section="Events",
    args=[event_arg, Arg("answer", parse_answer, metavar="yes|no|maybe")],
    role=Role.MEMBER,
    guests=True,
    cop=numbered("event", EVENT, lock=True),  # the answer changes under the event's lock
    examples=["!rsvp E12 yes", "!rsvp E12 no"],
)
async def rsvp(ctx: Context, event: Event, answer: str) -> None:
    ev, outcome = await answer_event(ctx, event.id, answer)
    await ctx.reply(outcome_message(ctx.settings, ev, outcome, ctx.now))


@family.on("reaction")
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
    number = int(tag[6:])
    await ctx.registry.authorize(ctx, "rsvp", event=number)  # as if sent as !rsvp
    ev, outcome = await answer_event(ctx, number, answer, reaction_event_id=ctx.event_id)
    if outcome.changed or outcome.answer == WAITING:
        await ctx.dm(ctx.sender, outcome_message(ctx.settings, ev, outcome, ctx.now))


@family.on("redaction")
async def on_redaction(ctx: Context, raw: dict[str, Any]) -> None:
    redacts = raw.get("redacts") or (raw.get("content") or {}).get("redacts")
    if not isinstance(redacts, str):
        return
    answer_row = await store.rsvp_by_reaction(ctx.session, redacts)
    if answer_row is None:
        return
    ev, outcome = await answer_event(ctx, answer_row.event_id, None, user=answer_row.user_id)
    msg = Message("You removed your reaction. ")
    msg.append(outcome_message(ctx.settings, ev, outcome, ctx.now))
    msg.text(" Answer again with ").code(f"{ctx.prefix}rsvp {ev.code} yes|no|maybe").text(".")
    await ctx.dm(answer_row.user_id, msg)
