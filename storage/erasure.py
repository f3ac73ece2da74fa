"""Erasing one person (``!forgetme confirm``, or the retention of people who left).

Everything the bot holds about the person goes, in one transaction: profile, memberships,
roles, dialogue, answers, guest invitations, calendar link, room memberships, power levels,
their direct chat, every stored copy of their commands and of what the bot sent them.
Three things are kept, without their Matrix ID:

* travel claims (financial records) carry a pseudonym until their retention period ends;
* intel items they shared stay for the community, shown as shared by "a former member";
* audit-log entries keep the action, with the pseudonym.

**Pseudonyms** are ``erased-`` and 16 hex digits of HMAC-SHA256(key, Matrix ID): the same
person always gets the same pseudonym (their claims and log lines stay linkable for an
auditor), and nobody can compute it, or test a guess, without the key. The key comes from
``BBWT_PRIVACY__PSEUDONYM_KEY``; without it the bot makes one and keeps it in ``bot_state``
(then a copy of the database is enough to test guesses, so production sets the variable).
A pseudonym never starts with ``@``, so it can never be mistaken for a Matrix ID.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, String, Text, cast, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, Mapped, mapped_column

from storage import claims as claims_store
from storage import crypto as crypto_store
from storage import intel as intel_store
from storage import membership as ms
from storage import repo
from storage.db import json_text
from storage.digest import DigestPost
from storage.events import (
    Attendance,
    CalendarToken,
    Event,
    EventGuest,
    FreedSeat,
    Rsvp,
    free_seats,
)
from storage.models import (
    AuditEntry,
    Base,
    DirectRoom,
    InboundEvent,
    OutboxMessage,
    QuarantinedEvent,
)
from storage.repo import ERASURE_TAG
from storage.rooms import PRESENT, forget_room

ERASED_TEXT = "[erased]"
PSEUDONYM_PREFIX = "erased-"
KEY_STATE = "pseudonym_key"
MIN_NAME = 3
"""Organisation and display names shorter than this are not searched for in stored text."""


class ErasedPerson(Base):
    """A pseudonym whose person was erased, and when (no Matrix ID: just the pseudonym)."""

    __tablename__ = "erased_people"
    pseudonym: Mapped[str] = mapped_column(String(64), primary_key=True)
    erased_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(String(16))
    """``request`` (``!forgetme``) or ``retention`` (left long ago)."""


# --- pseudonyms ------------------------------------------------------------------------------


def pseudonym(key: bytes, user_id: str) -> str:
    digest = hmac.new(key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:16]


def is_pseudonym(value: str | None) -> bool:
    return bool(value) and str(value).startswith(PSEUDONYM_PREFIX)


async def pseudonym_key(session: AsyncSession, configured: str | None, now: datetime) -> bytes:
    """The key of the pseudonyms: the configured one, or one kept in ``bot_state`` (made on
    first use; two processes making one at once agree on the first stored)."""
    if configured:
        return configured.encode("utf-8")
    stored = await repo.set_state_once(session, KEY_STATE, secrets.token_hex(32), now=now)
    return bytes.fromhex(stored)


# --- finding copies of a person in stored text --------------------------------------------------


def _json_form(text: str) -> str:
    """How ``text`` appears inside JSON written by the json module (letters beyond ASCII
    escaped)."""
    return json.dumps(text)[1:-1]


def _json_forms(text: str) -> list[str]:
    """Every way ``text`` may appear inside stored JSON: as the database writes it now
    (``storage.db.json_text``: letters beyond ASCII as they are) and escaped, as the json
    module wrote it before (and still does for what orjson refuses)."""
    forms = [json_text(text)[1:-1], _json_form(text)]
    return forms[:1] if forms[0] == forms[1] else forms


def _base64_forms(text: str) -> list[str]:
    """What ``text`` looks like inside base64 data, whatever its place in the file: at each
    of the three alignments, the characters that come from its bytes alone."""
    raw = text.encode("utf-8")
    forms = []
    for offset, first in ((0, 0), (1, 2), (2, 3)):
        encoded = base64.b64encode(b"\0" * offset + raw).decode("ascii")
        form = encoded[first : (offset + len(raw)) * 8 // 6]
        if len(form) >= 4:
            forms.append(form)
    return forms


def mentions(
    column: InstrumentedAttribute[Any], needles: Sequence[str], *, files: bool = False
) -> ColumnElement[bool]:
    """SQL: the JSON ``column`` contains one of ``needles`` (with ``files``: inside base64
    data; a first, cheap filter: :func:`names_any` decides)."""
    forms = [form for n in needles for form in _json_forms(n)]
    if files:
        forms += [form for n in needles for form in _base64_forms(n)]
    return or_(*(cast(column, Text).contains(form, autoescape=True) for form in forms))


def names_any(value: dict[str, Any], needles: Sequence[str]) -> bool:
    """Does stored JSON (a message, an event, or an outbox payload with a file in base64)
    contain one of ``needles``?"""
    data = value.get("data_b64") if isinstance(value, dict) else None
    rest = {k: v for k, v in value.items() if k != "data_b64"} if data is not None else value
    text, plain = json.dumps(rest), json.dumps(rest, ensure_ascii=False)
    if any(_json_form(n) in text or n in plain for n in needles):
        return True
    if not isinstance(data, str) or not any(f in data for n in needles for f in _base64_forms(n)):
        return False
    try:
        decoded = base64.b64decode(data, validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return False
    return any(n in decoded for n in needles)


def _names(*values: str | None) -> list[str]:
    return sorted({v.strip() for v in values if v and len(v.strip()) >= MIN_NAME})


def _blank(text: str | None, user_id: str, alias: str, names: Sequence[str]) -> str | None:
    if text is None:
        return None
    text = text.replace(user_id, alias)
    for name in names:
        text = text.replace(name, ERASED_TEXT)
    return text


# --- the erasure ---------------------------------------------------------------------------------


@dataclass
class Erased:
    """What was erased and kept, and what the bot still has to do on Matrix."""

    pseudonym: str
    forgotten: ms.Forgotten
    dm_room: str | None
    redact: list[tuple[str, str]] = field(default_factory=list)
    """(room, event id) of the bot's messages that carry the person's data."""
    freed: list[FreedSeat] = field(default_factory=list)
    answers: int = 0
    guest_invitations: int = 0
    calendar_link: bool = False
    claims_kept: list[claims_store.KeptClaim] = field(default_factory=list)
    claims_deleted: int = 0
    intel_kept: int = 0
    intel_deleted: int = 0
    commands: int = 0
    """Stored commands and events of theirs (or about them) whose text was erased."""
    messages: int = 0
    """Stored messages and files (to them or about them) whose copy was erased."""


async def erase_person(
    session: AsyncSession,
    user_id: str,
    *,
    alias: str,
    now: datetime,
    claims_retention: timedelta,
    remove_items: bool = False,
    reason: str = "request",
    managed_rooms: Collection[str] = (),
) -> Erased:
    """Erase ``user_id`` (see the module docstring); ``alias`` is their pseudonym.

    Nothing is sent here: the caller queues the redactions, kicks and notes it needs from
    the returned :class:`Erased` (rows tagged :data:`ERASURE_TAG`). The bot's record of who
    is in a room decides what a direct chat is, so it must not start to look as if the
    person had left a room they are still in: in ``managed_rooms`` (the CoP rooms and the
    management room, which the caller takes them out of, or which they are not in) their
    row just goes; in any other room they are in, the bot forgets the room's member list
    and reads it again from the homeserver when it next needs it.
    """
    person = await ms.get_person(session, user_id)
    names = _names(person.org if person else None, *await _display_names(session, user_id))
    dm_room = await repo.get_direct_room(session, user_id)
    erased = Erased(alias, ms.Forgotten({}, [], [], {}, []), dm_room)
    # Answers first: a freed seat goes to the next person waiting (they are told).
    erased.freed = await free_seats(session, user_id, now)
    kept, erased.claims_deleted = await claims_store.pseudonymise(
        session, user_id, alias, retention=claims_retention, now=now
    )
    erased.claims_kept = kept
    await _events(session, user_id, alias, erased)
    erased.intel_kept, erased.intel_deleted = await intel_store.anonymise_author(
        session, user_id, alias, remove=remove_items
    )
    erased.forgotten = await ms.forget_user(session, user_id, alias)
    erased.redact, erased.messages = await _outbox(
        session, user_id, [user_id, *names], erased.forgotten.membership_ids, now
    )
    erased.commands = await _inbound(session, user_id, alias, [user_id, *names], now)
    await _audit(session, user_id, alias, names)
    await crypto_store.forget_user(session, user_id)
    await session.execute(delete(DirectRoom).where(DirectRoom.user_id == user_id))
    present = {room for room, seen in erased.forgotten.rooms.items() if seen in PRESENT}
    forget = present - set(managed_rooms)
    if dm_room is not None:
        forget.add(dm_room)
    for room in sorted(forget):
        await forget_room(session, room)
    await session.execute(
        update(DigestPost).where(DigestPost.requested_by == user_id).values(requested_by=alias)
    )
    await session.execute(
        update(QuarantinedEvent).where(QuarantinedEvent.sender == user_id).values(sender=alias)
    )
    row = await session.get(ErasedPerson, alias)
    if row is None:
        session.add(ErasedPerson(pseudonym=alias, erased_at=now, reason=reason))
    else:
        row.erased_at, row.reason = now, reason
    await session.flush()
    return erased


async def _display_names(session: AsyncSession, user_id: str) -> list[str]:
    """The display names the person's member events carried (the only place the bot sees
    them), so copies of them can be found too."""
    rows = await session.scalars(
        select(InboundEvent.content).where(
            InboundEvent.kind == "member", mentions(InboundEvent.content, [user_id])
        )
    )
    found: list[str] = []
    for content in rows.all():
        if not isinstance(content, dict) or content.get("state_key") != user_id:
            continue
        prev = (content.get("unsigned") or {}).get("prev_content")
        for body in (content.get("content"), prev):
            name = body.get("displayname") if isinstance(body, dict) else None
            if isinstance(name, str):
                found.append(name)
    return found


async def _events(session: AsyncSession, user_id: str, alias: str, erased: Erased) -> None:
    """Answers (of past events too), guest invitations and the calendar link go; attendance
    stays, pseudonymised, where a kept claim relies on it; what they did as a moderator
    keeps the pseudonym."""
    claimed = set(
        (
            await session.scalars(
                select(claims_store.Claim.event_id).where(claims_store.Claim.user_id == alias)
            )
        ).all()
    )
    answers = await session.execute(delete(Rsvp).where(Rsvp.user_id == user_id))
    guests = await session.execute(delete(EventGuest).where(EventGuest.user_id == user_id))
    erased.answers = int(getattr(answers, "rowcount", 0)) + len(erased.freed)
    erased.guest_invitations = int(getattr(guests, "rowcount", 0))
    await session.execute(
        delete(Attendance).where(
            Attendance.user_id == user_id, Attendance.event_id.not_in(list(claimed) or [0])
        )
    )
    await session.execute(
        update(Attendance).where(Attendance.user_id == user_id).values(user_id=alias)
    )
    for model, column in (
        (Attendance, Attendance.marked_by),
        (EventGuest, EventGuest.invited_by),
        (Event, Event.created_by),
    ):
        await session.execute(update(model).where(column == user_id).values({column: alias}))
    token = await session.execute(delete(CalendarToken).where(CalendarToken.user_id == user_id))
    erased.calendar_link = bool(getattr(token, "rowcount", 0))


async def _outbox(
    session: AsyncSession,
    user_id: str,
    needles: list[str],
    membership_ids: Iterable[int],
    now: datetime,
) -> tuple[list[tuple[str, str]], int]:
    """The bot's messages to redact, and the stored copies to erase.

    Redacted: the sent messages and files that carry the person's data — everything sent to
    them, the notices of their applications, and every message or file still on record
    (copies are kept for ``privacy.outbox_retention``) that names their Matrix ID. Erased:
    the copies of everything to them or naming them (organisation and display names too);
    unsent rows meant for them are dropped; sent ones keep only where they went and when.
    Returns the (room, event id) pairs to redact and how many copies were erased.
    """
    tags = [f"application:{row_id}:" for row_id in membership_ids]
    rows = await session.scalars(
        select(OutboxMessage).where(
            or_(
                OutboxMessage.private_to == user_id,
                OutboxMessage.to_user == user_id,
                *(OutboxMessage.tag.startswith(tag, autoescape=True) for tag in tags),
                OutboxMessage.scrubbed_at.is_(None)
                & or_(
                    (OutboxMessage.kind != "file") & mentions(OutboxMessage.payload, needles),
                    (OutboxMessage.kind == "file")
                    & mentions(OutboxMessage.payload, needles, files=True),
                ),
            )
        )
    )
    redact: dict[tuple[str, str], None] = {}
    count = 0
    for row in rows.all():
        theirs = user_id in (row.private_to, row.to_user)
        tagged = any((row.tag or "").startswith(tag) for tag in tags)
        copy = row.scrubbed_at is None
        if row.result and row.room_id and row.kind in ("message", "file"):
            if theirs or tagged or (copy and names_any(row.payload, [user_id])):
                redact[(row.room_id, row.result)] = None
        if not theirs and not (copy and names_any(row.payload, needles)):
            continue
        if row.sent_at is None and not row.failed:
            if theirs:
                await session.delete(row)
                count += 1
            continue  # someone else's message still to go out: retention erases it later
        if theirs:
            row.private_to = row.to_user = None
        if copy:
            row.payload, row.scrubbed_at, row.last_error = {}, now, None
            count += 1
    await session.flush()
    return list(redact), count


async def _inbound(
    session: AsyncSession, user_id: str, alias: str, needles: list[str], now: datetime
) -> int:
    """Erase the text of every stored event they sent or that names them. Their commands
    not handled yet are dropped: they asked to be forgotten after sending them."""
    rows = await session.scalars(
        select(InboundEvent).where(
            or_(
                InboundEvent.sender == user_id,
                InboundEvent.scrubbed_at.is_(None) & mentions(InboundEvent.content, needles),
            )
        )
    )
    count = 0
    for row in rows.all():
        theirs = row.sender == user_id
        if not theirs and not names_any(row.content, needles):
            continue
        if row.status == "pending":
            if not theirs:
                continue  # someone else's command: handled first, its text erased later
            row.status, row.outcome, row.handled_at = "done", "erased", now
        if theirs:
            row.sender = alias
        if row.scrubbed_at is None:
            row.content, row.scrubbed_at = {}, now
            count += 1
    await session.flush()
    return count


async def _audit(session: AsyncSession, user_id: str, alias: str, names: Sequence[str]) -> None:
    """Log entries keep the action and the pseudonym; their names go from those lines."""
    rows = await session.scalars(
        select(AuditEntry).where(
            or_(
                AuditEntry.actor == user_id,
                AuditEntry.target.contains(user_id, autoescape=True),
                AuditEntry.detail.contains(user_id, autoescape=True),
            )
        )
    )
    for row in rows.all():
        row.actor = _blank(row.actor, user_id, alias, names) or alias
        row.target = _blank(row.target, user_id, alias, names)
        row.detail = _blank(row.detail, user_id, alias, names) or ""
    await session.flush()


async def requested_since(
    session: AsyncSession, user_id: str, action: str, since: datetime
) -> bool:
    """Did ``user_id`` log ``action`` (an erasure request) since ``since``?"""
    found = await session.scalar(
        select(AuditEntry.id)
        .where(AuditEntry.actor == user_id, AuditEntry.action == action, AuditEntry.at >= since)
        .limit(1)
    )
    return found is not None


async def erased_since(session: AsyncSession, since: datetime) -> dict[str, datetime]:
    """Pseudonym -> when, of the people erased since ``since``."""
    rows = await session.execute(
        select(ErasedPerson.pseudonym, ErasedPerson.erased_at).where(
            ErasedPerson.erased_at >= since
        )
    )
    return {alias: when for alias, when in rows.all()}


async def forget_erased_before(session: AsyncSession, cutoff: datetime) -> int:
    result = await session.execute(delete(ErasedPerson).where(ErasedPerson.erased_at < cutoff))
    return int(getattr(result, "rowcount", 0))


__all__ = [
    "ERASED_TEXT",
    "ERASURE_TAG",
    "ErasedPerson",
    "Erased",
    "erase_person",
    "erased_since",
    "forget_erased_before",
    "is_pseudonym",
    "mentions",
    "names_any",
    "pseudonym",
    "pseudonym_key",
    "requested_since",
]
