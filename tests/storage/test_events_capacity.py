"""Seats and waiting lists: concurrent answers never over-fill an event, on SQLite and on
PostgreSQL, and a freed seat goes to the first person waiting."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from storage import Database, repo
from storage import events as store
from storage.events import MAYBE, NO, WAITING, YES
from tests.support.database import migrate

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def make_event(db: Database, capacity: int | None) -> int:
    async with db.session() as s:
        await repo.sync_cops(s, [("HDEV", "Heavy-duty EVs")], now=NOW)
        event = await store.create_event(
            s,
            cop_code="HDEV",
            kind="in-person-meeting",
            title="Bus depot visit",
            starts_at=NOW + timedelta(days=7),
            ends_at=NOW + timedelta(days=7, hours=2),
            timezone="Europe/Brussels",
            created_by="@mod:test",
            capacity=capacity,
            now=NOW,
        )
        return event.id


async def answer(db: Database, event_id: int, user: str, value: str | None) -> store.RsvpOutcome:
    """One answer in its own transaction, under the event's lock, as a command does it."""
    async with db.session() as s:
        event = await store.lock_event(s, event_id)
        assert event is not None
        return await store.set_rsvp(s, event, user, value, NOW)


async def answers(db: Database, event_id: int) -> tuple[list[str], list[str]]:
    async with db.session() as s:
        rows = await store.rsvps_of_event(s, event_id)
        waiting = await store.waiting_list(s, event_id)
    return [r.user_id for r in rows if r.answer == YES], waiting


async def raise_capacity(db: Database, event_id: int, capacity: int) -> list[str]:
    """More seats, given to those waiting, as a moderator's edit does: who got one."""
    async with db.session() as s:
        event = await store.lock_event(s, event_id)
        assert event is not None
        event.capacity = capacity
        return await store.fill_free_seats(s, event, NOW)


async def test_thirty_members_saying_yes_at_once_to_ten_seats_fill_exactly_ten(
    db: Database,
) -> None:
    event_id = await make_event(db, capacity=10)
    people = [f"@member{n:02d}:test" for n in range(30)]

    outcomes = await asyncio.gather(*(answer(db, event_id, user, YES) for user in people))

    going, waiting = await answers(db, event_id)
    assert len(going) == 10
    assert len(waiting) == 20
    assert set(going) | set(waiting) == set(people)
    # Everyone was told the truth: ten seats, and waiting places 1..20 without gaps.
    assert sorted(o.answer for o in outcomes).count(YES) == 10
    positions = sorted(o.position for o in outcomes if o.answer == WAITING)
    assert positions == list(range(1, 21))
    # The waiting list is in the order the answers were handled.
    by_position = {o.position: user for o, user in zip(outcomes, people, strict=True) if o.position}
    assert waiting == [by_position[n] for n in range(1, 21)]
    async with db.session() as s:
        counts = (await store.rsvp_counts(s, [event_id]))[event_id]
    assert (counts.yes, counts.waiting) == (10, 20)


async def test_a_cancellation_gives_the_seat_to_the_first_person_waiting(db: Database) -> None:
    event_id = await make_event(db, capacity=2)
    for user in ("@a:test", "@b:test", "@c:test", "@d:test"):
        await answer(db, event_id, user, YES)

    outcome = await answer(db, event_id, "@a:test", NO)

    assert outcome.answer == NO and outcome.previous == YES
    assert outcome.promoted == ["@c:test"]
    going, waiting = await answers(db, event_id)
    assert sorted(going) == ["@b:test", "@c:test"]
    assert waiting == ["@d:test"]


async def test_withdrawing_or_saying_maybe_also_frees_the_seat(db: Database) -> None:
    event_id = await make_event(db, capacity=1)
    await answer(db, event_id, "@a:test", YES)
    await answer(db, event_id, "@b:test", YES)
    await answer(db, event_id, "@c:test", YES)

    assert (await answer(db, event_id, "@a:test", MAYBE)).promoted == ["@b:test"]
    assert (await answer(db, event_id, "@b:test", None)).promoted == ["@c:test"]
    async with db.session() as s:
        assert await store.rsvp_of(s, event_id, "@a:test") == MAYBE
        assert await store.rsvp_of(s, event_id, "@b:test") is None
        assert await store.rsvp_of(s, event_id, "@c:test") == YES


