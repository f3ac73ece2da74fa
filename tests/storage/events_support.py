"""A small world for events tests: two CoPs, people in every role, and a way to run
commands and hooks the way the processor does, on a real database, with a chosen clock."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import func, select

from commands import events, general
from commands.context import Context
from commands.errors import CommandError
from commands.registry import Place, Registry
from commands.services import Services
from config.models import Settings
from storage import Database, repo
from storage.models import OutboxMessage

BOT = "@bot:test"
ADMIN = "@sec:test"
MOD = "@mod:test"  # moderates HDEV
MOD_SOLAR = "@mod-solar:test"  # moderates SOLAR
ANNA = "@anna:test"  # member of HDEV
BEN = "@ben:test"  # member of HDEV
CARL = "@carl:test"  # member of HDEV
SOLAR_MEMBER = "@sol:test"  # member of SOLAR
STRANGER = "@stranger:test"
GUEST = "@sales:supplier.test"
HDEV_ROOM = "!hdev:test"
SOLAR_ROOM = "!solar:test"
MGMT = "!mgmt:test"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def make_settings(**extra: Any) -> Settings:
    return Settings(
        matrix={"user_id": BOT},
        secretariat={"admins": [ADMIN]},
        http={"host": "127.0.0.1", "port": 8099, "public_url": "https://bot.example.org/"},
        cops=[
            {"code": "HDEV", "name": "Heavy-duty electric vehicles", "moderators": [MOD]},
            {
                "code": "SOLAR",
                "name": "Sustainable solar panels",
                "moderators": [MOD_SOLAR],
                "timezone": "Europe/Lisbon",
            },
        ],
        **extra,
    )


@dataclass
class Sent:
    id: int
    room_id: str | None
    to_user: str | None
    kind: str
    payload: dict[str, Any]
    tag: str | None

    @property
    def body(self) -> str:
        return str(self.payload.get("body", ""))


@dataclass
class World:
    db: Database
    settings: Settings = field(default_factory=make_settings)
    registry: Registry = field(default_factory=lambda: Registry(prefix="!"))
    now: datetime = NOW
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def prepare(self, members: dict[str, str] | None = None) -> World:
        general.register(self.registry)
        events.register(self.registry)
        async with self.db.session() as s:
            await repo.sync_cops(s, [(c.code, c.name) for c in self.settings.cops], now=self.now)
            await repo.sync_config_moderators(
                s, {c.code: list(c.moderators) for c in self.settings.cops}, now=self.now
            )
            people = members or {ANNA: "HDEV", BEN: "HDEV", CARL: "HDEV", SOLAR_MEMBER: "SOLAR"}
            for user, code in people.items():
                await self.add_member(s, user, code)
            await repo.set_cop_room(s, "HDEV", HDEV_ROOM)
            await repo.set_cop_room(s, "SOLAR", SOLAR_ROOM)
        return self

    async def add_member(self, session: Any, user: str, code: str) -> None:
        await repo.seed_member(
            session,
            user_id=user,
            org=f"Org of {user[1:].split(':', maxsplit=1)[0]}",
            country="BE",
            authority_type="local-authority",
            cop_code=code,
            now=self.now,
        )

    async def last_outbox_id(self) -> int:
        async with self.db.session() as s:
            return int(await s.scalar(select(func.max(OutboxMessage.id))) or 0)

    async def sent_since(self, after: int) -> list[Sent]:
        async with self.db.session() as s:
            rows = await s.scalars(
                select(OutboxMessage).where(OutboxMessage.id > after).order_by(OutboxMessage.id)
            )
            return [Sent(r.id, r.room_id, r.to_user, r.kind, r.payload, r.tag) for r in rows.all()]

    def place_of(self, room: str) -> tuple[Place, str | None]:
        if room == HDEV_ROOM:
            return Place.COP_ROOM, "HDEV"
        if room == SOLAR_ROOM:
            return Place.COP_ROOM, "SOLAR"
        if room == MGMT:
            return Place.MANAGEMENT, None
        return Place.DM, None

    def context(self, session: Any, sender: str, room: str, raw: dict[str, Any]) -> Context:
        place, cop = self.place_of(room)
        return Context(
            session=session,
            settings=self.settings,
            registry=self.registry,
            sender=sender,
            room_id=room,
            event_id=f"$in{next(self._ids)}",
            place=place,
            now=self.now,
            room_cop=cop,
            management_room=MGMT,
            event=raw,
        )

    async def run(self, sender: str, text: str, room: str | None = None) -> list[Sent]:
        """Run ``text`` (with the prefix) as the processor does; returns what was queued."""
        room = room or f"!dm-{sender[1:]}"
        before = await self.last_outbox_id()
        async with self.db.session() as s:
            ctx = self.context(s, sender, room, {"type": "m.room.message"})
            try:
                async with s.begin_nested():
                    await self.registry.dispatch(ctx, text.removeprefix("!"))
            except CommandError as exc:
                await ctx.reply(exc.message)
        return await self.sent_since(before)

    async def reply(self, sender: str, text: str, room: str | None = None) -> str:
        """The plain text of the command's reply (to the command's own room)."""
        room = room or f"!dm-{sender[1:]}"
        sent = await self.run(sender, text, room)
        replies = [m for m in sent if m.room_id == room and m.kind == "message"]
        replies = [m for m in replies if "m.in_reply_to" in str(m.payload.get("m.relates_to"))]
        assert replies, f"no reply to {text!r}: {sent}"
        return replies[-1].body

    async def hook(
        self, kind: str, sender: str, room: str, raw: dict[str, Any], event_id: str
    ) -> list[Sent]:
        before = await self.last_outbox_id()
        async with self.db.session() as s:
            ctx = self.context(s, sender, room, raw)
            ctx.event_id = event_id
            for hook in self.registry.hooks.get(kind, []):
                try:
                    async with s.begin_nested():
                        await hook(ctx, raw)
                except CommandError as exc:
                    await ctx.dm(sender, exc.message)
        return await self.sent_since(before)

    async def react(self, sender: str, target: str, key: str, event_id: str) -> list[Sent]:
        raw = {
            "type": "m.reaction",
            "content": {
                "m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}
            },
        }
        return await self.hook("reaction", sender, HDEV_ROOM, raw, event_id)

    async def unreact(self, sender: str, reaction_event_id: str, event_id: str) -> list[Sent]:
        raw = {"type": "m.room.redaction", "content": {}, "redacts": reaction_event_id}
        return await self.hook("redaction", sender, HDEV_ROOM, raw, event_id)

    async def mark_all_sent(self) -> dict[str, str]:
        """Pretend the sender delivered everything; returns tag -> Matrix event id."""
        tags: dict[str, str] = {}
        async with self.db.session() as s:
            for row in await repo.unsent(s, limit=10_000):
                await repo.mark_sent(s, row.id, f"$out{row.id}", now=self.now)
                if row.tag:
                    tags[row.tag] = f"$out{row.id}"
        return tags

    def services(self, clock: Any = None) -> Services:
        return Services(
            settings=self.settings,
            db=self.db,
            registry=self.registry,
            scheduler=AsyncIOScheduler(timezone="UTC"),
            http=web.Application(),
            clock=clock or (lambda: self.now),
            wake_sender=lambda: None,
            cop_rooms={HDEV_ROOM: "HDEV", SOLAR_ROOM: "SOLAR"},
            management_room=MGMT,
            bot_user=BOT,
        )


def dms(sent: list[Sent], user: str) -> list[Sent]:
    """Direct messages to ``user`` (the test world has no DM rooms, so they go by user)."""
    return [m for m in sent if m.to_user == user]


def in_days(days: float) -> str:
    """A date ``days`` after NOW as YYYY-MM-DD."""
    return (NOW + timedelta(days=days)).strftime("%Y-%m-%d")
