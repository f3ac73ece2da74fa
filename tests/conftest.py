"""Shared fixtures: a migrated database on each backend, and an optional clock shift.

``BBWT_TEST_CLOCK_SHIFT=<days>`` moves the wall clock of the whole test run that many days
ahead (``time-machine``, ticking): ``./dev test`` runs the unit and storage suites once more
that way, which proves that no test and no code under test depends on today's date.

Migrating is the slow part of making a database, so each backend is migrated once per run
into a template (a file for SQLite, a template database for PostgreSQL) that every test
then copies.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine

from storage import Database
from tests.dbs import (
    create_pg_database,
    drop_pg_database,
    pg_available,
    pg_url,
    sqlite_url,
)

BACKENDS = ["sqlite", "postgresql"]
_PG = None
_TRAVEL: time_machine.travel | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _TRAVEL  # noqa: PLW0603 - one clock shift for the whole run
    days = os.environ.get("BBWT_TEST_CLOCK_SHIFT", "").strip()
    if days and _TRAVEL is None:
        _TRAVEL = time_machine.travel(datetime.now(UTC) + timedelta(days=float(days)), tick=True)
        _TRAVEL.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    global _TRAVEL  # noqa: PLW0603
    if _TRAVEL is not None:
        _TRAVEL.stop()
        _TRAVEL = None


def pytest_report_header(config: pytest.Config) -> str | None:
    if _TRAVEL is not None:
        return f"clock moved ahead: it is {datetime.now(UTC):%Y-%m-%d %H:%M} UTC for this run"
    return None


def _pg_ok() -> bool:
    global _PG  # noqa: PLW0603 - cached probe for the whole run
    if _PG is None:
        _PG = pg_available()
    return _PG


def _require_pg() -> None:
    if not _pg_ok():
        pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432 (start it; see README)")


async def make_database_url(backend: str, tmp_path: Path) -> str:
    """An empty database (the bot migrates it on start)."""
    if backend == "sqlite":
        return sqlite_url(tmp_path)
    _require_pg()
    return await create_pg_database()


class Templates:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.sqlite_file: Path | None = None
        self.pg_name: str | None = None

    async def sqlite(self, tmp_path: Path) -> str:
        if self.sqlite_file is None:
            self.sqlite_file = self.folder / "template.db"
            template = Database(f"sqlite+aiosqlite:///{self.sqlite_file}")
            await template.upgrade()
            await template.dispose()
        target = tmp_path / f"bbwt-{uuid.uuid4().hex[:8]}.db"
        shutil.copyfile(self.sqlite_file, target)
        return f"sqlite+aiosqlite:///{target}"

    async def postgresql(self) -> str:
        _require_pg()
        if self.pg_name is None:
            url = await create_pg_database()
            template = Database(url)
            await template.upgrade()
            await template.dispose()
            self.pg_name = url.rsplit("/", 1)[1]
        return await create_pg_database(template=self.pg_name)

    async def cleanup(self) -> None:
        if self.pg_name is not None:
            await drop_pg_database(pg_url(self.pg_name))


@pytest.fixture(scope="session")
async def db_templates(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Templates]:
    templates = Templates(tmp_path_factory.mktemp("templates"))
    yield templates
    await templates.cleanup()


async def migrated_database_url(backend: str, templates: Templates, tmp_path: Path) -> str:
    if backend == "sqlite":
        return await templates.sqlite(tmp_path)
    return await templates.postgresql()


@pytest.fixture(params=BACKENDS)
async def db(
    request: pytest.FixtureRequest, tmp_path: Path, db_templates: Templates
) -> AsyncIterator[Database]:
    """A migrated, empty database; the same test runs on SQLite and on PostgreSQL."""
    url = await migrated_database_url(request.param, db_templates, tmp_path)
    database = Database(url)
    try:
        yield database
    finally:
        await database.dispose()
        if request.param == "postgresql":
            await drop_pg_database(url)


__all__ = ["BACKENDS", "make_database_url", "migrated_database_url", "sqlite_url"]
