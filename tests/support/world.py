"""The test world: the cast in a real database, the real registry, and a runner that hands
every command and event to the real ``Processor.handle`` as a stored ``InboundEvent``, so
the real savepoint, error boundary (ref numbers) and "too old to act on" run. A fake
sender records what the bot queued and marks it sent (tagged messages get event ids that
reactions can point at)."""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.metrics import Metrics
from bot.processor import Processor
from bot.rooms import MemberCache
from bot.sync import Classifier
from commands import build_registry
from commands.context import Context
from commands.registry import Place, Registry
from commands.services import Services
from config.models import Settings
from storage import events as events_store
from storage import intel as intel_store
from storage import repo, rooms
from storage.models import AuditEntry, Cop, InboundEvent, Membership, OutboxMessage
from tests.support.cast import (
    ANNA,
    BEN,
    BOT,
    HDEV_ROOM,
    MEMBERS,
    MGMT,
    MOD,
    NOW,
    ROOMS,
    SEEDED,
    dm_room,
    make_settings,
)
from tests.support.database import TestDatabase

T = TypeVar("T")
_ids = itertools.count(1)


@dataclass
class Sent:
    """One message (or invite, kick, reaction, file…) the bot queued."""

    id: int
    room_id: str | None
    to_user: str | None
    kind: str
    payload: dict[str, Any]
    tag: str | None

    @property
    def body(self) -> str:
        return str(self.payload.get("body", ""))

    @property
    def html(self) -> str:
        return str(self.payload.get("formatted_body", ""))

    @property
    def user(self) -> str | None:
        """Whom an invite, kick or power change is about."""
        user = self.payload.get("user_id")
        return user if isinstance(user, str) else None

    @property
    def recipient(self) -> str | None:
        """The person whose direct chat it went to (None for a room)."""
        return self.to_user or _owner(self.room_id)

    @property
    def is_reply(self) -> bool:
        return "m.in_reply_to" in str(self.payload.get("m.relates_to"))


@dataclass
class Result:
    outcome: str
    """``ok``, ``denied``, ``refused``, ``usage``, ``error``, ``expired``."""
    room: str
    sender: str
    sent: list[Sent] = field(default_factory=list)
    event_id: str = ""
    """The Matrix event id of what was sent (what an edit points at)."""

    def to(self, where: str) -> list[Sent]:
        """What went to a room, or to a person's direct chat."""
        return [s for s in self.sent if where in (s.room_id, s.to_user, _owner(s.room_id))]

    def of_kind(self, kind: str) -> list[Sent]:
        return [s for s in self.sent if s.kind == kind]

    @property
    def replies(self) -> list[Sent]:
        """The messages in the room the command came from."""
        return [s for s in self.sent if s.room_id == self.room and s.kind == "message"]

    @property
    def reply(self) -> str:
        """The (first) answer in the room the command came from."""
        return self.replies[0].body if self.replies else ""

    @property
    def here(self) -> str:
        """Everything written in the room the command came from."""
        return "\n".join(s.body for s in self.sent if s.room_id == self.room)

    @property
    def dm(self) -> str:
        """Everything written to the caller's direct chat, when that is not ``here``."""
        return "" if self.room == dm_room(self.sender) else self.dms_to(self.sender)

    @property
    def text(self) -> str:
        """The answer, wherever it went."""
        return (self.here + "\n" + self.dm).strip()

    def dms_to(self, user: str) -> str:
        return "\n".join(s.body for s in self.to(user))


def _owner(room_id: str | None) -> str | None:
    return room_id[len(dm_room("")) :] if room_id and room_id.startswith(dm_room("")) else None


def file_event(name: str = "prices-2026.pdf", msgtype: str = "m.file") -> dict[str, Any]:
    """A file Ben uploaded, as the homeserver returns it."""
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
    """The content of a message that replies to ``event_id``."""
    return {
        "msgtype": "m.text",
        "body": body,
        "m.relates_to": {"m.in_reply_to": {"event_id": event_id}},
    }


def dms(sent: list[Sent], user: str) -> list[Sent]:
    """What went to ``user``'s direct chat."""
    return [s for s in sent if s.recipient == user]


class FakeClient:
    """The Matrix client as the processor's member cache sees it: the bot's own id and no
    connection (who is in a room comes from the database, see ``World.direct_chat``)."""

    user_id = BOT
    client_session = None

    def __init__(self) -> None:
        self.direct_rooms: set[str] = set()


