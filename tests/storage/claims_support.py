"""A small world for claim tests: two CoPs, people in every role, events they attended,
and a way to run commands the way the processor does, on a real database."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select

from commands import claims as claims_family
from commands import events as events_family
from commands import general
from commands.context import Context
from commands.errors import CommandError
from commands.registry import Place, Registry
from config.models import Settings
from storage import Database, repo
from storage import events as ev
from storage.models import AuditEntry, OutboxMessage

BOT = "@bot:test"
ADMIN = "@sec:test"
MOD = "@mod:test"  # moderates HDEV
MOD_OTHER = "@mod-solar:test"  # moderates SOLAR
MEMBER = "@anna:test"  # member of HDEV, the claimant
MEMBER2 = "@ben:test"  # another member of HDEV
ANYONE = "@anyone:test"
HDEV_ROOM = "!hdev:test"
SOLAR_ROOM = "!solar:test"
MGMT = "!mgmt:test"
NOW = datetime(2026, 3, 20, 10, 0, tzinfo=UTC)


def dm_room(user: str) -> str:
    return f"!dm-{user}"


RECEIPT_EVENT = "$receipt"


def make_settings(**claims: Any) -> Settings:
    return Settings(
        matrix={"user_id": BOT},
        secretariat={"admins": [ADMIN]},
        cops=[
            {"code": "HDEV", "name": "Heavy-duty electric vehicles", "moderators": [MOD]},
            {"code": "SOLAR", "name": "Sustainable solar panels", "moderators": [MOD_OTHER]},
        ],
        claims={"rates": {"SEK": "11.05"}, **claims},
    )


@dataclass
class Sent:
    room_id: str | None
    to_user: str | None
    kind: str
    payload: dict[str, Any]

    @property
    def body(self) -> str:
        return str(self.payload.get("body", ""))


@dataclass
class Result:
    outcome: str  # ok | denied | refused | usage
    room: str
    sender: str
    sent: list[Sent] = field(default_factory=list)

    def to(self, where: str) -> list[Sent]:
        """Messages for a room or, for a user, their direct messages (room not open yet)."""
        return [s for s in self.sent if where in (s.room_id, s.to_user)]

    @property
    def here(self) -> str:
        """Everything the bot wrote in the room the command came from."""
        return "\n".join(s.body for s in self.to(self.room))

    @property
    def dm(self) -> str:
        """Everything the bot wrote to the caller's direct chat, other than ``here``."""
        return self.dms_to(self.sender) if self.room != dm_room(self.sender) else ""

    @property
    def text(self) -> str:
        """The answer, wherever it went."""
        return (self.here + "\n" + self.dm).strip()

    def dms_to(self, user: str) -> str:
        return "\n".join(
            s.body for s in self.sent if s.to_user == user or s.room_id == dm_room(user)
        )


