"""No homeserver call inside a database transaction (both databases).

A command that works on the file it replies to needs that message from the homeserver,
which may take seconds: it is read before the command's transaction begins, so SQLite's
write lock (and every other room's work behind it) never waits for the network.
"""

from __future__ import annotations

from typing import Any

from tests.support.cast import ANNA, HDEV_ROOM
from tests.support.world import World


async def test_the_replied_file_is_read_before_the_transaction_and_shared(world: World) -> None:
    file_event = world.upload("$upload1", ANNA)
    seen: list[tuple[str, bool]] = []
    inner = world.processor.services.fetch_event  # type: ignore[union-attr]
    assert inner is not None

    async def watching_fetch(room_id: str, event_id: str) -> dict[str, Any] | None:
        lock = world.db._write_lock  # SQLite: held by every open write transaction
        pg_busy = not world.db.is_sqlite and world.db.engine.pool.checkedout() > 0
        seen.append((event_id, bool(lock is not None and lock.locked()) or pg_busy))
        return await inner(room_id, event_id)

    world.processor.services.fetch_event = watching_fetch  # type: ignore[union-attr]

    result = await world.send(ANNA, "!intel share Price list 2026", HDEV_ROOM, reply_to=file_event)

    assert seen == [(file_event, False)]
    assert "I" in result.reply and "Price list 2026" in result.text


async def test_commands_that_do_not_need_the_replied_message_never_fetch_it(world: World) -> None:
    calls: list[str] = []

    async def counting_fetch(room_id: str, event_id: str) -> dict[str, Any] | None:
        calls.append(event_id)
        return None

    world.processor.services.fetch_event = counting_fetch  # type: ignore[union-attr]

    await world.send(ANNA, "!help", HDEV_ROOM, reply_to="$some-message")

    assert calls == []