class World:
    """The cast in a database; see the module docstring."""

    def __init__(
        self, db: TestDatabase, *, registry: Registry | None = None, **sections: Any
    ) -> None:
        self.db = db
        self.settings: Settings = make_settings(**sections)
        self.registry = registry or build_registry("!")
        self.now = NOW
        self.fetched: dict[str, dict[str, Any]] = {}
        """Events the fake homeserver returns for ``fetch_event`` (uploaded files)."""
        self.client = FakeClient()
        self.processor = Processor(
            db=db,
            settings=self.settings,
            registry=self.registry,
            client=self.client,  # type: ignore[arg-type]
            classifier=Classifier(BOT, "!", self.registry.hooks, listening=self.registry.listening),
            metrics=Metrics(),
            cop_rooms={room: code for code, room in ROOMS.items()},
            management_room=MGMT,
            on_committed=lambda: None,
            clock=lambda: self.now,
            members=MemberCache(self.client, db, lambda: self.now),  # type: ignore[arg-type]
        )
        self.processor.services = self.services()

    # --- set-up ---------------------------------------------------------------------------
    async def seed(self) -> World:
        """The CoPs and their rooms, the moderators of the configuration and the members."""
        async with self.db.session() as s:
            cops = [(c.code, c.name) for c in self.settings.cops]
            await repo.sync_cops(s, cops, now=SEEDED)
            await repo.sync_config_moderators(
                s, {c.code: list(c.moderators) for c in self.settings.cops}, now=SEEDED
            )
            await seed_members(s, MEMBERS, SEEDED)
            for code, room in ROOMS.items():
                await repo.set_cop_room(s, code, room)
            await s.execute(update(Membership).values(applied_at=SEEDED))
            await s.execute(update(Cop).values(created_at=SEEDED))
        await self.deliver()  # the invitations of the seeded members
        return self

    async def direct_chat(self, user: str) -> str:
        """Make ``dm_room(user)`` the bot's direct chat with ``user``, as the processor would
        know it, and return its id. The one place that says what a direct chat is."""
        room = dm_room(user)
        self.client.direct_rooms.add(room)
        async with self.db.session() as s:
            await rooms.load_member_list(s, room, {BOT: "join", user: "join"}, self.now)
            if await repo.get_direct_room(s, user) is None:
                await repo.set_direct_room(s, user, room, now=self.now)
        return room

    async def group_chat_if_unknown(self, room: str, sender: str) -> None:
        """A room of no CoP that is nobody's direct chat: a group chat with more people."""
        if room in ROOMS.values() or room == MGMT or room in self.client.direct_rooms:
            return
        async with self.db.session() as s:
            if await rooms.present_members(s, room) is None:
                others = {BOT: "join", sender: "join", "@colleague:example.org": "join"}
                await rooms.load_member_list(s, room, others, self.now)

    def services(
        self, clock: Callable[[], datetime] | None = None, db: TestDatabase | None = None
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
            management_room=MGMT,
            bot_user=BOT,
            fetch_event=self._fetch_event,
        )

    async def _fetch_event(self, room_id: str, event_id: str) -> dict[str, Any] | None:
        return self.fetched.get(event_id)

    def upload(self, event_id: str, sender: str, *, mimetype: str = "application/pdf") -> str:
        """A file ``sender`` uploaded, as the homeserver would return it."""
        msgtype = "m.image" if mimetype.startswith("image/") else "m.file"
        self.fetched[event_id] = {
            "type": "m.room.message",
            "sender": sender,
            "event_id": event_id,
            "content": {
                "msgtype": msgtype,
                "body": "ticket.pdf" if msgtype == "m.file" else "hotel.jpg",
                "url": f"mxc://test/{event_id.strip('$')}",
                "info": {"mimetype": mimetype, "size": 1234},
            },
        }
        return event_id

    # --- running ------------------------------------------------------------------------------
    async def send(
        self,
        sender: str,
        text: str,
        room: str | None = None,
        *,
        reply_to: str | None = None,
        content: dict[str, Any] | None = None,
        age: timedelta = timedelta(0),
        keep: bool = True,
    ) -> Result:
        """``sender`` sends ``text`` (a command; the ``!`` may be left out) in ``room`` (their
        direct chat by default); the processor handles it. ``keep=False`` undoes it all."""
        body = text if text.startswith("!") else "!" + text
        message = content or {"msgtype": "m.text", "body": body}
        if reply_to:
            message = {**message, "m.relates_to": {"m.in_reply_to": {"event_id": reply_to}}}
        event = {"type": "m.room.message", "content": message}
        if not keep:
            async with self.db.what_if():
                return await self._handle("command", sender, event, room, age)
        return await self._handle("command", sender, event, room, age)

    async def hook(
        self, kind: str, sender: str, event: dict[str, Any], room: str | None = None
    ) -> Result:
        """A non-command event (``reaction``, ``redaction``, ``member``, ``dialogue``)."""
        return await self._handle(kind, sender, event, room, timedelta(0))

    async def say(
        self, sender: str, text: str, room: str | None = None, *, age: timedelta = timedelta(0)
    ) -> Result:
        """Plain text without the prefix (in the sender's direct chat by default), stored as
        the sync loop stores it outside the CoP and management rooms: a ``text`` event."""
        event = {"type": "m.room.message", "content": {"msgtype": "m.text", "body": text}}
        return await self._handle("text", sender, event, room, age)

    async def edit(
        self, sender: str, original: Result | str, text: str, room: str | None = None
    ) -> Result:
        """``sender`` edits their message ``original`` (a result or an event id) to read
        ``text``, as clients send it: an ``m.replace`` with the new version in
        ``m.new_content`` and a ``*`` fallback in the body."""
        target = original.event_id if isinstance(original, Result) else original
        if room is None and isinstance(original, Result):
            room = original.room
        event = {
            "type": "m.room.message",
            "content": {
                "msgtype": "m.text",
                "body": f"* {text}",
                "m.new_content": {"msgtype": "m.text", "body": text},
                "m.relates_to": {"rel_type": "m.replace", "event_id": target},
            },
        }
        return await self._handle("edit", sender, event, room, timedelta(0), replaces=target)

    async def _handle(
        self,
        kind: str,
        sender: str,
        event: dict[str, Any],
        room: str | None,
        age: timedelta,
        *,
        replaces: str | None = None,
    ) -> Result:
        room = room or await self.direct_chat(sender)
        await self.group_chat_if_unknown(room, sender)
        event_id = event.get("event_id") or f"$in{next(_ids)}"
        before = await self.last_outbox_id()
        async with self.db.session() as s:
            await repo.add_inbound(
                s,
                event_id=event_id,
                room_id=room,
                sender=sender,
                origin_ts=self.now - age,
                content={k: v for k, v in event.items() if k != "event_id"},
                kind=kind,
                replaces=replaces,
                now=self.now,
            )
            row = await s.scalar(select(InboundEvent).where(InboundEvent.event_id == event_id))
        assert row is not None
        await self.processor.handle(row)
        async with self.db.read() as s:
            outcome = await s.scalar(select(InboundEvent.outcome).where(InboundEvent.id == row.id))
        return Result(str(outcome), room, sender, await self.deliver(after=before), event_id)

    # --- conveniences over send -----------------------------------------------------------
    async def run(self, sender: str, text: str, room: str | None = None, **kw: Any) -> list[Sent]:
        """Everything a command queued."""
        return (await self.send(sender, text, room, **kw)).sent

    async def reply(self, sender: str, text: str, room: str | None = None, **kw: Any) -> str:
        """The text of the command's reply in the room it was sent in."""
        result = await self.send(sender, text, room, **kw)
        replies = [s for s in result.replies if s.is_reply]
        assert replies, f"no reply to {text!r}: {result.sent}"
        return replies[-1].body

    async def only(self, sender: str, text: str, room: str | None = None, **kw: Any) -> Sent:
        """The one message a command queued (its reply)."""
        sent = await self.run(sender, text, room, **kw)
        assert len(sent) == 1, [s.body for s in sent]
        return sent[0]

    async def share(self, text: str, sender: str = ANNA, room: str = HDEV_ROOM) -> int:
        """``!intel share <text>``; returns the item's number."""
        reply = await self.only(sender, f"!intel share {text}", room)
        match = re.search(r"\bI(\d+)\b", reply.body)
        assert "Shared" in reply.body and match, reply.body
        return int(match.group(1))

    async def store_message(
        self, event_id: str, sender: str, room: str, body: str, kind: str = "command"
    ) -> InboundEvent | None:
        """A plain message stored as the sync loop stores it (a ``command`` row, or ``kind``;
        pending) and not handled yet; returns the row as the sync loop hands it over."""
        async with self.db.session() as s:
            return await repo.add_inbound(
                s,
                event_id=event_id,
                room_id=room,
                sender=sender,
                origin_ts=self.now,
                content={"type": "m.room.message", "content": {"msgtype": "m.text", "body": body}},
                kind=kind,
                now=self.now,
            )

    async def pending(self, sender: str, body: str, room: str = HDEV_ROOM) -> InboundEvent:
        """A new command stored as the sync loop stores it and not handled yet: the row the
        sync loop hands to the room's worker (``Processor.take``)."""
        row = await self.store_message(f"${uuid.uuid4().hex}", sender, room, body)
        assert row is not None and row.id is not None
        return row

    async def answers(self, after: int, room: str = HDEV_ROOM) -> list[tuple[str, str]]:
        """(the event answered, the answer's text) for each answer queued in ``room`` after
        outbox row ``after``, in the order they go out (delivering them)."""
        return [
            (sent.payload["m.relates_to"]["m.in_reply_to"]["event_id"], sent.body)
            for sent in await self.deliver(after=after)
            if sent.room_id == room and sent.is_reply
        ]

    async def store_search(self, query: str, cops: tuple[str, ...] = ("HDEV",)) -> Any:
        async with self.db.read() as s:
            return await intel_store.search_items(s, list(cops), query)

    async def answer(self, sender: str, text: str) -> Result:
        """A plain message in the sender's direct chat (an answer in the join dialogue)."""
        return await self.say(sender, text)

    async def member_event(self, user: str, room: str, membership: str = "join") -> Result:
        event = {"type": "m.room.member", "state_key": user, "content": {"membership": membership}}
        return await self.hook("member", user, event, room)

    async def react(
        self, sender: str, target: str, key: str, room: str = HDEV_ROOM, event_id: str = ""
    ) -> Result:
        event: dict[str, Any] = {
            "type": "m.reaction",
            "content": {
                "m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}
            },
        }
        if event_id:
            event["event_id"] = event_id
        return await self.hook("reaction", sender, event, room)

    async def unreact(self, sender: str, reaction: str, room: str = HDEV_ROOM) -> Result:
        event = {"type": "m.room.redaction", "content": {}, "redacts": reaction}
        return await self.hook("redaction", sender, event, room)

    async def profile(self, user: str, org: str, country: str, kind: str) -> None:
        result = await self.send(user, f'profile set org="{org}" country={country} type={kind}')
        assert result.outcome == "ok", result.reply

    async def add_member(
        self,
        user: str,
        cop: str,
        org: str,
        country: str,
        kind: str = "local-authority",
        *,
        since: datetime | None = None,
    ) -> None:
        """``user``, with this profile, is already a member of ``cop`` (since now)."""
        async with self.db.session() as s:
            await seed_members(s, {user: (cop, org, country, kind)}, since or self.now)

    # --- the fake sender ------------------------------------------------------------------
    async def last_outbox_id(self) -> int:
        async with self.db.read() as s:
            return int(await s.scalar(select(func.max(OutboxMessage.id))) or 0)

    async def deliver(self, after: int = 0) -> list[Sent]:
        """What was queued after outbox row ``after``; all of it is marked sent, a tagged
        message as Matrix event ``$out<id>``."""
        async with self.db.session() as s:
            rows = list(
                (
                    await s.scalars(
                        select(OutboxMessage)
                        .where(OutboxMessage.id > after)
                        .order_by(OutboxMessage.id)
                    )
                ).all()
            )
            sent = [Sent(r.id, r.room_id, r.to_user, r.kind, r.payload, r.tag) for r in rows]
            for row in rows:  # (marking an erasure's row sent erases its payload)
                if row.sent_at is None:
                    await repo.mark_sent(s, row.id, f"$out{row.id}", now=self.now)
            return sent

    async def sent_event(self, tag: str) -> str:
        """The Matrix event id of the delivered message tagged ``tag``."""
        async with self.db.read() as s:
            row_id = await s.scalar(
                select(OutboxMessage.id).where(OutboxMessage.tag == tag).order_by(OutboxMessage.id)
            )
        assert row_id is not None, tag
        return f"$out{row_id}"

    # --- the database -----------------------------------------------------------------------
    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.db.session() as s:
            yield s

    async def in_session(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        async with self.db.session() as s:
            return await work(s)

    async def audit(self) -> list[AuditEntry]:
        async with self.db.read() as s:
            return list((await s.scalars(select(AuditEntry).order_by(AuditEntry.id))).all())

    async def outbox_to(self, room_id: str) -> list[OutboxMessage]:
        async with self.db.read() as s:
            rows = await s.scalars(select(OutboxMessage).where(OutboxMessage.room_id == room_id))
            return list(rows.all())

    def context(self, session: AsyncSession, sender: str, room: str = MGMT) -> Context:
        """A context for calling a family's functions directly (not a command)."""
        cop = self.processor.cop_rooms.get(room)
        if cop is not None:
            where = Place.COP_ROOM
        elif room == MGMT:
            where = Place.MANAGEMENT
        else:
            where = Place.DM if room in self.client.direct_rooms else Place.OTHER
        return Context(
            session=session,
            settings=self.settings,
            registry=self.registry,
            sender=sender,
            room_id=room,
            event_id=f"$ctx{next(_ids)}",
            place=where,
            now=self.now,
            room_cop=cop,
            management_room=MGMT,
            services=self.processor.services,
        )

    async def event(
        self,
        *,
        kind: str = "study-visit",
        cop: str = "HDEV",
        title: str = "Depot visit",
        start: datetime,
        hours: float = 30,
        tz: str = "Europe/Brussels",
        rsvp: dict[str, str] | None = None,
        attended: tuple[str, ...] = (),
        capacity: int | None = None,
        cancelled: bool = False,
    ) -> int:
        """An event made straight in the database, with answers and attendance."""
        async with self.db.session() as s:
            event = await events_store.create_event(
                s,
                cop_code=cop,
                kind=kind,
                title=title,
                starts_at=start,
                ends_at=start + timedelta(hours=hours),
                timezone=tz,
                created_by=MOD,
                capacity=capacity,
                now=min(self.now, start - timedelta(days=30)),
            )
            for user, answer in (rsvp or {}).items():
                locked = await events_store.lock_event(s, event.id)
                assert locked is not None
                await events_store.set_rsvp(s, locked, user, answer, start - timedelta(days=5))
            for user in attended:
                await events_store.mark_attended(s, event.id, user, MOD, start)
            if cancelled:
                await events_store.cancel_event(s, event, "moved", self.now)
            return event.id


CLAIM_EVENT_START = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
"""A study visit of 10 and 11 March in Brussels: claims for it close on 10 April."""


async def seed_members(
    s: AsyncSession, members: Mapping[str, tuple[str, str, str, str]], now: datetime
) -> None:
    """Each user, with a profile, is already a member of a CoP: ``{user: (cop, org,
    country, authority type)}``."""
    for user, (code, org, country, kind) in members.items():
        await repo.seed_member(
            s,
            user_id=user,
            org=org,
            country=country,
            authority_type=kind,
            cop_code=code,
            now=now,
        )


async def claimable_event(world: World, **event: Any) -> int:
    """An in-person event Anna said yes to and attended (travel claims need both)."""
    values: dict[str, Any] = {
        "start": CLAIM_EVENT_START,
        "rsvp": {ANNA: "yes"},
        "attended": (ANNA,),
    }
    values.update(event)
    return await world.event(**values)


CLAIMS_NOW = datetime(2026, 3, 20, 10, 0, tzinfo=UTC)
"""Ten days after the study visit of :func:`claimable_event`: within the claim deadline."""


async def new_claim(world: World, **event: Any) -> str:
    """Anna's new draft claim (its code, ``C1``) for a :func:`claimable_event`."""
    number = await claimable_event(world, **event)
    result = await world.send(ANNA, f"claim new E{number}")
    assert result.outcome == "ok", result.text
    return "C" + result.here.split("Claim C", 1)[1].split(" ", 1)[0]


@pytest.fixture
async def world(db: TestDatabase) -> World:
    """The cast, seeded, on each backend."""
    return await World(db).seed()


__all__ = [
    "CLAIMS_NOW",
    "Result",
    "Sent",
    "World",
    "claimable_event",
    "dms",
    "file_event",
    "new_claim",
    "replying_to",
    "world",
]
