"""The outbox sender: delivers what committed transactions queued, in order, exactly once.

The outbox row id is the Matrix transaction id, and the bot keeps its device across
restarts, so sending a row again after a crash returns the same event instead of a copy.
Rows for one room go out strictly in id order; rate limits are waited out a bounded
number of times, after which the row stays queued and is tried again later.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from nio import (
    AsyncClient,
    ErrorResponse,
    RoomCreateError,
    RoomPreset,
)

from bot.crypto.attachments import AttachmentError, plain_copy, upload
from bot.matrix import (
    ENCRYPTION_STATE,
    MatrixError,
    RoomFacts,
    ensure_room_known,
    mark_encrypted,
    room_facts,
)
from bot.metrics import Metrics
from bot.rooms import MemberCache
from commands.text import Message
from storage import Database, repo
from storage.models import OutboxMessage

log = logging.getLogger(__name__)

PERMANENT = {"M_FORBIDDEN", "M_NOT_FOUND", "M_BAD_JSON", "M_NOT_JSON", "M_TOO_LARGE"}
MAX_ATTEMPTS = 8
ONCE = ("invite", "kick", "power", "state", "redact", "leave")
"""Kinds a homeserver that refuses them once will refuse again: given up at once."""
QUEUES_AT_ONCE = 8


PART_BYTES = 16_000


def split_plain(payload: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    """A message's plain body as several plain messages of at most ``limit`` bytes, cut at
    line ends (a line longer than that is cut where it must). The first keeps the reply."""
    body = str(payload.get("body", ""))
    chunks: list[str] = [""]
    for whole_line in body.splitlines(keepends=True):
        rest = whole_line
        while len(rest.encode()) > limit:
            head = rest.encode()[:limit].decode("utf-8", errors="ignore")
            chunks.append(head)
            rest = rest[len(head) :]
        if len((chunks[-1] + rest).encode()) > limit:
            chunks.append("")
        chunks[-1] += rest
    parts = []
    for chunk in (c.strip("\n") for c in chunks):
        if chunk:
            parts.append({"msgtype": payload.get("msgtype", "m.notice"), "body": chunk})
            parts[-1]["m.mentions"] = {}
    if parts and "m.relates_to" in payload:
        parts[0]["m.relates_to"] = payload["m.relates_to"]
    return parts


class SendFailed(Exception):
    def __init__(self, error: str, retry_after: float | None, permanent: bool) -> None:
        super().__init__(error)
        self.error = error
        self.retry_after = retry_after
        self.permanent = permanent


class Sender:
    def __init__(
        self,
        client: AsyncClient,
        db: Database,
        metrics: Metrics,
        *,
        retries: int = 5,
        txn_prefix: str = "bbwt",
        clock: Callable[[], datetime],
        members: MemberCache,
        encrypt_direct_rooms: bool = True,
        caught_up: asyncio.Event | None = None,
        started: asyncio.Event | None = None,
        shared_rooms: frozenset[str] = frozenset(),
    ) -> None:
        self.encrypt_direct_rooms = encrypt_direct_rooms
        self.shared_rooms = shared_rooms
        """The CoP rooms and the management room: never anyone's direct chat, even when
        they hold just the bot and one person."""
        self.caught_up = caught_up
        """Set once the sync loop has stored what happened while no process ran (say, a
        direct chat the previous process opened but could not record, or a person who
        joined one): sending to anywhere but the shared rooms waits for it."""
        self.started = started
        """Set once the first sync has come in (the client knows the rooms): sending to
        the shared rooms waits only for this, so a catch-up's answers there start while
        the rest of a long gap is still being read."""
        self.members = members
        self._pointed: set[tuple[str, str]] = set()
        self._queues_at_once = asyncio.Semaphore(QUEUES_AT_ONCE)
        self.client = client
        self.db = db
        self.metrics = metrics
        self.retries = retries
        self.txn_prefix = txn_prefix
        self.clock = clock
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        """Set while the sender waits with nothing to send (see ``settle``)."""
        self.stopping = False
        self._facts: dict[str, RoomFacts] = {}
        self._marks: list[tuple[int, str | None, datetime]] = []
        self._marking: asyncio.Task[None] | None = None
        self._waking: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()
        self._idle.clear()

    async def settle(self, at_most: float) -> None:
        """Wait until nothing is being sent, ``at_most`` seconds at most (the sync loop
        waits so before its next sync while replies go out: see ``Syncer.run``)."""
        if self._idle.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), at_most)

    async def run(self) -> None:
        if self.started is not None:
            await self.started.wait()
        elif self.caught_up is not None:
            await self.caught_up.wait()
        if self.caught_up is not None and not self.caught_up.is_set():
            self._waking = asyncio.create_task(self._wake_when(self.caught_up))
        while not self.stopping:
            if not self._wake.is_set():
                self._idle.set()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=2.0)
            except TimeoutError:
                pass
            self._idle.clear()
            self._wake.clear()
            try:
                await self.flush_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.metrics.errors.labels("sender").inc()
                log.exception("sending failed")
                await asyncio.sleep(1)

    async def _wake_when(self, event: asyncio.Event) -> None:
        await event.wait()
        self.wake()

    def _may_send(self, row: OutboxMessage) -> bool:
        """Until the sync has caught up, only plain replies in the shared rooms go out."""
        if self.caught_up is None or self.caught_up.is_set():
            return True
        return row.private_to is None and row.room_id in self.shared_rooms

    async def flush(self, grace: float) -> int:
        """Send until the outbox is empty (or only has rows waiting); return what is left."""
        deadline = asyncio.get_running_loop().time() + grace
        left = 0
        while asyncio.get_running_loop().time() < deadline:
            left = await self.flush_once()
            if left == 0:
                break
            await asyncio.sleep(0.2)
        return left

    async def flush_once(self) -> int:
        """One pass over the outbox; returns how many rows remain unsent."""
        async with self.db.read() as s:
            rows = await repo.unsent(s, limit=500)
        queues: dict[str, list[OutboxMessage]] = {}
        for row in rows:
            if not self._may_send(row):
                continue
            key = row.room_id or f"user:{row.to_user}"
            queues.setdefault(key, []).append(row)
        if len(queues) == 1:
            # One room (the usual case): its first message goes out now, not after a turn
            # of the event loop for a task of its own.
            await self._send_queue(next(iter(queues.values())))
        elif queues:
            await asyncio.gather(*(self._send_queue_bounded(q) for q in queues.values()))
        await self.marks_written()
        async with self.db.read() as s:
            depth = await repo.outbox_depth(s)
        self.metrics.outbox_depth.set(depth)
        return depth

    async def _send_queue_bounded(self, rows: list[OutboxMessage]) -> None:
        # Rooms go out side by side, but not so many at once that they use up the
        # database's connections (each send reads and writes a row).
        async with self._queues_at_once:
            await self._send_queue(rows)

    async def _send_queue(self, rows: list[OutboxMessage]) -> None:
        for row in rows:
            if row.not_before and row.not_before > self.clock():
                return  # keep the room's order: nothing after a waiting row goes first
            if not await self._send_row(row):
                return

    async def _send_row(self, row: OutboxMessage) -> bool:
        room_id = row.room_id
        try:
            if row.private_to is not None:
                room_id = await self._private_room(row, row.private_to)
            elif room_id is None:
                room_id = await self._open_direct_room(str(row.to_user))
            person = row.private_to or row.to_user
            if person is not None:  # a direct chat: the person gets the key even if invited
                ensure_room_known(self.client, room_id, invited=[person])
            result = await self._deliver(row, room_id)
        except SendFailed as exc:
            async with self.db.session() as s:
                attempts = row.attempts + 1
                # A refused invite/kick/power change will not succeed later (the person is
                # not there, or already is): drop it at once so the room's queue moves on.
                # A refused message is tried a few times (e.g. the bot is still joining).
                patience = 1 if row.kind in ONCE else 3
                give_up = attempts >= MAX_ATTEMPTS or (exc.permanent and attempts >= patience)
                backoff = exc.retry_after or min(2**attempts, 300)
                await repo.mark_attempt(
                    s,
                    row.id,
                    error=exc.error,
                    not_before=self.clock() + timedelta(seconds=backoff),
                    failed=give_up,
                    now=self.clock(),
                )
                if give_up and row.kind == "file" and exc.error.startswith("M_TOO_LARGE"):
                    # Never dropped in silence: the person hears that the file did not go.
                    note = Message(
                        "Sorry, the file I prepared for you was too large for the chat server "
                        "to accept, so it was not sent. Please ask for a smaller part (one CoP "
                        "or a shorter period), or ask the Secretariat for it."
                    )
                    await repo.enqueue(
                        s,
                        room_id=row.room_id,
                        to_user=None if row.room_id else row.to_user,
                        payload=note.content(reply_to=row.payload.get("reply_to")),
                        private_to=row.private_to,
                        now=self.clock(),
                    )
            if give_up:
                self.metrics.errors.labels("send_gave_up").inc()
            log.warning("outbox %d to %s not sent: %s", row.id, room_id, exc.error)
            return False
        self._mark_sent(row.id, result)
        self.metrics.sent.labels(row.kind).inc()
        return True

    # --- sent marks -------------------------------------------------------------------------
    # A sent row is marked in the background, together with the rows sent meanwhile (one
    # transaction for many), while the room's next row goes out. Not yet marked is the same
    # as not marked after a crash: sent again, it returns the same event (its transaction
    # id), so nothing is doubled. A pass ends only once its marks are written, so the next
    # pass never sees a row it already sent.
    def _mark_sent(self, row_id: int, result: str | None) -> None:
        self._marks.append((row_id, result, self.clock()))
        if self._marking is None or self._marking.done():
            self._marking = asyncio.create_task(self._write_marks())

    async def _write_marks(self) -> None:
        while self._marks:
            batch, self._marks = self._marks, []
            try:
                async with self.db.session() as s:
                    await repo.mark_sent_many(s, batch)
            except Exception:
                # Left unmarked, as after a crash: sent again later, it returns the same event.
                self.metrics.errors.labels("sender").inc()
                log.exception("could not mark %d sent row(s)", len(batch))
                return

    async def marks_written(self) -> None:
        """Wait until every row sent so far is marked sent (or failed to be)."""
        if self._marks and (self._marking is None or self._marking.done()):
            self._marking = asyncio.create_task(self._write_marks())  # left by a failure
        while self._marking is not None and not self._marking.done():
            await asyncio.shield(self._marking)

    async def _call(self, make: Callable[[], Any]) -> Any:
        """Call nio, waiting out M_LIMIT_EXCEEDED up to ``retries`` times."""
        for attempt in range(self.retries + 1):
            try:
                resp = await make()
            except Exception as exc:  # connection trouble: try again later
                raise SendFailed(f"{type(exc).__name__}: {exc}", None, False) from exc
            if isinstance(resp, ErrorResponse):
                if resp.status_code == "M_LIMIT_EXCEEDED":
                    self.metrics.rate_limited.inc()
                    wait = (resp.retry_after_ms or 1000) / 1000
                    if attempt < self.retries:
                        await asyncio.sleep(min(wait, 60))
                        continue
                    raise SendFailed("rate limited", wait, False)
                code = resp.status_code or ""
                raise SendFailed(f"{code} {resp.message}", None, code in PERMANENT)
            return resp
        raise SendFailed("rate limited", None, False)

    async def _room_send(
        self, room_id: str, event_type: str, content: dict[str, Any], txn: str
    ) -> str:
        """Send an event, encrypted when the room is (nio must know the room first). Room
        keys go to every device of the room's members, verified or not, as people expect
        of a bot; the transaction id makes a resend return the same event."""
        ensure_room_known(self.client, room_id)
        resp = await self._call(
            lambda: self.client.room_send(
                room_id, event_type, content, tx_id=txn, ignore_unverified_devices=True
            )
        )
        return str(resp.event_id)

    def _encrypted(self, room_id: str) -> bool:
        return bool(ensure_room_known(self.client, room_id).encrypted)

    async def _deliver(self, row: OutboxMessage, room_id: str) -> str | None:
        payload = row.payload
        txn = f"{self.txn_prefix}-{row.id}"
        if row.kind == "message":
            if isinstance(payload.get("file"), dict) and not self._encrypted(room_id):
                payload = await self._plain_file(payload)
            try:
                return await self._room_send(room_id, "m.room.message", payload, txn)
            except SendFailed as exc:
                if not exc.error.startswith("M_TOO_LARGE"):
                    raise
                return await self._send_in_parts(room_id, payload, txn)
        if row.kind == "reaction":
            content = payload
            if "relates_to_tag" in payload:
                content = await self._reaction_to_tag(room_id, payload)
            return await self._room_send(room_id, "m.reaction", content, txn)
        if row.kind == "file":
            return await self._send_file(room_id, payload, txn)
        if row.kind == "invite":
            await self._call(lambda: self.client.room_invite(room_id, payload["user_id"]))
            return None
        if row.kind == "kick":
            await self._call(
                lambda: self.client.room_kick(room_id, payload["user_id"], payload.get("reason"))
            )
            return None
        if row.kind == "power":
            await self._set_power(room_id, payload)
            return None
        if row.kind == "state":
            resp = await self._call(
                lambda: self.client.room_put_state(
                    room_id, payload["type"], payload["content"], payload.get("state_key", "")
                )
            )
            return str(getattr(resp, "event_id", "") or "") or None
        if row.kind == "redact":  # the bot's own message: {"event_id": …, "reason": …}
            resp = await self._call(
                lambda: self.client.room_redact(
                    room_id, payload["event_id"], payload.get("reason"), tx_id=txn
                )
            )
            return str(getattr(resp, "event_id", "") or "") or None
        if row.kind == "leave":
            await self._call(lambda: self.client.room_leave(room_id))
            return None
        raise SendFailed(f"unknown outbox kind {row.kind!r}", None, True)

    async def _send_in_parts(self, room_id: str, payload: dict[str, Any], txn: str) -> str:
        """A message the homeserver found too large: its text in parts, never dropped.

        Replies are split before they are queued; this is the safety net for what was not
        (the formatting is left out, the words are all there).
        """
        log.warning("a message to %s was too large; sending it in parts", room_id)
        first: str | None = None
        for index, content in enumerate(split_plain(payload, PART_BYTES)):
            part_txn = f"{txn}-part{index}"  # the same parts again after a crash
            event_id = await self._room_send(room_id, "m.room.message", content, part_txn)
            first = first or event_id
        return first or ""

    async def _reaction_to_tag(self, room_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        """``{"relates_to_tag": tag, "key": "✅"}``: a reaction to the bot's own message with
        that tag in this room, whose event id is only known once it has been sent (rows of
        one room go out in order, so it normally has been)."""
        await self.marks_written()
        async with self.db.session() as s:
            target = await repo.tagged_message(s, str(payload["relates_to_tag"]), room_id)
        if target is None or target.failed:
            raise SendFailed(f"no message tagged {payload['relates_to_tag']!r}", None, True)
        if target.sent_at is None or not target.result:
            raise SendFailed("the message to react to is not sent yet", None, False)
        return {
            "m.relates_to": {
                "rel_type": "m.annotation",
                "event_id": target.result,
                "key": str(payload["key"]),
            }
        }

    async def _room_facts(self, room_id: str) -> RoomFacts:
        """Version and creators of a room (read once: they never change)."""
        facts = self._facts.get(room_id)
        if facts is None:
            try:
                facts = await room_facts(self.client, room_id)
            except Exception as exc:
                raise SendFailed(f"room version unknown: {exc}", None, False) from exc
            self._facts[room_id] = facts
        return facts

    async def _set_power(self, room_id: str, payload: dict[str, Any]) -> None:
        """Read-modify-write of the room's power levels: ``{"set": {user: level or None}}``."""
        current = await self._call(
            lambda: self.client.room_get_state_event(room_id, "m.room.power_levels")
        )
        content = dict(current.content)
        users = dict(content.get("users") or {})
        facts = await self._room_facts(room_id)
        for user, level in payload["set"].items():
            if not facts.listable(user):
                # A creator of a room version 12+ room outranks every level already.
                log.info("not listing %s in the power levels of %s: a creator", user, room_id)
                continue
            if level is None or level == content.get("users_default", 0):
                users.pop(user, None)
            else:
                users[user] = int(level)
        if users == (content.get("users") or {}):
            return
        content["users"] = users
        await self._call(
            lambda: self.client.room_put_state(room_id, "m.room.power_levels", content)
        )

    async def _plain_file(self, payload: dict[str, Any]) -> dict[str, Any]:
        """An encrypted file (a receipt, an intel file) shown in an unencrypted room: its key
        must not go there in the clear, so a decrypted copy is uploaded instead."""
        try:
            return await plain_copy(self.client, payload)
        except AttachmentError as exc:
            log.warning("could not make a plain copy of an encrypted file: %s", exc)
            name = str(payload.get("body") or "the file")
            return Message(
                f"I cannot show {name} here: it was shared encrypted and I could not make a "
                f"copy for this unencrypted room ({exc}). Ask me in an encrypted chat."
            ).content()

    async def _send_file(self, room_id: str, payload: dict[str, Any], txn: str) -> str:
        data = base64.b64decode(payload["data_b64"])
        name = str(payload["filename"])
        mimetype = str(payload["mimetype"])
        try:
            where = await upload(
                self.client,
                data,
                filename=name,
                mimetype=mimetype,
                encrypted=self._encrypted(room_id),
            )
        except AttachmentError as exc:
            raise SendFailed(str(exc), None, False) from exc
        except Exception as exc:  # connection trouble: try again later
            raise SendFailed(f"upload failed: {type(exc).__name__}", None, False) from exc
        content: dict[str, Any] = {
            "msgtype": "m.file",
            "body": name,
            "filename": name,
            **where,
            "info": {"mimetype": mimetype, "size": len(data)},
            "m.mentions": {},
        }
        if payload.get("reply_to"):
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": payload["reply_to"]}}
        return await self._room_send(room_id, "m.room.message", content, txn)

    async def _private_room(self, row: OutboxMessage, user_id: str) -> str:
        """Where a row meant for ``user_id`` only may go: its own room while that holds just
        the bot and them, otherwise their direct chat (opened if needed), with a one-line
        pointer in the room the answer was meant for."""
        target = row.room_id
        try:
            if target is not None and await self.members.is_private(target, user_id):
                return target
        except MatrixError as exc:
            raise SendFailed(f"who is in {target} is unknown: {exc}", None, False) from exc
        room = await self._open_direct_room(user_id)
        reply_to = ((row.payload.get("m.relates_to") or {}).get("m.in_reply_to") or {}).get(
            "event_id"
        )
        if target is not None and target != room and isinstance(reply_to, str):
            await self._point_to_private_chat(target, reply_to)
        return room

    async def _point_to_private_chat(self, room_id: str, reply_to: str) -> None:
        """Say once, in the room a private answer was asked for, where it went instead."""
        if (room_id, reply_to) in self._pointed:
            return
        note = Message(
            "This room has other people in it, so I've answered you in our private chat."
        ).content(reply_to=reply_to)
        digest = hashlib.sha256(reply_to.encode()).hexdigest()[:16]
        txn = f"{self.txn_prefix}-moved-{digest}"  # the same pointer if sent again
        await self._room_send(room_id, "m.room.message", note, txn)
        self._pointed.add((room_id, reply_to))

    async def _open_direct_room(self, user_id: str) -> str:
        """The person's direct chat: the known one while it is still just the bot and them,
        else a new one. One at a time per person, across processes, so two bot processes
        never open two chats for one person."""
        async with self.db.exclusive(f"direct-room:{user_id}"):
            async with self.db.read() as s:
                known = await repo.get_direct_room(s, user_id)
            try:
                if known is not None and not await self.members.is_private(known, user_id):
                    log.info("%s is no longer a direct chat with %s", known, user_id)
                    known = None
            except MatrixError as exc:
                raise SendFailed(f"who is in {known} is unknown: {exc}", None, False) from exc
            if known is None:
                known = await self._unrecorded_direct_room(user_id)
                if known is not None:
                    await self._record_direct_room(user_id, known, created=False)
                    return known
                encrypted = self.encrypt_direct_rooms
                resp = await self._call(
                    lambda: self.client.room_create(
                        is_direct=True,
                        invite=[user_id],
                        preset=RoomPreset.trusted_private_chat,
                        initial_state=[ENCRYPTION_STATE] if encrypted else [],
                    )
                )
                if isinstance(resp, RoomCreateError):  # pragma: no cover - _call raises first
                    raise SendFailed(str(resp), None, False)
                known = str(resp.room_id)
                if encrypted:
                    mark_encrypted(self.client, known)
                # The person is only invited: they get the room key all the same.
                ensure_room_known(self.client, known, invited=[user_id])
                log.info("opened a direct room with %s: %s", user_id, known)
                # Recorded before the lock is let go, so nobody opens a second one; a
                # database hiccup here is waited out rather than forgetting the room.
                await self._record_direct_room(user_id, known, created=True)
            else:
                await self._record_direct_room(user_id, known, created=False)
        return known

    async def _unrecorded_direct_room(self, user_id: str) -> str | None:
        """A direct chat with the person that is on the server but not on record: a process
        that died between creating it and recording it (a takeover) leaves it behind, and
        the sync may not have shown it to this process yet. Found among the rooms the bot
        is in, it is used instead of opening a second chat. New direct chats are rare (once
        a person), so the extra look is cheap."""
        resp = await self._call(self.client.joined_rooms)
        async with self.db.read() as s:
            recorded = await repo.recorded_room_ids(s)
        for room_id in resp.rooms:
            if room_id in recorded or room_id in self.shared_rooms:
                continue
            try:
                private = await self.members.is_private(room_id, user_id)
            except MatrixError:
                continue
            if not private:
                continue
            state = await self.client.room_get_state_event(room_id, "m.room.encryption")
            if not isinstance(state, ErrorResponse):
                mark_encrypted(self.client, room_id)
            ensure_room_known(self.client, room_id, invited=[user_id])
            log.info("adopting the direct chat %s with %s", room_id, user_id)
            return str(room_id)
        return None

    async def _record_direct_room(self, user_id: str, room_id: str, *, created: bool) -> None:
        for attempt in range(1, 6):
            try:
                if created:
                    await self.members.note_created(room_id, user_id)
                async with self.db.session() as s:
                    await repo.set_direct_room(s, user_id, room_id, now=self.clock())
                    await repo.resolve_outbox_room(s, user_id, room_id)
                return
            except Exception:
                if attempt == 5:
                    raise
                log.warning("could not record the direct room %s yet; retrying", room_id)
                await asyncio.sleep(attempt)