async def test_saying_yes_again_while_waiting_keeps_the_place_in_line(db: Database) -> None:
    event_id = await make_event(db, capacity=1)
    for user in ("@a:test", "@b:test", "@c:test"):
        await answer(db, event_id, user, YES)

    again = await answer(db, event_id, "@b:test", YES)

    assert again.answer == WAITING and again.position == 1 and not again.changed
    _, waiting = await answers(db, event_id)
    assert waiting == ["@b:test", "@c:test"]


async def test_leaving_the_waiting_list_and_coming_back_goes_to_the_end(db: Database) -> None:
    event_id = await make_event(db, capacity=1)
    for user in ("@a:test", "@b:test", "@c:test"):
        await answer(db, event_id, user, YES)
    await answer(db, event_id, "@b:test", MAYBE)

    back = await answer(db, event_id, "@b:test", YES)

    assert back.position == 2
    _, waiting = await answers(db, event_id)
    assert waiting == ["@c:test", "@b:test"]


async def test_more_seats_go_to_the_waiting_list_in_order(db: Database) -> None:
    event_id = await make_event(db, capacity=1)
    for user in ("@a:test", "@b:test", "@c:test", "@d:test"):
        await answer(db, event_id, user, YES)
    promoted = await raise_capacity(db, event_id, 3)
    assert promoted == ["@b:test", "@c:test"]
    _, waiting = await answers(db, event_id)
    assert waiting == ["@d:test"]


async def test_the_line_keeps_its_order_through_comings_and_goings(db: Database) -> None:
    """Each new yes goes behind everyone there, even after the last in line has left, and
    seats freed together go in the line's order, not in the order people first answered."""
    event_id = await make_event(db, capacity=1)
    for user in ("@a:test", "@b:test", "@c:test", "@d:test"):
        await answer(db, event_id, user, YES)
    await answer(db, event_id, "@b:test", MAYBE)
    assert (await answer(db, event_id, "@b:test", YES)).position == 3  # behind @c and @d
    await answer(db, event_id, "@d:test", None)
    await answer(db, event_id, "@e:test", YES)
    await answer(db, event_id, "@e:test", None)  # the last in line leaves
    late = await answer(db, event_id, "@f:test", YES)
    assert late.answer == WAITING and late.position == 3
    _, waiting = await answers(db, event_id)
    assert waiting == ["@c:test", "@b:test", "@f:test"]

    promoted = await raise_capacity(db, event_id, 3)
    assert promoted == ["@c:test", "@b:test"]
    going, waiting = await answers(db, event_id)
    assert sorted(going) == ["@a:test", "@b:test", "@c:test"] and waiting == ["@f:test"]


async def test_a_waiting_list_from_before_the_queue_counter_was_dropped_keeps_its_order(
    db: Database,
) -> None:
    # Revision 0010q dropped the event's queue counter: a line stored before it goes on in
    # its order after the upgrade, the events' rows referred to by their answers.
    event_id = await make_event(db, capacity=1)
    await migrate(db, lambda c: command.downgrade(c, "0010q-1"))
    for user in ("@a:test", "@b:test", "@c:test"):
        await answer(db, event_id, user, YES)
    await answer(db, event_id, "@c:test", None)
    await migrate(db, lambda c: command.upgrade(c, "heads"))

    assert (await answer(db, event_id, "@d:test", YES)).position == 2
    assert (await answer(db, event_id, "@a:test", NO)).promoted == ["@b:test"]
    _, waiting = await answers(db, event_id)
    assert waiting == ["@d:test"]


async def test_without_a_capacity_everyone_who_says_yes_is_going(db: Database) -> None:
    event_id = await make_event(db, capacity=None)
    outcomes = await asyncio.gather(*(answer(db, event_id, f"@p{n}:test", YES) for n in range(8)))
    assert {o.answer for o in outcomes} == {YES}


