"""Fixtures for end-to-end tests: one Synapse for the session, a fresh bot per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.devserver import LocalSynapse, SynapseUser
from tests.conftest import make_database_url
from tests.dbs import drop_pg_database
from tests.e2e.harness import BotProcess, Person

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
async def synapse(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalSynapse]:
    # Synapse's own defaults (room version 12 included) apart from raised rate limits; one
    # application service is registered, so tests can send what no client would (?ts=).
    server = LocalSynapse(tmp_path_factory.mktemp("synapse"), app_services=["hostile"])
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(scope="session")
async def synapse_v11(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalSynapse]:
    """A second Synapse whose new rooms are version 11, as on many servers still: the
    tests in ``test_room_version_11.py`` run against it (the rest meet Synapse's default)."""
    server = LocalSynapse(tmp_path_factory.mktemp("synapse-v11"), room_version="11")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(scope="session")
async def synapse_admin(synapse: LocalSynapse) -> SynapseUser:
    return await synapse.register("synapse-admin", admin=True)


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
async def people(
    synapse: LocalSynapse, tmp_path: Path
) -> AsyncIterator[Callable[[str], Awaitable[Person]]]:
    """``await people("anna")`` registers a fresh user, uploads the keys of their device
    and starts syncing for them."""
    made: list[Person] = []

    async def make(name: str) -> Person:
        account = await synapse.register(unique(name))
        person = Person(synapse, account, tmp_path / "people" / account.localpart)
        await person.start()
        made.append(person)
        return person

    yield make
    for person in made:
        await person.close()


BotFactory = Callable[..., Awaitable[BotProcess]]


@pytest.fixture
async def make_bot(synapse: LocalSynapse, tmp_path: Path) -> AsyncIterator[BotFactory]:
    """Start a bot with its own account and database (``backend`` sqlite or postgresql)."""
    bots: list[BotProcess] = []
    pg_urls: list[str] = []

    async def make(
        *,
        admins: list[str] | None = None,
        cops: list[dict[str, Any]] | None = None,
        backend: str = "sqlite",
        matrix: dict[str, Any] | None = None,
        start: bool = True,
        login: str = "password",
        claims: dict[str, Any] | None = None,
        process: dict[str, Any] | None = None,
        events: dict[str, Any] | None = None,
    ) -> BotProcess:
        account = await synapse.register(unique("bot"))
        folder = tmp_path / f"bot{len(bots)}"
        folder.mkdir()
        url = await make_database_url(backend, folder)
        if backend == "postgresql":
            pg_urls.append(url)
        bot = BotProcess(
            synapse,
            folder,
            account=account,
            db_url=url,
            admins=admins or [],
            cops=cops if cops is not None else [{"code": "HDEV", "name": "Heavy-duty EVs"}],
            matrix=matrix,
            login=login,
            claims=claims,
            process=process,
            events=events,
        )
        bots.append(bot)
        if start:
            await bot.start()
        return bot

    yield make
    for bot in bots:
        if bot.proc is not None and bot.proc.returncode is None:
            try:
                await bot.stop()
            except RuntimeError:
                pass
    for url in pg_urls:
        await drop_pg_database(url)
