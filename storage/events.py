"""Events, RSVPs with waiting lists, guests, attendance, reminders and calendar tokens.

Functions other families rely on (travel claims): :func:`get_event`, :func:`rsvp_of` and
:func:`attended`.

Capacity is enforced under a lock on the event's row: every change of answers goes through
:func:`lock_event` first (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite every
transaction already starts with ``BEGIN IMMEDIATE`` and so runs alone), so concurrent
answers are handled one after the other and never over-fill an event.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    delete,
    func,
    insert,
    inspect,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import (
    Mapped,
    make_transient_to_detached,
    mapped_column,
)
from sqlalchemy.orm.attributes import set_committed_value

from config.events import EVENT_KINDS, IN_PERSON_KINDS
from storage.db import dialect_of
from storage.models import Base, BigId, Person
from storage.prepared import Prepared
from storage.repo import held, held_loaded, lock_row, locked_row, run_prepared

KINDS = EVENT_KINDS

SCHEDULED = "scheduled"
CANCELLED = "cancelled"

YES = "yes"
NO = "no"
MAYBE = "maybe"
WAITING = "waiting"
ANSWERS = (YES, NO, MAYBE, WAITING)


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_cop_start", "cop_code", "starts_at"),
        Index("ix_events_cop_end", "cop_code", "ends_at"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    cop_code: Mapped[str] = mapped_column(ForeignKey("cops.code"))
    kind: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(300))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    timezone: Mapped[str] = mapped_column(String(64))
    """The IANA zone the times were given in; times are stored in UTC."""
    location: Mapped[str] = mapped_column(Text, default="")
    url: Mapped[str] = mapped_column(Text, default="")
    capacity: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=SCHEDULED)
    cancel_reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    """Bumped on every change; calendar apps use it to replace their copy."""

    @property
    def code(self) -> str:
        return f"E{self.id}"

    @property
    def tag(self) -> str:
        """Outbox tag of the event's announcement in its CoP room."""
        return f"event:{self.id}"

    @property
    def cancelled(self) -> bool:
        return self.status == CANCELLED

    @property
    def in_person(self) -> bool:
        return self.kind in IN_PERSON_KINDS


class Rsvp(Base):
    __tablename__ = "event_rsvps"
    __table_args__ = (UniqueConstraint("event_id", "user_id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"), index=True)
    user_id: Mapped[str] = mapped_column(String(255), index=True)
    answer: Mapped[str] = mapped_column(String(16))
    """yes | no | maybe | waiting (said yes while the event was full)."""
    queue_no: Mapped[int] = mapped_column(Integer, default=0)
    """Order of arrival of the yes answer; the waiting list is sorted by it. A new yes (or
    wait) takes one more than the highest of the event's answers, read under the event's
    lock, so it comes after every answer already there."""
    answered_at: Mapped[datetime] = mapped_column()
    reaction_event_id: Mapped[str | None] = mapped_column(String(255), index=True)
    """The reaction that gave this answer; removing that reaction withdraws the answer."""


class EventGuest(Base):
    """A market actor invited to one event: may see it and answer, nothing else."""

    __tablename__ = "event_guests"
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True, index=True)
    invited_by: Mapped[str] = mapped_column(String(255))
    invited_at: Mapped[datetime] = mapped_column()


class Attendance(Base):
    """Who was there, as marked by a moderator; travel claims rely on it."""

    __tablename__ = "event_attendance"
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True, index=True)
    marked_by: Mapped[str] = mapped_column(String(255))
    marked_at: Mapped[datetime] = mapped_column()


