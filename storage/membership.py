"""Membership storage: profiles, applications, moderators, the join dialogue, who is in
which bot-managed room, and the power levels the bot has granted.

The foundation tables (``people``, ``memberships``, ``roles``, ``audit_log``) live in
:mod:`storage.models`; the tables added by migration 0002 are defined here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, ForeignKey, Integer, String, Text, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, Membership, Person, Role

# --- models (migration 0002) -------------------------------------------------------------


class JoinDialogue(Base):
    """A ``!join`` whose applicant is answering the bot's questions in a direct message.

    The answers themselves go straight into the person's profile; this row only remembers
    which CoP they are applying to, their message and which question was asked last, so
    the dialogue carries on after a restart.
    """

    __tablename__ = "join_dialogues"
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    cop_code: Mapped[str] = mapped_column(ForeignKey("cops.code"))
    message: Mapped[str] = mapped_column(Text, default="")
    asked: Mapped[str] = mapped_column(String(16))
    """``org``, ``country`` or ``type``: the question waiting for an answer."""
    started_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()


class RoomMember(Base):
    """Last known membership (join, invite, leave, ban) of a user in a CoP or management
    room, from the member events the bot sees and the invites and kicks it queues."""

    __tablename__ = "room_members"
    room_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    membership: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column()


class PowerGrant(Base):
    """A power level the bot has set for a user in a room (so it can take it back)."""

    __tablename__ = "power_grants"
    room_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    level: Mapped[int] = mapped_column(Integer)


# --- profiles ------------------------------------------------------------------------------


async def get_person(session: AsyncSession, user_id: str) -> Person | None:
    return await session.get(Person, user_id)


async def save_profile(
    session: AsyncSession,
    user_id: str,
    *,
    org: str | None = None,
    country: str | None = None,
    authority_type: str | None = None,
    now: datetime,
) -> Person:
    """Set the given profile facts (``None`` leaves a fact as it is)."""
    person = await session.get(Person, user_id)
    if person is None:
        person = Person(user_id=user_id, created_at=now)
        session.add(person)
    if org is not None:
        person.org = org
    if country is not None:
        person.country = country
    if authority_type is not None:
        person.authority_type = authority_type
    person.updated_at = now
    await session.flush()
    return person


# --- applications and memberships -------------------------------------------------------


@dataclass
class Entry:
    """A membership row with the person's profile (which may be missing)."""

    membership: Membership
    person: Person | None

    @property
    def user_id(self) -> str:
        return self.membership.user_id


async def get_membership(session: AsyncSession, user_id: str, cop_code: str) -> Membership | None:
    return await session.scalar(
        select(Membership).where(Membership.user_id == user_id, Membership.cop_code == cop_code)
    )


async def get_membership_by_id(session: AsyncSession, row_id: int) -> Membership | None:
    return await session.get(Membership, row_id)


async def file_application(
    session: AsyncSession,
    *,
    user_id: str,
    cop_code: str,
    message: str,
    flagged: bool,
    flag_reason: str,
    now: datetime,
) -> Membership:
    """A new application (or a fresh one after a rejection, removal or leaving)."""
    row = await get_membership(session, user_id, cop_code)
    if row is None:
        row = Membership(user_id=user_id, cop_code=cop_code, applied_at=now)
        session.add(row)
    row.status = "applied"
    row.message = message
    row.flagged = flagged
    row.flag_reason = flag_reason
    row.applied_at = now
    row.decided_at = None
    row.decided_by = None
    row.reason = ""
    await session.flush()
    return row


async def decide(
    session: AsyncSession, row: Membership, *, status: str, by: str, reason: str, now: datetime
) -> None:
    """Move a membership to ``member``, ``rejected``, ``removed`` or ``left``."""
    row.status = status
    row.decided_by = by
    row.decided_at = now
    row.reason = reason
    await session.flush()


async def _entries(session: AsyncSession, *conditions: ColumnElement[bool]) -> list[Entry]:
    rows = await session.execute(
        select(Membership, Person)
        .outerjoin(Person, Person.user_id == Membership.user_id)
        .where(*conditions)
        .order_by(Membership.cop_code, Membership.applied_at, Membership.id)
    )
    return [Entry(membership, person) for membership, person in rows.all()]


async def pending_applications(
    session: AsyncSession, cops: Iterable[str] | None = None
) -> list[Entry]:
    """Applications waiting for a decision, oldest first (all CoPs when ``cops`` is None)."""
    conditions: list[ColumnElement[bool]] = [Membership.status == "applied"]
    if cops is not None:
        conditions.append(Membership.cop_code.in_(list(cops)))
    return await _entries(session, *conditions)


async def members_of(session: AsyncSession, cop_code: str) -> list[Entry]:
    entries = await _entries(
        session, Membership.cop_code == cop_code, Membership.status == "member"
    )
    return sorted(entries, key=lambda e: ((e.person.org or "") if e.person else "").lower())


# --- moderators --------------------------------------------------------------------------


async def moderators_by_cop(session: AsyncSession) -> dict[str, dict[str, str]]:
    """CoP code -> {moderator: source ("config" or "command")}."""
    rows = await session.scalars(select(Role).where(Role.role == "moderator"))
    out: dict[str, dict[str, str]] = {}
    for row in rows.all():
        out.setdefault(row.cop_code, {})[row.user_id] = row.source
    return out


