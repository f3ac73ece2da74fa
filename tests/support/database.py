"""The one database fixture: a migrated template per backend, copied for every test, on
SQLite and on PostgreSQL; and :meth:`TestDatabase.what_if`, which undoes everything done
inside it (each caller of a permission test meets the same situation)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from alembic.config import Config as AlembicConfig
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from storage import Database
from storage.db import alembic_config
from tests.dbs import (
    PG_SKIP_REASON,
    create_pg_database,
    drop_pg_database,
    pg_available,
    pg_required,
    pg_url,
    pg_where,
    sqlite_url,
)

BACKENDS = ["sqlite", "postgresql"]
_PG: bool | None = None


class TestDatabase(Database):
    """The bot's :class:`~storage.Database`, plus :meth:`what_if`."""

    __test__ = False
    _pinned: AsyncConnection | None = None

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        if self._pinned is None:
            async with super().session() as session:
                yield session
            return
        # Inside what_if: every transaction is a savepoint of the one outer transaction.
        async with (
            AsyncSession(
                bind=self._pinned,
                join_transaction_mode="create_savepoint",
                expire_on_commit=False,
            ) as session,
            session.begin(),
        ):
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        if self._pinned is None:
            async with super().read() as session:
                yield session
            return
        async with self.session() as session:
            yield session

    @asynccontextmanager
    async def what_if(self) -> AsyncIterator[None]:
        """Everything committed inside is rolled back at the end."""
        async with self.engine.connect() as conn:
            outer = await conn.begin()
            self._pinned = conn
            try:
                yield
            finally:
                self._pinned = None
                await outer.rollback()


def _pg_ok() -> bool:
    global _PG  # noqa: PLW0603 - cached probe for the whole run
    if _PG is None:
        _PG = pg_available()
    return _PG


def require_pg() -> None:
    """Go on only with PostgreSQL: without it a test is skipped (on a laptop), or fails
    where PostgreSQL must be there (``CI=true``, or ``BBWT_TEST_REQUIRE_PG=1``)."""
    if _pg_ok():
        return
    if pg_required():
        pytest.fail(f"PostgreSQL is not reachable on {pg_where()}, and this run needs it (CI)")
    pytest.skip(f"{PG_SKIP_REASON} ({pg_where()})")


async def make_database_url(backend: str, tmp_path: Path) -> str:
    """An empty database (the bot migrates it on start)."""
    if backend == "sqlite":
        return sqlite_url(tmp_path)
    require_pg()
    return await create_pg_database()


class Templates:
    """Migrating is the slow part of making a database: each backend is migrated once per
    run into a template that every test copies."""

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
        require_pg()
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


async def migrated_database_url(backend: str, templates: Templates, tmp_path: Path) -> str:
    if backend == "sqlite":
        return await templates.sqlite(tmp_path)
    return await templates.postgresql()


@pytest.fixture(scope="session")
async def db_templates(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Templates]:
    templates = Templates(tmp_path_factory.mktemp("templates"))
    yield templates
    await templates.cleanup()


@pytest.fixture(params=BACKENDS)
async def db(
    request: pytest.FixtureRequest, tmp_path: Path, db_templates: Templates
) -> AsyncIterator[TestDatabase]:
    """A migrated, empty database; the same test runs on SQLite and on PostgreSQL."""
    url = await migrated_database_url(request.param, db_templates, tmp_path)
    database = TestDatabase(url)
    try:
        yield database
    finally:
        await database.dispose()
        if request.param == "postgresql":
            await drop_pg_database(url)


async def migrate(db: Database, step: Callable[[AlembicConfig], None]) -> None:
    """Run an Alembic command (``lambda cfg: command.downgrade(cfg, "0008s-1")``) on ``db``:
    for tests of what a migration does to data stored before it."""
    cfg = alembic_config()

    def run(sync: object) -> None:
        cfg.attributes["connection"] = sync
        step(cfg)

    async with db.engine.connect() as conn:
        await conn.run_sync(run)
        await conn.commit()
