"""``!forgetme`` and ``!forgetme confirm``: erasure at once, after the person has seen
exactly what is erased and what is kept (and until when) and confirmed within ten minutes.

The data goes in the command's transaction (:func:`storage.erasure.erase_person`); the
Matrix side is queued in the same transaction, tagged ``erasure`` so that nothing of it is
kept once delivered: the bot's messages that carry the person's data are redacted, their
seats go to the next people waiting (who are told), the management room hears about roles,
applications and claims that end, they are taken out of the CoP rooms, get the last answer
and the bot leaves their direct chat.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from commands.args import Arg, ArgError
from commands.context import Context, cop_room
from commands.errors import CommandError
from commands.events.render import promotion_message
from commands.privacy.notice import day, span
from commands.registry import Family, Place
from commands.text import Message, plural
from storage import erasure, repo
from storage import membership as ms
from storage.claims import APPROVED, KeptClaim
from storage.repo import ERASURE_TAG
from storage.rooms import PRESENT

family = Family()
CONFIRM_WINDOW = timedelta(minutes=10)
REQUEST = "privacy.erasure-request"
PRIVATE = "Your personal data is private, so I answer here in our direct chat."
REMOVE_ITEMS = "remove-items"
KICK_REASON = "Left BBWT: personal data erased at their request"


def parse_choice(token: str) -> str:
    if token.strip().lower() != REMOVE_ITEMS:
        raise ArgError(f"the only choice is {REMOVE_ITEMS} (to delete the intel you shared)")
    return REMOVE_ITEMS


@dataclass(frozen=True)
class Summary:
    """An erasure in plain facts (read while its rows are still at hand)."""

    alias: str
    memberships: dict[str, str]
    moderated: list[str]
    answers: int
    seats: list[str]
    guest_invitations: int
    calendar_link: bool
    claims_kept: list[KeptClaim]
    claims_deleted: int
    intel_kept: int
    intel_deleted: int
    copies: int
    redactions: int


def summarise(erased: erasure.Erased) -> Summary:
    return Summary(
        alias=erased.pseudonym,
        memberships=dict(erased.forgotten.memberships),
        moderated=list(erased.forgotten.moderated),
        answers=erased.answers,
        seats=[freed.event.code for freed in erased.freed if freed.promoted],
        guest_invitations=erased.guest_invitations,
        calendar_link=erased.calendar_link,
        claims_kept=list(erased.claims_kept),
        claims_deleted=erased.claims_deleted,
        intel_kept=erased.intel_kept,
        intel_deleted=erased.intel_deleted,
        copies=erased.commands + erased.messages,
        redactions=len(erased.redact),
    )


async def refuse_configured(ctx: Context) -> None:
    """People named in the configuration come back with every start: not erasable here."""
    configured = [
        code
        for code, mods in (await ms.moderators_by_cop(ctx.session)).items()
        if mods.get(ctx.sender) == "config"
    ]
    if not ctx.is_admin and not configured:
        return
    role = "an admin" if ctx.is_admin else "a moderator of " + ", ".join(sorted(configured))
    raise CommandError(
        Message(f"You are named in my configuration as {role}, so I can't erase your data ")
        .text("myself: the Secretariat first has to take you out of the configuration and ")
        .text("restart me. Then send ")
        .code(f"{ctx.prefix}forgetme")
        .text(" again.")
    )


async def managed_rooms(ctx: Context) -> dict[str, str | None]:
    """The rooms the bot manages: CoP room -> its CoP, the management room -> None."""
    rooms: dict[str, str | None] = {}
    for cop in ctx.settings.cops:
        room = await cop_room(ctx.session, cop.code)
        if room is not None:
            rooms[room] = cop.code
    if ctx.management_room:
        rooms[ctx.management_room] = None
    return rooms


async def _erase(ctx: Context, alias: str, remove_items: bool) -> erasure.Erased:
    return await erasure.erase_person(
        ctx.session,
        ctx.sender,
        alias=alias,
        now=ctx.now,
        claims_retention=ctx.settings.claims.retention,
        remove_items=remove_items,
        managed_rooms=list(await managed_rooms(ctx)),
    )


async def _alias(ctx: Context) -> str:
    configured = ctx.settings.privacy.pseudonym_key
    secret = configured.get_secret_value() if configured is not None else None
    key = await erasure.pseudonym_key(ctx.session, secret, ctx.now)
    return erasure.pseudonym(key, ctx.sender)


def _claim_line(ctx: Context, kept: KeptClaim) -> Message:
    line = Message().bold(kept.code)
    if kept.withdrawn_now:
        line.text(" was waiting for a decision: it is withdrawn (so it will not be paid)")
    elif kept.status == APPROVED:
        line.text(" is approved and not paid yet: the Secretariat can still pay it")
    else:
        line.text(f" ({kept.status})")
    if kept.until is None:
        retention = span(ctx.settings.claims.retention)
        return line.text(f"; kept until {retention} after its payment.")
    return line.text(f"; kept until {day(ctx.settings, kept.until)}.")


def outcome(ctx: Context, summary: Summary, *, done: bool, remove_items: bool) -> Message:
    """What is (or will be) erased and what is kept, why and until when."""
    gone: list[Message] = [
        Message("your profile and your CoP memberships and applications").text(
            f" ({', '.join(f'{code}: {st}' for code, st in summary.memberships.items())})"
        )
        if summary.memberships
        else Message("your profile, if any"),
    ]
    if summary.answers:
        answers = Message(f"your answers to {plural(summary.answers, 'event')}")
        if summary.seats:
            answers.text(f"; your seat at {', '.join(summary.seats)} goes to the next person ")
            answers.text("waiting")
        gone.append(answers)
    if summary.guest_invitations:
        gone.append(Message(plural(summary.guest_invitations, "guest invitation")))
    if summary.calendar_link:
        gone.append(Message("your calendar link (calendars subscribed to it stop updating)"))
    if summary.moderated:
        gone.append(
            Message(f"your moderator role in {', '.join(summary.moderated)}").text(
                " (the management room is told)"
            )
        )
    copies = Message("every stored copy of your commands and of the messages and files I ")
    copies.text(f"sent you ({summary.copies})")
    if summary.redactions == 1:
        copies.text("; my 1 message that carries your data is redacted")
    elif summary.redactions:
        copies.text(f"; my {summary.redactions} messages that carry your data are redacted")
    gone.append(copies)
    msg = Message(f"I {'have erased' if done else 'will erase'}:").bullets(gone)
    if done:
        msg.text("I am now taking you out of the CoP rooms and leaving this chat.").para()
    else:
        msg.text("I will take you out of the CoP rooms and leave this chat.").para()
    kept: list[Message] = []
    if summary.intel_kept and not remove_items:
        one = summary.intel_kept == 1
        item = Message(f"The {plural(summary.intel_kept, 'intel item')} you shared ")
        item.text(
            f"{'stays' if one else 'stay'} for your CoP, shown as shared by “a former member”."
        )
        if not done:
            item.text(f" To delete {'it' if one else 'them'} instead, confirm with ")
            item.code(f"{ctx.prefix}forgetme confirm {REMOVE_ITEMS}").text(".")
        kept.append(item)
    if summary.intel_deleted:
        kept.append(
            Message(f"{plural(summary.intel_deleted, 'intel item')} of yours ").text(
                "is deleted." if summary.intel_deleted == 1 else "are deleted."
            )
        )
    if summary.claims_deleted:
        kept.append(
            Message(plural(summary.claims_deleted, "draft claim")).text(
                " is deleted." if summary.claims_deleted == 1 else " are deleted."
            )
        )
    audit_until = day(ctx.settings, ctx.now + ctx.settings.privacy.audit_retention)
    kept.append(
        Message("Log entries keep the action and the reference ")
        .text(f"{summary.alias} instead of your name, for ")
        .text(f"{span(ctx.settings.privacy.audit_retention)} (today's until {audit_until}).")
    )
    msg.bold("What is kept, and why").bullets(kept)
    if summary.claims_kept:
        msg.text("Travel claims are financial records the Commission must keep (the Financial ")
        msg.text("Regulation requires supporting documents for at least five years). Yours are ")
        msg.text(f"kept without your Matrix ID, under the reference {summary.alias}, and then ")
        msg.text("deleted:").bullets(_claim_line(ctx, k) for k in summary.claims_kept)
    return msg


@family.command(
    "forgetme",
    section="Privacy",
    help="Have your personal data erased.\n"
    "I first show you exactly what is erased and what is kept (and until when); then you "
    "confirm with `forgetme confirm` within 10 minutes.",
    places=Place.DM,
    private=PRIVATE,
    examples=["!forgetme"],
)
async def forgetme(ctx: Context) -> None:
    await refuse_configured(ctx)
    alias = await _alias(ctx)
    async with ctx.session.begin_nested() as trial:  # the real erasure, undone: exact facts
        summary = summarise(await _erase(ctx, alias, remove_items=False))
        await trial.rollback()
    await ctx.audit(REQUEST, target=ctx.sender)
    until = (ctx.now + CONFIRM_WINDOW).strftime("%H:%M UTC")
    msg = Message("🔒 Nothing is erased yet. ").text("If you confirm, here is what happens.").para()
    msg.append(outcome(ctx, summary, done=False, remove_items=False)).para()
    waiting = [k.code for k in summary.claims_kept if k.withdrawn_now]
    if waiting:
        verb = "is" if len(waiting) == 1 else "are"
        msg.text(f"⚠️ {', '.join(waiting)} {verb} still waiting for a decision. To be ")
        msg.text("reimbursed, wait for the decision before you erase your data.").para()
    msg.text("Want a copy first? Send ").code(f"{ctx.prefix}mydata").text(". ")
    msg.text("To go ahead, send ").code(f"{ctx.prefix}forgetme confirm").text(f" before {until}.")
    await ctx.reply(msg)


@family.command(
    "forgetme confirm",
    section="Privacy",
    help="Erase your personal data now (after `forgetme`, within 10 minutes).\n"
    f"Add `{REMOVE_ITEMS}` to delete the intel you shared instead of keeping it without "
    "your name.",
    args=[Arg("choice", parse_choice, optional=True, metavar=f"[{REMOVE_ITEMS}]")],
    places=Place.DM,
    private=PRIVATE,
    listed=False,
    examples=["!forgetme confirm", f"!forgetme confirm {REMOVE_ITEMS}"],
)
async def confirm(ctx: Context, choice: str | None) -> None:
    await refuse_configured(ctx)
    since = ctx.now - CONFIRM_WINDOW
    if not await erasure.requested_since(ctx.session, ctx.sender, REQUEST, since):
        raise CommandError(
            Message("To be sure it is really you who wants this, send ")
            .code(f"{ctx.prefix}forgetme")
            .text(" first: I show you what is erased and kept, and then you confirm within ")
            .text("10 minutes.")
        )
    remove_items = choice == REMOVE_ITEMS
    erased = await _erase(ctx, await _alias(ctx), remove_items)
    summary = summarise(erased)
    ctx.registry.listening.discard(ctx.sender)
    await repo.audit(
        ctx.session,
        actor=summary.alias,
        action="privacy.erased",
        target=summary.alias,
        detail=f"claims kept {len(summary.claims_kept)}, intel kept {summary.intel_kept}, "
        f"copies erased {summary.copies}, messages redacted {summary.redactions}",
        now=ctx.now,
    )
    for room, event_id in erased.redact:
        await _queue(ctx, room, "redact", {"event_id": event_id, "reason": "Personal data erased"})
    for freed in erased.freed:
        zone = ctx.settings.cop_timezone(freed.event.cop_code)
        for person in freed.promoted:
            await ctx.dm(person, promotion_message(ctx.prefix, freed.event, zone))
    await _leave_rooms(ctx, erased)
    await _tell_management(ctx, summary)
    chat = ctx.room_id if ctx.place is Place.DM and not ctx.redirected else erased.dm_room
    done = Message("🔒 Done: your personal data is erased.").para()
    done.append(outcome(ctx, summary, done=True, remove_items=remove_items)).para()
    done.text("Thank you for taking part in Big Buyers Working Together. Goodbye!")
    for content in done.contents(reply_to=ctx.event_id if chat == ctx.room_id else None):
        await _queue(ctx, chat, "message", content, private=True)
    chats: list[str | None] = [r for r in dict.fromkeys((chat, erased.dm_room)) if r is not None]
    for left in chats or [None]:
        await _queue(ctx, left, "leave", {}, private=True)


async def _queue(
    ctx: Context, room: str | None, kind: str, payload: dict[str, Any], *, private: bool = False
) -> None:
    """An erasure's own outbox row (its payload goes once it is delivered). ``private``: for
    the person's eyes, in their direct chat (opened first when ``room`` is not known)."""
    if room is None and not private:
        return
    await repo.enqueue(
        ctx.session,
        room_id=room,
        to_user=ctx.sender if room is None else None,
        kind=kind,
        payload=payload,
        tag=ERASURE_TAG,
        private_to=ctx.sender if private and room is not None and kind == "message" else None,
        now=ctx.now,
    )


