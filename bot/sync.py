"""The sync loop: receive events, fill gaps, and store commands before moving the token on.

Nothing is handled here. Each batch of interesting events is written to ``inbound_events``
in the same transaction as the new sync token, so a crash at any point either keeps both
or neither; workers (``bot.processor``) pick the events up from the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Container, Iterable
from datetime import UTC, datetime
from typing import Any

from nio import (
    AsyncClient,
    InviteMemberEvent,
    MessageDirection,
    RoomMessagesError,
    SyncError,
    SyncResponse,
)

from bot.metrics import Metrics
from commands.text import strip_reply_fallback
from storage import Database, repo

log = logging.getLogger(__name__)

TIMELINE_TYPES = ["m.room.message", "m.room.member", "m.reaction", "m.room.redaction"]
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


class GapFillError(RuntimeError):
    pass


class Classifier:
    """Decides which raw events become inbound rows (and of which kind)."""

    def __init__(
        self,
        own_user: str,
        prefix: str,
        hook_kinds: Iterable[str],
        listening: Container[str] = frozenset(),
    ) -> None:
        self.own_user = own_user
        self.prefix = prefix
        self.hook_kinds = set(hook_kinds)
        self.listening = listening
        """Users whose plain text messages are kept as ``dialogue`` events (a live set that
        command families update, ``Registry.listening``); the hook checks the room."""

    def command_text(self, content: dict[str, Any]) -> str | None:
        """The command in a message (without prefix), or None when it is not a command."""
        if content.get("msgtype") != "m.text":
            return None
        relates = content.get("m.relates_to")
        if isinstance(relates, dict) and relates.get("rel_type") == "m.replace":
            return None  # an edit: the original was handled already
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

    def kind(self, event: dict[str, Any]) -> str | None:
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


def after_own_join(events: list[dict[str, Any]], own_user: str) -> list[dict[str, Any]]:
    """Drop events from before the bot was invited to or joined the room.

    Only matters for the batch in which the bot's join appears. Messages sent between the
    invite and the join (a person starting a direct chat with a command) are kept.
    """

    def own_membership(event: dict[str, Any]) -> str | None:
        if event.get("type") != "m.room.member" or event.get("state_key") != own_user:
            return None
        return str((event.get("content") or {}).get("membership"))

    for index in range(len(events) - 1, -1, -1):
        event = events[index]
        previous = (event.get("unsigned") or {}).get("prev_content", {}).get("membership")
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


class Syncer:
    def __init__(
        self,
        client: AsyncClient,
        db: Database,
        classifier: Classifier,
        metrics: Metrics,
        *,
        timeout_ms: int,
        on_stored: Callable[[], None],
        on_invite: Callable[[str, str, bool], None],
        clock: Callable[[], datetime],
    ) -> None:
        self.clock = clock
        self.client = client
        self.db = db
        self.classifier = classifier
        self.metrics = metrics
        self.timeout_ms = timeout_ms
        self.on_stored = on_stored
        self.on_invite = on_invite
        self.token: str | None = None
        self.last_ok: float = 0.0
        self.stopping = False
        self.first_sync_done = asyncio.Event()

    async def load_token(self) -> None:
        async with self.db.session() as s:
            self.token = await repo.get_state(s, "sync_token")

    async def run(self) -> None:
        failures = 0
        while not self.stopping:
            try:
                await self.sync_once(timeout_ms=self.timeout_ms if self.token else 0)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self.metrics.errors.labels("sync").inc()
                delay = min(2**failures, 60)
                log.warning("sync failed (%s); retrying in %ss", exc, delay)
                await asyncio.sleep(delay)

    async def sync_once(self, timeout_ms: int) -> None:
        resp = await self.client.sync(
            timeout=timeout_ms, since=self.token, sync_filter=SYNC_FILTER, full_state=False
        )
        if isinstance(resp, SyncError):
            raise RuntimeError(f"sync error: {resp.message} ({resp.status_code})")
        assert isinstance(resp, SyncResponse)
        first = self.token is None
        records: list[tuple[str, str, dict[str, Any]]] = []
        if not first:
            for room_id, info in resp.rooms.join.items():
                events = [e.source for e in info.timeline.events]
                if info.timeline.limited and info.timeline.prev_batch:
                    gap = await self.fill_gap(room_id, info.timeline.prev_batch, self.token or "")
                    self.metrics.gaps.inc()
                    self.metrics.gap_events.inc(len(gap))
                    log.info("room %s: filled a gap of %d events", room_id, len(gap))
                    seen = {e.get("event_id") for e in events}
                    events = [e for e in gap if e.get("event_id") not in seen] + events
                for event in after_own_join(events, self.client.user_id):
                    kind = self.classifier.kind(event)
                    if kind is not None:
                        records.append((room_id, kind, event))
        for room_id, invite in resp.rooms.invite.items():
            for ev in invite.invite_state:
                if isinstance(ev, InviteMemberEvent) and ev.state_key == self.client.user_id:
                    if ev.membership == "invite":
                        direct = bool(ev.content.get("is_direct"))
                        self.on_invite(room_id, ev.sender, direct)
        await self.store(records, resp.next_batch)
        self.token = resp.next_batch
        self.last_ok = self.clock().timestamp()
        self.metrics.last_sync.set(self.last_ok)
        self.first_sync_done.set()
        if records:
            self.on_stored()

    async def fill_gap(self, room_id: str, prev_batch: str, since: str) -> list[dict[str, Any]]:
        """Page back from ``prev_batch`` to the previous sync token; oldest event first."""
        collected: list[dict[str, Any]] = []
        start = prev_batch
        for _ in range(MAX_GAP_PAGES):
            resp = await self.client.room_messages(
                room_id,
                start=start,
                end=since,
                direction=MessageDirection.back,
                limit=100,
                message_filter={"types": TIMELINE_TYPES},
            )
            if isinstance(resp, RoomMessagesError):
                # Do not move the token on: the next sync brings the same gap back.
                raise GapFillError(f"could not page back in {room_id}: {resp.message}")
            collected.extend(event.source for event in resp.chunk)
            if not resp.chunk or not resp.end or resp.end == start:
                break
            start = resp.end
        else:
            log.error("room %s: gap longer than %d pages; older events dropped", room_id, 500)
        collected.reverse()
        return collected

    async def store(self, records: list[tuple[str, str, dict[str, Any]]], token: str) -> None:
        now = self.clock()
        newest = 0.0
        async with self.db.session() as s:
            for room_id, kind, event in records:
                ts = int(event.get("origin_server_ts") or 0) / 1000
                newest = max(newest, ts)
                await repo.add_inbound(
                    s,
                    event_id=event["event_id"],
                    room_id=room_id,
                    sender=str(event.get("sender")),
                    origin_ts=datetime.fromtimestamp(ts, UTC) if ts else now,
                    content={
                        "type": event.get("type"),
                        "content": event.get("content"),
                        "state_key": event.get("state_key"),
                        "redacts": event.get("redacts"),
                        "unsigned": {
                            k: v
                            for k, v in (event.get("unsigned") or {}).items()
                            if k == "prev_content"
                        },
                    },
                    kind=kind,
                    now=now,
                )
            await repo.set_state(s, "sync_token", token, now=now)
        if newest:
            self.metrics.sync_lag.set(max(0.0, now.timestamp() - newest))
