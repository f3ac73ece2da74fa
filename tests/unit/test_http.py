"""/healthz and /metrics."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from bot.http import make_app
from bot.metrics import Metrics
from storage import Database


async def client_for(db: Database, last_sync: float) -> TestClient:
    metrics = Metrics()
    metrics.commands.labels("help", "ok").inc()
    app = make_app(
        db=db,
        metrics=metrics,
        last_sync=lambda: last_sync,
        max_sync_age=90,
        clock=lambda: datetime.now(UTC),
    )
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


async def test_health_is_ok_after_a_recent_sync_with_a_working_database(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'h.db'}")
    client = await client_for(db, time.time() - 5)
    try:
        resp = await client.get("/healthz")
        assert resp.status == 200
        body = await resp.json()
        assert body["status"] == "ok"
        assert body["database"] == "ok"
    finally:
        await client.close()
        await db.dispose()


async def test_health_fails_when_the_sync_is_stale_or_never_happened(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'h.db'}")
    for last in (0.0, time.time() - 600):
        client = await client_for(db, last)
        try:
            resp = await client.get("/healthz")
            assert resp.status == 503
            assert (await resp.json())["sync"] == "stale"
        finally:
            await client.close()
    await db.dispose()


async def test_health_fails_when_the_database_does_not_answer(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'h.db'}")
    client = await client_for(db, time.time())
    try:
        resp = await client.get("/healthz")
        assert resp.status == 503
        assert (await resp.json())["database"] == "unreachable"
    finally:
        await client.close()
        await db.dispose()


async def test_metrics_are_prometheus_text(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'h.db'}")
    client = await client_for(db, time.time())
    try:
        resp = await client.get("/metrics")
        text = await resp.text()
        assert resp.status == 200
        assert 'bbwt_commands_total{command="help",outcome="ok"} 1.0' in text
        assert "bbwt_outbox_depth" in text
        assert "# TYPE bbwt_command_seconds histogram" in text
    finally:
        await client.close()
        await db.dispose()


def test_each_handled_command_is_counted_by_outcome_and_timed() -> None:
    metrics = Metrics()
    metrics.handled("rsvp", "ok", 0.02)
    metrics.handled("rsvp", "ok", 0.2)
    metrics.handled("rsvp", "usage", 0.01)
    text = metrics.render().decode()
    assert 'bbwt_commands_total{command="rsvp",outcome="ok"} 2.0' in text
    assert 'bbwt_commands_total{command="rsvp",outcome="usage"} 1.0' in text
    assert 'bbwt_command_seconds_count{command="rsvp"} 3.0' in text
    assert 'bbwt_command_seconds_bucket{command="rsvp",le="0.025"} 2.0' in text
