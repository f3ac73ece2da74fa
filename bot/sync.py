"""The sync loop: receive events, fill gaps, and store commands before moving the token on.

Nothing is handled here. Each batch of interesting events is written to ``inbound_events``
in the same transaction as the new sync token, so a crash at any point either keeps both
or neither; workers (``bot.processor``) pick the events up from the database. The one
exception is a long gap (``Syncer.fill_gap``): its pages are stored as they are read, before
the token, so that their answers start early; a crash before the token brings the same gap
again, and storing an event is idempotent.

Encrypted events are decrypted before they are stored (nio does it inside ``sync()``; this
loop tries again what nio left, and what a gap brought). What cannot be decrypted yet is
parked in the same transaction and tried again when its room key arrives
(``bot.crypto.undecryptable``). The crypto store writes its changes in that transaction
too, after the lease check, so crypto state, events and token always agree.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Container, Iterable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, datetime, timedelta
from typing import Any

from nio import (
    AsyncClient,
    InviteMemberEvent,
    MegolmEvent,
    MessageDirection,
    RoomMessagesError,
    SyncError,
    SyncResponse,
)
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.crypto.events import decrypt_raw, event_json, housekeeping, room_key_sessions
from bot.crypto.store import DbCryptoStore
from bot.metrics import Metrics
from commands.text import strip_reply_fallback
from storage import Database, membership, repo, rooms
from storage import crypto as stored
from storage.models import InboundEvent

log = logging.getLogger(__name__)

TIMELINE_TYPES = [
    "m.room.message",
    "m.room.member",
    "m.reaction",
    "m.room.redaction",
    "m.room.encrypted",  # every encrypted message (and reaction) arrives as this type
    "m.room.encryption",  # a room encrypted after the bot joined says so only here
]
SYNC_FILTER: dict[str, Any] = {
    "presence": {"types": []},
    "account_data": {"types": []},
    "room": {
        "timeline": {"limit": 100, "types": TIMELINE_TYPES},
        "ephemeral": {"types": []},
        "account_data": {"types": []},
    },
}
MAX_GAP_PAGES = 500
GAP_FIRST_PAGE = 100
"""Events asked for in a gap's first page: small, so the first answers start early."""
GAP_MAX_PAGE = 800
"""Each next page asks for twice as many, up to this (Synapse serves 1,000 at most)."""
TOKEN_EVERY = timedelta(seconds=30)
"""A sync that brings nothing to store moves the token in memory only, for this long at most
(the sync of the bot's own reply, of chatter, of receipts): after a restart the syncs since
the stored token are fetched again and bring nothing again."""


SETTLE_AT_MOST = 0.25
"""After a sync, the next one waits for what it brought to be handled and answered, this long
at most (see ``Syncer.run``)."""


class GapFillError(RuntimeError):
    pass


@dataclass
class Gap:
    """A room's events that a limited sync left out: from the previous sync token
    (``since``) to the start of its timeline (``prev_batch``)."""

    room_id: str
    prev_batch: str
    since: str
    seen: set[Any]
    """The event ids of the sync's own timeline (a page may bring one of them again)."""


