"""The money rules of travel claims that people could bend, through their commands on both
databases: the Commission's monthly rates (InforEuro) for other currencies, accommodation
capped over the whole claim, the allowance of a short meeting, one open claim per person
and event, and events of other CoPs staying hidden."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from storage import claims as store
from tests.support.cast import ANNA, MGMT, MOD, SOFIA
from tests.support.database import TestDatabase
from tests.support.world import CLAIMS_NOW, World, claimable_event, new_claim

ONE_DAY_MEETING = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)  # 10:00–17:00 in Brussels


@pytest.fixture
async def world(db: TestDatabase) -> World:
    """Only the rates in the database (the cast's SEK override is left out)."""
    world = await World(db, claims={"rates_url": ""}).seed()
    world.now = CLAIMS_NOW
    return world


async def store_rates(world: World, month: str, **rates: str) -> None:
    async with world.db.session() as s:
        await store.save_rates(
            s,
            month,
            {code: Decimal(rate) for code, rate in rates.items()},
            source="test",
            now=world.now,
        )


# --- currencies ------------------------------------------------------------------------------


async def test_an_expense_in_sek_converts_at_the_rate_of_the_events_month(world: World) -> None:
    await store_rates(world, "2026-02", SEK="11.20")
    await store_rates(world, "2026-03", SEK="11.00", NOK="11.50")
    code = await new_claim(world)  # 10–11 March
    result = await world.send(ANNA, f"claim add {code} air 1450 SEK km=1100")
    assert result.outcome == "ok", result.here
    assert (
        "SEK 1,450.00 = EUR 131.82 (at 11.00 SEK per EUR, InforEuro rate of March 2026)"
        in result.here
    )
    assert "latest I have" not in result.here
    lower = await world.send(ANNA, f"claim add {code} other 115 nok ferry")
    assert "NOK 115.00 = EUR 10.00" in lower.here


async def test_a_month_without_a_rate_yet_uses_the_latest_and_says_so(world: World) -> None:
    await store_rates(world, "2026-01", SEK="11.40")
    await store_rates(world, "2026-02", SEK="11.20")
    code = await new_claim(world)
    result = await world.send(ANNA, f"claim add {code} rail 1120 SEK")
    assert "SEK 1,120.00 = EUR 100.00 (at 11.20 SEK per EUR, InforEuro rate of February 2026)" in (
        result.here
    )
    assert (
        "The Commission has no SEK rate for March 2026 that I know of yet, so I used the "
        "latest I have, of February 2026." in result.here
    )


async def test_a_rate_in_the_configuration_overrides_the_fetched_one(db: TestDatabase) -> None:
    world = await World(db, claims={"rates_url": "", "rates": {"SEK": "10"}}).seed()
    world.now = CLAIMS_NOW
    await store_rates(world, "2026-03", SEK="11.00")
    code = await new_claim(world)
    result = await world.send(ANNA, f"claim add {code} other 100 SEK")
    assert "SEK 100.00 = EUR 10.00 (at 10 SEK per EUR, rate set by the Secretariat)" in (
        result.here
    )


async def test_a_currency_without_any_rate_is_refused_with_what_to_do(world: World) -> None:
    await store_rates(world, "2026-03", SEK="11.00")
    code = await new_claim(world)
    result = await world.send(ANNA, f"claim add {code} rail 10 USD")
    assert result.outcome == "refused"
    assert "USD is not a currency I have a rate for; I have rates for EUR, SEK" in result.here
    assert "give the amount in EUR" in result.here
    note = await world.send(ANNA, f"claim add {code} other 20 all tickets")
    assert "EUR 20.00 · all tickets" in note.here  # ALL (the lek) only in capitals


# --- accommodation -----------------------------------------------------------------------------


async def test_accommodation_is_capped_over_the_claim_and_nights_over_the_event(
    world: World,
) -> None:
    code = await new_claim(world, start=ONE_DAY_MEETING, hours=7)
    for typed in ("accommodation 300", "accommodation 300", "accommodation 900 nights=10"):
        await world.send(ANNA, f"claim add {code} {typed}")
    shown = await world.send(ANNA, f"claim show {code}")
    assert "Total: EUR 1,500.00 claimed, EUR 168.00 after the caps." in shown.here
    assert "12 nights claimed, but the event allows 1 night (1 day plus 1 travel night)" in (
        shown.here
    )
    async with world.db.read() as s:
        claim = await store.get_claim(s, int(code[1:]))
        assert claim is not None
        lines = await store.lines_of(s, claim.id)
    assert [line.allowed for line in lines] == [Decimal("168.00"), Decimal(0), Decimal(0)]


async def test_approve_defaults_to_what_the_rules_allow(world: World) -> None:
    code = await new_claim(world, start=ONE_DAY_MEETING, hours=7)
    await world.send(ANNA, f"claim add {code} accommodation 300 nights=1")
    await world.send(ANNA, f"claim add {code} accommodation 300 nights=1")
    for line in (1, 2):
        world.upload(f"$hotel{line}", ANNA)
        await world.send(ANNA, f"claim attach {code} {line}", reply_to=f"$hotel{line}")
    submitted = await world.send(ANNA, f"claim submit {code}")
    assert submitted.outcome == "ok", submitted.here
    approved = await world.send(MOD, f"claim approve {code}", MGMT)
    assert f"{code} approved for EUR 168.00" in approved.here
    assert "You claimed EUR 600.00; the caps allow EUR 168.00." in approved.to(ANNA)[0].body


async def test_a_longer_event_allows_its_nights_plus_the_travel_night(world: World) -> None:
    code = await new_claim(world)  # 10–11 March: one night between, one for travel
    result = await world.send(ANNA, f"claim add {code} accommodation 336 nights=2")
    assert "capped" not in result.here
    over = await world.send(ANNA, f"claim add {code} accommodation 100 nights=1")
    assert "3 nights claimed, but the event allows 2 nights" in over.here
    assert "EUR 436.00 (EUR 336.00 after the caps)" in over.here


# --- the daily allowance -------------------------------------------------------------------


async def test_a_thirty_minute_meeting_earns_half_a_daily_allowance(world: World) -> None:
    code = await new_claim(world, kind="in-person-meeting", start=ONE_DAY_MEETING, hours=0.5)
    result = await world.send(ANNA, f"claim add {code} daily-allowance")
    assert "daily-allowance, 0.5 days — EUR 56.50" in result.here
    typed = await world.send(ANNA, f"claim add {code} daily-allowance 113")
    assert "the event lasted under 4 hours, so it counts as 0.5 of a meeting day" in typed.here
    assert "EUR 169.50 (EUR 56.50 after the caps)" in typed.here


async def test_a_full_meeting_day_earns_the_whole_allowance(world: World) -> None:
    code = await new_claim(world, kind="in-person-meeting", start=ONE_DAY_MEETING, hours=6)
    result = await world.send(ANNA, f"claim add {code} daily-allowance")
    assert "daily-allowance, 1 day — EUR 113.00" in result.here


# --- one claim per person and event ----------------------------------------------------------


async def test_the_database_keeps_one_open_claim_per_person_and_event(world: World) -> None:
    number = await claimable_event(world)
    async with world.db.session() as s:
        first = await store.create_claim(
            s, user_id=ANNA, event_id=number, cop_code="HDEV", days=2, now=world.now
        )
        with pytest.raises(store.DuplicateClaim):
            await store.create_claim(
                s, user_id=ANNA, event_id=number, cop_code="HDEV", days=2, now=world.now
            )
        first.status = store.WITHDRAWN
        await s.flush()
        again = await store.create_claim(
            s, user_id=ANNA, event_id=number, cop_code="HDEV", days=2, now=world.now
        )
        assert again.id != first.id


async def test_a_claim_made_at_the_same_moment_gets_a_clear_answer(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    number = await claimable_event(world)
    async with world.db.session() as s:
        await store.create_claim(
            s, user_id=ANNA, event_id=number, cop_code="HDEV", days=2, now=world.now
        )

    async def nothing_yet(*args: object) -> None:  # the other message was not committed yet
        return None

    monkeypatch.setattr(store, "open_claim_for_event", nothing_yet)
    result = await world.send(ANNA, f"claim new E{number}")
    assert result.outcome == "refused"
    assert f"You already have a claim for E{number}" in result.here
    assert "opened a moment ago" in result.here


# --- events of other CoPs -------------------------------------------------------------------


async def test_another_cops_event_is_not_revealed(world: World) -> None:
    number = await claimable_event(
        world, cop="SOLAR", title="Secret solar visit", rsvp={SOFIA: "yes"}, attended=(SOFIA,)
    )
    result = await world.send(ANNA, f"claim new E{number}")
    assert f"I can't find event E{number}" in result.here
    assert "Secret solar visit" not in result.text
    assert "SOLAR" not in result.text
    assert "2026-03" not in result.text
