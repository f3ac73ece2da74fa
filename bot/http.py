"""The bot's small HTTP server: ``/healthz`` and ``/metrics`` (later: calendar feeds)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from aiohttp import web

from bot.metrics import Metrics
from storage import Database


def make_app(
    *,
    db: Database,
    metrics: Metrics,
    last_sync: Callable[[], float],
    max_sync_age: float,
    clock: Callable[[], datetime],
    role: Callable[[], str] = lambda: "active",
) -> web.Application:
    """``role()`` is ``active`` (this process syncs and sends), ``standby`` (it waits for
    the lease: healthy when the database answers), ``starting`` (it has the lease and is
    logging in) or ``stepping-down`` (it lost the lease)."""
    app = web.Application()

    async def healthz(_request: web.Request) -> web.Response:
        now_role = role()
        db_ok = await db.ping()
        if now_role != "active":
            healthy = db_ok and now_role == "standby"
            standby = {
                "status": now_role if healthy else "unhealthy",
                "role": now_role,
                "database": "ok" if db_ok else "unreachable",
            }
            return web.json_response(standby, status=200 if healthy else 503)
        age = clock().timestamp() - last_sync() if last_sync() else None
        sync_ok = age is not None and age <= max_sync_age
        body = {
            "status": "ok" if db_ok and sync_ok else "unhealthy",
            "role": now_role,
            "database": "ok" if db_ok else "unreachable",
            "last_sync_seconds_ago": round(age, 1) if age is not None else None,
            "sync": "ok" if sync_ok else "stale",
        }
        return web.json_response(body, status=200 if db_ok and sync_ok else 503)

    async def metrics_view(_request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_view)
    return app


async def start_http(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner and the port actually bound (``port=0`` picks one)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = port
    server = getattr(site, "_server", None)
    if server is not None and server.sockets:
        bound = int(server.sockets[0].getsockname()[1])
    return runner, bound
