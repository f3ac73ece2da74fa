"""A backlog of one room (a burst, the commands sent while the bot was away) is handled in
groups that share a transaction: every command is still answered once, in order, a failed
one leaves nothing but its answer, and a crash in the middle of a group loses nothing."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from commands import build_registry
from commands.context import Context
from commands.errors import CommandError
from commands.registry import Registry
from commands.roles import Role
from storage import events as events_store
from storage import repo
from storage.events import NO, YES
from storage.models import InboundEvent, OutboxMessage
from tests.support.cast import ANNA, APPLICANT, BEN, CARL, HDEV_ROOM, MGMT, MOD
from tests.support.database import TestDatabase
from tests.support.world import World, dms

GATE = asyncio.Event()
"""``!wait`` waits for it: a command that is still running when the process dies."""
WAITING = asyncio.Event()
"""Set once ``!wait`` has started."""


def registry() -> Registry:
    """Every command of the bot and three that only tests need."""
    reg = build_registry("!")

    @reg.command("halfway", help="Queue a reply, then refuse.", role=Role.MEMBER)
    async def halfway(ctx: Context) -> None:
        await ctx.reply("half done")
        raise CommandError("Refused after all.")

    @reg.command("bug", help="Queue a reply, then fail on a bug.", role=Role.MEMBER)
    async def bug(ctx: Context) -> None:
        await ctx.reply("half done")
        raise RuntimeError("a bug")

    @reg.command("wait", help="Queue a reply, then wait for the test.", role=Role.MEMBER)
    async def wait(ctx: Context) -> None:
        await ctx.reply("waited")
        WAITING.set()
        await GATE.wait()

    return reg


async def world_of(db: TestDatabase, budget: float | None = None) -> World:
    """With groups of ``budget`` seconds at most (None: the default)."""
    process = {} if budget is None else {"group_seconds": budget}
    return await World(db, registry=registry(), process=process).seed()


async def backlog(world: World, *messages: tuple[str, str]) -> list[InboundEvent]:
    """Store ``(sender, text)`` messages as one sync would, without handling them."""
    return [await world.pending(sender, text) for sender, text in messages]


async def backlog_ending_in_a_wait(
    db: TestDatabase, *, budget: float, done: int, helps: int = 4
) -> tuple[World, int, list[InboundEvent]]:
    """With groups of ``budget`` seconds, ``helps`` "!help" and a "!wait" handed to the
    worker; returns (the world, the last outbox id before them, their rows) once ``done`` of
    them are done (the "!wait" is then running, or about to)."""
    world = await world_of(db, budget)
    before = await world.last_outbox_id()
    GATE.clear()
    WAITING.clear()
    senders = (ANNA, BEN, CARL)
    helping = [(senders[n % 3], "!help") for n in range(helps)]
    rows = await backlog(world, *helping, (senders[helps % 3], "!wait"))
    world.processor.take(rows)
    for _ in range(400):
        async with world.db.read() as s:
            if await repo.count_inbound(s, "done") == done:
                break
        await asyncio.sleep(0.025)
    return world, before, rows


def id_of(row: OutboxMessage) -> int:
    return row.id


async def all_done(world: World, rows: list[InboundEvent]) -> None:
    for _ in range(400):
        async with world.db.read() as s:
            pending = await repo.count_inbound(s, "pending")
        if pending == 0:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"{pending} of {len(rows)} events still pending")


async def test_a_backlog_with_a_refusal_and_a_bug_in_its_groups_is_answered_once_in_order(
    db: TestDatabase,
) -> None:
    world = await world_of(db)
    event_id = await world.event(start=world.now + timedelta(days=14), capacity=1)
    before = await world.last_outbox_id()
    # The worker handles the first alone, then groups of 2, 4, 8: the refusal and the bug
    # sit in the middle of the groups of 4 and 8, between answers that must be kept.
    rows = await backlog(
        world,
        (ANNA, "!help"),
        (BEN, "!help"),
        (CARL, "!help"),
        (ANNA, f"!rsvp E{event_id} yes"),  # the only seat
        (BEN, f"!rsvp E{event_id} yes"),  # waiting list
        (CARL, "!halfway"),
        (ANNA, f"!rsvp E{event_id} no"),  # Ben gets the seat
        (BEN, "!help"),
        (CARL, "!help"),
        (ANNA, "!bug"),
        (BEN, "!help"),
    )
    world.processor.take(rows)
    await all_done(world, rows)
    await asyncio.sleep(0.1)  # a second answer to anything would be queued by now

    answers = await world.answers(after=before)
    assert [event for event, _ in answers] == [row.event_id for row in rows]
    texts = dict(answers)
    assert texts[rows[5].event_id] == "Refused after all."
    assert "something went wrong on my side" in texts[rows[9].event_id]
    assert "waiting list" in texts[rows[4].event_id]
    sent = await world.deliver()
    assert not [s for s in sent if "half done" in s.body]  # nothing of a failed command
    assert [s for s in dms(sent, BEN) if "seat" in s.body.lower()]
    async with world.db.read() as s:
        answered = await events_store.rsvps_of_event(s, event_id)
        outcomes = [(await repo.find_inbound(s, row.event_id)) for row in rows]
    assert [(r.user_id, r.answer) for r in answered] == [(ANNA, NO), (BEN, YES)]
    assert [o.outcome for o in outcomes if o is not None] == (
        ["ok"] * 5 + ["refused"] + ["ok"] * 3 + ["error"] + ["ok"]
    )


async def test_a_crash_in_the_middle_of_a_group_leaves_the_whole_group_pending(
    db: TestDatabase,
) -> None:
    # The first is handled alone, the next two as a group; the last two are the third
    # group: its "!help" is handled, its "!wait" still running when the process dies.
    # However slow the machine, the group is not cut short by its time budget.
    world, before, rows = await backlog_ending_in_a_wait(db, budget=60.0, done=3)
    await asyncio.sleep(0.1)
    for task in list(world.processor._room_tasks.values()):
        task.cancel()
    await asyncio.sleep(0.05)
    async with world.db.read() as s:
        assert await repo.count_inbound(s, "pending") == 2  # the crashed group: not lost
    assert len(await world.answers(after=before)) == 3  # and not half answered

    GATE.set()  # the next start handles what was left, once
    world.processor.take(rows[3:])
    await all_done(world, rows)
    await asyncio.sleep(0.1)
    answers = await world.answers(after=before)
    assert [event for event, _ in answers] == [row.event_id for row in rows]
    assert dict(answers)[rows[4].event_id] == "waited"


async def test_a_long_backlog_goes_in_groups_of_up_to_32_and_a_crash_loses_none_of_them(
    db: TestDatabase,
) -> None:
    # Groups of 1, 2, 4, 8 and 16 (31 commands), then one of 32 whose last command is
    # still running when the process dies: all 32 stay pending (none lost, none answered
    # twice) and the next start answers them once, in order.
    world, before, rows = await backlog_ending_in_a_wait(db, budget=60.0, done=31, helps=62)
    await asyncio.wait_for(WAITING.wait(), 10)
    for task in list(world.processor._room_tasks.values()):
        task.cancel()
    await asyncio.sleep(0.05)
    async with world.db.read() as s:
        assert await repo.count_inbound(s, "pending") == 32
    assert len(await world.answers(after=before)) == 31

    GATE.set()
    world.processor.take(rows[31:])
    await all_done(world, rows)
    await asyncio.sleep(0.1)
    answers = await world.answers(after=before)
    assert [event for event, _ in answers] == [row.event_id for row in rows]
    assert dict(answers)[rows[-1].event_id] == "waited"


async def test_a_group_whose_room_cannot_be_read_is_handled_one_by_one(
    db: TestDatabase,
) -> None:
    # Where a command was sent is read before its transaction (the homeserver may be
    # asked): when that fails for one event of a group, the others are answered all the
    # same and that one is tried again, then answered with an apology.
    world = await world_of(db)
    before = await world.last_outbox_id()
    place_of = world.processor.place_of

    async def flaky(room_id: str, sender: str) -> tuple[object, str | None]:
        if sender == CARL:
            raise ConnectionError("homeserver unreachable")
        return await place_of(room_id, sender)

    world.processor.place_of = flaky  # type: ignore[assignment,method-assign]
    rows = await backlog(world, (ANNA, "!help"), (BEN, "!help"), (CARL, "!help"), (ANNA, "!help"))
    world.processor.take(rows)
    await all_done(world, rows)
    answers = await world.answers(after=before)
    assert [event for event, _ in answers] == [rows[0].event_id, rows[1].event_id] + [
        rows[3].event_id,
        rows[2].event_id,
    ]
    assert "could not handle this" in dict(answers)[rows[2].event_id]


async def test_a_group_out_of_time_commits_what_it_has_and_goes_on(
    db: TestDatabase,
) -> None:
    # A group that has run for its time budget (here: none) commits before it takes the
    # next event: the answers so far go out while a slow command is still running, and
    # other writers are not held up behind the whole backlog.
    world, before, rows = await backlog_ending_in_a_wait(db, budget=0.0, done=4)
    # The "!help" before the "!wait" in the same group is committed and answered already
    # (read without a write transaction: the "!wait" holds SQLite's write lock).
    queued = sorted((r for r in await world.outbox_to(HDEV_ROOM) if r.id > before), key=id_of)
    assert [r.payload["m.relates_to"]["m.in_reply_to"]["event_id"] for r in queued] == [
        row.event_id for row in rows[:4]
    ]
    GATE.set()
    await all_done(world, rows)
    answers = await world.answers(after=before)
    assert [event for event, _ in answers] == [row.event_id for row in rows]


async def test_answers_and_changes_to_one_event_in_shared_groups_see_each_other(
    db: TestDatabase,
) -> None:
    # A burst of answers to one event, with a moderator's edit and cancellation among them,
    # in groups that share a transaction (no time budget cuts them short here). The event's
    # row is locked and read once per group on PostgreSQL: every command must still see what
    # the ones before it in the group did, as in a transaction of its own.
    world = await world_of(db, 60.0)
    event_id = await world.event(start=world.now + timedelta(days=14), capacity=1)
    before = await world.last_outbox_id()
    e = f"E{event_id}"
    rows = await backlog(
        world,
        (ANNA, "!help"),  # alone
        (ANNA, f"!rsvp {e} yes"),  # group of 2: the only seat
        (BEN, f"!rsvp {e} yes"),  # the waiting list
        (MOD, f"!event edit {e} capacity=3"),  # group of 4: Ben gets a seat
        (CARL, f"!rsvp {e} yes"),  # the third seat, not the waiting list
        (ANNA, f"!rsvp {e} no"),
        (BEN, f"!rsvp {e} maybe"),
        (MOD, f"!event cancel {e} The venue is closed."),  # group of 8
        (CARL, f"!rsvp {e} no"),  # too late: cancelled
        (BEN, f"!rsvp {e} yes"),
    )
    world.processor.take(rows)
    await all_done(world, rows)

    answers = await world.answers(after=before)
    assert [event for event, _ in answers] == [row.event_id for row in rows]
    texts = [text for _, text in answers]
    assert "waiting list" in texts[2] and "waiting list" not in texts[1]
    assert texts[4].startswith("You're going") and "waiting list" not in texts[4]
    assert "cancelled" in texts[8] and "cancelled" in texts[9]
    async with world.db.read() as s:
        answered = await events_store.rsvps_of_event(s, event_id)
        event = await events_store.get_event(s, event_id)
    assert event is not None and event.cancelled and event.capacity == 3
    assert sorted((r.user_id, r.answer) for r in answered) == sorted(
        [(ANNA, NO), (BEN, "maybe"), (CARL, YES)]
    )


async def test_a_change_of_roles_in_a_group_counts_for_the_commands_after_it(
    db: TestDatabase,
) -> None:
    # On PostgreSQL a group's commands are claimed, and their senders' roles read, before
    # its first command: a command that changes someone's roles ends the group there, so the
    # commands after it are judged by the roles as they are now, as each would be in a
    # transaction of its own (and none is lost or handled twice on the way).
    world = await world_of(db, 60.0)
    await world.profile(APPLICANT, "City of Gdańsk", "PL", "local-authority")
    assert (await world.send(APPLICANT, "join HDEV We buy electric buses.")).outcome == "ok"
    before = await world.last_outbox_id()
    messages = [
        (MOD, "!help"),  # alone
        (CARL, "!members HDEV"),  # group of 2: Carl is a member
        (APPLICANT, "!members HDEV"),  # the applicant not yet
        (MOD, "!remove @carl:test HDEV Left the organisation."),  # group of 4
        (CARL, "!members HDEV"),  # no longer a member
        (MOD, "!approve @applicant:test HDEV"),
        (APPLICANT, "!members HDEV"),  # a member now
        (CARL, "!help"),  # group of 8
        (APPLICANT, "!members HDEV"),
    ]
    rows = [await world.pending(sender, text, room=MGMT) for sender, text in messages]
    world.processor.take(rows)
    await all_done(world, rows)
    await asyncio.sleep(0.1)  # a second answer to anything would be queued by now

    answers = await world.answers(after=before, room=MGMT)
    texts = [text for _, text in answers]
    assert [event for event, _ in answers] == [row.event_id for row in rows]
    assert "Comune di Milano" in texts[1]
    assert texts[2].startswith("Sorry, !members is only for members")
    assert texts[4].startswith("Sorry, !members is only for members")
    assert "City of Gdańsk" in texts[6] and "Comune di Milano" not in texts[6]
    assert "City of Gdańsk" in texts[8]