class World:
    def __init__(self, db: Database, **claims: Any) -> None:
        self.db = db
        self.settings = make_settings(**claims)
        self.registry = Registry(prefix="!")
        general.register(self.registry)
        events_family.register(self.registry)  # ``!export`` lives there
        claims_family.register(self.registry)
        self.now = NOW
        self.files: dict[str, dict[str, Any]] = {}

    async def seed(self) -> World:
        async with self.db.session() as s:
            await repo.sync_cops(s, [(c.code, c.name) for c in self.settings.cops], now=self.now)
            await repo.set_cop_room(s, "HDEV", HDEV_ROOM)
            await repo.set_cop_room(s, "SOLAR", SOLAR_ROOM)
            await repo.sync_config_moderators(
                s, {"HDEV": [MOD], "SOLAR": [MOD_OTHER]}, now=self.now
            )
            for user, org, country in [
                (MEMBER, "City of Oslo", "NO"),
                (MEMBER2, "Ville de Lyon", "FR"),
            ]:
                await repo.seed_member(
                    s,
                    user_id=user,
                    org=org,
                    country=country,
                    authority_type="local-authority",
                    cop_code="HDEV",
                    now=self.now,
                )
            for user in (MEMBER, MEMBER2, MOD, MOD_OTHER, ADMIN):
                await repo.set_direct_room(s, user, dm_room(user), now=self.now)
        return self

    async def event(
        self,
        *,
        kind: str = "study-visit",
        cop: str = "HDEV",
        start: datetime = datetime(2026, 3, 10, 9, 0, tzinfo=UTC),
        hours: float = 30,
        tz: str = "Europe/Brussels",
        rsvp: dict[str, str] | None = None,
        attended: tuple[str, ...] = (MEMBER,),
    ) -> int:
        """An event; by default Anna said yes and attended. Returns its number."""
        async with self.db.session() as s:
            event = await ev.create_event(
                s,
                cop_code=cop,
                kind=kind,
                title="Depot visit",
                starts_at=start,
                ends_at=start + timedelta(hours=hours),
                timezone=tz,
                created_by=MOD,
                now=start - timedelta(days=30),
            )
            for user, answer in (rsvp if rsvp is not None else {MEMBER: "yes"}).items():
                locked = await ev.lock_event(s, event.id)
                assert locked is not None
                await ev.set_rsvp(s, locked, user, answer, start - timedelta(days=5))
            for user in attended:
                await ev.mark_attended(s, event.id, user, MOD, start)
            return event.id

    def upload(self, event_id: str, sender: str, *, mimetype: str = "application/pdf") -> str:
        """A file message the claimant uploaded, as the homeserver would return it."""
        msgtype = "m.image" if mimetype.startswith("image/") else "m.file"
        self.files[event_id] = {
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

    async def _fetch(self, room_id: str, event_id: str) -> dict[str, Any] | None:
        return self.files.get(event_id)

    def ctx(
        self,
        session: Any,
        sender: str,
        *,
        place: Place,
        room_id: str,
        room_cop: str | None,
        event: dict[str, Any],
    ) -> Context:
        return Context(
            session=session,
            settings=self.settings,
            registry=self.registry,
            sender=sender,
            room_id=room_id,
            event_id="$command",
            place=place,
            now=self.now,
            room_cop=room_cop,
            management_room=MGMT,
            event=event,
            services=SimpleNamespace(fetch_event=self._fetch),  # type: ignore[arg-type]
        )

    async def command(
        self,
        sender: str,
        text: str,
        *,
        place: Place = Place.DM,
        room_id: str | None = None,
        room_cop: str | None = None,
        reply_to: str | None = None,
    ) -> Result:
        """Run ``text`` (without the prefix) as ``sender``, like the processor does."""
        if room_id is None:
            room_id = {
                Place.MANAGEMENT: MGMT,
                Place.DM: dm_room(sender),
                Place.COP_ROOM: HDEV_ROOM,
            }.get(place, "!other:test")
            if place is Place.COP_ROOM and room_cop is None:
                room_cop = "HDEV"
        content: dict[str, Any] = {"msgtype": "m.text", "body": "!" + text}
        if reply_to:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        event = {"type": "m.room.message", "content": content}
        async with self.db.session() as session:
            if place is Place.DM:
                await repo.set_direct_room(session, sender, room_id, now=self.now)
            before = await session.scalar(
                select(OutboxMessage.id).order_by(OutboxMessage.id.desc()).limit(1)
            )
            ctx = self.ctx(
                session, sender, place=place, room_id=room_id, room_cop=room_cop, event=event
            )
            result = Result("ok", room=room_id, sender=sender)
            try:
                async with session.begin_nested():
                    await self.registry.dispatch(ctx, text)
            except CommandError as exc:
                result.outcome = exc.outcome
                await ctx.reply(exc.message)
            rows = await session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.id > (before or 0))
                .order_by(OutboxMessage.id)
            )
            result.sent = [Sent(r.room_id, r.to_user, r.kind, r.payload) for r in rows]
        return result

    async def audit(self) -> list[AuditEntry]:
        async with self.db.session() as s:
            rows = await s.scalars(select(AuditEntry).order_by(AuditEntry.id))
            return list(rows.all())
