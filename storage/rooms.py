"""Who is in which room (the bot's member cache) and events set aside by the sync loop.

``room_members`` (defined with the membership family) holds the last membership the bot saw
for each user of a room; ``member_lists`` marks the rooms whose list is complete (loaded
from the homeserver once, then kept current from the member events of every sync). A room
is a direct chat exactly when its joined and invited members are the bot and one person:
that is decided from this cache, never remembered.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import insert_for
from storage.membership import RoomMember
from storage.models import MemberList, QuarantinedEvent

PRESENT = ("join", "invite")


async def note_members(
    session: AsyncSession, room_id: str, changes: Mapping[str, str], now: datetime
) -> None:
    """Record memberships (``join``, ``invite``, ``leave``, ``ban``…) seen in a room.

    An upsert: another worker or bot process may record the same person at the same time.
    """
    if not changes:
        return
    insert = insert_for(session)
    rows = [
        {"room_id": room_id, "user_id": user, "membership": membership, "updated_at": now}
        for user, membership in changes.items()
    ]
    stmt = insert(RoomMember).values(rows)
    stmt = stmt.on_conflict_do_update(
        index_elements=["room_id", "user_id"],
        set_={"membership": stmt.excluded.membership, "updated_at": stmt.excluded.updated_at},
    )
    await session.execute(stmt)


async def load_member_list(
    session: AsyncSession,
    room_id: str,
    members: Mapping[str, str],
    now: datetime,
    *,
    replace: bool = True,
) -> None:
    """Mark a room's member list as complete with ``members``.

    ``replace``: what the homeserver says is the whole list (``/members``), so anyone else
    is gone. Without it the members are merged in: the state a sync brings when the bot
    joins may be older than what the bot itself did meanwhile (the invite it just sent).
    """
    if replace:
        await session.execute(
            delete(RoomMember).where(
                RoomMember.room_id == room_id, RoomMember.user_id.not_in(list(members) or [""])
            )
        )
    await note_members(session, room_id, members, now)
    insert = insert_for(session)
    stmt = insert(MemberList).values(room_id=room_id, loaded_at=now)
    await session.execute(
        stmt.on_conflict_do_update(index_elements=["room_id"], set_={"loaded_at": now})
    )


async def present_members(session: AsyncSession, room_id: str) -> set[str] | None:
    """Joined and invited users of a room; None when its member list was never loaded."""
    if await session.get(MemberList, room_id) is None:
        return None
    rows = await session.scalars(
        select(RoomMember.user_id).where(
            RoomMember.room_id == room_id, RoomMember.membership.in_(PRESENT)
        )
    )
    return set(rows.all())


async def forget_room(session: AsyncSession, room_id: str) -> None:
    """The bot left a room: what it knew of its members is no longer kept current."""
    await session.execute(delete(MemberList).where(MemberList.room_id == room_id))
    await session.execute(delete(RoomMember).where(RoomMember.room_id == room_id))


# --- events set aside ----------------------------------------------------------------------


async def quarantine(
    session: AsyncSession,
    *,
    event_id: object,
    room_id: str,
    sender: object,
    reason: str,
    now: datetime,
) -> None:
    """Set an event aside with the reason (never its content)."""
    session.add(
        QuarantinedEvent(
            event_id=event_id[:255] if isinstance(event_id, str) else None,
            room_id=room_id[:255],
            sender=sender[:255] if isinstance(sender, str) else None,
            reason=reason[:500],
            received_at=now,
        )
    )
    await session.flush()


async def quarantined(session: AsyncSession) -> list[QuarantinedEvent]:
    rows = await session.scalars(select(QuarantinedEvent).order_by(QuarantinedEvent.id))
    return list(rows.all())


async def count_quarantined(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(QuarantinedEvent)) or 0)