class Classifier:
    """Decides which raw events become inbound rows (and of which kind)."""

    def __init__(
        self,
        own_user: str,
        prefix: str,
        hook_kinds: Iterable[str],
        listening: Container[str] = frozenset(),
        shared_rooms: Container[str] | None = None,
    ) -> None:
        self.own_user = own_user
        self.prefix = prefix
        self.hook_kinds = set(hook_kinds)
        self.listening = listening
        """Users whose plain text messages are kept as ``dialogue`` events (a live set that
        command families update, ``Registry.listening``); the hook checks the room."""
        self.shared_rooms = shared_rooms
        """The CoP rooms and the management room (a live container): there plain text is
        conversation between people and never stored. Elsewhere (direct chats, and rooms
        the processor finds are not one) plain text is kept as ``text``, for commands
        typed without the prefix; None keeps no plain text anywhere."""

    def command_text(self, content: dict[str, Any]) -> str | None:
        """The command in a message (without prefix), or None when it is not a command."""
        if content.get("msgtype") != "m.text":
            return None
        relates = content.get("m.relates_to")
        if isinstance(relates, dict) and relates.get("rel_type") == "m.replace":
            return None  # an edit: its new version is read by kind() as an ``edit``
        body = content.get("body")
        if not isinstance(body, str):
            return None
        body = strip_reply_fallback(body).strip()
        if not body.startswith(self.prefix):
            return None
        text = body[len(self.prefix) :]
        if not text[:1].isalnum() and text[:1] != "?":
            return None  # "!!!" or "! " is not a command
        return text

    def is_plain_text(self, content: dict[str, Any]) -> bool:
        """A typed answer: ``m.text`` with a body, not an edit (for ``dialogue`` hooks)."""
        relates = content.get("m.relates_to")
        if isinstance(relates, dict) and relates.get("rel_type") == "m.replace":
            return False
        return content.get("msgtype") == "m.text" and isinstance(content.get("body"), str)

    def plain_text(self, content: dict[str, Any]) -> str | None:
        """A typed message's text without a reply's quote, or None when it is no text."""
        if not self.is_plain_text(content):
            return None
        return strip_reply_fallback(str(content["body"])).strip()

    def is_private_candidate(self, room_id: str | None) -> bool:
        """Could this be a direct chat (not a CoP room nor the management room)?"""
        return (
            room_id is not None
            and self.shared_rooms is not None
            and (room_id not in self.shared_rooms)
        )

    def kind(self, event: dict[str, Any], room_id: str | None = None) -> str | None:
        sender = event.get("sender")
        if sender == self.own_user or not isinstance(event.get("event_id"), str):
            return None
        etype = event.get("type")
        content = event.get("content")
        if not isinstance(content, dict):
            return None
        if etype == "m.room.message":
            if self.command_text(content) is not None:
                return "command"
            private = self.is_private_candidate(room_id)
            if edit_target(content) is not None:
                # An edit is kept when its new version is a command (or, where a command
                # needs no prefix, any text): the processor decides whether to act on it.
                new = content.get("m.new_content")
                if not isinstance(new, dict):
                    return None
                if self.command_text(new) is not None or (private and self.is_plain_text(new)):
                    return "edit"
                return None
            if private and self.is_plain_text(content):
                return "text"
            if "dialogue" in self.hook_kinds and sender in self.listening:
                return "dialogue" if self.is_plain_text(content) else None
            return None
        if etype == "m.reaction" and "reaction" in self.hook_kinds:
            return "reaction"
        if etype == "m.room.redaction" and "redaction" in self.hook_kinds:
            return "redaction"
        if etype == "m.room.member" and "member" in self.hook_kinds:
            return "member"
        return None


def edit_target(content: dict[str, Any]) -> str | None:
    """The event id an ``m.replace`` edit changes (None for anything else)."""
    relates = content.get("m.relates_to")
    if not isinstance(relates, dict) or relates.get("rel_type") != "m.replace":
        return None
    target = relates.get("event_id")
    return target if isinstance(target, str) and target else None


def field(event: Any, *path: str) -> Any:
    """``event[a][b]…`` or None, whatever the shape of the event (it may be hostile)."""
    value = event
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def membership_changes(events: Iterable[Any]) -> dict[str, str]:
    """user -> membership from the well-formed ``m.room.member`` events, last one wins."""
    changes: dict[str, str] = {}
    for event in events:
        if not isinstance(event, dict) or event.get("type") != "m.room.member":
            continue
        user, membership = event.get("state_key"), field(event, "content", "membership")
        if isinstance(user, str) and isinstance(membership, str) and len(user) <= 255:
            changes[user] = membership[:16]
    return changes


# The newest instant Python's datetime can hold, in milliseconds.
MAX_TS_MS = 253_402_300_799_999


