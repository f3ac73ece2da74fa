"""The daily retention run: what the bot keeps, it keeps only as long as it needs it.

* handled inbound events lose their text and sender after ``inbound`` (the row stays, so an
  event seen again is never carried out again); events set aside are deleted then too;
* delivered (or given-up) outbox rows lose their payload after ``outbox``;
* settled travel claims are deleted ``claims`` after they were paid, rejected or withdrawn;
* audit-log entries are deleted after ``audit``;
* people who have not been a member, applicant, moderator or guest for ``members`` are
  erased (:func:`storage.erasure.erase_person`, claims pseudonymised as on request);
* leftovers of people erased lately (a room's "left" mark, an event that arrived after the
  erasure) go too.

Exactly once a day: the run first claims its UTC day in ``retention_runs`` in the same
transaction that does the work (like the digest's (CoP, week)); a second process's claim
waits for the first transaction and then finds the day taken.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, String, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, Mapped, mapped_column

from storage import claims as claims_store
from storage import erasure
from storage.db import insert_for
from storage.digest import DigestPost
from storage.events import Attendance, CalendarToken, Event, EventGuest, Rsvp
from storage.membership import JoinDialogue, RoomMember
from storage.models import (
    AuditEntry,
    Base,
    DirectRoom,
    InboundEvent,
    Membership,
    OutboxMessage,
    Person,
    QuarantinedEvent,
    Role,
)
from storage.rooms import PRESENT

ACTIVE = ("member", "applied")


class RetentionRun(Base):
    """One day's retention run, claimed before it does anything."""

    __tablename__ = "retention_runs"
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    """The UTC date, YYYY-MM-DD."""
    claimed_at: Mapped[datetime]
    counts: Mapped[dict[str, Any]]
    """What the run removed, by kind (see :func:`run`)."""


@dataclass(frozen=True)
class Policy:
    inbound: timedelta
    outbox: timedelta
    claims: timedelta
    audit: timedelta
    members: timedelta
    keep: frozenset[str] = frozenset()
    """People never erased for inactivity (the Secretariat's admins, the bot itself)."""
    rooms: frozenset[str] = frozenset()
    """The rooms the bot manages (CoP rooms, the management room): whoever is in one of
    them is not gone."""


async def claim_day(session: AsyncSession, day: str, now: datetime) -> bool:
    """Claim ``day``'s run inside the caller's transaction; False when it is taken."""
    insert = insert_for(session)
    stmt = (
        insert(RetentionRun)
        .values(day=day, claimed_at=now, counts={})
        .on_conflict_do_nothing(index_elements=["day"])
        .returning(RetentionRun.day)
    )
    return await session.scalar(stmt) is not None


async def last_run(session: AsyncSession) -> RetentionRun | None:
    return await session.scalar(select(RetentionRun).order_by(RetentionRun.day.desc()).limit(1))


def _rows(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


async def scrub_inbound(session: AsyncSession, cutoff: datetime, now: datetime) -> int:
    """Handled events received before ``cutoff`` lose their text and their sender."""
    result = await session.execute(
        update(InboundEvent)
        .where(
            InboundEvent.scrubbed_at.is_(None),
            InboundEvent.status == "done",
            InboundEvent.handled_at < cutoff,
        )
        .values(content={}, sender="", scrubbed_at=now)
    )
    return _rows(result)


async def scrub_outbox(session: AsyncSession, cutoff: datetime, now: datetime) -> int:
    """Rows delivered (or given up) before ``cutoff`` lose their payload. Where they went
    and for whom stays, so the bot can still redact its messages to someone erased later."""
    done = (OutboxMessage.sent_at < cutoff) | (
        OutboxMessage.failed.is_(True) & (OutboxMessage.created_at < cutoff)
    )
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.scrubbed_at.is_(None), done)
        .values(payload={}, last_error=None, scrubbed_at=now)
    )
    return _rows(result)


async def prune_audit(session: AsyncSession, cutoff: datetime) -> int:
    result = await session.execute(delete(AuditEntry).where(AuditEntry.at < cutoff))
    await session.execute(
        update(DigestPost)
        .where(DigestPost.claimed_at < cutoff, DigestPost.requested_by.is_not(None))
        .values(requested_by=None)
    )
    await erasure.forget_erased_before(session, cutoff)
    return _rows(result)


async def prune_claims(session: AsyncSession, cutoff: datetime) -> int:
    """Delete claims settled before ``cutoff``, and the pseudonymised attendance that was
    kept only as their supporting record."""
    gone = await claims_store.delete_settled_before(session, cutoff)
    still = select(claims_store.Claim.id).where(
        claims_store.Claim.event_id == Attendance.event_id,
        claims_store.Claim.user_id == Attendance.user_id,
    )
    await session.execute(
        delete(Attendance).where(
            Attendance.user_id.startswith(erasure.PSEUDONYM_PREFIX), ~still.exists()
        )
    )
    return len(gone)


# --- people who are gone -----------------------------------------------------------------


def _latest(
    user: InstrumentedAttribute[str],
    when: ColumnElement[Any] | InstrumentedAttribute[Any],
    *where: ColumnElement[bool],
) -> Any:
    return select(user, func.max(when)).where(*where).group_by(user)


