"""SQLite on the event loop: a statement that finds the database locked waits off the loop."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from sqlalchemy import text

from storage import Database


async def test_a_writer_waits_for_another_process_lock_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "inline.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    async with db.session() as s:
        await s.execute(text("CREATE TABLE t (n INTEGER)"))
    other = sqlite3.connect(path, isolation_level=None)  # another process, say the CLI
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t VALUES (1)")
    ticks = 0

    async def write() -> None:
        async with db.session() as s:
            await s.execute(text("INSERT INTO t VALUES (2)"))

    async def tick() -> None:
        nonlocal ticks
        while not writer.done():
            ticks += 1
            await asyncio.sleep(0.01)

    writer = asyncio.create_task(write())
    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.3)
    assert not writer.done()  # still waiting for the lock
    other.execute("COMMIT")
    await writer
    await ticker
    assert ticks > 1  # the loop kept running while the writer waited
    async with db.read() as s:
        assert (await s.execute(text("SELECT n FROM t ORDER BY n"))).scalars().all() == [1, 2]
    other.close()
    await db.dispose()
