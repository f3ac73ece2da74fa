"""The weekly digest: one claimed row per (CoP, ISO week), and the facts a digest shows.

Exactly once per week: whoever wants to post a CoP's digest first inserts the row
(cop, ISO year, ISO week) in the same transaction that queues the message in the outbox.
The unique constraint decides: on PostgreSQL a second process's insert waits for the first
transaction and then finds the row (nothing is posted twice); if the first rolls back, the
second one wins. On SQLite writers are serialised by ``BEGIN IMMEDIATE``.

The digest's events sections read ``storage.events`` directly
(:func:`storage.events.digest_upcoming_events` and
:func:`storage.events.digest_claim_deadlines`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, UniqueConstraint, func
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.db import insert_for
from storage.models import Base, BigId, Cop, Membership, Person

log = logging.getLogger(__name__)


class DigestPost(Base):
    """A CoP's digest of one ISO week, claimed before it is posted."""

    __tablename__ = "digest_posts"
    __table_args__ = (UniqueConstraint("cop_code", "iso_year", "iso_week"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    cop_code: Mapped[str] = mapped_column(ForeignKey("cops.code"))
    iso_year: Mapped[int] = mapped_column(Integer)
    iso_week: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    """``scheduled``, ``catch-up`` or ``manual``."""
    requested_by: Mapped[str | None] = mapped_column(String(255))
    claimed_at: Mapped[datetime] = mapped_column()
    outbox_id: Mapped[int | None] = mapped_column(BigInteger)
    skipped: Mapped[bool] = mapped_column(Boolean, default=False)
    """True when the week was empty and ``empty_week = "skip"``: claimed, nothing posted."""


# --- the claim -----------------------------------------------------------------------------


async def claim_week(
    session: AsyncSession,
    cop_code: str,
    iso_year: int,
    iso_week: int,
    *,
    kind: str,
    requested_by: str | None = None,
    at: datetime,
) -> DigestPost | None:
    """Claim (cop, week) inside the caller's transaction; None when it was claimed already.

    The caller queues the digest in the same transaction and records it with
    :func:`record_post`; if the transaction rolls back, so does the claim.
    """
    insert = insert_for(session)
    stmt = (
        insert(DigestPost)
        .values(
            cop_code=cop_code,
            iso_year=iso_year,
            iso_week=iso_week,
            kind=kind,
            requested_by=requested_by,
            claimed_at=at,
            skipped=False,
        )
        .on_conflict_do_nothing(index_elements=["cop_code", "iso_year", "iso_week"])
        .returning(DigestPost.id)
    )
    new_id = await session.scalar(stmt)
    if new_id is None:
        return None
    return await session.get(DigestPost, new_id)


async def record_post(
    session: AsyncSession, post: DigestPost, *, outbox_id: int | None, skipped: bool
) -> None:
    post.outbox_id = outbox_id
    post.skipped = skipped
    await session.flush()


async def week_post(
    session: AsyncSession, cop_code: str, iso_year: int, iso_week: int
) -> DigestPost | None:
    return await session.scalar(
        sa_select(DigestPost).where(
            DigestPost.cop_code == cop_code,
            DigestPost.iso_year == iso_year,
            DigestPost.iso_week == iso_week,
        )
    )


async def count_posts(session: AsyncSession, cop_code: str | None = None) -> int:
    query = sa_select(func.count()).select_from(DigestPost)
    if cop_code is not None:
        query = query.where(DigestPost.cop_code == cop_code)
    return int(await session.scalar(query) or 0)


async def cop_created_at(session: AsyncSession, cop_code: str) -> datetime | None:
    return await session.scalar(sa_select(Cop.created_at).where(Cop.code == cop_code))


# --- new members ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NewMember:
    user_id: str
    org: str | None
    country: str | None


async def new_members(
    session: AsyncSession, cop_code: str, start: datetime, end: datetime
) -> list[NewMember]:
    """Members of a CoP whose membership began in ``[start, end]``, oldest first.

    The start is the approval (``decided_at``); members added without a decision (seeded
    ones) count from their ``applied_at``.
    """
    began = func.coalesce(Membership.decided_at, Membership.applied_at)
    rows = await session.execute(
        sa_select(Membership.user_id, Person.org, Person.country)
        .outerjoin(Person, Person.user_id == Membership.user_id)
        .where(
            Membership.cop_code == cop_code,
            Membership.status == "member",
            began >= start,
            began <= end,
        )
        .order_by(began, Membership.id)
    )
    return [NewMember(user_id=u, org=o, country=c) for u, o, c in rows.all()]
