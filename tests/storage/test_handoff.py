"""Events the sync loop stores go straight to their room's worker: no wait for a poll, and
no second read of what was just stored, without ever handling an event twice or out of
its room's order."""

from __future__ import annotations

import asyncio

from storage import repo
from tests.support.cast import ANNA, BEN
from tests.support.world import World


async def handled(world: World, event_id: str) -> bool:
    for _ in range(200):
        async with world.db.read() as s:
            row = await repo.find_inbound(s, event_id)
        if row is not None and row.status == "done":
            return True
        await asyncio.sleep(0.025)
    return False


async def answered_in_order(world: World, before: int) -> list[str]:
    """The events the bot answered in the CoP room, in the order the answers went out."""
    return [event for event, _ in await world.answers(after=before)]


async def test_stored_events_are_handled_at_once_also_while_the_room_is_busy(
    world: World,
) -> None:
    # The processor's main loop (which polls every 2 s) is not running here: only the
    # hand-over from the sync loop can get these events handled.
    before = await world.last_outbox_id()
    first = await world.pending(ANNA, "!help")
    world.processor.take([first])
    # Stored and handed over while the room's worker is still busy with the first one.
    second = await world.pending(BEN, "!help")
    world.processor.take([second])
    assert await handled(world, first.event_id)
    assert await handled(world, second.event_id)
    third = await world.pending(ANNA, "!help")  # after the worker ended: a new one starts
    world.processor.take([third])
    assert await handled(world, third.event_id)
    answered = await answered_in_order(world, before)
    assert answered == [first.event_id, second.event_id, third.event_id]


async def test_an_event_left_pending_before_is_answered_first_and_nothing_twice(
    world: World,
) -> None:
    # Stored by an earlier run (or a sync whose hand-over was lost) and never handed to
    # this process: the first hand-over for the room reads the room, in order.
    before = await world.last_outbox_id()
    left = await world.pending(BEN, "!help")
    new = await world.pending(ANNA, "!help")
    world.processor.take([new])
    assert await handled(world, left.event_id)
    assert await handled(world, new.event_id)
    # The room is now held in hand: a later event is taken as handed. Handing the same
    # events again (a hand-over racing a read of the room) answers nobody twice.
    later = await world.pending(BEN, "!help")
    world.processor.take([later, new])
    world.processor.take([later])
    assert await handled(world, later.event_id)
    await asyncio.sleep(0.2)  # any second answer would be queued by now
    assert await answered_in_order(world, before) == [left.event_id, new.event_id, later.event_id]


async def test_a_room_with_an_event_stored_behind_its_back_is_read_again(world: World) -> None:
    # Held in hand after a first hand-over; then an event turns up pending that was not
    # handed over (stored by another way, found by the main loop's poll): the worker reads
    # the room from the database again instead of trusting what it was handed.
    before = await world.last_outbox_id()
    first = await world.pending(ANNA, "!help")
    world.processor.take([first])
    assert await handled(world, first.event_id)
    behind = await world.pending(BEN, "!help")
    handed = await world.pending(ANNA, "!help")
    world.processor.take([handed])
    assert await handled(world, handed.event_id)
    # The poll of rooms with pending events sends the worker back to the database.
    world.processor.wake()
    poll = asyncio.create_task(world.processor.run())
    try:
        assert await handled(world, behind.event_id)
    finally:
        world.processor.stopping = True
        world.processor.wake()
        await poll
    answered = await answered_in_order(world, before)
    assert sorted(answered) == sorted([first.event_id, behind.event_id, handed.event_id])
