"""SQLAlchemy models: the bot's whole state lives in these tables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit key.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes on every backend (SQLite forgets the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use an aware one")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class BotState(Base):
    """Small key/value facts: sync token, device id, access token, management room id."""

    __tablename__ = "bot_state"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column()


class Cop(Base):
    __tablename__ = "cops"
    code: Mapped[str] = mapped_column(String(12), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    room_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column()


class Person(Base):
    """Anyone who talked to the bot, with the profile facts they gave."""

    __tablename__ = "people"
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    org: Mapped[str | None] = mapped_column(String(300))
    country: Mapped[str | None] = mapped_column(String(2))
    authority_type: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()


class Membership(Base):
    """A person's relation to one CoP: applied, member, rejected, left or removed."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("cop_code", "user_id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    cop_code: Mapped[str] = mapped_column(ForeignKey("cops.code"))
    user_id: Mapped[str] = mapped_column(String(255), index=True)
    status: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text, default="")
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    flag_reason: Mapped[str] = mapped_column(Text, default="")
    applied_at: Mapped[datetime] = mapped_column()
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text, default="")


class Role(Base):
    """Moderators (per CoP) added with ``!mod add`` or from the configuration."""

    __tablename__ = "roles"
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    cop_code: Mapped[str] = mapped_column(ForeignKey("cops.code"), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), primary_key=True)
    source: Mapped[str] = mapped_column(String(16), default="command")
    created_at: Mapped[datetime] = mapped_column()


class DirectRoom(Base):
    """The bot's direct-message room with each person."""

    __tablename__ = "direct_rooms"
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    room_id: Mapped[str] = mapped_column(String(255), index=True)
    created_at: Mapped[datetime] = mapped_column()


class InboundEvent(Base):
    """A command event received from Matrix, stored before the sync token moves on.

    ``status`` is ``pending`` until a worker has handled it; handling, its effects and
    its replies commit in one transaction together with ``status = 'done'``.

    ``kind``: ``command`` (with the prefix), ``text`` (plain text outside the CoP and
    management rooms: a command without the prefix, a dialogue answer or chatter in a
    direct chat), ``edit`` (an ``m.replace`` of a message), or an event a hook wants.
    """

    __tablename__ = "inbound_events"
    __table_args__ = (
        Index("ix_inbound_events_pending", "status", "id"),
        Index("ix_inbound_events_unscrubbed", "scrubbed_at", "handled_at"),
        Index("ix_inbound_events_replaces_status", "replaces", "status"),
        Index("ix_inbound_events_sender", "sender", "handled_at"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), unique=True)
    room_id: Mapped[str] = mapped_column(String(255))
    sender: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16), default="command")
    origin_ts: Mapped[datetime]
    content: Mapped[dict[str, Any]]
    received_at: Mapped[datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="pending")
    outcome: Mapped[str | None] = mapped_column(String(32))
    handled_at: Mapped[datetime | None]
    scrubbed_at: Mapped[datetime | None]
    """When ``content`` and ``sender`` were erased (retention or erasure); the row stays, so
    the event is never stored and carried out again."""
    replaces: Mapped[str | None] = mapped_column(String(255))
    """For an edit: the event id of the message it changes."""


class OutboxMessage(Base):
    """Something to send to Matrix. The row id is the Matrix transaction id."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_unsent", "sent_at", "failed", "id"),
        Index("ix_outbox_unscrubbed", "scrubbed_at", "sent_at"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    room_id: Mapped[str | None] = mapped_column(String(255))
    to_user: Mapped[str | None] = mapped_column(String(255))
    """Set for a direct message whose room is not known yet; the sender opens it."""
    kind: Mapped[str] = mapped_column(String(32), default="message")
    """message | reaction | file | invite | kick | power | state | redact | leave (see
    bot.sender)."""
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column()
    not_before: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[datetime | None]
    failed: Mapped[bool] = mapped_column(Boolean, default=False)
    result: Mapped[str | None] = mapped_column(String(255), index=True)
    """The Matrix event id once sent."""
    tag: Mapped[str | None] = mapped_column(String(64), index=True)
    """What the message is about (``application:12``), so reactions to it can be routed."""
    private_to: Mapped[str | None] = mapped_column(String(255))
    """Meant for this person's eyes only: sent only to a room with just the bot and them
    (checked when it goes out; otherwise it goes to a direct chat the bot opens)."""
    last_error: Mapped[str | None] = mapped_column(Text)
    scrubbed_at: Mapped[datetime | None]
    """When ``payload`` (the message, the file) was erased once delivered (retention or
    erasure); what is left says where it went and what it was about."""


class AuditEntry(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    cop_code: Mapped[str | None] = mapped_column(String(12), index=True)
    target: Mapped[str | None] = mapped_column(String(255))
    detail: Mapped[str] = mapped_column(Text, default="")


class QuarantinedEvent(Base):
    """An event from the homeserver that could not be stored: set aside (without its
    content) so that one hostile or broken event never stops the sync loop."""

    __tablename__ = "quarantined_events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[str | None] = mapped_column(String(255))
    room_id: Mapped[str] = mapped_column(String(255))
    sender: Mapped[str | None] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime]


class MemberList(Base):
    """A room whose member list the bot has loaded completely (``room_members`` then holds
    every join and invite, kept current from the member events the sync brings)."""

    __tablename__ = "member_lists"
    room_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    loaded_at: Mapped[datetime]
