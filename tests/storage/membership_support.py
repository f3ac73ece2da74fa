"""A small world for membership tests: two CoPs, people in every role, and a way to run
commands and hooks the way the processor does, on a real database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import MetaData, select

from commands import build_registry
from commands.context import Context
from commands.errors import CommandError, PermissionDenied
from commands.registry import Place, Registry
from config.models import Settings
from storage import Database, repo
from storage.models import OutboxMessage
from tests.conftest import BACKENDS, make_database_url
from tests.dbs import drop_pg_database

BOT = "@bot:test"
ADMIN = "@sec:test"
MOD = "@mod:test"  # moderates HDEV (from config)
MOD_OTHER = "@mod-solar:test"  # moderates SOLAR
MEMBER = "@member:test"  # member of HDEV
MEMBER_OTHER = "@member-solar:test"  # member of SOLAR
ANYONE = "@anyone:test"
APPLICANT = "@applicant:test"
HDEV_ROOM = "!hdev:test"
SOLAR_ROOM = "!solar:test"
MGMT = "!mgmt:test"
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


DM_ROOM = "!dm-of-caller:test"


@pytest.fixture(scope="module", params=BACKENDS)
async def shared_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Database]:
    """One migrated database per backend for a whole test module (creating and migrating
    a PostgreSQL database takes seconds); :func:`wipe` empties it before each test."""
    url = await make_database_url(request.param, tmp_path_factory.mktemp("membership"))
    database = Database(url)
    await database.upgrade()
    try:
        yield database
    finally:
        await database.dispose()
        if request.param == "postgresql":
            await drop_pg_database(url)


_SCHEMAS: dict[str, MetaData] = {}


async def wipe(db: Database) -> None:
    """Delete every row of every table (children first), keeping the schema."""
    async with db.engine.begin() as conn:
        meta = _SCHEMAS.get(db.url)
        if meta is None:
            meta = _SCHEMAS[db.url] = MetaData()
            await conn.run_sync(meta.reflect)
        for table in reversed(meta.sorted_tables):
            if table.name != "alembic_version":
                await conn.execute(table.delete())


@pytest.fixture
async def world(shared_db: Database) -> World:
    await wipe(shared_db)
    return await World(shared_db).seed()


def make_settings() -> Settings:
    return Settings(
        matrix={"user_id": BOT},
        secretariat={"admins": [ADMIN]},
        cops=[
            {"code": "HDEV", "name": "Heavy-duty electric vehicles", "moderators": [MOD]},
            {"code": "SOLAR", "name": "Sustainable solar panels", "moderators": [MOD_OTHER]},
        ],
    )


@dataclass
class Sent:
    room_id: str | None
    to_user: str | None
    kind: str
    payload: dict[str, Any]
    tag: str | None

    @property
    def body(self) -> str:
        return str(self.payload.get("body", ""))

    @property
    def user(self) -> str | None:
        return self.payload.get("user_id")


@dataclass
class Result:
    outcome: str  # ok | denied | refused | usage
    room: str
    sent: list[Sent] = field(default_factory=list)

    @property
    def reply(self) -> str:
        """The answer in the room the command came from."""
        bodies = [s.body for s in self.sent if s.kind == "message" and s.room_id == self.room]
        return bodies[0] if bodies else ""

    def to(self, where: str) -> list[Sent]:
        """What went to a room or, for a user, to their direct chat."""
        return [s for s in self.sent if where in (s.room_id, s.to_user)]

    def of_kind(self, kind: str) -> list[Sent]:
        return [s for s in self.sent if s.kind == kind]


class World:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.settings = make_settings()
        self.registry: Registry = build_registry("!")

    async def seed(self) -> World:
        async with self.db.session() as s:
            await repo.sync_cops(s, [(c.code, c.name) for c in self.settings.cops], now=NOW)
            await repo.set_cop_room(s, "HDEV", HDEV_ROOM)
            await repo.set_cop_room(s, "SOLAR", SOLAR_ROOM)
            await repo.sync_config_moderators(s, {"HDEV": [MOD], "SOLAR": [MOD_OTHER]}, now=NOW)
            for user, org, country, kind, cop in [
                (MEMBER, "City of Oslo", "NO", "local-authority", "HDEV"),
                (MEMBER_OTHER, "Région Île-de-France", "FR", "regional-authority", "SOLAR"),
            ]:
                await repo.seed_member(
                    s,
                    user_id=user,
                    org=org,
                    country=country,
                    authority_type=kind,
                    cop_code=cop,
                    now=NOW,
                )
        return self

    def ctx(
        self,
        session: Any,
        sender: str,
        *,
        place: Place = Place.DM,
        room_id: str | None = None,
        room_cop: str | None = None,
        event: dict[str, Any] | None = None,
    ) -> Context:
        if room_id is None:
            room_id = {Place.MANAGEMENT: MGMT, Place.DM: DM_ROOM}.get(place, "!other:test")
        return Context(
            session=session,
            settings=self.settings,
            registry=self.registry,
            sender=sender,
            room_id=room_id,
            event_id="$event",
            place=place,
            now=NOW,
            room_cop=room_cop,
            management_room=MGMT,
            event=event or {},
        )

    async def _run(self, sender: str, work: Any, *, keep: bool, **where: Any) -> Result:
        session = self.db.sessions()
        async with session:
            await session.begin()
            before = await session.scalar(
                select(OutboxMessage.id).order_by(OutboxMessage.id.desc())
            )
            ctx = self.ctx(session, sender, **where)
            result = Result("ok", ctx.room_id)
            try:
                async with session.begin_nested():
                    await work(ctx)
            except PermissionDenied as exc:
                result.outcome = "denied"
                await ctx.reply(exc.message)
            except CommandError as exc:
                result.outcome = exc.outcome
                await ctx.reply(exc.message)
            rows = await session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.id > (before or 0))
                .order_by(OutboxMessage.id)
            )
            result.sent = [Sent(r.room_id, r.to_user, r.kind, r.payload, r.tag) for r in rows]
            if keep:
                await session.commit()
            else:
                await session.rollback()
        return result

    async def command(self, sender: str, text: str, *, keep: bool = True, **where: Any) -> Result:
        """Run ``text`` (without the prefix) as ``sender``, like the processor does."""

        async def work(ctx: Context) -> None:
            await self.registry.dispatch(ctx, text)

        return await self._run(sender, work, keep=keep, **where)

    async def hook(
        self, kind: str, sender: str, event: dict[str, Any], *, keep: bool = True, **where: Any
    ) -> Result:
        """Run every ``kind`` hook on ``event``; a refusal goes to the sender by DM."""

        async def work(ctx: Context) -> None:
            for hook in self.registry.hooks.get(kind, []):
                try:
                    async with ctx.session.begin_nested():
                        await hook(ctx, event)
                except CommandError as exc:
                    await ctx.dm(sender, exc.message)

        return await self._run(sender, work, keep=keep, event=event, **where)

    async def answer(self, sender: str, text: str) -> Result:
        """A plain message in the sender's direct chat (an answer in the join dialogue)."""
        event = {"type": "m.room.message", "content": {"msgtype": "m.text", "body": text}}
        return await self.hook("dialogue", sender, event)

    async def joins(self, user: str, room_id: str, cop: str | None) -> Result:
        event = {
            "type": "m.room.member",
            "state_key": user,
            "content": {"membership": "join"},
        }
        place = Place.COP_ROOM if cop else Place.MANAGEMENT
        return await self.hook("member", user, event, place=place, room_id=room_id, room_cop=cop)

    async def profile(self, user: str, org: str, country: str, kind: str) -> None:
        result = await self.command(user, f'profile set org="{org}" country={country} type={kind}')
        assert result.outcome == "ok", result.reply
