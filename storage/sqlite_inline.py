"""SQLite for SQLAlchemy's aiosqlite dialect, run on the event loop's own thread.

aiosqlite runs every call (open a cursor, execute, fetch, close) on a thread of its own and
hands the result back through the event loop: four thread switches for one SELECT, which
is most of the bot's cost per command on SQLite (a short statement on a small local
database takes tens of microseconds; the switches take far more, and much more again on a
busy machine). This connection does the same calls directly.

Waiting stays off the event loop. The statements run with SQLite's busy timeout at zero;
one that finds the database locked by another process (an administration command run
beside the bot) is run again on a worker thread, where it may wait up to the configured
busy timeout, exactly as aiosqlite would have. Inside the bot, writers already take turns
on an asyncio lock (``storage.db.Database.session``) and WAL readers never wait.

What it gives SQLAlchemy is the part of aiosqlite's interface the dialect uses: an
awaitable connection with ``cursor()``, ``commit()``, ``rollback()``, ``close()``,
``create_function()``, ``stop()``, the ``isolation_level`` attribute and the internals
its ``isolation_level`` setter reaches for (``_conn``, ``_tx``).
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

_BUSY_PRAGMA = re.compile(r"^\s*PRAGMA\s+busy_timeout\s*=\s*(\d+)\s*;?\s*$", re.IGNORECASE)


def _is_busy(error: sqlite3.OperationalError) -> bool:
    text = str(error).lower()
    return "database is locked" in text or "database is busy" in text


class _Now:
    """Stands in for aiosqlite's request queue: runs what is put on it at once."""

    def put_nowait(self, item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except Exception as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)


class Cursor:
    def __init__(self, connection: Connection, cursor: sqlite3.Cursor) -> None:
        self._connection = connection
        self._cursor = cursor

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Any = ()) -> Cursor:
        busy = _BUSY_PRAGMA.match(sql)
        if busy is not None:  # kept for the retries on a thread; inline it stays zero
            self._connection.busy_ms = int(busy.group(1))
            return self
        await self._connection.run(self._cursor.execute, sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Sequence[Any]) -> Cursor:
        await self._connection.run(self._cursor.executemany, sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    async def nextset(self) -> None:
        return None

    async def setinputsizes(self, *sizes: Any) -> None:
        return None


class Connection:
    def __init__(self, raw: sqlite3.Connection) -> None:
        self._conn = raw
        self._connection: sqlite3.Connection | None = raw
        self._tx = _Now()
        self.busy_ms = 5000
        raw.execute("PRAGMA busy_timeout=0")

    def __await__(self) -> Any:
        async def ready() -> Connection:
            return self

        return ready().__await__()

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: Any) -> None:
        self._conn.isolation_level = value

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """Run at once; when another process holds the lock, wait for it on a thread."""
        try:
            return function(*args)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or self.busy_ms <= 0:
                raise
        return await asyncio.to_thread(self._waiting, function, *args)

    def _waiting(self, function: Callable[..., T], *args: Any) -> T:
        self._conn.execute(f"PRAGMA busy_timeout={int(self.busy_ms)}")
        try:
            return function(*args)
        finally:
            self._conn.execute("PRAGMA busy_timeout=0")

    async def execute_now(self, sql: str, parameters: Sequence[Any]) -> sqlite3.Cursor:
        """Run one statement and return the sqlite3 cursor itself (for
        :mod:`storage.prepared`, which reads it at once)."""
        return await self.run(self._conn.execute, sql, parameters)

    def cursor(self) -> Cursor:
        return Cursor(self, self._conn.cursor())

    async def commit(self) -> None:
        await self.run(self._conn.commit)

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)


async def connect(path: str) -> Connection:
    """Open ``path`` (or ``:memory:``) for use with ``create_async_engine(async_creator=…)``."""
    raw = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    return Connection(raw)
