"""Who comes to an event, for its moderators: ``!attendees``, ``!attended`` (attendance,
which travel claims need) and ``!guest invite`` (a market actor invited to one event)."""

from __future__ import annotations

from commands.args import Arg, user_id
from commands.context import Context
from commands.errors import CommandError
from commands.events.access import EVENT
from commands.events.parse import event_arg, parse_user_list
from commands.events.render import details, event_heading
from commands.events.times import event_when
from commands.registry import Family
from commands.roles import Role
from commands.scope import numbered
from commands.text import Message
from storage import events as store
from storage import repo
from storage.events import MAYBE, NO, WAITING, YES, Event

family = Family()


@family.command(
    "attendees",
    help="Who is coming to an event: seats, waiting list (in order), maybe, no, guests "
    "and attendance.",
    section="Events",
    args=[event_arg],
    role=Role.MODERATOR,
    cop=numbered("event", EVENT),
    examples=["!attendees E12"],
)
async def attendees(ctx: Context, event: Event) -> None:
    ev = event
    rows = await store.rsvps_of_event(ctx.session, ev.id)
    guests = set(await store.guests_of(ctx.session, ev.id))
    marked = set(await store.attendees_marked(ctx.session, ev.id))
    people = await store.profiles(ctx.session, [r.user_id for r in rows] + list(marked | guests))

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
        msg.para().text("Mark who came with ").code(
            f"{ctx.prefix}attended {ev.code} @name:server …"
        )
    await ctx.reply(msg)


@family.command(
    "attended",
    help="Mark people as having attended an event (travel claims need it).",
    section="Events",
    args=[event_arg, Arg("people", parse_user_list, rest=True, metavar="<@user> …")],
    role=Role.MODERATOR,
    cop=numbered("event", EVENT),
    examples=["!attended E12 @anna:example.org @ben:example.org"],
)
async def attended_(ctx: Context, event: Event, people: list[str]) -> None:
    ev = event
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
        await ctx.audit(
            "event.attended", cop_code=ev.cop_code, target=ev.code, detail=" ".join(added)
        )
    msg = Message("Attendance at ").append(event_heading(ev)).text(":")
    items = [Message("Marked: ").text(", ".join(added))] if added else []
    if already:
        items.append(Message("Already marked: ").text(", ".join(already)))
    if not_yes:
        items.append(Message("Had not answered yes (marked anyway): ").text(", ".join(not_yes)))
    msg.bullets(items)
    await ctx.reply(msg)


@family.command(
    "guest invite",
    help="Invite a market actor (supplier, industry association) to one event as a guest.\n"
    "They get the event in a direct message and may answer for that event only.",
    section="Events",
    args=[Arg("user", user_id, metavar="<@user>"), event_arg],
    role=Role.MODERATOR,
    cop=numbered("event", EVENT),
    examples=["!guest invite @sales:supplier.example E12"],
)
async def guest_invite(ctx: Context, user: str, event: Event) -> None:
    ev = event
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
    dm.code(f"{ctx.prefix}rsvp {ev.code} yes").text(", ").code(
        f"{ctx.prefix}rsvp {ev.code} no"
    ).text(" or ")
    dm.code(f"{ctx.prefix}rsvp {ev.code} maybe").text(" here. Details at any time: ")
    dm.code(f"{ctx.prefix}event {ev.code}").text(".")
    await ctx.dm(user, dm)
    await ctx.audit("event.guest", cop_code=ev.cop_code, target=ev.code, detail=user)
    await ctx.reply(
        Message(f"Invited {user} as a guest to ")
        .append(event_heading(ev))
        .text(". I sent them the details in a direct message.")
    )
