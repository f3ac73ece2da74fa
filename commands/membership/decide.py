"""Deciding applications: ``!applications``, ``!approve`` (or ✅ on the notice in the
management room), ``!reject`` and ``!remove``. Every decision is in the audit log and told
to the person in a direct message."""

from __future__ import annotations

from typing import Any

from commands.args import Arg, cop_code
from commands.context import Context
from commands.errors import CommandError
from commands.events.seats import (
    promoted_count,
    release_seats,
    seat_note,
    withdrawn_answers,
)
from commands.membership.apply import TAG_PREFIX
from commands.membership.declare import person_in_cop
from commands.membership.render import cop_title, describe, local_time, not_pending
from commands.membership.rooms import invite, kick
from commands.registry import Family, Place
from commands.roles import Role
from commands.scope import CopSet, Missing, cop_arg
from commands.text import Message, isolate
from config.models import CopConfig
from storage import membership as ms
from storage import repo

family = Family()
APPROVE_KEYS = {"✅", "✔", "☑"}


async def approve(ctx: Context, cop: CopConfig, user: str) -> Message:
    """Approve a pending application; returns the answer for the moderator."""
    row = await ms.get_membership(ctx.session, user, cop.code)
    if row is None or row.status != "applied":
        raise CommandError(not_pending(ctx.prefix, cop, user, row))
    await ms.decide(ctx.session, row, status="member", by=ctx.sender, reason="", now=ctx.now)
    await ctx.audit("approve", cop_code=cop.code, target=user)
    room_id = await ctx.cop_room(cop.code)
    if room_id is not None:
        await invite(ctx.session, room_id, user, now=ctx.now)
    await ctx.dm(
        user,
        Message("Welcome to ")
        .append(cop_title(cop))
        .text("! The moderators approved your application. I've invited you to the CoP's ")
        .text("room: accept the invitation in your Matrix client to join the conversation. ")
        .text("In the room, ")
        .code(f"{ctx.prefix}help")
        .text(" shows what members can do."),
    )
    person = await ms.get_person(ctx.session, user)
    return (
        Message("Approved: ")
        .text(user)
        .text(" (")
        .append(describe(person))
        .text(") is now a member of ")
        .bold(cop.code)
        .text(". I've invited them to the room and told them.")
    )


@family.command(
    "applications",
    help="List the applications waiting for a decision (your CoPs, or one CoP).",
    section="Moderation",
    args=[Arg("cop", cop_code, optional=True, metavar="[COP]")],
    role=Role.MODERATOR,
    cop=cop_arg(missing=Missing.MINE),
    places=Place.PRIVATE,
    examples=["!applications", "!applications HDEV"],
)
async def applications(ctx: Context, cop: CopConfig | CopSet) -> None:
    if isinstance(cop, CopConfig):
        codes, where = [cop.code], cop.code
    elif cop.every:
        codes, where = list(cop.codes), "any CoP"
    else:
        codes, where = list(cop.codes), "your CoPs (" + ", ".join(cop.codes) + ")"
    entries = await ms.pending_applications(ctx.session, codes)
    if not entries:
        await ctx.reply(f"No applications are waiting for {where}.")
        return
    items = []
    for entry in entries:
        row = entry.membership
        item = Message().bold(row.cop_code).text(" · ").text(row.user_id)
        item.text(" · ").append(describe(entry.person))
        item.text(f" · applied {local_time(ctx.settings, row.applied_at)[:10]}")
        if row.flagged:
            item.text(" · ⚠️ flagged: ").text(row.flag_reason)
        if row.message:
            item.text(" · ").text(f"“{row.message}”")
        items.append(item)
    msg = Message(f"Applications waiting for {where} ({len(entries)}):").bullets(items)
    msg.text("Decide with ").code(f"{ctx.prefix}approve <@user> <COP>").text(" or ")
    msg.code(f"{ctx.prefix}reject <@user> <COP> <reason>").text(".")
    await ctx.reply(msg)


@person_in_cop(
    family,
    "approve",
    help="Approve an application: the applicant becomes a member and is invited to the CoP's room.",
    section="Moderation",
    role=Role.MODERATOR,
    examples=["!approve @anna:example.org HDEV"],
)
async def approve_(ctx: Context, user: str, cop: CopConfig) -> None:
    await ctx.reply(await approve(ctx, cop, user))


@person_in_cop(
    family,
    "reject",
    help="Turn down an application; the applicant gets your reason in a direct message.",
    section="Moderation",
    more=[Arg("reason", rest=True)],
    role=Role.MODERATOR,
    examples=["!reject @bob:example.org HDEV Only public buyers can join this CoP."],
)
async def reject(ctx: Context, user: str, cop: CopConfig, reason: str) -> None:
    target = cop
    row = await ms.get_membership(ctx.session, user, target.code)
    if row is not None and row.status == "member":
        raise CommandError(
            Message()
            .text(user)
            .text(" is already a member of ")
            .bold(target.code)
            .text(". To take them out, use ")
            .code(f"{ctx.prefix}remove {user} {target.code} <reason>")
            .text(".")
        )
    if row is None or row.status != "applied":
        raise CommandError(not_pending(ctx.prefix, target, user, row))
    await ms.decide(ctx.session, row, status="rejected", by=ctx.sender, reason=reason, now=ctx.now)
    await ctx.audit("reject", cop_code=target.code, target=user, detail=reason)
    await ctx.dm(
        user,
        Message("Your application to ")
        .append(cop_title(target))
        .text(" was not accepted. The moderators' reason: ")
        .italic(reason)
        .para()
        .text("If something has changed, you can correct your profile with ")
        .code(f"{ctx.prefix}profile set")
        .text(" and apply again with ")
        .code(f"{ctx.prefix}join {target.code}")
        .text("."),
    )
    await ctx.reply(
        Message("Turned down the application of ")
        .text(user)
        .text(" to ")
        .bold(target.code)
        .text(". I've sent them your reason.")
    )