async def test_attendance_and_answers_are_there_for_travel_claims(db: Database) -> None:
    event_id = await make_event(db, capacity=None)
    await answer(db, event_id, "@a:test", YES)
    async with db.session() as s:
        assert await store.mark_attended(s, event_id, "@a:test", "@mod:test", NOW)
        assert not await store.mark_attended(s, event_id, "@a:test", "@mod:test", NOW)
    async with db.session() as s:
        event = await store.get_event(s, event_id)
        assert event is not None and event.code == f"E{event_id}" and event.in_person
        assert await store.rsvp_of(s, event_id, "@a:test") == YES
        assert await store.attended(s, event_id, "@a:test")
        assert not await store.attended(s, event_id, "@b:test")
        assert await store.rsvp_of(s, event_id, "@b:test") is None


async def test_answers_read_earlier_in_the_same_transaction_read_as_changed(db: Database) -> None:
    """Answers are written by statements of their own; a session that loaded them before
    (as a group of commands sharing a transaction does) sees the change, not its old copy."""
    event_id = await make_event(db, capacity=1)
    for user in ("@a:test", "@b:test", "@c:test"):
        await answer(db, event_id, user, YES)
    later = NOW + timedelta(hours=1)
    async with db.session() as s:
        before = {r.user_id: r for r in await store.rsvps_of_event(s, event_id)}
        assert {u: r.answer for u, r in before.items()} == {
            "@a:test": YES,
            "@b:test": WAITING,
            "@c:test": WAITING,
        }
        event = await store.lock_event(s, event_id)
        assert event is not None
        withdrawn = await store.set_rsvp(s, event, "@a:test", None, later)
        assert withdrawn.promoted == ["@b:test"]
        await store.set_rsvp(s, event, "@c:test", MAYBE, later, reaction_event_id="$r:test")

        after = {r.user_id: r for r in await store.rsvps_of_event(s, event_id)}
        assert set(after) == {"@b:test", "@c:test"}
        assert after["@b:test"].answer == YES and after["@b:test"].answered_at == later
        assert after["@c:test"].answer == MAYBE
        assert after["@c:test"].reaction_event_id == "$r:test"
        assert after["@b:test"] is before["@b:test"]  # the same object, read again
        assert await store.rsvp_by_reaction(s, "$r:test") is after["@c:test"]

        await store.set_rsvp(s, event, "@d:test", YES, later)
        assert not s.is_modified(event)  # the event itself is not written
    async with db.session() as s:
        rows = {r.user_id: r for r in await store.rsvps_of_event(s, event_id)}
        assert {u: (r.answer, r.queue_no) for u, r in rows.items()} == {
            "@b:test": (YES, 2),
            "@c:test": (MAYBE, 3),
            "@d:test": (WAITING, 4),
        }
        assert rows["@d:test"].answered_at == later
        assert rows["@c:test"].answered_at.tzinfo is not None


async def test_saying_yes_again_by_command_forgets_the_reaction_it_came_from(db: Database) -> None:
    event_id = await make_event(db, capacity=None)
    async with db.session() as s:
        event = await store.lock_event(s, event_id)
        assert event is not None
        await store.set_rsvp(s, event, "@a:test", YES, NOW, reaction_event_id="$r:test")
    again = await answer(db, event_id, "@a:test", YES)
    assert again.answer == YES and not again.changed
    async with db.session() as s:
        # Removing the old reaction must no longer withdraw an answer now given by command.
        assert await store.rsvp_by_reaction(s, "$r:test") is None
        assert await store.rsvp_of(s, event_id, "@a:test") == YES


