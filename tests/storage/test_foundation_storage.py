"""Foundation storage on SQLite and PostgreSQL: migrations, exactly-once inbox, outbox order."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from storage import Database, DatabaseTooNew, repo
from storage.db import SCHEMA_HEADS, alembic_config
from storage.models import OutboxMessage
from tests.dbs import PG_ADMIN_URL
from tests.support.database import migrate

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


async def test_migrations_run_from_empty_and_again_without_change(db: Database) -> None:
    heads = await db.current_heads()
    script = ScriptDirectory.from_config(alembic_config())
    assert set(heads) == set(script.get_heads())
    before, after = await db.upgrade()
    assert before == after == heads


def test_the_schema_heads_the_bot_starts_on_are_alembics_own() -> None:
    """The bot skips Alembic when the database is at ``SCHEMA_HEADS``: a migration added
    without naming it there would never run."""
    script = ScriptDirectory.from_config(alembic_config())
    assert set(SCHEMA_HEADS) == set(script.get_heads())


async def test_a_start_on_a_database_at_the_newest_schema_leaves_alembic_alone(
    db: Database,
) -> None:
    """Starting on an up-to-date database neither changes it nor imports Alembic (about
    0.2 s of every start); an older one is upgraded, as before."""
    code = (
        "import asyncio, sys\n"
        "from storage import Database\n"
        "async def main():\n"
        f"    db = Database({db.url!r})\n"
        "    print(await db.upgrade())\n"
        "    await db.dispose()\n"
        "asyncio.run(main())\n"
        "print('alembic' in sys.modules)\n"
    )
    done = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await done.communicate()
    heads = tuple(sorted(SCHEMA_HEADS))
    assert out.decode().split("\n")[:2] == [str((heads, heads)), "False"]
    await migrate(db, lambda cfg: command.downgrade(cfg, "0009i-1"))
    before, after = await db.upgrade()
    assert before != heads and after == heads


async def test_a_database_from_a_newer_version_is_refused(db: Database) -> None:
    async with db.session() as s:
        await s.execute(text("INSERT INTO alembic_version (version_num) VALUES ('fffffffffff')"))
    with pytest.raises(DatabaseTooNew, match="newer version"):
        await db.upgrade()


async def test_a_session_that_commits_and_goes_on_keeps_its_writes(db: Database) -> None:
    """The statements every command runs reuse the connection of a transaction made by
    ``Database.session``. A session made otherwise (a script, a test) may commit and go on
    in a new transaction: what it writes then is stored too, not sent to the connection of
    the transaction that ended."""
    async with db.sessions() as s:
        await repo.set_state(s, "sync_token", "s1", now=T0)
        await s.commit()
        await repo.set_state(s, "sync_token", "s2", now=T0)
        await s.commit()
    async with db.read() as s:
        assert await repo.get_state(s, "sync_token") == "s2"


async def test_a_restart_of_postgresql_is_not_seen_by_the_next_transaction(db: Database) -> None:
    """The server ended the pooled connections (a restart, an administrator): the next
    transaction gets a new connection and works, at once, without an error to retry."""
    if db.is_sqlite:
        pytest.skip("SQLite has no server to restart")
    async with db.session() as s:
        await repo.set_state(s, "sync_token", "s1", now=T0)
    name = db.url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        ended = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
    finally:
        await admin.close()
    assert ended >= 1
    await asyncio.sleep(0.2)  # the closed socket reaches the client
    async with db.session() as s:
        await repo.set_state(s, "sync_token", "s2", now=T0)
    async with db.read() as s:
        assert await repo.get_state(s, "sync_token") == "s2"


async def test_state_values_are_kept_and_replaced(db: Database) -> None:
    async with db.session() as s:
        await repo.set_state(s, "sync_token", "s1", now=T0)
    async with db.session() as s:
        assert await repo.get_state(s, "sync_token") == "s1"
        await repo.set_state(s, "sync_token", "s2", now=T0)
    async with db.session() as s:
        assert await repo.get_state(s, "sync_token") == "s2"
        assert await repo.get_state(s, "missing") is None


async def add(db: Database, event_id: str, room: str = "!r:x") -> bool:
    async with db.session() as s:
        stored = await repo.add_inbound(
            s,
            event_id=event_id,
            room_id=room,
            sender="@a:x",
            origin_ts=datetime.now(UTC),
            content={"content": {"body": "!help"}},
            now=T0,
        )
    return stored is not None


async def test_an_event_received_twice_is_stored_once(db: Database) -> None:
    assert await add(db, "$one") is True
    assert await add(db, "$one") is False
    async with db.session() as s:
        assert [r.event_id for r in await repo.pending_inbound(s)] == ["$one"]


async def test_a_stored_event_comes_back_as_the_worker_would_read_it(db: Database) -> None:
    # The sync loop hands the returned row to the room's worker instead of reading it back.
    content = {"type": "m.room.message", "content": {"body": "!rsvp E1 yes", "n": [1, 2]}}
    async with db.session() as s:
        handed = await repo.add_inbound(
            s, event_id="$e", room_id="!r:x", sender="@a:x", origin_ts=T0, content=content, now=T0
        )
    async with db.read() as s:
        (read,) = await repo.pending_inbound(s)
    assert handed is not None
    fields = ["id", "event_id", "room_id", "sender", "kind", "origin_ts", "content", "status"]
    assert {f: getattr(handed, f) for f in fields} == {f: getattr(read, f) for f in fields}


async def test_only_one_of_many_concurrent_workers_can_claim_an_event(db: Database) -> None:
    await add(db, "$contested")
    async with db.session() as s:
        row_id = (await repo.pending_inbound(s))[0].id

    async def worker() -> bool:
        async with db.session() as s:
            claimed = await repo.claim_inbound(s, row_id, "ok", now=T0)
            await asyncio.sleep(0.05)  # hold the transaction open a moment
            return claimed

    results = await asyncio.gather(*(worker() for _ in range(8)))
    assert results.count(True) == 1
    async with db.session() as s:
        assert await repo.pending_inbound(s) == []
        assert await repo.count_inbound(s, "done") == 1


async def test_a_rolled_back_claim_leaves_the_event_pending(db: Database) -> None:
    await add(db, "$retry")
    async with db.session() as s:
        row_id = (await repo.pending_inbound(s))[0].id

    async def handle_and_crash() -> None:
        async with db.session() as s:
            assert await repo.claim_inbound(s, row_id, "ok", now=T0)
            await repo.enqueue(s, room_id="!r:x", payload={"body": "reply"}, now=T0)
            raise RuntimeError("crash before commit")

    with pytest.raises(RuntimeError):
        await handle_and_crash()
    async with db.session() as s:
        assert len(await repo.pending_inbound(s)) == 1
        assert await repo.outbox_depth(s) == 0


async def test_the_outbox_keeps_insertion_order_and_forgets_sent_rows(db: Database) -> None:
    async with db.session() as s:
        ids = [
            await repo.enqueue(s, room_id="!r:x", payload={"body": str(i)}, now=T0)
            for i in range(5)
        ]
        dm = await repo.enqueue(s, to_user="@new:x", payload={"body": "hi"}, now=T0)
    async with db.session() as s:
        assert [r.id for r in await repo.unsent(s)] == [*ids, dm]
        await repo.mark_sent(s, ids[0], "$sent0", now=T0)
        await repo.mark_attempt(s, ids[1], error="M_LIMIT_EXCEEDED", not_before=None)
        await repo.resolve_outbox_room(s, "@new:x", "!dm:x")
    async with db.session() as s:
        rows = await repo.unsent(s)
        assert [r.id for r in rows] == [*ids[1:], dm]
        assert rows[0].attempts == 1
        assert rows[-1].room_id == "!dm:x"
        assert await repo.outbox_depth(s) == 5


async def test_a_direct_message_goes_to_the_known_direct_chat_or_opens_one(
    db: Database,
) -> None:
    async with db.session() as s:
        await repo.set_direct_room(s, "@known:x", "!dm-known:x", now=T0)
        await repo.enqueue_dm(s, "@known:x", payload={"body": "to a known chat"}, now=T0)
        await repo.enqueue_dm(
            s, "@new:x", kind="file", payload={"body": "to a new chat"}, tag="claim:3", now=T0
        )
    async with db.session() as s:
        known, new = await repo.unsent(s)
    # Both for their person's eyes only: the sender checks the room still holds just them.
    assert (known.room_id, known.to_user, known.private_to) == ("!dm-known:x", None, "@known:x")
    assert (known.kind, known.payload, known.tag) == ("message", {"body": "to a known chat"}, None)
    assert (new.room_id, new.to_user, new.private_to) == (None, "@new:x", "@new:x")
    assert (new.kind, new.payload, new.tag) == ("file", {"body": "to a new chat"}, "claim:3")
    assert known.created_at == T0 and known.attempts == 0 and known.failed is False


async def test_a_tag_finds_the_message_a_reaction_points_at(db: Database) -> None:
    async with db.session() as s:
        row = await repo.enqueue(s, room_id="!r:x", payload={}, tag="application:7", now=T0)
        await repo.mark_sent(s, row, "$notice", now=T0)
    async with db.session() as s:
        assert await repo.tag_of_sent_event(s, "$notice") == "application:7"
        assert await repo.tag_of_sent_event(s, "$other") is None


async def test_config_moderators_follow_the_config(db: Database) -> None:
    async with db.session() as s:
        await repo.sync_cops(s, [("HDEV", "Heavy-duty EVs"), ("SOLAR", "Solar")], now=T0)
        await repo.sync_config_moderators(s, {"HDEV": ["@m:x"], "SOLAR": ["@m:x", "@n:x"]}, now=T0)
    async with db.session() as s:
        assert await repo.moderated_cops(s, "@m:x") == {"HDEV", "SOLAR"}
        await repo.sync_config_moderators(s, {"HDEV": ["@m:x"], "SOLAR": []}, now=T0)
    async with db.session() as s:
        assert await repo.moderated_cops(s, "@m:x") == {"HDEV"}
        assert await repo.moderated_cops(s, "@n:x") == set()


async def test_audit_entries_come_back_newest_first_and_per_cop(db: Database) -> None:
    async with db.session() as s:
        for i, cop in enumerate(["HDEV", "SOLAR", "HDEV"]):
            await repo.audit(s, actor="@a:x", action=f"step{i}", cop_code=cop, now=T0)
    async with db.session() as s:
        assert [e.action for e in await repo.recent_audit(s, 10)] == ["step2", "step1", "step0"]
        assert [e.action for e in await repo.recent_audit(s, 10, {"HDEV"})] == ["step2", "step0"]


async def test_times_come_back_timezone_aware(db: Database) -> None:
    await add(db, "$tz")
    async with db.session() as s:
        row = (await repo.pending_inbound(s))[0]
    assert row.origin_ts.tzinfo is not None
    assert row.received_at.utcoffset().total_seconds() == 0


async def test_many_sent_rows_are_marked_at_once_and_an_erasure_row_is_scrubbed(
    db: Database,
) -> None:
    async with db.session() as s:
        plain = await repo.enqueue(s, room_id="!r:x", payload={"body": "a"}, now=T0)
        erased = await repo.enqueue(
            s, room_id="!r:x", payload={"body": "bye"}, tag=repo.ERASURE_TAG, now=T0
        )
        waiting = await repo.enqueue(s, room_id="!r:x", payload={"body": "c"}, now=T0)
    async with db.session() as s:
        await repo.mark_sent_many(s, [(plain, "$a", T0), (erased, "$b", T0)])
    async with db.session() as s:
        assert [r.id for r in await repo.unsent(s)] == [waiting]
        kept = await repo.get_outbox(s, plain)
        gone = await repo.get_outbox(s, erased)
        assert kept is not None and kept.result == "$a" and kept.payload == {"body": "a"}
        assert gone is not None and gone.result == "$b" and gone.payload == {}
        assert gone.scrubbed_at is not None


async def _member_of_hdev(s: AsyncSession, user_id: str) -> None:
    await repo.seed_member(
        s,
        user_id=user_id,
        org="City",
        country="BE",
        authority_type="local-authority",
        cop_code="HDEV",
        now=T0,
    )


async def test_roles_of_reads_moderated_cops_and_memberships_together(db: Database) -> None:
    async with db.session() as s:
        await repo.sync_cops(s, [("HDEV", "Heavy-duty EVs"), ("SOLAR", "Solar")], now=T0)
        await repo.sync_config_moderators(s, {"SOLAR": ["@m:x"]}, now=T0)
        await _member_of_hdev(s, "@m:x")
    async with db.session() as s:
        assert await repo.roles_of(s, "@m:x") == ({"SOLAR"}, {"HDEV": "member"})
        assert await repo.roles_of(s, "@nobody:x") == (set(), {})


async def test_a_command_is_claimed_with_its_senders_roles_as_the_transaction_sees_them(
    db: Database,
) -> None:
    """On PostgreSQL the roles come in the claim's round trip; what they say must be what
    reading them after the claim says, a change earlier in the same transaction included.
    Elsewhere they are left to be read when needed."""
    async with db.session() as s:
        await repo.sync_cops(s, [("HDEV", "Heavy-duty EVs"), ("SOLAR", "Solar")], now=T0)
        await repo.sync_config_moderators(s, {"SOLAR": ["@m:x"]}, now=T0)
        row = await repo.add_inbound(
            s,
            event_id="$c",
            room_id="!r:x",
            sender="@m:x",
            origin_ts=T0,
            content={"content": {"body": "!help"}},
            now=T0,
        )
    assert row is not None
    async with db.session() as s:
        # Approved by a command handled just before, in the same transaction (a backlog).
        await _member_of_hdev(s, "@m:x")
        await s.flush()
        claimed = await repo.claim_with_roles(s, row.id, "$c", T0, "@m:x")
        assert claimed is not None
        edited, roles = claimed
        assert edited is False
        if db.is_sqlite:
            assert roles is None
        else:
            assert roles == await repo.roles_of(s, "@m:x") == ({"SOLAR"}, {"HDEV": "member"})
    async with db.session() as s:
        assert await repo.claim_with_roles(s, row.id, "$c", T0, "@m:x") is None  # done
    async with db.read() as s:
        stored = await repo.find_inbound(s, "$c")
        assert stored is not None and stored.status == "done" and stored.outcome == "ok"


async def test_pending_rooms_lists_each_room_with_work_once_oldest_first(db: Database) -> None:
    for event_id, room in [("$1", "!b:x"), ("$2", "!a:x"), ("$3", "!b:x"), ("$4", "!c:x")]:
        async with db.session() as s:
            await repo.add_inbound(
                s,
                event_id=event_id,
                room_id=room,
                sender="@a:x",
                origin_ts=T0,
                content={"content": {"body": "!help"}},
                now=T0,
            )
    async with db.session() as s:
        row_id = next(r.id for r in await repo.pending_inbound(s) if r.event_id == "$4")
        assert await repo.claim_inbound(s, row_id, "ok", now=T0)
    async with db.read() as s:
        assert await repo.pending_rooms(s) == ["!b:x", "!a:x"]


async def test_an_edit_handled_before_the_edit_index_upgrade_is_still_found(db: Database) -> None:
    # Revision 0009i replaced the index that finds a message's edits: a message whose key
    # came after its edit's, stored before the upgrade, is still known as edited after it.
    await migrate(db, lambda c: command.downgrade(c, "0009i-1"))
    async with db.session() as s:
        message = await repo.add_inbound(
            s, event_id="$late", room_id="!r:x", sender="@a:x", origin_ts=T0, content={}, now=T0
        )
        edit = await repo.add_inbound(
            s,
            event_id="$edit",
            room_id="!r:x",
            sender="@a:x",
            origin_ts=T0,
            content={},
            kind="edit",
            replaces="$late",
            now=T0,
        )
        assert message is not None and edit is not None
        assert await repo.claim_inbound(s, edit.id, "ok", now=T0)
    await migrate(db, lambda c: command.upgrade(c, "heads"))

    async with db.session() as s:
        assert await repo.claim_to_handle(s, message.id, "$late", T0) is True


async def test_json_columns_keep_what_they_are_given_exactly(db: Database) -> None:
    """Event content and outbox payloads come back as they went in, letters beyond ASCII
    and integers beyond 64 bits included (orjson refuses those: the json module takes them),
    and a value JSON cannot hold is refused, as before."""
    content = {
        "type": "m.room.message",
        "content": {"msgtype": "m.text", "body": "!help Tromsø ☃ \u2028 end", "n": 2**70},
        "unsigned": {"age": -1, "nested": [{"a": None}, 1.5, True]},
    }
    async with db.session() as s:
        row = await repo.add_inbound(
            s,
            event_id="$json",
            room_id="!r:x",
            sender="@a:x",
            origin_ts=T0,
            content=content,
            now=T0,
        )
        assert row is not None
        queued = await repo.enqueue(
            s, room_id="!r:x", payload={"body": "Liège", "k": 2**70}, now=T0
        )
    async with db.read() as s:
        assert [r.content for r in await repo.pending_inbound(s) if r.event_id == "$json"] == [
            content
        ]
        sent = await s.get(OutboxMessage, queued)
        assert sent is not None and sent.payload == {"body": "Liège", "k": 2**70}
    with pytest.raises(TypeError, match="not JSON serializable"):
        async with db.session() as s:
            await repo.enqueue(s, room_id="!r:x", payload={"when": T0}, now=T0)
