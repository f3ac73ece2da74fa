"""The rooms: CoP rooms stay members-only, and moderators and admins get their power levels.

The bot only kicks or invites when it must: it remembers who it last saw in each room
(``room_members``) and which power levels it granted (``power_grants``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from commands.context import Context, cop_room
from commands.events.seats import release_seats, seat_note, withdrawn_answers
from commands.membership.render import cop_title
from commands.registry import Family, Place
from commands.roles import Role, role_of
from commands.text import Message
from config.models import Settings
from storage import membership as ms
from storage import repo

family = Family()
MODERATOR_LEVEL = 50
ADMIN_LEVEL = 100


async def invite(session: AsyncSession, room_id: str, user: str, now: datetime) -> bool:
    """Invite unless the user is in the room or invited already; True when queued."""
    if await ms.room_membership(session, room_id, user) in ("join", "invite", "ban"):
        return False
    await repo.enqueue(session, room_id=room_id, kind="invite", payload={"user_id": user}, now=now)
    await ms.set_room_membership(session, room_id, user, "invite", now=now)
    return True


async def kick(session: AsyncSession, room_id: str, user: str, reason: str, now: datetime) -> bool:
    """Take a user out of a room (or take back their invitation); True when queued.

    Skipped only when the bot knows they are not there: a kick of someone who has left
    fails at the homeserver, while leaving a removed person in a members-only room is worse.
    """
    if await ms.room_membership(session, room_id, user) in ("leave", "ban"):
        return False
    await repo.enqueue(
        session, room_id=room_id, kind="kick", payload={"user_id": user, "reason": reason}, now=now
    )
    await ms.set_room_membership(session, room_id, user, "leave", now=now)
    return True


async def sync_power(
    session: AsyncSession, settings: Settings, now: datetime, codes: Iterable[str] | None = None
) -> None:
    """Queue power-level changes so every CoP room gives its moderators 50 and admins 100.

    What the bot has granted is remembered, so levels of people who lost a role are taken
    back. An admin's 100 cannot be taken back by the bot (it has 100 itself); that is left
    to a room admin.
    """
    wanted_codes = set(codes) if codes is not None else {cop.code for cop in settings.cops}
    moderators = await ms.moderators_by_cop(session)
    for cop in settings.cops:
        if cop.code not in wanted_codes:
            continue
        room_id = await cop_room(session, cop.code)
        if room_id is None:
            continue
        wanted: dict[str, int] = {user: MODERATOR_LEVEL for user in moderators.get(cop.code, {})}
        wanted.update({user: ADMIN_LEVEL for user in settings.secretariat.admins})
        granted = await ms.power_grants(session, room_id)
        changes: dict[str, int | None] = {
            user: level for user, level in wanted.items() if granted.get(user) != level
        }
        dropped = {user: None for user in granted if user not in wanted}
        if changes or dropped:
            send: dict[str, int | None] = dict(changes)
            send.update({u: None for u in dropped if granted[u] < ADMIN_LEVEL})
            if send:
                await repo.enqueue(
                    session, room_id=room_id, kind="power", payload={"set": send}, now=now
                )
            await ms.set_power_grants(session, room_id, {**changes, **dropped})


@family.on("member")
async def on_member(ctx: Context, event: dict[str, Any]) -> None:
    if ctx.place not in (Place.COP_ROOM, Place.MANAGEMENT):
        return
    target = event.get("state_key")
    membership = (event.get("content") or {}).get("membership")
    if not isinstance(target, str) or not isinstance(membership, str):
        return
    await ms.set_room_membership(ctx.session, ctx.room_id, target, membership, now=ctx.now)
    code = ctx.room_cop
    if ctx.place is not Place.COP_ROOM or code is None or target == ctx.settings.matrix.user_id:
        return
    if membership in ("leave", "ban"):
        await left_room(ctx, code, target, by=ctx.sender)
        return
    if membership != "join":
        return
    if await role_of(ctx.session, ctx.settings, target, code) >= Role.MEMBER:
        return
    cop = ctx.settings.cop(code)
    if cop is None:
        return
    await kick(
        ctx.session, ctx.room_id, target, f"Members only: apply with !join {code}", now=ctx.now
    )
    row = await ms.get_membership(ctx.session, target, code)
    told = Message("Hello! The room of ").append(cop_title(cop))
    told.text(" is only for its members, so I've taken you out of it. ")
    if row is not None and row.status == "applied":
        told.text("Your application is still with the moderators; I'll invite you as soon ")
        told.text("as it is approved.")
    else:
        told.text("To become a member, apply with ").code(f"{ctx.prefix}join {code}")
        told.text(" (here in our direct chat is fine). The CoPs are open to public buyers ")
        told.text("in the EU and EEA; suppliers and other market actors can be invited as ")
        told.text("guests to single events.")
    await ctx.dm(target, told)
    await ctx.notify_management(
        Message()
        .text(target)
        .text(" joined the ")
        .bold(code)
        .text(" room without being a member, so I removed them and told them how to apply.")
    )


async def left_room(ctx: Context, code: str, user: str, by: str) -> None:
    """Someone left a CoP's room (or a room admin took them out): a member who is no
    moderator gives up their answers to the CoP's upcoming events, so the people waiting
    get the seats and nobody is reminded of an event whose room they are not in. They stay
    a member and are told how to come back. (The bot's own kicks never come here: the
    commands that kick have given up the seats already.)"""
    if await role_of(ctx.session, ctx.settings, user, code) >= Role.MODERATOR:
        return
    cop = ctx.settings.cop(code)
    freed = await release_seats(ctx, user, [code])
    answers = withdrawn_answers(freed)
    if cop is None or answers is None:
        return
    told = Message("You left the room of " if by == user else "You were taken out of the room of ")
    told.append(cop_title(cop)).text(", so I've withdrawn your answers to its upcoming events: ")
    told.append(answers).text(".").append(seat_note(freed))
    if await role_of(ctx.session, ctx.settings, user, code) >= Role.MEMBER:
        told.para().text("You are still a member of ").bold(code).text(". To come back to ")
        told.text("the room, send ").code(f"{ctx.prefix}join {code}").text("; then answer ")
        told.text("again with ").code(f"{ctx.prefix}rsvp <E#> yes").text(".")
    await ctx.dm(user, told)


# --- roles ---------------------------------------------------------------------------------
