"""Claims in the database, on SQLite and PostgreSQL: exact money, the schema, and a whole
claim's life from draft to paid."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from commands.claims.finance import claims_csv
from storage import claims as store
from storage.models import Base
from tests.support.cast import ADMIN, ANNA, MGMT, MOD
from tests.support.database import TestDatabase
from tests.support.world import CLAIMS_NOW, World, claimable_event


async def test_money_keeps_every_cent_and_rates_every_digit(world: World) -> None:
    world.now = CLAIMS_NOW
    event = await claimable_event(world)
    async with world.db.session() as s:
        claim = await store.create_claim(
            s, user_id=ANNA, event_id=event, cop_code="HDEV", days=2, now=world.now
        )
        await store.add_line(
            s,
            claim,
            category="other",
            amount=Decimal("9999999.99"),
            currency="HUF",
            rate=Decimal("386.123456"),
            eur=Decimal("25896.51"),
            quantity=Decimal("12.5"),
            distance_km=None,
            note="",
            now=world.now,
        )
    async with world.db.session() as s:
        [line] = await store.lines_of(s, claim.id)
        raw = (await s.execute(text("SELECT amount, eur, rate FROM claim_lines"))).one()
    assert line.amount == Decimal("9999999.99")
    assert line.eur == Decimal("25896.51")
    assert line.rate == Decimal("386.123456")
    assert line.quantity == Decimal("12.5")
    assert (int(raw[0]), int(raw[1]), raw[2]) == (999999999, 2589651, "386.123456")


async def test_a_float_never_reaches_the_money_columns(world: World) -> None:
    world.now = CLAIMS_NOW
    event = await claimable_event(world)
    async with world.db.sessions() as s:
        claim = await store.create_claim(
            s, user_id=ANNA, event_id=event, cop_code="HDEV", days=1, now=world.now
        )
        claim.claimed = 0.1  # type: ignore[assignment]
        with pytest.raises(Exception, match="never a float"):
            await s.flush()
        await s.rollback()


async def test_the_migration_creates_exactly_the_claim_tables_of_the_models(
    db: TestDatabase,
) -> None:
    ours = {"claims", "claim_lines", "exchange_rates"}

    def include_name(name: str | None, type_: str, parent: object) -> bool:
        return type_ != "table" or name in ours

    def include_object(obj: object, name: str | None, type_: str, *_: object) -> bool:
        return type_ != "table" or name in ours

    def diff(sync_conn: object) -> list[object]:
        context = MigrationContext.configure(
            sync_conn,  # type: ignore[arg-type]
            opts={"include_name": include_name, "include_object": include_object},
        )
        return list(compare_metadata(context, Base.metadata))

    async with db.engine.connect() as conn:
        changes = await conn.run_sync(diff)
    assert changes == []


async def test_a_claim_goes_from_draft_to_paid_and_the_export_adds_up(world: World) -> None:
    world.now = CLAIMS_NOW
    event = await claimable_event(world)
    steps = [
        (ANNA, f"claim new E{event}", None, None),
        (ANNA, "claim add C1 rail 1105 SEK Brussels-Oslo", None, None),
        (ANNA, "claim attach C1 1", None, "$ticket"),
        (ANNA, "claim add C1 accommodation 400 nights=2", None, None),
        (ANNA, "claim attach C1", None, "$hotel"),
        (ANNA, "claim add C1 car 123.4", None, None),
        (ANNA, "claim add C1 daily-allowance", None, None),
        (ANNA, "claim submit C1", None, None),
        (MOD, 'claim approve C1 600.01 "one night less"', MGMT, None),
        (ADMIN, "claim paid C1", MGMT, None),
    ]
    world.upload("$ticket", ANNA)
    world.upload("$hotel", ANNA, mimetype="image/jpeg")
    for sender, command, room, reply_to in steps:
        result = await world.send(sender, command, room, reply_to=reply_to)
        assert result.outcome == "ok", (command, result.text)
    async with world.db.session() as s:
        claim = await store.get_claim(s, 1)
        assert claim is not None
        # 100.00 + 336.00 (capped from 400) + 27.15 (123.4 km) + 226.00
        assert (claim.status, claim.claimed, claim.allowed, claim.approved) == (
            "paid",
            Decimal("753.15"),
            Decimal("689.15"),
            Decimal("600.01"),
        )
        assert claim.paid_by == ADMIN
        ctx = world.context(s, ADMIN)
        data, count = await claims_csv(ctx, {"HDEV"})
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert count == 4
    assert sum(Decimal(row["approved_eur"]) for row in rows) == Decimal("600.01")
    assert sum(Decimal(row["amount_eur"]) for row in rows) == Decimal("753.15")
    assert rows[0]["amount"] == "1105.00"
    assert rows[0]["currency"] == "SEK"
    actions = [entry.action for entry in await world.audit()]
    assert actions == ["claim.new", "claim.submit", "claim.approve", "claim.paid"]


async def test_two_decisions_on_one_claim_cannot_both_win(world: World) -> None:
    world.now = CLAIMS_NOW
    event = await claimable_event(world)
    for command in (f"claim new E{event}", "claim add C1 other 10", "claim submit C1"):
        await world.send(ANNA, command)
    first = await world.send(MOD, "claim approve C1", MGMT)
    second = await world.send(ADMIN, "claim reject C1 duplicate", MGMT)
    assert first.outcome == "ok"
    assert "approved and is waiting to be paid" in second.here
    async with world.db.session() as s:
        locked = await store.get_claim(s, 1, lock=True)
        assert locked is not None and locked.status == "approved"


async def test_a_persons_claim_data_can_be_read_back_for_them(world: World) -> None:
    world.now = CLAIMS_NOW
    event = await claimable_event(world)
    await world.send(ANNA, f"claim new E{event}")
    await world.send(ANNA, "claim add C1 other 10.50 parking")
    async with world.db.session() as s:
        data = await store.data_of(s, ANNA)
    assert data == [
        {
            "claim": "C1",
            "event": f"E{event}",
            "cop": "HDEV",
            "status": "draft",
            "claimed_eur": "10.50",
            "approved_eur": None,
            "lines": [
                {
                    "category": "other",
                    "amount": "10.50",
                    "currency": "EUR",
                    "eur": "10.50",
                    "note": "parking",
                    "receipt": None,
                }
            ],
        }
    ]