async def inactive_people(
    session: AsyncSession,
    before: datetime,
    now: datetime,
    *,
    keep: Iterable[str] = (),
    rooms: Iterable[str] = (),
) -> list[str]:
    """People the bot holds data about who have done nothing since ``before`` and are no
    member, applicant or moderator, have no claim in progress, no answer or invitation to an
    event still to come, and are in none of ``rooms`` (the rooms the bot manages)."""
    last: dict[str, datetime] = {}
    sources = [
        _latest(Person.user_id, Person.updated_at),
        _latest(Membership.user_id, func.coalesce(Membership.decided_at, Membership.applied_at)),
        _latest(EventGuest.user_id, EventGuest.invited_at),
        _latest(Rsvp.user_id, Rsvp.answered_at),
        _latest(CalendarToken.user_id, CalendarToken.created_at),
        _latest(DirectRoom.user_id, DirectRoom.created_at),
        _latest(JoinDialogue.user_id, JoinDialogue.updated_at),
        _latest(RoomMember.user_id, RoomMember.updated_at),
        _latest(
            claims_store.Claim.user_id,
            claims_store.Claim.updated_at,
            claims_store.Claim.user_id.startswith("@"),
        ),
        _latest(InboundEvent.sender, InboundEvent.received_at, InboundEvent.sender != ""),
    ]
    for query in sources:
        for user, when in (await session.execute(query)).all():
            if isinstance(user, str) and user.startswith("@") and when is not None:
                last[user] = max(last.get(user, when), when)
    busy = set(keep)
    blocking = [
        select(Membership.user_id).where(Membership.status.in_(ACTIVE)),
        select(Role.user_id),
        select(RoomMember.user_id).where(
            RoomMember.membership.in_(PRESENT), RoomMember.room_id.in_(list(rooms))
        ),
        select(claims_store.Claim.user_id).where(
            claims_store.Claim.status.in_((claims_store.SUBMITTED, claims_store.APPROVED))
        ),
        select(Rsvp.user_id).join(Event, Event.id == Rsvp.event_id).where(Event.ends_at > now),
        select(EventGuest.user_id)
        .join(Event, Event.id == EventGuest.event_id)
        .where(Event.ends_at > now),
        select(InboundEvent.sender).where(InboundEvent.status == "pending"),
    ]
    for query in blocking:
        busy.update((await session.scalars(query)).all())
    return sorted(user for user, when in last.items() if when < before and user not in busy)


async def sweep_erased(session: AsyncSession, key: bytes, since: datetime, now: datetime) -> int:
    """What arrived about people erased since ``since`` after their erasure: the sync's mark
    that they left a room, and events of theirs stored meanwhile."""
    erased = await erasure.erased_since(session, since)
    if not erased:
        return 0
    count = 0
    rows = await session.scalars(select(RoomMember).where(RoomMember.membership.not_in(PRESENT)))
    for row in rows.all():
        if erasure.pseudonym(key, row.user_id) in erased:
            await session.delete(row)
            count += 1
    events = await session.scalars(
        select(InboundEvent).where(
            InboundEvent.scrubbed_at.is_(None),
            InboundEvent.status == "done",
            InboundEvent.received_at >= min(erased.values()),
        )
    )
    for event in events.all():
        alias = erasure.pseudonym(key, event.sender)
        state_key = event.content.get("state_key") if isinstance(event.content, dict) else None
        about = isinstance(state_key, str) and erasure.pseudonym(key, state_key) in erased
        if alias in erased or about:
            event.content, event.scrubbed_at = {}, now
            event.sender = alias if alias in erased else event.sender
            count += 1
    await session.flush()
    return count


async def run(
    session: AsyncSession, policy: Policy, *, key: bytes, actor: str, now: datetime
) -> dict[str, int] | None:
    """Today's retention run, or None when another run (or process) has claimed today."""
    day = now.strftime("%Y-%m-%d")
    if not await claim_day(session, day, now):
        return None
    counts = {
        "leftovers": await sweep_erased(session, key, now - policy.inbound, now),
        "inbound": await scrub_inbound(session, now - policy.inbound, now),
        "quarantined": _rows(
            await session.execute(
                delete(QuarantinedEvent).where(QuarantinedEvent.received_at < now - policy.inbound)
            )
        ),
        "outbox": await scrub_outbox(session, now - policy.outbox, now),
        "claims": await prune_claims(session, now - policy.claims),
        "audit": await prune_audit(session, now - policy.audit),
        "people": 0,
    }
    gone = await inactive_people(
        session, now - policy.members, now, keep=policy.keep, rooms=policy.rooms
    )
    for user in gone:
        await erasure.erase_person(
            session,
            user,
            alias=erasure.pseudonym(key, user),
            now=now,
            claims_retention=policy.claims,
            reason="retention",
            managed_rooms=policy.rooms,
        )
        counts["people"] += 1
    row = await session.get(RetentionRun, day)
    assert row is not None
    row.counts = counts
    if any(counts.values()):
        detail = ", ".join(f"{name} {count}" for name, count in counts.items() if count)
        session.add(AuditEntry(actor=actor, action="privacy.retention", detail=detail, at=now))
    await session.flush()
    return counts
