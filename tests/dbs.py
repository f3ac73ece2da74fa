"""Test databases: SQLite files in a temporary folder and throwaway PostgreSQL databases."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import asyncpg

PG_ADMIN_URL = os.environ.get("BBWT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
PG_SKIP_REASON = "PostgreSQL is not reachable"
"""How a test skipped for want of PostgreSQL says so (the summary counts these)."""
PG_HOWTO = """\
To run them, install and start PostgreSQL (Debian/Ubuntu):
    sudo apt-get install postgresql
    sudo pg_ctlcluster $(ls /etc/postgresql | tail -n 1) main start
    sudo -u postgres psql -c "ALTER USER postgres PASSWORD 'postgres'"
    export BBWT_TEST_PG=postgresql://postgres:postgres@127.0.0.1:5432/test
then run ./dev test again (the tests create and drop their own databases)."""


def pg_where() -> str:
    """Host and port of the test PostgreSQL, for messages."""
    return PG_ADMIN_URL.split("@", 1)[-1].split("/", 1)[0]


def pg_required() -> bool:
    """Must the PostgreSQL tests run? Under CI (``CI=true``) or with ``BBWT_TEST_REQUIRE_PG=1``;
    elsewhere (a laptop without PostgreSQL) they are skipped and the summary says so."""
    flags = (os.environ.get("CI", ""), os.environ.get("BBWT_TEST_REQUIRE_PG", ""))
    return any(flag.strip().lower() in {"1", "true", "yes"} for flag in flags)


def pg_available() -> bool:
    """Is something listening where the test PostgreSQL should be?"""
    host, _, port = pg_where().partition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port or 5432)), timeout=3):
            return True
    except OSError:
        return False


def pg_url(name: str) -> str:
    """The SQLAlchemy URL of database ``name`` on the test server."""
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}"


async def create_pg_database(template: str | None = None) -> str:
    """Create a database (empty, or a copy of ``template``); returns its SQLAlchemy URL."""
    name = f"bbwt_t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        copy = f' TEMPLATE "{template}"' if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{copy}')
    finally:
        await conn.close()
    return pg_url(name)


async def drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def sqlite_url(folder: Path) -> str:
    return f"sqlite+aiosqlite:///{folder / f'bbwt-{uuid.uuid4().hex[:8]}.db'}"