class Unstorable(ValueError):
    """An event that cannot be stored as it is; the message is the reason (no content)."""


@dataclass(frozen=True)
class Incoming:
    """A received event checked for what the pipeline stores, ready for ``inbound_events``."""

    room_id: str
    kind: str
    event_id: str
    sender: str
    origin_ts: datetime
    content: dict[str, Any]
    replaces: str | None = None
    """For an edit: the event id of the message it changes."""


def check_event(room_id: str, kind: str, event: dict[str, Any]) -> Incoming:
    """Validate one event on its own; raises :class:`Unstorable` with the reason."""
    event_id, sender = event.get("event_id"), event.get("sender")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= 255:
        raise Unstorable("event_id is missing or not a short string")
    if not isinstance(sender, str) or not 0 < len(sender) <= 255:
        raise Unstorable("sender is missing or not a short string")
    ts = event.get("origin_server_ts")
    if isinstance(ts, bool) or not isinstance(ts, int) or not 0 < ts <= MAX_TS_MS:
        raise Unstorable("origin_server_ts is not a timestamp")
    content = event.get("content")
    if not isinstance(content, dict):
        raise Unstorable("content is not an object")
    unsigned = event.get("unsigned")
    prev = unsigned.get("prev_content") if isinstance(unsigned, dict) else None
    stored = {
        "type": event.get("type") if isinstance(event.get("type"), str) else None,
        "content": content,
        "state_key": event.get("state_key") if isinstance(event.get("state_key"), str) else None,
        "redacts": event.get("redacts") if isinstance(event.get("redacts"), str) else None,
        "unsigned": {"prev_content": prev} if isinstance(prev, dict) else {},
    }
    try:
        json.dumps(stored, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError, UnicodeError) as exc:
        raise Unstorable(f"content cannot be stored as JSON ({type(exc).__name__})") from None
    replaces = edit_target(content) if kind == "edit" else None
    if kind == "edit" and (replaces is None or len(replaces) > 255):
        raise Unstorable("an edit without a short event id to replace")
    return Incoming(
        room_id=room_id,
        kind=kind,
        event_id=event_id,
        sender=sender,
        origin_ts=datetime.fromtimestamp(ts / 1000, UTC),
        content=stored,
        replaces=replaces,
    )


def after_own_join(events: list[dict[str, Any]], own_user: str) -> list[dict[str, Any]]:
    """Drop events from before the bot was invited to or joined the room.

    Only matters for the batch in which the bot's join appears. Messages sent between the
    invite and the join (a person starting a direct chat with a command) are kept.
    """

    def own_membership(event: dict[str, Any]) -> str | None:
        if event.get("type") != "m.room.member" or event.get("state_key") != own_user:
            return None
        return str(field(event, "content", "membership"))

    for index in range(len(events) - 1, -1, -1):
        event = events[index]
        previous = field(event, "unsigned", "prev_content", "membership")
        if own_membership(event) == "join" and previous != "join":
            cut = index
            for back in range(index - 1, -1, -1):
                membership = own_membership(events[back])
                if membership == "invite":
                    cut = back
                    break
                if membership is not None:
                    break
            return events[cut + 1 :]
    return events


@dataclass
class Batch:
    """What one sync brought, sorted for storing."""

    incoming: list[Incoming] = dataclass_field(default_factory=list)
    set_aside: list[tuple[str, Any, str]] = dataclass_field(default_factory=list)
    """(room id, the raw event, why it cannot be stored)."""
    members: dict[str, tuple[dict[str, str], bool]] = dataclass_field(default_factory=dict)
    """Room id -> (user -> membership, whether that is the room's complete list)."""
    left: list[str] = dataclass_field(default_factory=list)
    parked: list[stored.Parked] = dataclass_field(default_factory=list)
    """Encrypted events whose key the bot does not have (yet)."""
    opened: list[str] = dataclass_field(default_factory=list)
    """Parked events that a room key of this sync opened."""
    direct: dict[str, str] = dataclass_field(default_factory=dict)
    """User -> a direct chat the bot invited them to (seen in the room's own events)."""

    def note_members(self, room_id: str, changes: dict[str, str], *, complete: bool) -> None:
        if changes or complete:
            self.members[room_id] = (changes, complete)

    def empty(self) -> bool:
        """Nothing in it for the database (the sync of the bot's own reply, of chatter)."""
        return not any(
            (self.incoming, self.set_aside, self.members, self.left)
            + (self.parked, self.opened, self.direct)
        )


