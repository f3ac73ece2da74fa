"""A backlog group's commands claimed, and their senders' roles read, in one statement
(``repo.claim_group``, PostgreSQL; SQLite claims each command with its own statement): each
row is claimed once, rows handled elsewhere are left out, the roles are those of each
sender, rows the group did not reach become pending again, and any statement that may
change what the claims were read from says so (the group must end there)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import Database, repo
from storage import events as events_store
from storage import membership as ms
from storage.models import InboundEvent, Membership

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ANNA, BEN, MODERATOR, NOBODY = "@anna:x", "@ben:x", "@mod:x", "@nobody:x"


async def stored(
    s: AsyncSession, event_id: str, sender: str, *, replaces: str | None = None
) -> InboundEvent:
    """A pending command (or, ``replaces`` given, an edit of one) as the sync stores it."""
    row = await repo.add_inbound(
        s,
        event_id=event_id,
        room_id="!r:x",
        sender=sender,
        origin_ts=T0,
        content={"type": "m.room.message", "content": {"body": "!help"}},
        kind="command" if replaces is None else "edit",
        replaces=replaces,
        now=T0,
    )
    assert row is not None
    return row


async def world(db: Database) -> list[InboundEvent]:
    """HDEV and SOLAR; Anna a member of HDEV and applicant to SOLAR, the moderator a
    moderator of HDEV; five pending commands, from Anna, Ben, the moderator, nobody and Anna,
    and an edit of the third already handled."""
    async with db.session() as s:
        await repo.sync_cops(s, [("HDEV", "Heavy-duty"), ("SOLAR", "Solar")], now=T0)
        await repo.seed_member(
            s,
            user_id=ANNA,
            org="City",
            country="BE",
            authority_type="local-authority",
            cop_code="HDEV",
            now=T0,
        )
        s.add(Membership(cop_code="SOLAR", user_id=ANNA, status="pending", applied_at=T0))
        await ms.add_moderator(s, MODERATOR, "HDEV", T0)
        rows = [
            await stored(s, f"$c{n}", sender)
            for n, sender in enumerate([ANNA, BEN, MODERATOR, NOBODY, ANNA])
        ]
        edit = await stored(s, "$edit", MODERATOR, replaces="$c2")
        await s.execute(
            update(InboundEvent).where(InboundEvent.id == edit.id).values(status="done")
        )
    return rows


async def statuses(db: Database, rows: list[InboundEvent]) -> list[tuple[str, str | None]]:
    async with db.read() as s:
        found = [await repo.find_inbound(s, row.event_id) for row in rows]
    return [(f.status, f.outcome) for f in found if f is not None]


async def test_a_group_is_claimed_at_once_with_each_senders_roles(db: Database) -> None:
    rows = await world(db)
    async with db.session() as s:  # handled elsewhere already: not claimed again
        assert await repo.claim_inbound(s, rows[1].id, "ok", now=T0)
    async with db.session() as s:
        claims = await repo.claim_group(s, rows, T0)
        if db.is_sqlite:
            assert claims is None  # each is claimed with claim_with_roles
            return
        assert claims is not None and not claims.unsettled
        assert claims.claimed == {
            rows[0].id: (False, (set(), {"HDEV": "member", "SOLAR": "pending"})),
            rows[2].id: (True, ({"HDEV"}, {})),  # its edit was handled before it
            rows[3].id: (False, (set(), {})),
            rows[4].id: (False, (set(), {"HDEV": "member", "SOLAR": "pending"})),
        }
        # What claim_with_roles says of one, the group's claim said of it.
        async with db.session() as other:
            assert await repo.roles_of(other, MODERATOR) == ({"HDEV"}, {})
    assert await statuses(db, rows) == [("done", "ok")] * 5


async def test_a_group_with_an_edit_in_it_is_claimed_one_by_one(db: Database) -> None:
    # An edit handled in a group may claim the message it changes in that message's place
    # ("superseded"): that message must still be pending when the edit is handled.
    rows = await world(db)
    async with db.session() as s:
        late_edit = await stored(s, "$edit-of-c4", ANNA, replaces="$c4")
    async with db.session() as s:
        assert await repo.claim_group(s, [late_edit, *rows], T0) is None
    assert await statuses(db, rows) == [("pending", None)] * 5


async def test_rows_the_group_did_not_reach_are_pending_again(db: Database) -> None:
    rows = await world(db)
    async with db.session() as s:
        claims = await repo.claim_group(s, rows, T0)
        if claims is None:
            return
        await repo.unclaim(s, [row.id for row in rows[2:]])
    assert await statuses(db, rows) == [("done", "ok")] * 2 + [("pending", None)] * 3
    async with db.read() as s:
        pending = await repo.pending_inbound(s, 10)
    assert [row.event_id for row in pending] == ["$c2", "$c3", "$c4"]
    assert all(row.handled_at is None for row in pending)


async def test_a_group_rolled_back_leaves_every_row_pending(db: Database) -> None:
    rows = await world(db)

    class Boom(Exception):
        pass

    try:
        async with db.session() as s:
            claims = await repo.claim_group(s, rows, T0)
            raise Boom
    except Boom:
        pass
    assert claims is None or len(claims.claimed) == 5
    assert await statuses(db, rows) == [("pending", None)] * 5


async def test_statements_that_may_change_the_claims_or_roles_are_noticed(db: Database) -> None:
    rows = await world(db)
    async with db.session() as s:
        event = await events_store.create_event(
            s,
            cop_code="HDEV",
            kind="online-meeting",
            title="Charging",
            starts_at=datetime(2026, 4, 1, 9, tzinfo=UTC),
            ends_at=datetime(2026, 4, 1, 10, tzinfo=UTC),
            timezone="Europe/Brussels",
            created_by=MODERATOR,
            capacity=5,
            now=T0,
        )
        event_id = event.id

    async def after(change: Callable[[AsyncSession], Awaitable[None]]) -> bool:
        """Whether the claims are unsettled after ``change`` (run in a group's transaction)."""
        async with db.session() as s:
            claims = await repo.claim_group(s, rows, T0)
            assert claims is not None
            assert not claims.unsettled
            await change(s)
            await s.flush()
            unsettled = claims.unsettled
            await s.rollback()
        return unsettled

    async def read_roles(s: AsyncSession) -> None:
        await repo.roles_of(s, ANNA)
        await s.execute(select(Membership))

    async def answer(s: AsyncSession) -> None:
        locked = await events_store.lock_event(s, event_id)
        assert locked is not None
        await events_store.set_rsvp(s, locked, ANNA, "yes", T0)
        await repo.queue(s, room_id="!r:x", payload={"body": "yes"}, now=T0)

    async def own_outcome(s: AsyncSession) -> None:
        await repo.set_inbound_outcome(s, rows[0].id, "refused")

    async def change_membership(s: AsyncSession) -> None:
        found = await s.scalar(select(Membership).where(Membership.cop_code == "SOLAR"))
        assert found is not None
        found.status = "member"

    async def add_moderator(s: AsyncSession) -> None:
        await ms.add_moderator(s, BEN, "HDEV", T0)

    async def orm_update(s: AsyncSession) -> None:
        await s.execute(
            update(InboundEvent).where(InboundEvent.id == rows[4].id).values(outcome="x")
        )

    async def delete_anything(s: AsyncSession) -> None:
        found = await s.scalar(select(Membership).where(Membership.cop_code == "SOLAR"))
        assert found is not None
        await s.delete(found)

    async def other_claim(s: AsyncSession) -> None:
        await repo.claim_inbound(s, rows[4].id, "superseded", now=T0)

    if db.is_sqlite:
        return  # (no group claims: each command's claim reads the roles as they are)
    assert not await after(read_roles)
    assert not await after(answer)  # an !rsvp's statements write the event's tables only
    assert not await after(own_outcome)
    assert await after(change_membership)
    assert await after(add_moderator)
    assert await after(orm_update)
    assert await after(delete_anything)
    assert await after(other_claim)
