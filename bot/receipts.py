"""Private read receipts on what the bot has handled.

The homeserver keeps, for every member of a room, how many messages came after their read
receipt, and works that count out again for each room in each of their syncs. The bot never
reads a room the way a person does: without a receipt its count grows with every command
ever sent, and each of its syncs (its own reply wakes it, so one per reply during a backlog)
costs the homeserver more the longer a room's history is. A catch-up of 5,000 commands made
the homeserver spend about a third of its time on these counts.

So the bot marks the newest event it has handled in a room as read, with a private receipt
(``m.read.private``: shown to no one, it only moves the bot's own count). A receipt goes out
a moment after the handling committed (never before the reply's turn), at most once per
``every`` seconds per room, for the newest event only. A receipt is a courtesy to the
homeserver: one that fails is counted and logged, and nothing else depends on it.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import quote

from nio import AsyncClient

from bot.matrix import client_json
from bot.metrics import Metrics

log = logging.getLogger(__name__)

EVERY_SECONDS = 1.0


class ReadReceipts:
    def __init__(self, client: AsyncClient, metrics: Metrics, every: float = EVERY_SECONDS):
        self.client = client
        self.metrics = metrics
        self.every = every
        self._newest: dict[str, str] = {}
        """Room id -> the newest event handled there and not marked yet."""
        self._task: asyncio.Task[None] | None = None

    def handled(self, room_id: str, event_id: str) -> None:
        """An event was handled (its transaction committed); events of one room come in
        the order they were sent, so the last one named is the newest."""
        self._newest[room_id] = event_id
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._send(), name="receipts")

    async def _send(self) -> None:
        while self._newest:
            await asyncio.sleep(self.every)  # the replies go first; later events join in
            marks, self._newest = self._newest, {}
            for room_id, event_id in marks.items():
                await self._mark(room_id, event_id)

    async def _mark(self, room_id: str, event_id: str) -> None:
        path = (
            f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}"
            f"/receipt/m.read.private/{quote(event_id, safe='')}"
        )
        try:
            status, body = await client_json(self.client, "POST", path, {})
        except Exception as exc:  # the homeserver is away: the next receipt will do
            status, body = 0, {"error": f"{type(exc).__name__}: {exc}"}
        if status == 200:
            self.metrics.receipts.inc()
            return
        self.metrics.errors.labels("receipt").inc()
        log.info("no read receipt in %s (HTTP %s: %s)", room_id, status, body.get("errcode"))

    async def close(self) -> None:
        """Stop; receipts not sent yet are dropped (the next start marks its own)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