async def test_an_event_read_by_number_is_the_sessions_own_and_its_changes_are_kept(
    db: Database,
) -> None:
    """``get_event`` reads an event the session does not hold with a statement of its own
    and hands it to the session as loaded: it reads back as stored (times in UTC), the
    same object comes back while the session holds it, and a change to it is written."""
    event_id = await make_event(db, capacity=2)
    async with db.session() as s:
        assert await store.get_event(s, event_id + 1000) is None
        event = await store.get_event(s, event_id)
        assert event is not None
        assert (event.id, event.title, event.capacity) == (event_id, "Bus depot visit", 2)
        assert event.starts_at == NOW + timedelta(days=7) and event.starts_at.tzinfo is not None
        assert not s.is_modified(event) and event in s
        assert await store.get_event(s, event_id) is event
        assert await store.lock_event(s, event_id) is event
        event.capacity = 5
        await store.touch_event(s, event, NOW)
    async with db.session() as s:
        again = await store.get_event(s, event_id)
        assert again is not None and (again.capacity, again.sequence) == (5, 1)


async def test_locking_an_event_reads_it_as_it_is_now_and_keeps_unwritten_changes(
    db: Database,
) -> None:
    """The lock reads the event again: a change another transaction committed since the
    session first read it is seen (PostgreSQL; on SQLite no other writer gets in), and a
    change the session made but has not written yet is neither lost nor undone."""
    event_id = await make_event(db, capacity=2)
    async with db.session() as s:
        event = await store.get_event(s, event_id)
        assert event is not None and event.capacity == 2
        if not db.is_sqlite:
            async with db.session() as other:
                changed = await store.get_event(other, event_id)
                assert changed is not None
                changed.capacity = 3
            locked = await store.lock_event(s, event_id)
            assert locked is event and event.capacity == 3 and not s.is_modified(event)
        event.title = "Depot visit, new date"
        assert await store.lock_event(s, event_id) is event
        assert event.title == "Depot visit, new date"
    async with db.session() as s:
        # Changed before it is locked: the change is written, then the row read again.
        event = await store.get_event(s, event_id)
        assert event is not None
        if not db.is_sqlite:
            async with db.session() as other:
                changed = await store.get_event(other, event_id)
                assert changed is not None
                changed.capacity = 4
        event.location = "Depot 2"
        assert await store.lock_event(s, event_id) is event
        assert event.location == "Depot 2" and event.capacity == (2 if db.is_sqlite else 4)
    async with db.session() as s:
        again = await store.get_event(s, event_id)
        assert again is not None and again.title == "Depot visit, new date"
        assert again.location == "Depot 2"
        assert again.capacity == (2 if db.is_sqlite else 4)


async def test_an_event_stays_locked_after_a_savepoint_that_locked_it_was_rolled_back(
    db: Database,
) -> None:
    """A second lock in the same transaction costs nothing (the row is locked already),
    but a savepoint rolled back releases the locks taken in it: the event is locked
    again, and another transaction cannot take it until this one ends (PostgreSQL; on
    SQLite the transaction itself keeps every other writer out)."""
    event_id = await make_event(db, capacity=2)

    async def others_can_lock() -> bool:
        if db.is_sqlite:
            return False
        async with db.engine.connect() as conn:
            try:
                await conn.execute(
                    text("SELECT id FROM events WHERE id = :id FOR UPDATE NOWAIT"), {"id": event_id}
                )
            except DBAPIError as exc:
                print("ERR", str(exc)[:200])
                return False
            return True

    kept: list[store.Event | None] = []  # the session holds it only while it is used

    async def lock_in_a_savepoint_that_fails(s: AsyncSession) -> None:
        async with s.begin_nested():
            kept.append(await store.lock_event(s, event_id))
            assert kept[0] is not None
            assert not await others_can_lock()
            raise RuntimeError("a hook failed")

    async with db.session() as s:
        with pytest.raises(RuntimeError):
            await lock_in_a_savepoint_that_fails(s)
        event = await store.lock_event(s, event_id)
        assert event is kept[0] and event is not None and event.capacity == 2
        assert not await others_can_lock()
        assert await store.lock_event(s, event_id) is event
        assert (await store.set_rsvp(s, event, "@ann:test", YES, NOW)).answer == YES
    assert await others_can_lock() is not db.is_sqlite
    assert (await answers(db, event_id))[0] == ["@ann:test"]
