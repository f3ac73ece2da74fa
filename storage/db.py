"""Engine, sessions and schema upgrades."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import event, inspect, make_url, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session
from sqlalchemy.util import await_only

from storage import sqlite_inline

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_THREAD = "BBWT_SQLITE_THREAD"
"""Set to 1 to run SQLite through aiosqlite's worker thread instead of on the event loop
(see :mod:`storage.sqlite_inline`); for comparing the two in a benchmark."""


def dialect_of(session: AsyncSession) -> str:
    """``sqlite`` or ``postgresql``: the database the session talks to."""
    return session.bind.dialect.name if session.bind is not None else "sqlite"


def dialect_insert(dialect: str) -> Any:
    """The dialect's ``insert`` (it has ``on_conflict_do_nothing``/``_update``)."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def insert_for(session: AsyncSession) -> Any:
    """The session's dialect's ``insert``."""
    return dialect_insert(dialect_of(session))


class DatabaseTooNew(RuntimeError):
    """The database was upgraded by a newer bbwt-bot than this one."""


SCHEMA_HEADS = ("0007e", "0008m", "0008p", "0008s", "0009i", "0010q")
"""The newest schema revisions (the heads of ``storage/migrations``, one per branch). A
database already at them is not handed to Alembic when the bot starts, so Alembic is not
even imported: that took about 0.2 s of every start. A new migration must be named here;
a test compares this with Alembic's own heads."""


def alembic_config(url: str | None = None) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url:
        cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def json_text(value: Any) -> str:
    """A JSON column's value as stored: orjson's text (compact, letters beyond ASCII as they
    are), about four times faster than the json module's for a reply of 2.5 KB. Whatever
    orjson refuses (an integer beyond 64 bits, a lone surrogate from someone's message, a
    type the json module would refuse too) goes to the json module, as before it: stored the
    same way, or refused the same way."""
    try:
        return orjson.dumps(
            value,
            option=orjson.OPT_NON_STR_KEYS  # {1: ...} as the json module has it: {"1": ...}
            | orjson.OPT_PASSTHROUGH_DATETIME  # refused, as by the json module
            | orjson.OPT_PASSTHROUGH_DATACLASS,
        ).decode()
    except TypeError:  # (orjson.JSONEncodeError is one)
        return json.dumps(value)


def json_value(text: str | bytes) -> Any:
    """A stored JSON column's text as a value: orjson, or the json module for what orjson
    refuses (NaN, or a lone surrogate written by the json module before)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Autocommit at the driver level: SQLAlchemy's "begin" hook below issues BEGIN IMMEDIATE,
    # so concurrent writers queue on the busy timeout instead of failing on a lock upgrade.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    _begin(conn, "BEGIN IMMEDIATE")


def _sqlite_begin_read(conn: Connection) -> None:
    _begin(conn, "BEGIN")  # deferred: a reader never waits for the writer in WAL mode


def _begin(conn: Connection, sql: str) -> None:
    driver = conn.connection.driver_connection
    if isinstance(driver, sqlite_inline.Connection):
        # Straight to the connection on the event loop, as the prepared statements run:
        # through SQLAlchemy's execution machinery the BEGIN cost a tenth of a `!help`
        # handled in a transaction of its own. (A database locked by another process is
        # waited for on a thread, as for any statement: see storage.sqlite_inline.)
        await_only(driver.execute_now(sql, ())).close()
    else:
        conn.exec_driver_sql(sql)


PING_IDLE_SECONDS = 10.0
"""A pooled PostgreSQL connection left unused longer than this is asked whether it is still
alive before a transaction takes it (one more is trusted, see :func:`_check_connection`)."""
_RETURNED = "bbwt.returned_at"


def _returned(_dbapi_connection: Any, record: Any) -> None:
    record.info[_RETURNED] = time.monotonic()


def _check_connection(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Before a transaction takes a pooled PostgreSQL connection: is it still alive?

    SQLAlchemy's own check (``pool_pre_ping``) asks the server every time, three round
    trips with asyncpg (begin, an empty statement, rollback): as much as the rest of a
    ``!help``. Here a connection the client already saw closed (the server restarted or
    ended it: asyncpg notices at once, its socket is always being read) is replaced without
    a word to the server, and only one left unused for ``PING_IDLE_SECONDS`` is asked, as
    SQLAlchemy asks. A connection that breaks silently in use is still caught: its error is
    a disconnect, SQLAlchemy drops it from the pool, and the transaction is tried again (the
    bot's commands and sync are).
    """
    driver = getattr(dbapi_connection, "driver_connection", None)
    is_closed = getattr(driver, "is_closed", None)
    if is_closed is not None and is_closed():
        raise DisconnectionError("the connection was closed")
    returned = record.info.get(_RETURNED)
    if returned is not None and time.monotonic() - returned < PING_IDLE_SECONDS:
        return
    try:
        dbapi_connection.ping()
    except Exception as error:
        raise DisconnectionError("the connection does not answer") from error


