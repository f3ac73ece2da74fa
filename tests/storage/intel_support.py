"""Running intel and digest commands against a real database, without Matrix.

``Bench`` holds settings, a registry and a database with two CoPs (HDEV, SOLAR), their
rooms, an admin, a moderator and members; ``await bench.run(text, ...)`` handles one
command like the processor does and returns what the bot queued to send.
"""

from __future__ import annotations

import itertools
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import select, update

from commands import build_registry
from commands.context import Context
from commands.errors import CommandError
from commands.registry import Place, Registry
from commands.services import Services
from config.models import Settings
from storage import Database, repo
from storage.models import Cop, Membership, OutboxMessage

ADMIN = "@sec:example.org"
MOD = "@mia:example.org"
ANNA = "@anna:example.org"  # member of HDEV
BEN = "@ben:example.org"  # member of HDEV
SOFIA = "@sofia:example.org"  # member of SOLAR
STRANGER = "@zed:example.org"
ROOMS = {"HDEV": "!hdev:example.org", "SOLAR": "!solar:example.org"}
MANAGEMENT = "!mgmt:example.org"
DM = "!dm:example.org"
_ids = itertools.count(1)


def make_settings(**digest: Any) -> Settings:
    return Settings(
        secretariat={"admins": [ADMIN]},
        cops=[
            {"code": "HDEV", "name": "Heavy-duty electric vehicles", "moderators": [MOD]},
            {"code": "SOLAR", "name": "Sustainable solar panels", "timezone": "Europe/Helsinki"},
        ],
        digest=digest,
    )


@dataclass
class Sent:
    room_id: str | None
    payload: dict[str, Any]
    tag: str | None

    @property
    def body(self) -> str:
        return str(self.payload.get("body", ""))

    @property
    def html(self) -> str:
        return str(self.payload.get("formatted_body", ""))