@person_in_cop(
    family,
    "remove",
    help="Take a member out of a CoP and its room; they are told why.",
    section="Moderation",
    more=[Arg("reason", optional=True, rest=True, default="")],
    role=Role.MODERATOR,
    places=Place.PRIVATE | Place.COP_ROOM,
    examples=["!remove @carl:example.org HDEV Left the organisation."],
)
async def remove(ctx: Context, user: str, cop: CopConfig, reason: str) -> None:
    target = cop
    if user in ctx.settings.secretariat.admins:
        raise CommandError(
            Message()
            .text(user)
            .text(" is an admin of the Secretariat and has access to ")
            .text("every CoP; admins can't be removed.")
        )
    if await ms.moderator_source(ctx.session, user, target.code) is not None:
        raise CommandError(
            Message()
            .text(user)
            .text(" moderates ")
            .bold(target.code)
            .text(". An admin can take that role away first with ")
            .code(f"{ctx.prefix}mod remove {user} {target.code}")
            .text(".")
        )
    row = await ms.get_membership(ctx.session, user, target.code)
    if row is not None and row.status == "applied":
        raise CommandError(
            Message()
            .text(user)
            .text(" has only applied. To turn them down, use ")
            .code(f"{ctx.prefix}reject {user} {target.code} <reason>")
            .text(".")
        )
    if row is None or row.status != "member":
        raise CommandError(
            Message().text(user).text(" is not a member of ").bold(target.code).text(".")
        )
    await ms.decide(ctx.session, row, status="removed", by=ctx.sender, reason=reason, now=ctx.now)
    await ctx.audit("remove", cop_code=target.code, target=user, detail=reason)
    room_id = await ctx.cop_room(target.code)
    if room_id is not None:
        await kick(
            ctx.session,
            room_id,
            user,
            f"Removed from the CoP{': ' + isolate(reason) if reason else ''}"[:250],
            now=ctx.now,
        )
    freed = await release_seats(ctx, user, [target.code])
    told = Message("You have been removed from ").append(cop_title(target))
    told.text(" by its moderators.")
    if reason:
        told.text(" Their reason: ").italic(reason)
    answers = withdrawn_answers(freed)
    if answers is not None:
        told.para().text("Your answers to its upcoming events are withdrawn: ").append(answers)
        told.text(".").append(seat_note(freed))
    told.para().text("If you have questions, please contact the BBWT Secretariat.")
    await ctx.dm(user, told)
    done = Message("Removed ").text(user).text(" from ").bold(target.code)
    done.text(": they are out of the room and I've told them why.")
    if answers is not None:
        done.text(" Their answers to its upcoming events are withdrawn")
        promoted = promoted_count(freed)
        if promoted:
            people, verb = ("person", "was") if promoted == 1 else ("people", "were")
            done.text(f"; {promoted} {people} from the waiting list got a seat and {verb} told")
        done.text(".")
    await ctx.reply(done)


@family.on("reaction")
async def on_reaction(ctx: Context, event: dict[str, Any]) -> None:
    """✅ on an application notice in the management room approves it."""
    if ctx.place is not Place.MANAGEMENT:
        return
    relates = (event.get("content") or {}).get("m.relates_to") or {}
    if not isinstance(relates, dict) or relates.get("rel_type") != "m.annotation":
        return
    key = str(relates.get("key") or "").replace("\ufe0f", "").strip()
    if key not in APPROVE_KEYS or not isinstance(relates.get("event_id"), str):
        return
    tag = await repo.tag_of_sent_event(ctx.session, relates["event_id"])
    if not tag or not tag.startswith(TAG_PREFIX):
        return
    row_id, _, stamp = tag[len(TAG_PREFIX) :].partition(":")
    row = await ms.get_membership_by_id(ctx.session, int(row_id)) if row_id.isdigit() else None
    if row is None:
        return
    cop = ctx.settings.cop(row.cop_code)
    if cop is None:
        return
    await ctx.registry.authorize(ctx, "approve", user=row.user_id, cop=cop.code)
    if row.status != "applied" or str(int(row.applied_at.timestamp())) != stamp:
        raise CommandError(
            Message("Your ✅ in the management room came too late: that application to ")
            .bold(cop.code)
            .text(" of ")
            .text(row.user_id)
            .text(" was already dealt with. ")
            .code(f"{ctx.prefix}applications {cop.code}")
            .text(" shows what is waiting.")
        )
    assert ctx.management_room is not None
    await ctx.send(ctx.management_room, await approve(ctx, cop, row.user_id))


# --- keeping CoP rooms members-only -------------------------------------------------------
