"""Shared fixtures: a database on each backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import Database
from tests.dbs import create_pg_database, drop_pg_database, pg_available, sqlite_url

BACKENDS = ["sqlite", "postgresql"]
_PG = None


def _pg_ok() -> bool:
    global _PG  # noqa: PLW0603 - cached probe for the whole run
    if _PG is None:
        _PG = pg_available()
    return _PG


async def make_database_url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return sqlite_url(tmp_path)
    if not _pg_ok():
        pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432 (start it; see README)")
    return await create_pg_database()


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated, empty database; the same test runs on SQLite and on PostgreSQL."""
    url = await make_database_url(request.param, tmp_path)
    database = Database(url)
    await database.upgrade()
    try:
        yield database
    finally:
        await database.dispose()
        if request.param == "postgresql":
            await drop_pg_database(url)