async def _leave_rooms(ctx: Context, erased: erasure.Erased) -> None:
    """Take them out of the CoP rooms and the management room (and their power levels)."""
    forgotten = erased.forgotten
    for room in forgotten.power_rooms:
        await _queue(ctx, room, "power", {"set": {ctx.sender: None}})
    for room, code in (await managed_rooms(ctx)).items():
        if code is None:
            belonged = bool(forgotten.moderated)
        else:
            belonged = forgotten.memberships.get(code) == "member"
        seen = forgotten.rooms.get(room)
        if seen in PRESENT or (seen is None and belonged):
            await _queue(ctx, room, "kick", {"user_id": ctx.sender, "reason": KICK_REASON})


async def _tell_management(ctx: Context, summary: Summary) -> None:
    notes: list[Message] = []
    moderators = await ms.moderators_by_cop(ctx.session)
    for code in summary.moderated:
        left = sorted(moderators.get(code, {}))
        note = Message(f"they no longer moderate {code}; ")
        if left:
            notes.append(note.text(f"{code}'s moderators now: {', '.join(left)}"))
        else:
            notes.append(
                note.text(f"{code} has no moderator now (an admin can add one with ")
                .code(f"{ctx.prefix}mod add")
                .text(")")
            )
    for code, status in summary.memberships.items():
        if status == "applied":
            notes.append(
                Message(f"their application to {code} is withdrawn (I have removed its notice)")
            )
    for kept in summary.claims_kept:
        if kept.withdrawn_now:
            notes.append(Message(f"their claim {kept.code}, waiting for a decision, is withdrawn"))
    if notes and ctx.management_room:
        msg = Message("🔒 Someone asked me to erase their personal data (")
        msg.code(f"{ctx.prefix}forgetme").text("), and I have. What changes for you:")
        await ctx.send(ctx.management_room, msg.bullets(notes))
