"""Outbox rows queued by a command's transaction and written together (``repo.batch_outbox``,
on PostgreSQL; SQLite writes each at once): nothing is lost, nothing is written twice, the
order is the order they were queued in, and whatever runs in the transaction sees them.
Also: a savepoint rolled back undoes everything run inside it, the first statement too."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import Database, repo
from storage.models import DirectRoom, Membership, OutboxMessage

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Boom(Exception):
    pass


async def bodies(db: Database) -> list[object]:
    async with db.read() as s:
        rows = (await s.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars()
        return [row.payload.get("n") for row in rows]


async def test_queued_rows_are_written_at_the_commit_in_the_order_they_were_queued(
    db: Database,
) -> None:
    async with db.session() as s:
        await repo.set_direct_room(s, "@known:x", "!dm-known:x", now=T0)
    async with db.session() as s:
        await repo.batch_outbox(s)
        await repo.queue(
            s, room_id="!r:x", payload={"n": 1}, private_to="@p:x", tag="rsvp:1", now=T0
        )
        await repo.enqueue_dm(s, "@known:x", payload={"n": 2}, now=T0)
        await repo.enqueue_dm(s, "@new:x", kind="file", payload={"n": 3, "é": "ü"}, now=T0)
        await repo.queue(s, to_user="@to:x", payload={"n": 4}, now=T0)
        await repo.queue(s, room_id="!r:x", kind="reaction", payload={"n": 5}, now=T0)
    async with db.read() as s:
        rows = list((await s.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars())
    assert [row.payload for row in rows] == [
        {"n": 1},
        {"n": 2},
        {"n": 3, "é": "ü"},
        {"n": 4},
        {"n": 5},
    ]
    got = [(r.room_id, r.to_user, r.private_to, r.kind, r.tag) for r in rows]
    assert got == [
        ("!r:x", None, "@p:x", "message", "rsvp:1"),
        ("!dm-known:x", None, "@known:x", "message", None),  # the chat the bot has
        (None, "@new:x", "@new:x", "file", None),  # none yet: the sender opens one
        (None, "@to:x", "@to:x", "message", None),
        ("!r:x", None, None, "reaction", None),
    ]
    assert all(r.created_at == T0 and r.attempts == 0 and r.failed is False for r in rows)
    async with db.read() as s:
        assert [m.payload["n"] for m in await repo.unsent(s)] == [1, 2, 3, 4, 5]


async def test_what_runs_in_the_transaction_sees_the_rows_queued_before_it(db: Database) -> None:
    async with db.session() as s:
        await repo.batch_outbox(s)
        await repo.queue(s, room_id="!r:x", payload={"n": 1}, now=T0)
        await repo.enqueue_dm(s, "@p:x", payload={"n": 2}, now=T0)
        # A statement of the repository that reads the outbox (the sender's, !mydata's).
        assert [m.payload["n"] for m in await repo.unsent(s)] == [1, 2]
        await repo.queue(s, room_id="!r:x", payload={"n": 3}, now=T0)
        # Any statement through the session (ORM).
        found = await s.execute(select(OutboxMessage.payload).order_by(OutboxMessage.id))
        assert [p["n"] for p in found.scalars()] == [1, 2, 3]
        await repo.queue(s, room_id="!r:x", payload={"n": 4}, now=T0)
        # A row written at once, for its id, comes after the ones queued before it.
        fifth = await repo.enqueue(s, room_id="!r:x", payload={"n": 5}, now=T0)
        await repo.queue(s, room_id="!r:x", payload={"n": 6}, now=T0)
        assert await repo.outbox_depth(s) == 6
    assert await bodies(db) == [1, 2, 3, 4, 5, 6]
    async with db.read() as s:
        got = await repo.get_outbox(s, fifth)
        assert got is not None
        assert got.payload == {"n": 5}


async def test_only_what_may_read_the_outbox_or_the_direct_chats_writes_the_rows_first(
    db: Database,
) -> None:
    # A reminder reads each person's memberships and guest invitations between the direct
    # messages it queues: those queries need not wait for the rows, and the rows are
    # written together at the commit. A query of the outbox, or a change of the direct
    # chats their rooms are looked up in, comes after them.
    def still_queued(s: AsyncSession) -> int:
        queued = s.info.get(repo.QUEUED)
        return len(queued.rows) if queued is not None else 0

    async with db.session() as s:
        await repo.batch_outbox(s)
        batching = not db.is_sqlite
        await repo.enqueue_dm(s, "@p:x", payload={"n": 1}, now=T0)
        await repo.queue(s, room_id="!r:x", payload={"n": 2}, now=T0)
        await repo.roles_of(s, "@p:x")  # a prepared query of other tables
        await s.execute(select(Membership).where(Membership.user_id == "@p:x"))  # an ORM one
        assert still_queued(s) == (2 if batching else 0)
        await s.execute(select(DirectRoom))  # the direct chats
        assert still_queued(s) == 0
        await repo.enqueue_dm(s, "@q:x", payload={"n": 3}, now=T0)
        await s.execute(select(func.count()).select_from(OutboxMessage))  # the outbox
        assert still_queued(s) == 0
        await repo.enqueue_dm(s, "@r:x", payload={"n": 4}, now=T0)
        await repo.set_direct_room(s, "@r:x", "!dm-r:x", now=T0)  # its room, known now
        assert still_queued(s) == 0
    assert await bodies(db) == [1, 2, 3, 4]
    async with db.read() as s:
        rows = list((await s.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars())
    assert rows[3].room_id is None and rows[3].to_user == "@r:x"  # as it was when queued


async def test_a_transaction_rolled_back_writes_nothing_it_queued(db: Database) -> None:
    async def fails() -> None:
        async with db.session() as s:
            await repo.batch_outbox(s)
            await repo.queue(s, room_id="!r:x", payload={"n": 1}, now=T0)
            await repo.enqueue_dm(s, "@p:x", payload={"n": 2}, now=T0)
            raise Boom

    with pytest.raises(Boom):
        await fails()
    async with db.session() as s:
        await repo.batch_outbox(s)
        await repo.queue(s, room_id="!r:x", payload={"n": 3}, now=T0)
    assert await bodies(db) == [3]


async def test_a_savepoint_rolled_back_takes_what_was_queued_in_it_and_nothing_before(
    db: Database,
) -> None:
    async with db.session() as s:
        await repo.batch_outbox(s)
        await repo.queue(s, room_id="!r:x", payload={"n": 1}, now=T0)

        async def fails() -> None:
            async with s.begin_nested():
                await repo.queue(s, room_id="!r:x", payload={"n": 2}, now=T0)
                await repo.enqueue_dm(s, "@p:x", payload={"n": 3}, now=T0)
                raise Boom

        with pytest.raises(Boom):
            await fails()
        await repo.queue(s, room_id="!r:x", payload={"n": 4}, now=T0)
        async with s.begin_nested():
            await repo.queue(s, room_id="!r:x", payload={"n": 5}, now=T0)
        await repo.queue(s, room_id="!r:x", payload={"n": 6}, now=T0)
    assert await bodies(db) == [1, 4, 5, 6]


async def test_a_savepoint_rolled_back_undoes_the_first_statement_run_inside_it(
    db: Database,
) -> None:
    """The repository runs its statements on the connection the session gave it before;
    the savepoint must be on the database before them, or they outlive its rollback (a
    private command refused after it wrote, a trial erasure)."""
    async with db.session() as s:
        await repo.enqueue(s, room_id="!r:x", payload={"n": 1}, now=T0)

        async def fails() -> None:
            async with s.begin_nested():
                await repo.enqueue(s, room_id="!r:x", payload={"n": 2}, now=T0)
                await repo.set_state(s, "tried", "yes", now=T0)
                raise Boom

        with pytest.raises(Boom):
            await fails()
        assert await repo.get_state(s, "tried") is None
    assert await bodies(db) == [1]
    async with db.read() as s:
        assert await repo.get_state(s, "tried") is None