def _inline_creator(url: str) -> Callable[[], Coroutine[Any, Any, sqlite_inline.Connection]]:
    path = make_url(url).database or ":memory:"

    def create() -> Coroutine[Any, Any, sqlite_inline.Connection]:
        return sqlite_inline.connect(path)

    return create


TRANSACTION = "bbwt.one_transaction"
"""In a session's ``info``: the session is one transaction (``Database.session``/``read``),
so its connection stays the same until it ends."""
CONNECTION = "bbwt.connection"
"""In a session's ``info``: that connection, once the repository has asked for it
(``repo._connection``)."""
INLINE = "bbwt.inline_sqlite"
"""In a session's ``info`` (next to its connection): the SQLite connection on the event
loop that prepared statements run on (``storage.prepared``), or None (PostgreSQL, or SQLite
on aiosqlite's thread)."""


class BatchingSession(Session):
    """The sessions of a PostgreSQL database's writers: the only ones that listen for the
    moments an outbox batch must be written (``storage.repo.batch_outbox``), so that the
    sessions of other databases do not pay for the listening."""


class Database:
    """One engine and session factory. ``async with db.session() as s:`` is one transaction."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {
            "echo": echo,
            "json_serializer": json_text,
            "json_deserializer": json_value,
        }
        if not self.is_sqlite:
            kwargs.update(pool_size=10, max_overflow=10)
        elif os.environ.get(SQLITE_THREAD) != "1":
            kwargs.update(async_creator=_inline_creator(url))
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        self.read_engine = self.engine
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if self.is_sqlite else None
        self._exclusive: dict[str, asyncio.Lock] = {}
        if not self.is_sqlite:
            event.listen(self.engine.sync_engine, "checkin", _returned)
            event.listen(self.engine.sync_engine, "checkout", _check_connection)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
            self.read_engine = create_async_engine(url, **kwargs)
            event.listen(self.read_engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.read_engine.sync_engine, "begin", _sqlite_begin_read)
        self.sessions = async_sessionmaker(
            self.engine,
            expire_on_commit=False,
            sync_session_class=Session if self.is_sqlite else BatchingSession,
        )
        self.read_sessions = async_sessionmaker(self.read_engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error.

        On SQLite, writers of this process take turns on an asyncio lock first: SQLite's own
        busy handler backs off in sleeps of up to 100 ms, which starves a busy bot.
        """
        if self._write_lock is None:
            async with self.sessions(info={TRANSACTION: True}) as session, session.begin():
                yield session
            return
        async with (
            self._write_lock,
            self.sessions(info={TRANSACTION: True}) as session,
            session.begin(),
        ):
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read-only transaction; on SQLite it does not queue behind writers."""
        async with self.read_sessions(info={TRANSACTION: True}) as session, session.begin():
            yield session

    @asynccontextmanager
    async def exclusive(self, key: str) -> AsyncIterator[None]:
        """Only one holder of ``key`` at a time, across processes.

        PostgreSQL: a session-level advisory lock on a connection of its own (released on
        exit, or by the server when the process dies). SQLite is used by one process only,
        so an asyncio lock is enough. No transaction is held meanwhile: the holder may wait
        for the homeserver without blocking writers.
        """
        if self.is_sqlite:
            lock = self._exclusive.setdefault(key, asyncio.Lock())
            async with lock:
                yield
            return
        params = {"key": key}
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(hashtextextended(:key, 0))"), params)
            await conn.commit()
            try:
                yield
            finally:
                await conn.execute(
                    text("SELECT pg_advisory_unlock(hashtextextended(:key, 0))"), params
                )
                await conn.commit()

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    async def current_heads(self) -> tuple[str, ...]:
        """The schema revisions the database is at (one per migration branch): the rows of
        Alembic's version table, none before the first migration."""
        async with self.engine.connect() as conn:
            if not await conn.run_sync(lambda sync: inspect(sync).has_table("alembic_version")):
                return ()
            heads = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars()
            return tuple(sorted(str(head) for head in heads))

    async def upgrade(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Bring the schema to the newest revisions; return (before, after).

        Each migration runs in its own transaction. Refuses a database at a revision this
        code does not know (it was upgraded by a newer version of bbwt-bot).
        """
        before = await self.current_heads()
        if set(before) == set(SCHEMA_HEADS):
            return before, before
        from alembic import command
        from alembic.script import ScriptDirectory

        cfg = alembic_config()
        script = ScriptDirectory.from_config(cfg)
        known = {rev.revision for rev in script.walk_revisions()}
        unknown = [rev for rev in before if rev not in known]
        if unknown:
            raise DatabaseTooNew(
                f"the database is at schema revision {', '.join(unknown)}, which this "
                "version of bbwt-bot does not know; it was upgraded by a newer version. "
                "Run the newer version or restore a backup."
            )

        def run(sync: Connection) -> None:
            cfg.attributes["connection"] = sync
            command.upgrade(cfg, "heads")

        async with self.engine.connect() as conn:
            await conn.run_sync(run)
            await conn.commit()
        return before, await self.current_heads()

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()
