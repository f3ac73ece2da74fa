"""Moderators, for admins: ``!mod add`` and ``!mod remove``. Moderators get power level 50
in their CoP's room and a place in the management room; taking the role away takes both
back (unless they are a member, or moderate another CoP)."""

from __future__ import annotations

from commands.context import Context
from commands.errors import CommandError
from commands.events.seats import release_seats, withdrawn_answers
from commands.membership.declare import person_in_cop
from commands.membership.render import cop_title
from commands.membership.rooms import invite, kick, sync_power
from commands.registry import Family
from commands.roles import Role, role_of
from commands.text import Message
from config.models import CopConfig
from storage import membership as ms
from storage import repo

family = Family()


@person_in_cop(
    family,
    "mod add",
    help="Make someone a moderator of a CoP (admins only).",
    section="Admin",
    role=Role.ADMIN,
    examples=["!mod add @maria:example.org HDEV"],
)
async def mod_add(ctx: Context, user: str, cop: CopConfig) -> None:
    target = cop
    if user in ctx.settings.secretariat.admins:
        raise CommandError(Message().text(user).text(" is an admin and can already do everything."))
    if await ms.moderator_source(ctx.session, user, target.code) is not None:
        raise CommandError(
            Message().text(user).text(" already moderates ").bold(target.code).text(".")
        )
    await ms.add_moderator(ctx.session, user, target.code, now=ctx.now)
    await ctx.audit("mod-add", cop_code=target.code, target=user)
    await sync_power(ctx.session, ctx.settings, ctx.now, [target.code])
    room_id = await ctx.cop_room(target.code)
    if room_id is not None:
        await invite(ctx.session, room_id, user, now=ctx.now)
    if ctx.management_room:
        await invite(ctx.session, ctx.management_room, user, now=ctx.now)
    await ctx.dm(
        user,
        Message("You are now a moderator of ")
        .append(cop_title(target))
        .text(". I've invited you to its room and to the management room, where new ")
        .text("applications appear. ")
        .code(f"{ctx.prefix}help")
        .text(" shows your commands."),
    )
    await ctx.reply(
        Message()
        .text(user)
        .text(" now moderates ")
        .bold(target.code)
        .text(" (power level 50 in its room). I've invited and told them.")
    )


@person_in_cop(
    family,
    "mod remove",
    help="Take away someone's moderator role in a CoP (admins only).",
    section="Admin",
    role=Role.ADMIN,
    examples=["!mod remove @maria:example.org HDEV"],
)
async def mod_remove(ctx: Context, user: str, cop: CopConfig) -> None:
    target = cop
    source = await ms.moderator_source(ctx.session, user, target.code)
    if source is None:
        raise CommandError(
            Message().text(user).text(" is not a moderator of ").bold(target.code).text(".")
        )
    if source == "config":
        raise CommandError(
            Message()
            .text(user)
            .text(" is a moderator of ")
            .bold(target.code)
            .text(" in the configuration file; remove them there and restart the bot.")
        )
    await ms.remove_moderator(ctx.session, user, target.code)
    await ctx.audit("mod-remove", cop_code=target.code, target=user)
    await sync_power(ctx.session, ctx.settings, ctx.now, [target.code])
    notes = Message()
    room_id = await ctx.cop_room(target.code)
    outside = await role_of(ctx.session, ctx.settings, user, target.code) < Role.MEMBER
    if room_id is not None and outside:
        if await kick(ctx.session, room_id, user, "No longer a moderator of this CoP", now=ctx.now):
            notes.text(" As they are not a member, I took them out of its room.")
    if outside and withdrawn_answers(await release_seats(ctx, user, [target.code])):
        notes.text(" Their answers to its upcoming events are withdrawn (seats go to the ")
        notes.text("waiting list).")
    if (
        ctx.management_room
        and user not in ctx.settings.secretariat.admins
        and not await repo.moderated_cops(ctx.session, user)
        and await kick(ctx.session, ctx.management_room, user, "No longer a moderator", now=ctx.now)
    ):
        notes.text(" They moderate no other CoP, so I took them out of this room.")
    await ctx.dm(
        user,
        Message("You are no longer a moderator of ")
        .append(cop_title(target))
        .text(". Thank you for your work! If you want to stay in the CoP as a member, ")
        .text("send ")
        .code(f"{ctx.prefix}join {target.code}")
        .text("."),
    )
    await ctx.reply(
        Message().text(user).text(" no longer moderates ").bold(target.code).text(".").append(notes)
    )


# --- listing -------------------------------------------------------------------------------
