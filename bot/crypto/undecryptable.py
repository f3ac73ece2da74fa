"""Never silent: what happens to a message the bot cannot decrypt.

The sync loop parks such an event (still encrypted, with its session id) in the same
transaction as the sync token. Then:

1. the bot asks the sender's device for the key (``m.room_key_request``), once per event;
2. whenever a room key arrives, the sync loop tries the parked events of that session again
   and, once they open, stores them like any other event (they are handled as usual);
3. after ``matrix.key_wait`` without a key, the person is told in that room, plainly, what
   to check — at most once per person per hour; events covered by such a notice are not
   carried out later (the notice asks to send them again).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from nio import AsyncClient, MegolmEvent, ToDeviceError
from nio.crypto import OutgoingKeyRequest

from bot.metrics import Metrics
from commands.text import Message
from storage import Database, repo
from storage import crypto as stored

log = logging.getLogger(__name__)

NOTICE_EVERY = timedelta(hours=1)
KEEP_TOLD = timedelta(days=2)
CHECK_SECONDS = 2.0


def notice() -> Message:
    return (
        Message("I could not read your message: it is end-to-end encrypted, and your app ")
        .text("has not given me the key to open it. Please check:")
        .bullets(
            [
                Message("your Matrix app is up to date;"),
                Message("it does not send encrypted messages to verified sessions only (in ")
                .text("Element: Settings → Security & Privacy → “Never send encrypted messages ")
                .text("to unverified sessions” should be off);"),
                Message("then send your message again."),
            ]
        )
        .text("If it keeps happening, start a new direct chat with me.")
    )


class Undecryptable:
    """Asks for missing keys and tells people, on a timer (runs in the leader only)."""

    def __init__(
        self,
        client: AsyncClient,
        db: Database,
        metrics: Metrics,
        *,
        wait: timedelta,
        clock: Callable[[], datetime],
        on_queued: Callable[[], None],
    ) -> None:
        self.client = client
        self.db = db
        self.metrics = metrics
        self.wait = wait
        self.clock = clock
        self.on_queued = on_queued
        self.stopping = False
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while not self.stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=CHECK_SECONDS)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.request_keys()
                await self.tell_people()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.metrics.errors.labels("undecryptable").inc()
                log.exception("handling undecryptable messages failed")

    async def request_keys(self) -> int:
        """Ask each sender's device for the keys of newly parked events."""
        async with self.db.read() as s:
            parked = await stored.without_key_request(s)
        asked: list[str] = []
        olm = self.client.olm
        for row in parked:
            event = MegolmEvent.from_dict(row.raw)
            if not isinstance(event, MegolmEvent) or olm is None:
                asked.append(row.event_id)  # nothing to ask for
                continue
            event.room_id = row.room_id
            request_id = uuid.uuid4().hex
            message = event.as_key_request(
                event.sender, self.client.device_id, request_id, event.device_id
            )
            resp = await self.client.to_device(message, tx_id=request_id)
            if isinstance(resp, ToDeviceError):
                log.info("could not ask %s for a room key: %s", event.sender, resp.message)
                continue
            if event.session_id not in olm.outgoing_key_requests:
                request = OutgoingKeyRequest(
                    request_id, event.session_id, row.room_id, event.algorithm
                )
                olm.outgoing_key_requests[event.session_id] = request
                olm.store.add_outgoing_key_request(request)
            asked.append(row.event_id)
            log.info("asked %s for the key of %s", event.sender, row.event_id)
        if asked:
            async with self.db.session() as s:
                await stored.mark_key_requested(s, asked)
        return len(asked)

    async def tell_people(self) -> int:
        """Tell the senders of events whose key did not come in time (once an hour each)."""
        now = self.clock()
        told = 0
        async with self.db.session() as s:
            due = await stored.due_for_notice(s, now - self.wait)
            for row in due:
                last = await stored.last_notice(s, row.sender)
                row.notified_at = now
                if last is not None and now - last < NOTICE_EVERY:
                    continue  # told within the hour: this one is covered
                await stored.note_notice(s, row.sender, now)
                await repo.enqueue(
                    s,
                    room_id=row.room_id,
                    payload=notice().content(reply_to=row.event_id),
                    now=now,
                )
                told += 1
                log.warning(
                    "told %s that their message %s in %s could not be decrypted",
                    row.sender,
                    row.event_id,
                    row.room_id,
                )
            await stored.forget_parked_before(s, now - KEEP_TOLD)
        if told:
            self.metrics.undecryptable_notices.inc(told)
            self.on_queued()
        return told