async def moderator_source(session: AsyncSession, user_id: str, cop_code: str) -> str | None:
    """ "config" or "command" when ``user_id`` moderates ``cop_code``, else None."""
    row = await session.get(Role, (user_id, cop_code, "moderator"))
    return row.source if row else None


async def add_moderator(session: AsyncSession, user_id: str, cop_code: str, now: datetime) -> None:
    session.add(
        Role(user_id=user_id, cop_code=cop_code, role="moderator", source="command", created_at=now)
    )
    await session.flush()


async def remove_moderator(session: AsyncSession, user_id: str, cop_code: str) -> None:
    await session.execute(
        delete(Role).where(
            Role.user_id == user_id, Role.cop_code == cop_code, Role.role == "moderator"
        )
    )


# --- the join dialogue --------------------------------------------------------------------


async def get_dialogue(session: AsyncSession, user_id: str) -> JoinDialogue | None:
    return await session.get(JoinDialogue, user_id)


async def start_dialogue(
    session: AsyncSession, *, user_id: str, cop_code: str, message: str, asked: str, now: datetime
) -> JoinDialogue:
    """Open a dialogue, or point the open one at another CoP."""
    row = await session.get(JoinDialogue, user_id)
    if row is None:
        row = JoinDialogue(
            user_id=user_id,
            cop_code=cop_code,
            message=message,
            asked=asked,
            started_at=now,
            updated_at=now,
        )
        session.add(row)
    else:
        if message or row.cop_code != cop_code:  # "!join HDEV" again keeps the message
            row.message = message
        row.cop_code = cop_code
        row.asked = asked
        row.updated_at = now
    await session.flush()
    return row


async def set_dialogue_question(
    session: AsyncSession, row: JoinDialogue, asked: str, now: datetime
) -> None:
    row.asked = asked
    row.updated_at = now
    await session.flush()


async def end_dialogue(session: AsyncSession, user_id: str) -> None:
    await session.execute(delete(JoinDialogue).where(JoinDialogue.user_id == user_id))


async def dialogue_users(session: AsyncSession) -> set[str]:
    return set((await session.scalars(select(JoinDialogue.user_id))).all())


# --- room membership -----------------------------------------------------------------------


async def room_membership(session: AsyncSession, room_id: str, user_id: str) -> str | None:
    """join, invite, leave or ban; None when the bot has never seen this user there."""
    row = await session.get(RoomMember, (room_id, user_id))
    return row.membership if row else None


async def set_room_membership(
    session: AsyncSession, room_id: str, user_id: str, membership: str, now: datetime
) -> None:
    from storage.rooms import note_members  # an upsert, shared with the sync loop

    await note_members(session, room_id, {user_id: membership}, now)
    # The upsert bypassed the session: refresh a row it may hold already.
    await session.get(RoomMember, (room_id, user_id), populate_existing=True)


# --- power levels --------------------------------------------------------------------------


async def power_grants(session: AsyncSession, room_id: str) -> dict[str, int]:
    rows = await session.scalars(select(PowerGrant).where(PowerGrant.room_id == room_id))
    return {row.user_id: row.level for row in rows.all()}


async def set_power_grants(
    session: AsyncSession, room_id: str, changes: dict[str, int | None]
) -> None:
    """Record levels set (``None``: the grant was taken back)."""
    for user_id, level in changes.items():
        row = await session.get(PowerGrant, (room_id, user_id))
        if level is None:
            if row is not None:
                await session.delete(row)
        elif row is None:
            session.add(PowerGrant(room_id=room_id, user_id=user_id, level=level))
        else:
            row.level = level
    await session.flush()


# --- privacy -------------------------------------------------------------------------------


@dataclass
class Forgotten:
    """What this family knew of a person just erased (for the bot's Matrix side)."""

    memberships: dict[str, str]
    """CoP -> status (member, applied, left…) before the erasure."""
    membership_ids: list[int]
    """The rows their application notices were tagged with (``application:<id>:…``)."""
    moderated: list[str]
    """CoPs they moderated (by ``!mod add``)."""
    rooms: dict[str, str]
    """Room -> their last known membership there (join, invite, leave, ban)."""
    power_rooms: list[str]
    """Rooms where the bot had given them a power level."""


async def forget_user(session: AsyncSession, user_id: str, pseudonym: str) -> Forgotten:
    """Erase this family's rows about a person: profile, memberships and applications,
    moderator roles, the join dialogue, room memberships and power grants. Decisions they
    took on others' applications keep ``pseudonym`` instead of their Matrix ID."""
    rows = list(
        (
            await session.scalars(
                select(Membership).where(Membership.user_id == user_id).order_by(Membership.id)
            )
        ).all()
    )
    roles = (await session.scalars(select(Role).where(Role.user_id == user_id))).all()
    members = (await session.scalars(select(RoomMember).where(RoomMember.user_id == user_id))).all()
    grants = (await session.scalars(select(PowerGrant).where(PowerGrant.user_id == user_id))).all()
    forgotten = Forgotten(
        memberships={row.cop_code: row.status for row in rows},
        membership_ids=[row.id for row in rows],
        moderated=sorted({role.cop_code for role in roles if role.role == "moderator"}),
        rooms={row.room_id: row.membership for row in members},
        power_rooms=sorted({grant.room_id for grant in grants}),
    )
    for model in (Membership, Role, RoomMember, PowerGrant, JoinDialogue, Person):
        await session.execute(delete(model).where(model.user_id == user_id))
    await session.execute(
        update(Membership).where(Membership.decided_by == user_id).values(decided_by=pseudonym)
    )
    return forgotten