@dataclass
class Bench:
    db: Database
    settings: Settings
    registry: Registry
    now: datetime = field(default_factory=lambda: datetime(2026, 11, 25, 10, 0, tzinfo=UTC))
    fetched: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Events the fake homeserver returns for ``fetch_event``."""

    async def fetch_event(self, room_id: str, event_id: str) -> dict[str, Any] | None:
        return self.fetched.get(event_id)

    def services(
        self, clock: Callable[[], datetime] | None = None, db: Database | None = None
    ) -> Services:
        return Services(
            settings=self.settings,
            db=db or self.db,
            registry=self.registry,
            scheduler=AsyncIOScheduler(timezone="UTC"),
            http=web.Application(),
            clock=clock or (lambda: self.now),
            wake_sender=lambda: None,
            cop_rooms={room: code for code, room in ROOMS.items()},
            management_room=MANAGEMENT,
            bot_user="@bot:example.org",
            fetch_event=self.fetch_event,
        )

    async def run(
        self,
        text: str,
        *,
        sender: str = ANNA,
        where: str = "HDEV",
        content: dict[str, Any] | None = None,
    ) -> list[Sent]:
        """Handle ``!<text>`` from ``sender`` in the ``HDEV``/``SOLAR`` room, ``dm`` or
        ``management``; returns everything queued by it."""
        if where in ROOMS:
            place, room_id, room_cop = Place.COP_ROOM, ROOMS[where], where
        elif where == "dm":
            place, room_id, room_cop = Place.DM, DM, None
        else:
            place, room_id, room_cop = Place.MANAGEMENT, MANAGEMENT, None
        body = text.removeprefix("!")
        async with self.db.session() as s:
            ctx = Context(
                session=s,
                settings=self.settings,
                registry=self.registry,
                sender=sender,
                room_id=room_id,
                event_id=f"$cmd{next(_ids)}",
                place=place,
                now=self.now,
                room_cop=room_cop,
                management_room=MANAGEMENT,
                event={"type": "m.room.message", "content": content or {"body": text}},
                services=self.services(),
            )
            try:
                async with s.begin_nested():
                    await self.registry.dispatch(ctx, body)
            except CommandError as exc:
                await ctx.reply(exc.message)
        return await self.take_sent()

    async def take_sent(self) -> list[Sent]:
        async with self.db.session() as s:
            rows = await repo.unsent(s)
            for row in rows:
                await repo.mark_sent(s, row.id, f"$sent{row.id}", now=self.now)
        return [Sent(row.room_id, row.payload, row.tag) for row in rows]

    async def reply(self, text: str, **kwargs: Any) -> Sent:
        """The one reply to a command."""
        sent = await self.run(text, **kwargs)
        assert len(sent) == 1, [s.body for s in sent]
        return sent[0]

    async def in_session(self, work: Callable[[Any], Awaitable[Any]]) -> Any:
        async with self.db.session() as s:
            return await work(s)

    async def store_search(self, query: str, cops: tuple[str, ...] = ("HDEV",)) -> Any:
        from storage.intel import search_items

        async with self.db.session() as s:
            return await search_items(s, list(cops), query)

    async def outbox_to(self, room_id: str) -> list[OutboxMessage]:
        async with self.db.session() as s:
            rows = await s.scalars(select(OutboxMessage).where(OutboxMessage.room_id == room_id))
            return list(rows.all())


async def make_bench(db: Database, **digest: Any) -> Bench:
    settings = make_settings(**digest)
    bench = Bench(db=db, settings=settings, registry=build_registry("!"))
    async with db.session() as s:
        await repo.sync_cops(s, [(c.code, c.name) for c in settings.cops], now=bench.now)
        await repo.sync_config_moderators(
            s, {c.code: list(c.moderators) for c in settings.cops}, now=bench.now
        )
        for user, cop, org, country in (
            (ANNA, "HDEV", "City of Oslo", "NO"),
            (BEN, "HDEV", "Region of Lazio", "IT"),
            (SOFIA, "SOLAR", "City of Espoo", "FI"),
        ):
            await repo.seed_member(
                s,
                user_id=user,
                org=org,
                country=country,
                authority_type="local-authority",
                cop_code=cop,
                now=bench.now,
            )
        # Seeded long ago, so they are not "new members" of the tested weeks.
        long_ago = datetime(2026, 1, 5, tzinfo=UTC)
        await s.execute(update(Membership).values(applied_at=long_ago))
        await s.execute(update(Cop).values(created_at=long_ago))
        for code, room in ROOMS.items():
            await repo.set_cop_room(s, code, room)
    return bench


def item_number(body: str) -> int:
    match = re.search(r"\bI(\d+)\b", body)
    assert match, body
    return int(match.group(1))


async def share(bench: Bench, text: str, *, sender: str = ANNA, where: str = "HDEV") -> int:
    reply = await bench.reply(f"!intel share {text}", sender=sender, where=where)
    assert "Shared" in reply.body, reply.body
    return item_number(reply.body)


def file_event(name: str = "prices-2026.pdf", msgtype: str = "m.file") -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "sender": BEN,
        "event_id": "$file1",
        "content": {
            "msgtype": msgtype,
            "body": name,
            "url": "mxc://example.org/AbCdEf",
            "info": {"mimetype": "application/pdf", "size": 123_456},
        },
    }


def replying_to(event_id: str, body: str) -> dict[str, Any]:
    return {
        "msgtype": "m.text",
        "body": body,
        "m.relates_to": {"m.in_reply_to": {"event_id": event_id}},
    }


async def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, made once per session; tests copy it (much faster than
    migrating each time)."""
    path = tmp_path_factory.mktemp("intel-template") / "template.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    await db.upgrade()
    await db.dispose()  # checkpoints the WAL into the file
    return path


@asynccontextmanager
async def bench_from_template(template: Path, folder: Path, **digest: Any) -> AsyncIterator[Bench]:
    """A :class:`Bench` on a fresh copy of the migrated SQLite file."""
    path = folder / "bot.db"
    shutil.copyfile(template, path)
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        yield await make_bench(db, **digest)
    finally:
        await db.dispose()
