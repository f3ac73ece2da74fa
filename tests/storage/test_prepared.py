"""The statements every command runs, prepared once (``storage.prepared``), on both databases.

On SQLite they run on the sqlite3 connection directly; what they store and what they read
back must be exactly what SQLAlchemy stores and reads, inside the same transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from itertools import count
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError

from storage import Database, repo
from storage.models import OutboxMessage, Role
from storage.prepared import NotPreparable, Prepared

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BRUSSELS = timezone(timedelta(hours=1))


async def test_a_reply_queued_reads_back_as_sqlalchemy_reads_it(db: Database) -> None:
    payload = {
        "msgtype": "m.notice",
        "body": "Zaproszenie: łódź, Ærø, 東京 — «ok»",
        "nested": {"list": [1, 2.5, None, True], "empty": {}},
    }
    async with db.session() as s:
        row_id = await repo.enqueue(
            s,
            room_id="!r:x",
            payload=payload,
            tag="application:7",
            now=datetime(2026, 3, 2, 10, 0, tzinfo=BRUSSELS),  # stored as 09:00 UTC
        )
    async with db.read() as s:
        [prepared] = await repo.unsent(s)
    async with db.read() as s:
        orm = await repo.get_outbox(s, row_id)
    assert orm is not None
    assert prepared.id == row_id
    for column in OutboxMessage.__table__.columns:
        assert getattr(prepared, column.key) == getattr(orm, column.key), column.key
        assert type(getattr(prepared, column.key)) is type(getattr(orm, column.key)), column.key
    assert prepared.payload == payload
    assert prepared.created_at == T0
    assert prepared.created_at.tzinfo == UTC
    assert prepared.failed is False
    assert prepared.attempts == 0
    assert prepared.private_to is None

    # Stored as SQLAlchemy stores it (a date compared in SQL, say, compares the same).
    async with db.session() as s:
        s.add(
            OutboxMessage(
                room_id="!r:x", payload=payload, tag="application:7", created_at=T0, kind="message"
            )
        )
    async with db.read() as s:
        stored = (
            await s.execute(
                text(
                    "SELECT CAST(created_at AS TEXT), CAST(payload AS TEXT), attempts,"
                    " CAST(failed AS TEXT) FROM outbox ORDER BY id"
                )
            )
        ).all()
    assert len(stored) == 2
    assert tuple(stored[0]) == tuple(stored[1])


async def test_a_prepared_write_is_undone_with_its_transaction(db: Database) -> None:
    class Stop(Exception):
        pass

    async def write_then_fail() -> None:
        async with db.session() as s:
            await repo.enqueue(s, room_id="!r:x", payload={"body": "never"}, now=T0)
            stored = await repo.add_inbound(
                s,
                event_id="$e1",
                room_id="!r:x",
                sender="@a:x",
                origin_ts=T0,
                content={"body": "!help"},
                now=T0,
            )
            assert stored is not None
            await repo.set_state(s, "sync_token", "s9", now=T0)
            raise Stop

    with pytest.raises(Stop):
        await write_then_fail()
    async with db.read() as s:
        assert await repo.unsent(s) == []
        assert await repo.count_inbound(s) == 0
        assert await repo.get_state(s, "sync_token") is None


async def test_a_prepared_statement_refused_by_the_database_raises_sqlalchemys_error(
    db: Database,
) -> None:
    """On both databases the error is SQLAlchemy's, as for any other statement (code that
    catches ``IntegrityError`` sees it), whether the statement is the transaction's first or
    not, and the transaction is undone; the next one works."""

    async def refused(first: bool) -> None:
        async with db.session() as s:
            if not first:
                await repo.enqueue(s, room_id="!r:x", payload={"body": "undone"}, now=T0)
            # A reply with no time it was queued at: the column may not be empty.
            no_time: Any = None
            await repo.enqueue(s, room_id="!r:x", payload={"body": "refused"}, now=no_time)

    for first in (True, False):
        with pytest.raises(IntegrityError):
            await refused(first)
    async with db.session() as s:
        await repo.enqueue(s, room_id="!r:x", payload={"body": "kept"}, now=T0)
    async with db.read() as s:
        assert [row.payload["body"] for row in await repo.unsent(s)] == ["kept"]


async def test_an_event_stored_twice_is_stored_once_and_claimed_once(db: Database) -> None:
    ids = count()

    async def store() -> int | None:
        async with db.session() as s:
            row = await repo.add_inbound(
                s,
                event_id="$same",
                room_id="!r:x",
                sender="@a:x",
                origin_ts=T0,
                content={"body": f"!help {next(ids)}"},
                now=T0,
            )
            return None if row is None else row.id

    first = await store()
    assert first is not None
    assert await store() is None
    async with db.session() as s:
        assert await repo.claim_to_handle(s, first, "$same", T0) is False
    async with db.session() as s:
        assert await repo.claim_to_handle(s, first, "$same", T0) is None  # done already
    async with db.read() as s:
        row = await repo.find_inbound(s, "$same")
        assert row is not None
        assert row.status == "done"
        assert row.outcome == "ok"
        assert row.handled_at == T0
        assert row.content == {"body": "!help 0"}


async def test_only_moderators_count_as_moderators(db: Database) -> None:
    """The statement has a fixed value (``role = 'moderator'``) besides its parameter."""
    async with db.session() as s:
        await repo.sync_cops(s, [("HDEV", "Heavy-duty"), ("FOOD", "Food")], now=T0)
        s.add(Role(user_id="@a:x", cop_code="HDEV", role="moderator", created_at=T0))
        s.add(Role(user_id="@a:x", cop_code="FOOD", role="observer", created_at=T0))
    async with db.read() as s:
        moderates, memberships = await repo.roles_of(s, "@a:x")
        assert moderates == {"HDEV"}
        assert memberships == {}
        assert await repo.roles_of(s, "@nobody:x") == (set(), {})


def test_a_statement_with_a_default_computed_per_row_is_refused() -> None:
    """Such a default needs SQLAlchemy at execution time; running the statement without it
    would store nothing there, so it is refused when it is compiled."""
    table = Table(
        "t",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("code", String, default=lambda: "made per row"),
        Column("name", String),
    )
    with pytest.raises(NotPreparable, match="code"):
        Prepared(insert(table)).compiled(sqlite.dialect(), {"name": "x"})
    fixed = Table(
        "u",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("code", String, default="the same for all"),
        Column("name", String),
    )
    compiled = Prepared(insert(fixed)).compiled(sqlite.dialect(), {"name": "x"})
    assert compiled.fixed["code"] == "the same for all"
