"""The exchange-rate job against a local stand-in for the Commission's InforEuro service (an
aiohttp server on 127.0.0.1, never the internet), on both databases: it fetches the months
it lacks, keeps them, falls back to the latest known month, yields to the configured
override, and survives a failing service."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.demo import seed_rates
from commands.claims.rates import choose_rate, parse_rates, refresh_rates
from storage import claims as store
from tests.support.database import TestDatabase
from tests.support.world import World

NOW = datetime(2026, 3, 20, 10, 0, tzinfo=UTC)


@dataclass
class InforEuro:
    """What the stand-in publishes: month ``2026-03`` -> currency -> rate."""

    months: dict[str, dict[str, str]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    failing: bool = False
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        month = f"{int(request.query['year']):04d}-{int(request.query['month']):02d}"
        self.requests.append(month)
        if self.failing:
            return web.Response(status=503, text="maintenance")
        rates = self.months.get(month)
        if rates is None:
            return web.json_response({"code": 5, "message": "No rates published for period"})
        # Numbers as the service writes them: JSON numbers (read exactly, never as floats).
        items = ", ".join(
            f'{{"country": "x", "currency": "x", "isoA3Code": "{code}", "value": {value}}}'
            for code, value in rates.items()
        )
        text = f"[{items}]"
        return web.Response(text=text, content_type="application/json")


@pytest.fixture
async def inforeuro() -> AsyncIterator[InforEuro]:
    service = InforEuro()
    app = web.Application()
    app.router.add_get("/monthly-rates", service.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    service.url = str(server.make_url("/monthly-rates")) + "?lang=EN&year={year}&month={month}"
    try:
        yield service
    finally:
        await server.close()


async def job_world(db: TestDatabase, service: InforEuro, **claims: object) -> World:
    world = await World(db, claims={"rates_url": service.url, **claims}).seed()
    world.now = NOW
    return world


async def test_the_job_fetches_the_months_it_lacks_and_keeps_them(
    db: TestDatabase, inforeuro: InforEuro
) -> None:
    inforeuro.months = {
        "2026-03": {"SEK": "11.0225", "NOK": "11.6545", "HUF": "395.23"},
        "2026-02": {"SEK": "11.2"},
    }
    world = await job_world(db, inforeuro)
    stored = await refresh_rates(world.services())
    assert stored == {"2026-03": 3, "2026-02": 1}
    assert inforeuro.requests == ["2026-03", "2026-02"]
    async with world.db.read() as s:
        choice = await choose_rate(s, world.settings.claims, "SEK", "2026-03")
        assert choice is not None and choice.rate == Decimal("11.0225")
        assert choice.month == "2026-03" and not choice.fallback
        assert await store.known_currencies(s) == ["HUF", "NOK", "SEK"]
    assert await refresh_rates(world.services()) == {}
    assert inforeuro.requests == ["2026-03", "2026-02"], "a month in the database is not fetched"


async def test_a_month_not_published_yet_falls_back_to_the_latest_known(
    db: TestDatabase, inforeuro: InforEuro, caplog: pytest.LogCaptureFixture
) -> None:
    inforeuro.months = {"2026-02": {"SEK": "11.2"}}
    world = await job_world(db, inforeuro)
    with caplog.at_level(logging.WARNING):
        assert await refresh_rates(world.services()) == {"2026-02": 1}
    assert "No rates published for period" in caplog.text
    async with world.db.read() as s:
        choice = await choose_rate(s, world.settings.claims, "SEK", "2026-03")
    assert choice is not None and choice.fallback
    assert choice.month == "2026-02" and choice.rate == Decimal("11.2")
    assert "of February 2026" in choice.fallback_note()
    inforeuro.months["2026-03"] = {"SEK": "11.0"}
    assert await refresh_rates(world.services()) == {"2026-03": 1}, "tried again later"


async def test_the_configured_rate_overrides_the_fetched_one(
    db: TestDatabase, inforeuro: InforEuro
) -> None:
    inforeuro.months = {"2026-03": {"SEK": "11.0"}, "2026-02": {"SEK": "11.2"}}
    world = await job_world(db, inforeuro, rates={"SEK": "10.5"})
    await refresh_rates(world.services())
    async with world.db.read() as s:
        choice = await choose_rate(s, world.settings.claims, "sek", "2026-03")
    assert choice is not None
    assert (choice.rate, choice.month) == (Decimal("10.5"), None)


async def test_a_failing_service_is_logged_and_nothing_breaks(
    db: TestDatabase, inforeuro: InforEuro, caplog: pytest.LogCaptureFixture
) -> None:
    inforeuro.failing = True
    world = await job_world(db, inforeuro)
    with caplog.at_level(logging.WARNING):
        assert await refresh_rates(world.services()) == {}
    assert "could not fetch the exchange rates of 2026-03: HTTP 503" in caplog.text
    async with world.db.read() as s:
        assert await store.months_with_rates(s) == []
    inforeuro.failing = False
    inforeuro.months = {"2026-03": {"SEK": "11.0"}}
    assert await refresh_rates(world.services()) == {"2026-03": 1}


async def test_an_unreachable_service_is_logged_too(
    db: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    world = await World(
        db, claims={"rates_url": "http://127.0.0.1:9/rates?y={year}&m={month}"}
    ).seed()
    world.now = NOW
    with caplog.at_level(logging.WARNING):
        assert await refresh_rates(world.services()) == {}
    assert "could not fetch the exchange rates of 2026-03" in caplog.text


def test_the_inforeuro_answer_is_read_exactly() -> None:
    body = '[{"isoA3Code": "HUF", "value": 386.123456}, {"isoA3Code": "EUR", "value": 1}]'
    assert parse_rates(body) == {"HUF": Decimal("386.123456")}


async def test_the_demo_ships_rates_for_every_currency_members_write(db: TestDatabase) -> None:
    world = await World(db, claims={"rates_url": ""}).seed()
    running = SimpleNamespace(db=world.db, clock=lambda: NOW)
    await seed_rates(running)  # type: ignore[arg-type]
    async with world.db.read() as s:
        for code in ("SEK", "NOK", "DKK", "PLN", "CZK", "HUF", "RON", "BGN", "CHF", "GBP"):
            choice = await choose_rate(s, world.settings.claims, code, "2026-03")
            assert choice is not None and choice.month == "2026-03", code
            earlier = await choose_rate(s, world.settings.claims, code, "2026-02")
            assert earlier is not None and not earlier.fallback, code
