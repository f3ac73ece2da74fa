"""Events the sync loop stores go straight to their room's worker (no wait for a poll)."""

from __future__ import annotations

import asyncio
import uuid

from storage import repo
from tests.support.cast import ANNA, BEN, HDEV_ROOM
from tests.support.world import World


async def store(world: World, sender: str, body: str) -> str:
    event_id = f"${uuid.uuid4().hex}"
    await world.store_message(event_id, sender, HDEV_ROOM, body)
    return event_id


async def handled(world: World, event_id: str) -> bool:
    for _ in range(200):
        async with world.db.read() as s:
            row = await repo.find_inbound(s, event_id)
        if row is not None and row.status == "done":
            return True
        await asyncio.sleep(0.025)
    return False


async def test_stored_events_are_handled_at_once_also_while_the_room_is_busy(
    world: World,
) -> None:
    # The processor's main loop (which polls every 2 s) is not running here: only the
    # hand-over from the sync loop can get these events handled.
    before = await world.last_outbox_id()
    first = await store(world, ANNA, "!help")
    world.processor.take({HDEV_ROOM})
    # Stored and handed over while the room's worker is still busy with the first one: the
    # worker reads its room once more before it ends.
    second = await store(world, BEN, "!help")
    world.processor.take({HDEV_ROOM})
    assert await handled(world, first)
    assert await handled(world, second)
    third = await store(world, ANNA, "!help")  # after the worker ended: a new one starts
    world.processor.take({HDEV_ROOM})
    assert await handled(world, third)
    answered = [
        sent.payload.get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
        for sent in await world.deliver(after=before)
        if sent.room_id == HDEV_ROOM
    ]
    assert sorted(answered) == sorted([first, second, third])  # each answered once
