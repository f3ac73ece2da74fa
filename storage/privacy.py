"""Everything the bot stores about one person, gathered for ``!mydata``.

The export is plain JSON-ready data (strings, numbers, lists, dicts). Calendar feed tokens
are secrets: the export says whether one exists, never what it is. :data:`SECTIONS` says
which section of the export shows each table that can hold a person's data (a test checks
that every table holding someone's Matrix ID is listed there).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import claims as claims_store
from storage import crypto as crypto_store
from storage import intel as intel_store
from storage.events import Attendance, CalendarToken, Event, EventGuest, Rsvp
from storage.membership import JoinDialogue, PowerGrant, RoomMember
from storage.models import (
    AuditEntry,
    DirectRoom,
    InboundEvent,
    Membership,
    OutboxMessage,
    Person,
    QuarantinedEvent,
    Role,
)

SECTIONS = {
    "people": "profile",
    "memberships": "memberships",
    "roles": "roles",
    "join_dialogues": "join_dialogue",
    "event_rsvps": "events.answers",
    "event_attendance": "events.attended",
    "event_guests": "events.guest_invitations",
    "events": "events.created",
    "calendar_tokens": "events.calendar_link",
    "intel_items": "intel_items",
    "claims": "claims",
    "claim_lines": "claims",
    "direct_rooms": "rooms.direct_chat",
    "room_members": "rooms.room_memberships",
    "power_grants": "rooms.power_levels",
    "audit_log": "audit_log",
    "digest_posts": "audit_log",  # who sent a digest by hand: each one is logged too
    "inbound_events": "stored_events",
    "quarantined_events": "set_aside_events",
    "outbox": "messages_to_you",
    "crypto_state": "encryption.your_devices",
    "undecryptable_events": "encryption.messages_not_decrypted",
    "undecryptable_notices": "encryption.last_told_at",
}
"""Table -> the section of the export that shows what it holds about the person."""


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _event(event: Event) -> dict[str, Any]:
    return {
        "event": event.code,
        "cop": event.cop_code,
        "title": event.title,
        "starts_at": _when(event.starts_at),
        "status": event.status,
    }


async def _profile(session: AsyncSession, user_id: str) -> dict[str, Any] | None:
    person = await session.get(Person, user_id)
    if person is None:
        return None
    return {
        "user_id": person.user_id,
        "organisation": person.org,
        "country": person.country,
        "authority_type": person.authority_type,
        "created_at": _when(person.created_at),
        "updated_at": _when(person.updated_at),
    }


async def _memberships(session: AsyncSession, user_id: str) -> list[dict[str, Any]]:
    rows = await session.scalars(
        select(Membership).where(Membership.user_id == user_id).order_by(Membership.id)
    )
    return [
        {
            "cop": row.cop_code,
            "status": row.status,
            "message": row.message,
            "flagged": row.flagged,
            "flag_reason": row.flag_reason,
            "applied_at": _when(row.applied_at),
            "decided_at": _when(row.decided_at),
            "decided_by": row.decided_by,
            "reason": row.reason,
        }
        for row in rows
    ]


async def _roles(session: AsyncSession, user_id: str) -> list[dict[str, Any]]:
    rows = await session.scalars(
        select(Role).where(Role.user_id == user_id).order_by(Role.cop_code, Role.role)
    )
    return [
        {
            "cop": row.cop_code,
            "role": row.role,
            "source": row.source,
            "since": _when(row.created_at),
        }
        for row in rows
    ]


async def _join_dialogue(session: AsyncSession, user_id: str) -> dict[str, Any] | None:
    row = await session.get(JoinDialogue, user_id)
    if row is None:
        return None
    return {
        "cop": row.cop_code,
        "message": row.message,
        "waiting_for": row.asked,
        "started_at": _when(row.started_at),
    }


async def _events(session: AsyncSession, user_id: str) -> dict[str, Any]:
    answers = await session.execute(
        select(Rsvp, Event)
        .join(Event, Event.id == Rsvp.event_id)
        .where(Rsvp.user_id == user_id)
        .order_by(Rsvp.event_id)
    )
    attendance = await session.execute(
        select(Attendance, Event)
        .join(Event, Event.id == Attendance.event_id)
        .where(Attendance.user_id == user_id)
        .order_by(Attendance.event_id)
    )
    guests = await session.execute(
        select(EventGuest, Event)
        .join(Event, Event.id == EventGuest.event_id)
        .where(EventGuest.user_id == user_id)
        .order_by(EventGuest.event_id)
    )
    created = await session.scalars(
        select(Event).where(Event.created_by == user_id).order_by(Event.id)
    )
    token = await session.get(CalendarToken, user_id)
    return {
        "answers": [
            {**_event(event), "answer": rsvp.answer, "answered_at": _when(rsvp.answered_at)}
            for rsvp, event in answers.all()
        ],
        "attended": [
            {**_event(event), "marked_by": row.marked_by, "marked_at": _when(row.marked_at)}
            for row, event in attendance.all()
        ],
        "guest_invitations": [
            {**_event(event), "invited_by": row.invited_by, "invited_at": _when(row.invited_at)}
            for row, event in guests.all()
        ],
        "created": [_event(event) for event in created],
        "calendar_link": {
            "exists": token is not None,
            "created_at": _when(token.created_at) if token is not None else None,
        },
    }


async def _intel(session: AsyncSession, user_id: str) -> list[dict[str, Any]]:
    return [
        {
            "item": f"I{item.id}",
            "cop": item.cop_code,
            "title": item.title,
            "note": item.note,
            "tags": item.tag_list,
            "links": list(item.urls or []),
            "file": item.file_name,
            "shared_at": _when(item.created_at),
            "removed_at": _when(item.removed_at),
        }
        for item in await intel_store.items_by_author(session, user_id)
    ]


async def _rooms(session: AsyncSession, user_id: str) -> dict[str, Any]:
    direct = await session.get(DirectRoom, user_id)
    members = await session.scalars(
        select(RoomMember).where(RoomMember.user_id == user_id).order_by(RoomMember.room_id)
    )
    grants = await session.scalars(
        select(PowerGrant).where(PowerGrant.user_id == user_id).order_by(PowerGrant.room_id)
    )
    return {
        "direct_chat": direct.room_id if direct is not None else None,
        "room_memberships": [
            {"room": row.room_id, "membership": row.membership, "updated_at": _when(row.updated_at)}
            for row in members
        ],
        "power_levels": [{"room": row.room_id, "level": row.level} for row in grants],
    }


async def _audit(session: AsyncSession, user_id: str) -> list[dict[str, Any]]:
    """Log entries the person made, or that are about them (claims log ``C12 @them``)."""
    rows = await session.scalars(
        select(AuditEntry)
        .where(
            or_(
                AuditEntry.actor == user_id,
                AuditEntry.target == user_id,
                AuditEntry.target.endswith(f" {user_id}", autoescape=True),
            )
        )
        .order_by(AuditEntry.id)
    )
    return [
        {
            "at": _when(row.at),
            "actor": row.actor,
            "action": row.action,
            "cop": row.cop_code,
            "target": row.target,
            "detail": row.detail,
        }
        for row in rows
    ]


def _event_text(content: dict[str, Any]) -> str | None:
    """What a stored event said: a message's text, a reaction's key, a room membership."""
    inner = content.get("content") if isinstance(content, dict) else None
    if not isinstance(inner, dict):
        return None
    for key in ("body", "membership"):
        if isinstance(inner.get(key), str):
            return str(inner[key])
    relates = inner.get("m.relates_to")
    if isinstance(relates, dict) and isinstance(relates.get("key"), str):
        return str(relates["key"])
    return None


async def _stored_events(session: AsyncSession, user_id: str) -> list[dict[str, Any]]:
    """The commands, answers, reactions and room changes of theirs the bot keeps (their
    text only until ``privacy.inbound_retention``)."""
    rows = await session.scalars(
        select(InboundEvent).where(InboundEvent.sender == user_id).order_by(InboundEvent.id)
    )
    return [
        {
            "kind": row.kind,
            "room": row.room_id,
            "sent_at": _when(row.origin_ts),
            "text": _event_text(row.content),
            "text_erased_at": _when(row.scrubbed_at),
            "outcome": row.outcome,
        }
        for row in rows
    ]


async def _messages_to_you(session: AsyncSession, user_id: str) -> list[dict[str, Any]]:
    """What the bot sent (or is about to send) to them alone: when, and whether a copy is
    still kept (copies go after ``privacy.outbox_retention``)."""
    rows = await session.scalars(
        select(OutboxMessage)
        .where(or_(OutboxMessage.private_to == user_id, OutboxMessage.to_user == user_id))
        .order_by(OutboxMessage.id)
    )
    return [
        {
            "kind": row.kind,
            "room": row.room_id,
            "queued_at": _when(row.created_at),
            "sent_at": _when(row.sent_at),
            "copy_kept": row.scrubbed_at is None,
            "file": row.payload.get("filename") if row.kind == "file" else None,
        }
        for row in rows
    ]


async def _set_aside(session: AsyncSession, user_id: str) -> list[dict[str, Any]]:
    """Events of theirs the bot could not store (kept without content, for diagnosis)."""
    rows = await session.scalars(
        select(QuarantinedEvent)
        .where(QuarantinedEvent.sender == user_id)
        .order_by(QuarantinedEvent.id)
    )
    return [
        {"room": row.room_id, "reason": row.reason, "received_at": _when(row.received_at)}
        for row in rows
    ]


async def export(session: AsyncSession, user_id: str, now: datetime) -> dict[str, Any]:
    """Everything stored about ``user_id``, ready for ``json.dumps``."""
    return {
        "user_id": user_id,
        "exported_at": now.isoformat(),
        "profile": await _profile(session, user_id),
        "memberships": await _memberships(session, user_id),
        "roles": await _roles(session, user_id),
        "join_dialogue": await _join_dialogue(session, user_id),
        "events": await _events(session, user_id),
        "intel_items": await _intel(session, user_id),
        "claims": await claims_store.data_of(session, user_id),
        "rooms": await _rooms(session, user_id),
        "audit_log": await _audit(session, user_id),
        "stored_events": await _stored_events(session, user_id),
        "messages_to_you": await _messages_to_you(session, user_id),
        "set_aside_events": await _set_aside(session, user_id),
        "encryption": await crypto_store.data_of(session, user_id),
    }