class Reminder(Base):
    """One reminder of one event; ``status`` goes from pending to sent, dropped (the event
    had started), superseded (a later reminder was due too) or cancelled, once."""

    __tablename__ = "event_reminders"
    __table_args__ = (
        UniqueConstraint("event_id", "offset_minutes"),
        Index("ix_event_reminders_due", "status", "due_at"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"))
    offset_minutes: Mapped[int] = mapped_column(Integer)
    due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="pending")
    handled_at: Mapped[datetime | None]


class CalendarToken(Base):
    """The secret in a person's calendar feed URL."""

    __tablename__ = "calendar_tokens"
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column()


# --- events ----------------------------------------------------------------------------------


async def create_event(
    session: AsyncSession,
    *,
    cop_code: str,
    kind: str,
    title: str,
    starts_at: datetime,
    ends_at: datetime,
    timezone: str,
    created_by: str,
    location: str = "",
    url: str = "",
    capacity: int | None = None,
    now: datetime,
) -> Event:
    event = Event(
        cop_code=cop_code,
        kind=kind,
        title=title,
        starts_at=starts_at,
        ends_at=ends_at,
        timezone=timezone,
        location=location,
        url=url,
        capacity=capacity,
        created_by=created_by,
        status=SCHEDULED,
        cancel_reason="",
        sequence=0,
        created_at=now,
        updated_at=now,
    )
    session.add(event)
    await session.flush()
    return event


_EVENT_FIELDS = tuple(prop.key for prop in inspect(Event).column_attrs)
_EVENT_CLASS = inspect(Event).class_manager
_EVENT_ROW = select(*(getattr(Event, key) for key in _EVENT_FIELDS)).where(
    Event.id == bindparam("event_id")
)
_EVENT = Prepared(_EVENT_ROW)
_EVENT_LOCKED = Prepared(_EVENT_ROW.with_for_update())


def _as_loaded(session: AsyncSession, row: tuple[Any, ...], loaded: Event | None) -> Event:
    """The event as ``row`` (its ``_EVENT_FIELDS``) has it: ``loaded`` (the session's own)
    set to it, or a new object handed to the session as loaded. Either way nothing is left
    to write."""
    if loaded is not None:
        for key, value in zip(_EVENT_FIELDS, row, strict=True):
            set_committed_value(loaded, key, value)
        return loaded
    # As the ORM's own loading makes an object of a row: a new instance without __init__,
    # its values put straight into its dict, then marked loaded (a third of the cost of
    # setting each value as committed).
    event = _EVENT_CLASS.new_instance()
    event.__dict__.update(zip(_EVENT_FIELDS, row, strict=True))
    make_transient_to_detached(event)
    session.add(event)
    return event


async def get_event(session: AsyncSession, event_id: int) -> Event | None:
    """The event with this number (``E12`` -> 12), or None.

    As ``session.get`` does, but an event the session does not hold yet is read with a
    prepared statement and put into the session as loaded: every event command reads its
    event first, and the ORM's load of one row cost about a tenth of an ``!rsvp``. Changes
    to it are written as to any loaded object.
    """
    if held(session, Event, event_id) is not None:
        # (read again if expired)
        return held_loaded(session, Event, event_id) or await session.get(Event, event_id)
    row = (await run_prepared(session, _EVENT, {"event_id": event_id})).first()
    return None if row is None else _as_loaded(session, row, None)


async def lock_event(session: AsyncSession, event_id: int) -> Event | None:
    """Load the event and lock its row until the transaction ends.

    Every change of answers for an event happens under this lock, so capacity checks and
    the waiting list see every other change that committed before.
    """
    if dialect_of(session) == "sqlite":
        # SQLite has no row locks: the transaction's write lock (BEGIN IMMEDIATE) keeps
        # every other writer out already, so an event loaded in it is current.
        return await get_event(session, event_id)
    current = locked_row(session, Event, event_id)
    if current is not None:
        # Locked before in this transaction (the command's scope did, say, or a command
        # before it in the same group): no other transaction can have changed the row
        # since, so the session's object is current.
        return current
    loaded = held(session, Event, event_id)
    if loaded is not None and session.is_modified(loaded):
        # Changes not written yet: the ORM writes them first, then reads the row again.
        event = await session.scalar(
            select(Event)
            .where(Event.id == event_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    else:
        # The row as it is now that it is locked (another transaction may have changed it
        # since the session read it): the session's own object is set to it.
        row = (await run_prepared(session, _EVENT_LOCKED, {"event_id": event_id})).first()
        event = None if row is None else _as_loaded(session, row, loaded)
    if event is not None:
        lock_row(session, event)
    return event


async def touch_event(session: AsyncSession, event: Event, now: datetime) -> None:
    """Record that the event changed (for calendar apps) and write the change."""
    event.sequence = (event.sequence or 0) + 1
    event.updated_at = now
    await session.flush()


async def cancel_event(session: AsyncSession, event: Event, reason: str, now: datetime) -> None:
    event.status = CANCELLED
    event.cancel_reason = reason
    await touch_event(session, event, now)
    await cancel_reminders(session, event.id, now)


async def list_events(
    session: AsyncSession,
    *,
    cops: Iterable[str] | None,
    extra_ids: Iterable[int] = (),
    ends_after: datetime | None = None,
    include_cancelled: bool = False,
    limit: int | None = None,
) -> list[Event]:
    """Events of the given CoPs (None: every CoP) plus ``extra_ids`` (guest invitations),
    soonest first."""
    query = select(Event).order_by(Event.starts_at, Event.id)
    ids = list(extra_ids)
    if cops is not None:
        codes = list(cops)
        if ids:
            query = query.where(Event.cop_code.in_(codes) | Event.id.in_(ids))
        else:
            query = query.where(Event.cop_code.in_(codes))
    if ends_after is not None:
        query = query.where(Event.ends_at > ends_after)
    if not include_cancelled:
        query = query.where(Event.status != CANCELLED)
    if limit is not None:
        query = query.limit(limit)
    return list((await session.scalars(query)).all())


# --- answers ---------------------------------------------------------------------------------


@dataclass
class RsvpOutcome:
    """What an answer did."""

    answer: str | None
    """The answer now stored (``waiting`` when a yes did not find a seat), None if withdrawn."""
    previous: str | None
    position: int | None = None
    """Place on the waiting list (1 = next to get a seat)."""
    promoted: list[str] = field(default_factory=list)
    """People who got a seat because of this change (tell them)."""

    @property
    def changed(self) -> bool:
        return self.answer != self.previous


async def rsvp_of(session: AsyncSession, event_id: int, user_id: str) -> str | None:
    """The person's answer: ``yes``, ``no``, ``maybe``, ``waiting`` or None."""
    return await session.scalar(
        select(Rsvp.answer).where(Rsvp.event_id == event_id, Rsvp.user_id == user_id)
    )


# The statements of an answer, prepared once (see storage.prepared): an ``!rsvp`` runs three
# to five of them. Loading and flushing the same rows through the ORM made the whole command
# cost 1.7 times the CPU (bench/dispatch.py, SQLite). They change rows behind the session's
# back, so each change of an answer is followed by _forget.
_MINE = Rsvp.user_id == bindparam("user_id")
_ANSWER_AND_TALLY = Prepared(
    # The person's answer (at most one row is theirs: the aggregates are its values, NULL
    # when there is none), the yes and waiting counts and the highest queue number, in one
    # pass over the answers.
    select(
        func.max(Rsvp.id).filter(_MINE),
        func.max(Rsvp.answer).filter(_MINE),
        func.max(Rsvp.reaction_event_id).filter(_MINE),
        func.count().filter(Rsvp.answer == YES),
        func.count().filter(Rsvp.answer == WAITING),
        func.max(Rsvp.queue_no),
    ).where(Rsvp.event_id == bindparam("event_id"))
)
_WAITING = Prepared(
    select(Rsvp.id, Rsvp.user_id)
    .where(Rsvp.event_id == bindparam("event_id"), Rsvp.answer == WAITING)
    .order_by(Rsvp.queue_no, Rsvp.id)
)
_ADD_ANSWER = Prepared(insert(Rsvp))
_CHANGE_ANSWER = Prepared(
    update(Rsvp)
    .where(Rsvp.id == bindparam("rsvp_id"))
    .values(
        answer=bindparam("new_answer"),
        answered_at=bindparam("at"),
        reaction_event_id=bindparam("reaction"),
        # A new place in the queue for a yes or a wait, the old one kept otherwise.
        queue_no=func.coalesce(bindparam("queue", type_=Integer), Rsvp.queue_no),
    )
)
_SET_REACTION = Prepared(
    update(Rsvp)
    .where(Rsvp.id == bindparam("rsvp_id"))
    .values(reaction_event_id=bindparam("reaction"))
)
_PROMOTE_FIRST = Prepared(
    # The first ``free`` people on the waiting list get a seat, in one statement (the order
    # of RETURNING is not the queue's: the caller sorts).
    update(Rsvp)
    .where(
        Rsvp.id.in_(
            select(Rsvp.id)
            .where(Rsvp.event_id == bindparam("event_id"), Rsvp.answer == WAITING)
            .order_by(Rsvp.queue_no, Rsvp.id)
            .limit(bindparam("free", type_=Integer))
            .scalar_subquery()
        )
    )
    .values(answer=YES, answered_at=bindparam("at"))
    .returning(Rsvp.queue_no, Rsvp.id, Rsvp.user_id)
)
_DROP_ANSWER = Prepared(delete(Rsvp).where(Rsvp.id == bindparam("rsvp_id")))


def _forget(session: AsyncSession, rsvp_id: int, *, gone: bool = False) -> None:
    """An answer was changed by a statement of its own: if this session loaded it before,
    it is read again when next used (or dropped from the session when the row is gone)."""
    loaded = held(session, Rsvp, rsvp_id)
    if loaded is None:
        return
    if gone:
        session.expunge(loaded)
    else:
        session.expire(loaded)


async def waiting_list(session: AsyncSession, event_id: int) -> list[str]:
    """Who waits for a seat, next in line first."""
    rows = await run_prepared(session, _WAITING, {"event_id": event_id})
    return [user_id for _, user_id in rows]


async def waiting_position(session: AsyncSession, event_id: int, user_id: str) -> int | None:
    for index, person in enumerate(await waiting_list(session, event_id), start=1):
        if person == user_id:
            return index
    return None


_TALLY = Prepared(
    select(
        func.count().filter(Rsvp.answer == YES),
        func.count().filter(Rsvp.answer == WAITING),
    ).where(Rsvp.event_id == bindparam("event_id"))
)


async def _tally(session: AsyncSession, event_id: int) -> dict[str, int]:
    """How many answered yes and how many wait, in one query (every answer counts)."""
    row = (await run_prepared(session, _TALLY, {"event_id": event_id})).first()
    assert row is not None  # an aggregate without GROUP BY always gives one row
    return {YES: int(row[0] or 0), WAITING: int(row[1] or 0)}


async def fill_free_seats(
    session: AsyncSession, event: Event, now: datetime, tally: dict[str, int] | None = None
) -> list[str]:
    """Give free seats to the first people on the waiting list; returns who got one.

    The caller must hold the event's lock (:func:`lock_event`). ``tally`` (yes and waiting
    counts as they stand now) spares the counting when the caller knows them.
    """
    promoted: list[str] = []
    if tally is None:
        tally = await _tally(session, event.id)
    if not tally[WAITING]:
        return promoted
    free = tally[WAITING] if event.capacity is None else event.capacity - tally[YES]
    if free <= 0:
        return promoted
    values = {"event_id": event.id, "free": free, "at": now}
    for _, rsvp_id, person in sorted((await run_prepared(session, _PROMOTE_FIRST, values)).rows):
        _forget(session, rsvp_id)
        promoted.append(person)
    return promoted


async def set_rsvp(
    session: AsyncSession,
    event: Event,
    user_id: str,
    answer: str | None,
    now: datetime,
    *,
    reaction_event_id: str | None = None,
) -> RsvpOutcome:
    """Store a person's answer (``yes``/``no``/``maybe``; None withdraws it).

    ``event`` must have been loaded with :func:`lock_event` in this transaction. A yes beyond
    the capacity goes on the waiting list; a freed seat goes to the first one waiting.
    Saying yes again while waiting keeps one's place.
    """
    if answer not in (YES, NO, MAYBE, None):
        raise ValueError(f"unknown answer {answer!r}")
    found = (
        await run_prepared(session, _ANSWER_AND_TALLY, {"event_id": event.id, "user_id": user_id})
    ).first()
    assert found is not None  # an aggregate without GROUP BY always gives one row
    rsvp_id, previous, reaction, yes, waiting, last_queue_no = found
    outcome = RsvpOutcome(answer=previous, previous=previous)
    # The counts before this change; kept up to date below instead of counting again.
    tally = {YES: int(yes or 0), WAITING: int(waiting or 0)}
    joined_queue = False

    if answer is None:
        if rsvp_id is not None:
            await run_prepared(session, _DROP_ANSWER, {"rsvp_id": rsvp_id})
            _forget(session, rsvp_id, gone=True)
        outcome.answer = None
    elif answer == YES and previous in (YES, WAITING):
        # The same yes again keeps the seat or the place; only where it came from changes.
        if reaction != reaction_event_id:
            await run_prepared(
                session, _SET_REACTION, {"rsvp_id": rsvp_id, "reaction": reaction_event_id}
            )
            _forget(session, rsvp_id)
    else:
        stored = answer
        if answer == YES and event.capacity is not None:
            if tally[YES] >= event.capacity or tally[WAITING] > 0:
                stored = WAITING
        queue_no: int | None = None
        if stored in (YES, WAITING):
            # Behind every answer there is (the event's lock keeps it so until the commit).
            queue_no = int(last_queue_no or 0) + 1
            joined_queue = stored == WAITING
        if rsvp_id is None:
            values = {
                "event_id": event.id,
                "user_id": user_id,
                "answer": stored,
                "queue_no": queue_no or 0,
                "answered_at": now,
                "reaction_event_id": reaction_event_id,
            }
            await run_prepared(session, _ADD_ANSWER, values)
        else:
            values = {
                "rsvp_id": rsvp_id,
                "new_answer": stored,
                "at": now,
                "reaction": reaction_event_id,
                "queue": queue_no,
            }
            await run_prepared(session, _CHANGE_ANSWER, values)
            _forget(session, rsvp_id)
        outcome.answer = stored
    if previous in tally and outcome.answer != previous:
        tally[previous] -= 1
    if outcome.answer in tally and outcome.answer != previous:
        tally[outcome.answer] += 1

    promoted = await fill_free_seats(session, event, now, tally)
    if user_id in promoted:
        promoted.remove(user_id)
        outcome.answer = YES
    outcome.promoted = promoted
    if outcome.answer == WAITING:
        if joined_queue:
            # Last in line (the newest queue number), behind those still waiting.
            outcome.position = tally[WAITING] - len(promoted)
        else:
            outcome.position = await waiting_position(session, event.id, user_id)
    return outcome


async def rsvp_by_reaction(session: AsyncSession, reaction_event_id: str) -> Rsvp | None:
    """The answer that the reaction with this event id gave (and still stands)."""
    return await session.scalar(select(Rsvp).where(Rsvp.reaction_event_id == reaction_event_id))


async def rsvps_of_event(session: AsyncSession, event_id: int) -> list[Rsvp]:
    rows = await session.scalars(
        select(Rsvp).where(Rsvp.event_id == event_id).order_by(Rsvp.queue_no, Rsvp.id)
    )
    return list(rows.all())


async def rsvps_of_events(session: AsyncSession, event_ids: Sequence[int]) -> list[Rsvp]:
    if not event_ids:
        return []
    rows = await session.scalars(
        select(Rsvp).where(Rsvp.event_id.in_(list(event_ids))).order_by(Rsvp.event_id, Rsvp.id)
    )
    return list(rows.all())


async def people_with_answers(
    session: AsyncSession, event_id: int, answers: Iterable[str]
) -> list[str]:
    rows = await session.scalars(
        select(Rsvp.user_id)
        .where(Rsvp.event_id == event_id, Rsvp.answer.in_(list(answers)))
        .order_by(Rsvp.queue_no, Rsvp.id)
    )
    return list(rows.all())


@dataclass(frozen=True)
class FreedSeat:
    """A person's answer withdrawn from an event that has not started: who got a seat."""

    event: Event
    promoted: list[str]
    previous: str | None = None
    """The answer withdrawn (``yes``, ``waiting``, ``maybe``, ``no``)."""


async def free_seats(
    session: AsyncSession, user_id: str, now: datetime, *, cops: Iterable[str] | None = None
) -> list[FreedSeat]:
    """Withdraw the person's answers (yes, maybe, no or a waiting-list place) to every event
    of ``cops`` (None: every CoP) that has not started and is not cancelled; each freed seat
    goes to the next person waiting, as when they withdraw themselves. Answers to events
    that have started are left alone (they are history, and claims rely on them).

    Returns one entry per event, with the people who got a seat (the caller tells them).
    Events are locked in id order, so two callers never wait for each other in a circle.
    """
    query = (
        select(Rsvp.event_id)
        .join(Event, Event.id == Rsvp.event_id)
        .where(Rsvp.user_id == user_id, Event.starts_at > now, Event.status != CANCELLED)
    )
    if cops is not None:
        query = query.where(Event.cop_code.in_(list(cops)))
    freed: list[FreedSeat] = []
    for event_id in sorted(set((await session.scalars(query)).all())):
        event = await lock_event(session, event_id)
        if event is None:  # pragma: no cover - events are never deleted
            continue
        outcome = await set_rsvp(session, event, user_id, None, now)
        freed.append(FreedSeat(event, outcome.promoted, outcome.previous))
    return freed


@dataclass
class Counts:
    yes: int = 0
    no: int = 0
    maybe: int = 0
    waiting: int = 0


async def rsvp_counts(session: AsyncSession, event_ids: Sequence[int]) -> dict[int, Counts]:
    out = {event_id: Counts() for event_id in event_ids}
    if not event_ids:
        return out
    rows = await session.execute(
        select(Rsvp.event_id, Rsvp.answer, func.count())
        .where(Rsvp.event_id.in_(list(event_ids)))
        .group_by(Rsvp.event_id, Rsvp.answer)
    )
    for event_id, answer, count in rows:
        if answer in ANSWERS:
            setattr(out[event_id], answer, int(count))
    return out


async def answers_of(
    session: AsyncSession, user_id: str, event_ids: Sequence[int]
) -> dict[int, str]:
    if not event_ids:
        return {}
    rows = await session.execute(
        select(Rsvp.event_id, Rsvp.answer).where(
            Rsvp.user_id == user_id, Rsvp.event_id.in_(list(event_ids))
        )
    )
    return {event_id: answer for event_id, answer in rows}


# --- guests ------------------------------------------------------------------------------------


async def add_guest(
    session: AsyncSession, event_id: int, user_id: str, invited_by: str, now: datetime
) -> bool:
    """Invite a guest to an event; False when they were invited already."""
    if await session.get(EventGuest, (event_id, user_id)) is not None:
        return False
    session.add(
        EventGuest(event_id=event_id, user_id=user_id, invited_by=invited_by, invited_at=now)
    )
    await session.flush()
    return True


async def is_guest(session: AsyncSession, event_id: int, user_id: str) -> bool:
    return await session.get(EventGuest, (event_id, user_id)) is not None


async def guest_event_ids(session: AsyncSession, user_id: str) -> set[int]:
    rows = await session.scalars(select(EventGuest.event_id).where(EventGuest.user_id == user_id))
    return set(rows.all())


async def guest_event_ids_of(session: AsyncSession, users: Sequence[str]) -> dict[str, set[int]]:
    """:func:`guest_event_ids` for each of ``users``, in one query."""
    found: dict[str, set[int]] = {user: set() for user in users}
    if found:
        rows = await session.execute(
            select(EventGuest.user_id, EventGuest.event_id).where(EventGuest.user_id.in_(found))
        )
        for user, event_id in rows.all():
            found[user].add(event_id)
    return found


async def guests_of(session: AsyncSession, event_id: int) -> list[str]:
    rows = await session.scalars(
        select(EventGuest.user_id)
        .where(EventGuest.event_id == event_id)
        .order_by(EventGuest.invited_at)
    )
    return list(rows.all())


# --- attendance --------------------------------------------------------------------------------


async def attended(session: AsyncSession, event_id: int, user_id: str) -> bool:
    """Did a moderator mark this person as having attended the event?"""
    return await session.get(Attendance, (event_id, user_id)) is not None


async def mark_attended(
    session: AsyncSession, event_id: int, user_id: str, marked_by: str, now: datetime
) -> bool:
    """Record attendance; False when it was recorded already."""
    if await attended(session, event_id, user_id):
        return False
    session.add(Attendance(event_id=event_id, user_id=user_id, marked_by=marked_by, marked_at=now))
    await session.flush()
    return True


async def attendees_marked(session: AsyncSession, event_id: int) -> list[str]:
    rows = await session.scalars(
        select(Attendance.user_id)
        .where(Attendance.event_id == event_id)
        .order_by(Attendance.user_id)
    )
    return list(rows.all())


async def attendance_counts(session: AsyncSession, event_ids: Sequence[int]) -> dict[int, int]:
    if not event_ids:
        return {}
    rows = await session.execute(
        select(Attendance.event_id, func.count())
        .where(Attendance.event_id.in_(list(event_ids)))
        .group_by(Attendance.event_id)
    )
    return {event_id: int(count) for event_id, count in rows}


async def attended_set(session: AsyncSession, event_ids: Sequence[int]) -> set[tuple[int, str]]:
    if not event_ids:
        return set()
    rows = await session.execute(
        select(Attendance.event_id, Attendance.user_id).where(
            Attendance.event_id.in_(list(event_ids))
        )
    )
    return {(event_id, user) for event_id, user in rows}


async def profiles(session: AsyncSession, user_ids: Iterable[str]) -> dict[str, Person]:
    """Profiles (organisation, country) of these people, where known."""
    ids = list(set(user_ids))
    if not ids:
        return {}
    rows = await session.scalars(select(Person).where(Person.user_id.in_(ids)))
    return {person.user_id: person for person in rows.all()}


# --- reminders -------------------------------------------------------------------------------


async def plan_reminders(
    session: AsyncSession, event: Event, offsets: Sequence[timedelta], now: datetime
) -> list[Reminder]:
    """Make the event's reminders match its start time; returns the ones now pending.

    A reminder whose time has already passed is not created (a person who answers an event
    that starts in 30 minutes needs no "starts in 24 hours"). A reminder already sent stays
    sent unless the start moved so that it is due again in the future: then it is pending
    again, for the new time. Reminders of offsets no longer configured are left alone.
    """
    existing = {
        row.offset_minutes: row
        for row in (
            await session.scalars(select(Reminder).where(Reminder.event_id == event.id))
        ).all()
    }
    pending: list[Reminder] = []
    for offset in offsets:
        minutes = int(offset.total_seconds() // 60)
        due = event.starts_at - timedelta(minutes=minutes)
        row = existing.get(minutes)
        if row is None:
            if due <= now:
                continue
            row = Reminder(
                event_id=event.id,
                offset_minutes=minutes,
                due_at=due,
                status="pending",
            )
            session.add(row)
        elif due > now:
            row.due_at = due
            row.status = "pending"
            row.handled_at = None
        elif row.status == "pending":
            row.due_at = due  # due already: sent at once (or dropped if the event started)
        else:
            continue
        pending.append(row)
    await session.flush()
    return pending


async def cancel_reminders(session: AsyncSession, event_id: int, now: datetime) -> None:
    await session.execute(
        update(Reminder)
        .where(Reminder.event_id == event_id, Reminder.status == "pending")
        .values(status="cancelled", handled_at=now)
    )


async def pending_reminders(session: AsyncSession) -> list[Reminder]:
    rows = await session.scalars(
        select(Reminder).where(Reminder.status == "pending").order_by(Reminder.due_at)
    )
    return list(rows.all())


async def due_reminders(session: AsyncSession, now: datetime) -> list[Reminder]:
    rows = await session.scalars(
        select(Reminder)
        .where(Reminder.status == "pending", Reminder.due_at <= now)
        .order_by(Reminder.due_at, Reminder.id)
    )
    return list(rows.all())


async def closer_reminder_due(session: AsyncSession, reminder: Reminder, now: datetime) -> bool:
    """Is a reminder of the same event that is closer to its start also due (and pending)?"""
    found = await session.scalar(
        select(Reminder.id)
        .where(
            Reminder.event_id == reminder.event_id,
            Reminder.status == "pending",
            Reminder.offset_minutes < reminder.offset_minutes,
            Reminder.due_at <= now,
        )
        .limit(1)
    )
    return found is not None


async def get_reminder(session: AsyncSession, reminder_id: int) -> Reminder | None:
    return await session.scalar(
        select(Reminder).where(Reminder.id == reminder_id).execution_options(populate_existing=True)
    )


async def claim_reminder(
    session: AsyncSession, reminder_id: int, status: str, now: datetime
) -> bool:
    """Move a due, pending reminder to ``status`` inside the caller's transaction.

    False when it is not pending (another job or process handled it) or not due yet. The
    caller queues the reminder's messages in the same transaction, so it is sent at most
    once; on PostgreSQL a concurrent claim waits for the row and then finds it handled.
    """
    result = await session.execute(
        update(Reminder)
        .where(
            Reminder.id == reminder_id,
            Reminder.status == "pending",
            Reminder.due_at <= now,
        )
        .values(status=status, handled_at=now)
    )
    return bool(getattr(result, "rowcount", 0))


# --- calendar tokens -----------------------------------------------------------------------------


def _new_token() -> str:
    return secrets.token_urlsafe(24)


async def calendar_token(session: AsyncSession, user_id: str, now: datetime) -> str:
    """The person's feed token, made on first use."""
    row = await session.get(CalendarToken, user_id)
    if row is None:
        row = CalendarToken(user_id=user_id, token=_new_token(), created_at=now)
        session.add(row)
        await session.flush()
    return row.token


async def reset_calendar_token(session: AsyncSession, user_id: str, now: datetime) -> str:
    """A new token; the old feed URL stops working."""
    await session.execute(delete(CalendarToken).where(CalendarToken.user_id == user_id))
    row = CalendarToken(user_id=user_id, token=_new_token(), created_at=now)
    session.add(row)
    await session.flush()
    return row.token


async def user_of_calendar_token(session: AsyncSession, token: str) -> str | None:
    return await session.scalar(select(CalendarToken.user_id).where(CalendarToken.token == token))


# --- for the weekly digest (commands.digest) -----------------------------------------------------


@dataclass(frozen=True)
class EventSummary:
    """What the digest shows of one event: no names of people."""

    id: int
    title: str
    kind: str
    starts_at: datetime
    ends_at: datetime
    timezone: str
    yes: int = 0
    maybe: int = 0
    waiting: int = 0
    capacity: int | None = None
    where: str = ""
    claim_deadline: datetime | None = None


def _summary(event: Event, counts: Counts, deadline: datetime | None = None) -> EventSummary:
    return EventSummary(
        id=event.id,
        title=event.title,
        kind=event.kind,
        starts_at=event.starts_at,
        ends_at=event.ends_at,
        timezone=event.timezone,
        yes=counts.yes,
        maybe=counts.maybe,
        waiting=counts.waiting,
        capacity=event.capacity,
        where=event.location,
        claim_deadline=deadline,
    )


async def digest_upcoming_events(
    session: AsyncSession,
    cop_code: str,
    start: datetime,
    end: datetime,
    *,
    limit: int | None = None,
) -> list[EventSummary]:
    """Events of the CoP starting in ``[start, end)`` (not cancelled), soonest first, with
    answer counts; at most ``limit`` of them (the digest asks for one more than it shows)."""
    query = (
        select(Event)
        .where(
            Event.cop_code == cop_code,
            Event.status != CANCELLED,
            Event.starts_at >= start,
            Event.starts_at < end,
        )
        .order_by(Event.starts_at, Event.id)
    )
    if limit is not None:
        query = query.limit(limit)
    events = list((await session.scalars(query)).all())
    counts = await rsvp_counts(session, [event.id for event in events])
    return [_summary(event, counts[event.id]) for event in events]


def last_day(event: Event) -> date:
    """The last calendar day of the event in its own time zone (an end at midnight belongs
    to the day before)."""
    zone = ZoneInfo(event.timezone)
    last_moment = max(event.ends_at - timedelta(microseconds=1), event.starts_at)
    return last_moment.astimezone(zone).date()


def claim_deadline_day(last: date, deadline_days: int) -> date:
    """The last calendar day on which a travel claim may be made and submitted:
    ``deadline_days`` calendar days after the event's last day."""
    return last + timedelta(days=deadline_days)


def claim_deadline_at(last: date, zone: ZoneInfo, deadline_days: int) -> datetime:
    """The last moment (UTC) to submit a travel claim: the end of :func:`claim_deadline_day`
    in the event's time zone ``zone``. The one deadline of claims and digests."""
    day_after = claim_deadline_day(last, deadline_days) + timedelta(days=1)
    midnight = datetime.combine(day_after, time(0), tzinfo=zone)
    return midnight.astimezone(UTC) - timedelta(microseconds=1)


def claim_deadline(event: Event, deadline_days: int = 30) -> datetime:
    """:func:`claim_deadline_at` for an event."""
    return claim_deadline_at(last_day(event), ZoneInfo(event.timezone), deadline_days)


DEADLINE_MARGIN = timedelta(days=2)
"""How far a claim deadline can be from ``ends_at + deadline_days``: up to one day for the
rest of the last day, plus time-zone and daylight-saving shifts, with room to spare."""


async def digest_claim_deadlines(
    session: AsyncSession,
    cop_code: str,
    start: datetime,
    end: datetime,
    *,
    deadline_days: int = 30,
    kinds: Iterable[str] = IN_PERSON_KINDS,
    limit: int | None = None,
) -> list[EventSummary]:
    """Events of the CoP of one of ``kinds`` (by default the in-person ones) whose
    travel-claim deadline (:func:`claim_deadline` with ``deadline_days``) falls in
    ``[start, end)``, by end time; at most ``limit`` of them.

    Only events ending in ``[start - deadline_days - 2 days, end - deadline_days + 2 days)``
    can have such a deadline; those are read in pages of the end-time index and the
    deadline is checked exactly here, until ``limit`` are found.
    """
    days = timedelta(days=deadline_days)
    base = select(Event).where(
        Event.cop_code == cop_code,
        Event.status != CANCELLED,
        Event.kind.in_(sorted(set(kinds))),
        Event.ends_at >= start - days - DEADLINE_MARGIN,
        Event.ends_at < end - days + DEADLINE_MARGIN,
    )
    page_size = None if limit is None else max(2 * limit, 20)
    due: list[tuple[Event, datetime]] = []
    after: tuple[datetime, int] | None = None
    while limit is None or len(due) < limit:
        query = base
        if after is not None:
            query = query.where(
                or_(
                    Event.ends_at > after[0],
                    and_(Event.ends_at == after[0], Event.id > after[1]),
                )
            )
        query = query.order_by(Event.ends_at, Event.id)
        if page_size is not None:
            query = query.limit(page_size)
        page = list((await session.scalars(query)).all())
        for event in page:
            deadline = claim_deadline(event, deadline_days)
            if start <= deadline < end:
                due.append((event, deadline))
        if page_size is None or len(page) < page_size:
            break
        after = (page[-1].ends_at, page[-1].id)
    if limit is not None:
        due = due[:limit]
    counts = await rsvp_counts(session, [event.id for event, _ in due])
    return [_summary(event, counts[event.id], deadline) for event, deadline in due]