# Errors that mean the database itself is in trouble (not one event): the batch must fail
# and be fetched again, rather than its events being set aside.
DB_TROUBLE = (OperationalError, InterfaceError)


class Syncer:
    def __init__(
        self,
        client: AsyncClient,
        db: Database,
        classifier: Classifier,
        metrics: Metrics,
        *,
        timeout_ms: int,
        on_stored: Callable[[list[InboundEvent]], None],
        on_invite: Callable[[str, str, bool], None],
        clock: Callable[[], datetime],
        crypto: DbCryptoStore | None = None,
        guard: Callable[[AsyncSession], Awaitable[None]] | None = None,
        on_parked: Callable[[], None] = lambda: None,
        settle: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.settle = settle
        """Waits, at most the given seconds, until the commands stored are handled and no
        reply is being sent (``BotApp._settle``)."""
        self.crypto = crypto
        """The crypto store, flushed in the token's transaction."""
        self.guard = guard
        """The lease check every storing transaction starts with."""
        self.on_parked = on_parked
        self.clock = clock
        self.client = client
        self.db = db
        self.classifier = classifier
        self.metrics = metrics
        self.timeout_ms = timeout_ms
        self.on_stored = on_stored
        self.on_invite = on_invite
        self.token: str | None = None
        self.token_stored_at: datetime | None = None
        """When this process last stored the token (None: not yet; the first sync stores)."""
        self.last_ok: float = 0.0
        self.stopping = False
        self.first_sync_done = asyncio.Event()
        """Set once the first sync of the process is stored (with any gap it had)."""
        self.first_response = asyncio.Event()
        """Set once the first sync's response is in (before its gaps are read)."""

    async def load_token(self) -> None:
        async with self.db.session() as s:
            self.token = await repo.get_state(s, "sync_token")

    async def run(self) -> None:
        """Sync until stopped.

        After each sync, the next one waits until what it brought is handled and answered
        (``settle``: the workers, then the sender), ``SETTLE_AT_MOST`` seconds at most: a
        command sent meanwhile is fetched that much later at worst, and nothing is missed
        (the next sync starts from the same token). An idle bot syncs again at once.

        Two costs of the homeserver's are kept out of the answers' way so. A sync asked for
        while an answer is being sent is served by the same homeserver process as the send,
        and delayed it (a round trip took 1.26 times the echo bot's, which syncs only once it
        has answered). And each of the bot's own replies ends a waiting long poll: the sync
        returns with the reply and nothing else, and the homeserver works out the room's
        unread counts and the rest of a sync response for it; while a backlog is answered
        (a catch-up, a burst) that was a sync per reply, a large part of its work.
        """
        failures = 0
        while not self.stopping:
            try:
                # The first sync of a process returns at once: the sender waits for it.
                waiting = self.timeout_ms if self.first_sync_done.is_set() else 0
                await self.sync_once(timeout_ms=waiting)
                failures = 0
                if self.settle is not None:
                    await self.settle(SETTLE_AT_MOST)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self.metrics.errors.labels("sync").inc()
                delay = min(2**failures, 60)
                log.warning("sync failed (%s); retrying in %ss", exc, delay)
                await asyncio.sleep(delay)

    async def sync_once(self, timeout_ms: int) -> None:
        """One sync, stored."""
        resp = await self.client.sync(
            timeout=timeout_ms, since=self.token, sync_filter=SYNC_FILTER, full_state=False
        )
        if isinstance(resp, SyncError):
            raise RuntimeError(f"sync error: {resp.message} ({resp.status_code})")
        assert isinstance(resp, SyncResponse)
        self.first_response.set()
        first = self.token is None
        batch = Batch()
        self._take_set_aside(batch)
        for room_id, info in resp.rooms.join.items():
            events = [self._readable(e, room_id) for e in info.timeline.events]
            if not first and info.timeline.limited and info.timeline.prev_batch:
                # Who is in the room now: the state part of a limited sync holds every
                # change between the previous sync and this timeline.
                now_members = membership_changes([e.source for e in info.state] + events)
                seen = {event.get("event_id") for event in events}
                gap = Gap(room_id, info.timeline.prev_batch, self.token or "", seen)
                events = await self.fill_gap(gap, batch, now_members) + events
            self._note_direct_invites(batch, room_id, events)
            recent = after_own_join(events, self.client.user_id)
            joined_now = len(recent) < len(events) or self._joins_here(events)
            batch.note_members(
                room_id,
                membership_changes([e.source for e in info.state] + events),
                complete=first or joined_now,
            )
            if not first:
                for event in recent:
                    self._classify(batch, room_id, event)
        self._take_set_aside(batch)  # events nio could not read while filling gaps
        if not first:
            await self._open_parked(batch, room_key_sessions(resp.to_device_events))
        batch.left.extend(resp.rooms.leave)
        for room_id, invite in resp.rooms.invite.items():
            for ev in invite.invite_state:
                if isinstance(ev, InviteMemberEvent) and ev.state_key == self.client.user_id:
                    if ev.membership == "invite":
                        direct = bool(ev.content.get("is_direct"))
                        self.on_invite(room_id, ev.sender, direct)
        added = await self.store(batch, resp.next_batch)
        self.token = resp.next_batch
        self.last_ok = self.clock().timestamp()
        self.metrics.last_sync.set(self.last_ok)
        self.first_sync_done.set()
        if added:
            self.on_stored(added)
            await asyncio.sleep(0)  # their workers start before the next sync is asked for
        if batch.parked:
            self.on_parked()
        await housekeeping(self.client)

    def _note_direct_invites(
        self, batch: Batch, room_id: str, events: list[dict[str, Any]]
    ) -> None:
        """Direct chats the bot opened, as the room's own events show them. A process that
        dies between creating a direct chat and recording it leaves the room behind; the
        next one adopts it from here instead of opening a second chat for the person."""
        for event in events:
            if (
                event.get("type") == "m.room.member"
                and event.get("sender") == self.client.user_id
                and field(event, "content", "membership") == "invite"
                and field(event, "content", "is_direct") is True
                and isinstance(event.get("state_key"), str)
            ):
                batch.direct[event["state_key"]] = room_id

    def _readable(self, event: Any, room_id: str) -> dict[str, Any]:
        """An event's raw JSON, decrypted when possible. nio decrypts in ``sync()`` and
        ``room_messages()``; what it left encrypted (a key that came later, a repeated sync
        response nio skips) is tried once more here and otherwise stays ``m.room.encrypted``
        (parked by ``_classify``)."""
        if isinstance(event, MegolmEvent):
            opened = decrypt_raw(self.client, event.source, room_id)
            if opened is not None:
                return opened
        return event_json(event, room_id)

    async def _open_parked(self, batch: Batch, sessions: set[str]) -> None:
        """Room keys arrived: store the parked events they open like any other event."""
        if not sessions:
            return
        async with self.db.read() as s:
            waiting = await stored.parked_for_sessions(s, sessions)
        for row in waiting:
            opened = decrypt_raw(self.client, row.raw, row.room_id)
            if opened is None:
                continue
            batch.opened.append(row.event_id)
            self.metrics.decrypted_late.inc()
            log.info("decrypted %s in %s now that its key arrived", row.event_id, row.room_id)
            self._classify(batch, row.room_id, opened)

    def _take_set_aside(self, batch: Batch) -> None:
        """Events the client took out of a response because nio could not read them."""
        taken = getattr(self.client, "set_aside", None)
        if taken:
            batch.set_aside.extend(taken)
            taken.clear()

    def _joins_here(self, events: list[dict[str, Any]]) -> bool:
        """Does the bot's own join (from not joined) stand in these events?"""
        own = self.client.user_id
        return any(
            e.get("type") == "m.room.member"
            and e.get("state_key") == own
            and field(e, "content", "membership") == "join"
            and field(e, "unsigned", "prev_content", "membership") != "join"
            for e in events
        )

    def _classify(self, batch: Batch, room_id: str, event: Any) -> None:
        """Turn one raw event into a stored row, or set it aside with the reason."""
        try:
            if not isinstance(event, dict):
                raise Unstorable("not an object")
            if event.get("type") == "m.room.encrypted":
                self._park(batch, room_id, event)
                return
            kind = self.classifier.kind(event, room_id)
            if kind is not None:
                batch.incoming.append(check_event(room_id, kind, event))
        except Unstorable as exc:
            batch.set_aside.append((room_id, event, str(exc)))
        except Exception as exc:  # a shape nobody expected: never stop the loop for it
            batch.set_aside.append((room_id, event, f"unreadable event ({type(exc).__name__})"))

    def _park(self, batch: Batch, room_id: str, event: dict[str, Any]) -> None:
        """Keep an event that could not be decrypted, to try again when its key comes."""
        content = event.get("content")
        session_id = content.get("session_id") if isinstance(content, dict) else None
        if event.get("sender") == self.client.user_id or not isinstance(session_id, str):
            return
        checked = check_event(room_id, "encrypted", event)  # raises Unstorable
        batch.parked.append(
            stored.Parked(
                event_id=checked.event_id,
                room_id=room_id,
                sender=checked.sender,
                session_id=session_id[:255],
                raw={
                    k: event[k]
                    for k in (
                        "type",
                        "content",
                        "event_id",
                        "sender",
                        "origin_server_ts",
                        "room_id",
                    )
                    if k in event
                },
                origin_ts=checked.origin_ts,
            )
        )

    async def fill_gap(
        self, gap: Gap, batch: Batch, now_members: dict[str, str]
    ) -> list[dict[str, Any]]:
        """Read the events between the previous sync and this sync's timeline, oldest first,
        paging forwards from the previous sync token.

        In a room the bot was in already, each page is stored as soon as it is read (its
        own transaction, without the sync token) and handed to the room's worker, so a
        long gap (commands sent while the bot was down) is answered from its first page on,
        not after its last. Storing is idempotent: if the process stops before the token is
        stored, the next sync brings the same gap, and what was stored is not stored again.
        What goes with the token instead: events that are set aside or wait for a room key,
        and every event from the first change of the bot's own membership on (and the whole
        gap of a room the bot was not in): those are returned, for ``after_own_join`` and
        the member list in the sync's own transaction.
        """
        streaming = await self._was_joined(gap.room_id)
        rest: list[dict[str, Any]] = []
        start, limit, pages, total, streamed = gap.since, GAP_FIRST_PAGE, 0, 0, 0
        members: dict[str, str] | None = now_members  # noted with the first page stored
        while True:
            if pages == MAX_GAP_PAGES:
                log.error(
                    "room %s: gap longer than %d pages; its newest events not read",
                    gap.room_id,
                    MAX_GAP_PAGES,
                )
                break
            resp = await self.client.room_messages(
                gap.room_id,
                start=start,
                end=gap.prev_batch,
                direction=MessageDirection.front,
                limit=limit,
                message_filter={"types": TIMELINE_TYPES},
            )
            if isinstance(resp, RoomMessagesError):
                # Do not move the token on: the next sync brings the same gap back.
                raise GapFillError(f"could not page through {gap.room_id}: {resp.message}")
            pages += 1
            page = [self._readable(event, gap.room_id) for event in resp.chunk]
            page = [event for event in page if event.get("event_id") not in gap.seen]
            total += len(page)
            if streaming:
                early = page
                # From a change of the bot's own membership on, as the sync's own events.
                own = [i for i, event in enumerate(page) if self._own_membership(event)]
                if own:
                    streaming, early, page = False, page[: own[0]], page[own[0] :]
                if early and await self._store_page(batch, gap.room_id, early, members):
                    members = None
                streamed += len(early)
            if not streaming:
                rest.extend(page)
            if not resp.chunk or not resp.end or resp.end == start:
                break
            start, limit = resp.end, min(limit * 2, GAP_MAX_PAGE)
        self.metrics.gaps.inc()
        self.metrics.gap_events.inc(total)
        log.info(
            "room %s: filled a gap of %d events (%d stored page by page)",
            gap.room_id,
            total,
            streamed,
        )
        return rest

    async def _was_joined(self, room_id: str) -> bool:
        """Had the bot joined this room before this sync (as far as it has stored)?"""
        async with self.db.read() as s:
            return await membership.room_membership(s, room_id, self.client.user_id) == "join"

    def _own_membership(self, event: dict[str, Any]) -> bool:
        """Does this event change the bot's own membership (not just its display name)?"""
        return (
            event.get("type") == "m.room.member"
            and event.get("state_key") == self.client.user_id
            and field(event, "content", "membership")
            != field(event, "unsigned", "prev_content", "membership")
        )

    async def _store_page(
        self,
        batch: Batch,
        room_id: str,
        page: list[dict[str, Any]],
        members: dict[str, str] | None,
    ) -> bool:
        """Store one page of a gap and hand its events to the worker; True when a
        transaction ran (and ``members``, the room's members now, went with it)."""
        self._note_direct_invites(batch, room_id, page)
        rows = Batch()
        for event in page:
            self._classify(rows, room_id, event)
        batch.set_aside.extend(rows.set_aside)  # these and the parked go with the token
        batch.parked.extend(rows.parked)
        if not rows.incoming:
            return False
        if members is not None:
            rows.note_members(room_id, members, complete=False)
        set_aside: list[tuple[str, Any, str]] = []
        _, added = await self._store_or_retry(rows, None, self.clock(), set_aside)
        self._log_set_aside(set_aside)
        if added:
            self.on_stored(added)
            await asyncio.sleep(0)  # the worker starts while the next page is read
        return True

    async def store(self, batch: Batch, token: str) -> list[InboundEvent]:
        """Store the batch's events, what was set aside and the member changes together
        with the new token: all of it or (on database trouble) nothing. Returns the events
        stored now (not those stored before), with their row ids."""
        now = self.clock()
        if self._nothing_to_store(batch, now):
            return []
        newest = max((row.origin_ts.timestamp() for row in batch.incoming), default=0.0)
        set_aside = list(batch.set_aside)
        try:
            parked, added = await self._store_or_retry(batch, token, now, set_aside)
        except BaseException:
            if self.crypto is not None:
                self.crypto.requeue_last()  # its rows went down with the transaction
            raise
        if self.crypto is not None:
            self.crypto.forget_last()
        if parked:
            self.metrics.undecryptable.inc(parked)
            log.warning("%d event(s) could not be decrypted yet; waiting for their keys", parked)
        self._log_set_aside(set_aside)
        if newest:
            self.metrics.sync_lag.set(max(0.0, now.timestamp() - newest))
        self.token_stored_at = now
        return added

    def _log_set_aside(self, set_aside: list[tuple[str, Any, str]]) -> None:
        for room_id, event, reason in set_aside:
            event_id = event.get("event_id") if isinstance(event, dict) else None
            self.metrics.quarantined.inc()
            log.warning("set aside event %r in %s: %s", event_id, room_id, reason)

    def _nothing_to_store(self, batch: Batch, now: datetime) -> bool:
        """Nothing of this sync needs the database, and the stored token is recent enough
        (see ``TOKEN_EVERY``): no transaction (the lease check, the token, the commit)."""
        if self.token_stored_at is None or now - self.token_stored_at >= TOKEN_EVERY:
            return False
        return batch.empty() and (self.crypto is None or not self.crypto.pending)

    async def _store_or_retry(
        self,
        batch: Batch,
        token: str | None,
        now: datetime,
        set_aside: list[tuple[str, Any, str]],
    ) -> tuple[int, list[InboundEvent]]:
        try:
            return await self._store(batch, token, now, set_aside, careful=False)
        except (*DB_TROUBLE, stored.LeaseLost):
            raise
        except Exception:
            if not batch.incoming:
                raise
            # The database refused a row: store the batch again, one event at a time.
            if self.crypto is not None and token is not None:
                self.crypto.requeue_last()  # its rows went down with the first try
            return await self._store(batch, token, now, set_aside, careful=True)

    async def _store(
        self,
        batch: Batch,
        token: str | None,
        now: datetime,
        set_aside: list[tuple[str, Any, str]],
        *,
        careful: bool,
    ) -> tuple[int, list[InboundEvent]]:
        """One transaction; with ``token`` None (a page of a gap) the crypto store and the
        sync token are left for the sync's own transaction. Not ``careful``: the events are
        stored as they are (the usual case, no savepoints); if the database refuses one, the
        caller runs this again ``careful``: each event in a savepoint of its own, so one row
        the database refuses does not hold back the others; what is refused is set aside."""
        parked = 0
        added: list[InboundEvent] = []
        async with self.db.session() as s:
            if self.guard is not None:
                await self.guard(s)  # only the lease holder writes; locked until commit
            if not careful:
                for row in batch.incoming:
                    await self._add(s, row, now, added)
            else:
                for row in batch.incoming:
                    try:
                        async with s.begin_nested():
                            await self._add(s, row, now, added)
                    except DB_TROUBLE:
                        raise
                    except Exception as exc:
                        reason = f"refused by the database ({type(exc).__name__})"
                        set_aside.append((row.room_id, {"event_id": row.event_id}, reason))
            for room_id, event, reason in set_aside:
                sender = event.get("sender") if isinstance(event, dict) else None
                event_id = event.get("event_id") if isinstance(event, dict) else None
                await rooms.quarantine(
                    s, event_id=event_id, room_id=room_id, sender=sender, reason=reason, now=now
                )
            for room_id, (changes, complete) in batch.members.items():
                if complete:
                    await rooms.load_member_list(s, room_id, changes, now, replace=False)
                else:
                    await rooms.note_members(s, room_id, changes, now)
            for room_id in batch.left:
                await rooms.forget_room(s, room_id)
            for user, room_id in batch.direct.items():
                if await repo.get_direct_room(s, user) is None:
                    log.info("adopting the direct chat %s with %s", room_id, user)
                    await repo.set_direct_room(s, user, room_id, now=now)
                    await repo.resolve_outbox_room(s, user, room_id)
            for event in batch.parked:
                parked += await stored.park(s, event, now)
            await stored.unparked(s, batch.opened)
            if token is not None:
                if self.crypto is not None:
                    await self.crypto.flush(s)
                await repo.set_state(s, "sync_token", token, now=now)
        return parked, added

    @staticmethod
    async def _add(
        session: AsyncSession, row: Incoming, now: datetime, added: list[InboundEvent]
    ) -> None:
        stored_row = await repo.add_inbound(
            session,
            event_id=row.event_id,
            room_id=row.room_id,
            sender=row.sender,
            origin_ts=row.origin_ts,
            content=row.content,
            kind=row.kind,
            replaces=row.replaces,
            now=now,
        )
        if stored_row is not None:  # None: stored before (a sync given again)
            added.append(stored_row)
