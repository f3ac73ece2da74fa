"""Workers that handle stored inbound events, exactly once.

For each event one transaction: mark it done, run the command, write its replies to the
outbox. If the process dies before the commit, the event is still pending and is handled on
the next start; after the commit it is never handled again. Events of one room are handled
in order; rooms are handled concurrently.

A command that fails (a refusal, a usage error or a bug) must leave nothing of what it
wrote. Rather than a savepoint around every command (two more statements each time), the
whole transaction is rolled back and a second one marks the event done with just the
answer: the same result, paid only when a command fails.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from nio import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession

from bot.metrics import Metrics
from bot.rooms import MemberCache
from bot.sync import Classifier
from commands.context import Context
from commands.errors import CommandError
from commands.registry import Place, Registry
from commands.services import Services
from commands.text import Message, excerpt
from config.models import Settings
from storage import Database, repo
from storage.models import InboundEvent

log = logging.getLogger(__name__)
MAX_TRIES = 3


class _Failed(Exception):
    """A command failed: roll its transaction back and answer in a new one."""

    def __init__(self, name: str, outcome: str, answer: Message | str, ctx: Context) -> None:
        super().__init__(outcome)
        self.name = name
        self.outcome = outcome
        self.answer = answer
        self.ctx = ctx


class Processor:
    def __init__(
        self,
        *,
        db: Database,
        settings: Settings,
        registry: Registry,
        client: AsyncClient,
        classifier: Classifier,
        metrics: Metrics,
        cop_rooms: dict[str, str],
        management_room: str | None,
        on_committed: Callable[[], None],
        clock: Callable[[], datetime],
        members: MemberCache,
    ) -> None:
        self.members = members
        self.db = db
        self.settings = settings
        self.registry = registry
        self.client = client
        self.classifier = classifier
        self.metrics = metrics
        self.cop_rooms = cop_rooms
        self.management_room = management_room
        self.on_committed = on_committed
        self.clock = clock
        self._wake = asyncio.Event()
        self._room_tasks: dict[str, asyncio.Task[None]] = {}
        self._tries: dict[int, int] = {}
        self.stopping = False
        self.services: Services | None = None

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Hand pending events to per-room workers; poll now and then for other processes."""
        while not self.stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=2.0)
            except TimeoutError:
                pass
            self._wake.clear()
            if self.stopping:
                break
            try:
                async with self.db.read() as s:
                    # Only which rooms have work: each worker reads its own room's events,
                    # so a backlog is not read (and decoded) again on every wake.
                    rooms = await repo.pending_rooms(s)
            except Exception:
                self.metrics.errors.labels("processor").inc()
                log.exception("could not read pending events")
                await asyncio.sleep(1)
                continue
            for room_id in rooms:
                task = self._room_tasks.get(room_id)
                if task is None or task.done():
                    self._room_tasks[room_id] = asyncio.create_task(self._room_worker(room_id))
                # A running worker re-reads its room when it is done, see _room_worker.

    async def _room_worker(self, room_id: str) -> None:
        first = True
        while True:
            try:
                async with self.db.read() as s:
                    rows = await repo.pending_inbound(s, 200, room_id=room_id)
            except Exception:
                # The main loop reads pending events again and starts a new worker.
                self.metrics.errors.labels("processor").inc()
                log.exception("could not read the pending events of %s", room_id)
                return
            if not first:
                rows = [r for r in rows if self._tries.get(r.id, 0) < MAX_TRIES]
            first = False
            if not rows:
                return
            for row in rows:
                if self.stopping:
                    return
                await self.handle(row)

    async def drain(self, grace: float) -> None:
        """Stop taking new events and let the events being handled finish."""
        self.stopping = True
        self._wake.set()
        tasks = [t for t in self._room_tasks.values() if not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=grace)

    # --- one event ----------------------------------------------------------------------------
    async def place_of(self, room_id: str, sender: str) -> tuple[Place, str | None]:
        """Where a command was sent. A direct chat is decided from who is in the room now
        (the bot and the sender, nobody else), never from what the room was once."""
        if room_id in self.cop_rooms:
            return Place.COP_ROOM, self.cop_rooms[room_id]
        if room_id == self.management_room:
            return Place.MANAGEMENT, None
        if await self.members.is_private(room_id, sender):
            return Place.DM, None
        return Place.OTHER, None

    async def handle(self, row: InboundEvent) -> None:
        started = time.monotonic()
        command_name = row.kind
        outcome = "ok"
        try:
            place, room_cop = await self.place_of(row.room_id, row.sender)
            replied = await self._replied_event(row)
            try:
                async with self.db.session() as s:
                    # Claimed as "ok", the usual outcome: any other is set before the commit.
                    if not await repo.claim_inbound(s, row.id, "ok", now=self.clock()):
                        return  # another worker or process got it first
                    ctx = await self._context(s, row, place, room_cop, replied)
                    if row.kind == "command":
                        command_name, outcome = await self._command(ctx, row)
                    else:
                        outcome = await self._hook(ctx, row)
                    if outcome != "ok":
                        await repo.set_inbound_outcome(s, row.id, outcome)
            except _Failed as failed:
                # Nothing the command wrote is kept: only the event, done, and the answer.
                command_name, outcome = failed.name, failed.outcome
                async with self.db.session() as s:
                    if not await repo.claim_inbound(s, row.id, outcome, now=self.clock()):
                        return
                    ctx = await self._context(s, row, place, room_cop, replied)
                    ctx.redirected = failed.ctx.redirected
                    ctx._redirect_note = failed.ctx._redirect_note
                    await ctx.reply(failed.answer)
        except Exception:
            # The room could not be read or the transaction failed (homeserver or database
            # trouble): the event stays pending.
            tries = self._tries.get(row.id, 0) + 1
            self._tries[row.id] = tries
            self.metrics.errors.labels("transaction").inc()
            log.exception("handling %s failed (try %d of %d)", row.event_id, tries, MAX_TRIES)
            if tries >= MAX_TRIES:
                await self._give_up(row)
            return
        self._tries.pop(row.id, None)
        self.metrics.commands.labels(command_name, outcome).inc()
        self.metrics.command_seconds.labels(command_name).observe(time.monotonic() - started)
        self.on_committed()

    async def _context(
        self,
        s: AsyncSession,
        row: InboundEvent,
        place: Place,
        room_cop: str | None,
        replied: dict[str, Any] | None,
    ) -> Context:
        if place is Place.DM and await repo.get_direct_room(s, row.sender) is None:
            await repo.set_direct_room(s, row.sender, row.room_id, now=self.clock())
        return Context(
            session=s,
            settings=self.settings,
            registry=self.registry,
            sender=row.sender,
            room_id=row.room_id,
            event_id=row.event_id,
            place=place,
            now=self.clock(),
            room_cop=room_cop,
            management_room=self.management_room,
            event=row.content,
            event_ts=row.origin_ts,
            services=self.services,
            replied_event=replied,
        )

    async def _replied_event(self, row: InboundEvent) -> dict[str, Any] | None:
        """For a command that works on the message it replies to: that message, read now,
        before the transaction (None for every other event, or when it cannot be read)."""
        if row.kind != "command" or self.services is None or self.services.fetch_event is None:
            return None
        content = (row.content or {}).get("content") or {}
        command, _ = self.registry.find(self.classifier.command_text(content) or "")
        relates = content.get("m.relates_to")
        reply = relates.get("m.in_reply_to") if isinstance(relates, dict) else None
        target = reply.get("event_id") if isinstance(reply, dict) else None
        if command is None or not command.reads_replied_event or not isinstance(target, str):
            return None
        return await self.services.fetch_event(row.room_id, target)

    async def _command(self, ctx: Context, row: InboundEvent) -> tuple[str, str]:
        content: dict[str, Any] = (row.content or {}).get("content") or {}
        text = self.classifier.command_text(content) or ""
        age = ctx.now - row.origin_ts
        if age > self.settings.matrix.offline_window:
            typed = text.split()[0] if text.split() else ""
            when = row.origin_ts.strftime("%Y-%m-%d %H:%M UTC")
            await ctx.reply(
                Message("I was offline when you sent ")
                .code(excerpt(f"{ctx.prefix}{typed}"))
                .text(f" ({when}), and it is now too old for me to act on safely. ")
                .text("Please send it again if it is still needed.")
            )
            return "expired", "expired"
        try:
            command = await self.registry.dispatch(ctx, text)
        except CommandError as exc:
            name = ctx.command.name if ctx.command else "unknown"
            raise _Failed(name, exc.outcome, exc.message, ctx) from None
        except Exception:
            ref = secrets.token_hex(2).upper()
            log.exception("command %r from %s failed (ref %s)", text[:200], row.sender, ref)
            self.metrics.errors.labels("command").inc()
            name = ctx.command.name if ctx.command else "unknown"
            answer = (
                f"Sorry, something went wrong on my side (ref {ref}). Nothing was changed. "
                "Please try again later; if it keeps happening, tell the Secretariat the ref."
            )
            raise _Failed(name, "error", answer, ctx) from None
        return (command.name if command else "unknown"), "ok"

    async def _hook(self, ctx: Context, row: InboundEvent) -> str:
        outcome = "ok"
        for hook in self.registry.hooks.get(row.kind, []):
            try:
                async with ctx.session.begin_nested():
                    await hook(ctx, row.content or {})
            except CommandError as exc:
                await ctx.dm(row.sender, exc.message)
                outcome = exc.outcome
            except Exception:
                ref = secrets.token_hex(2).upper()
                log.exception("%s hook for %s failed (ref %s)", row.kind, row.event_id, ref)
                self.metrics.errors.labels(row.kind).inc()
                outcome = "error"
        return outcome

    async def _give_up(self, row: InboundEvent) -> None:
        """After repeated database failures: answer once so nothing is silently dropped."""
        ref = secrets.token_hex(2).upper()
        log.error("giving up on %s after %d tries (ref %s)", row.event_id, MAX_TRIES, ref)
        try:
            async with self.db.session() as s:
                if await repo.claim_inbound(s, row.id, "failed", now=self.clock()):
                    if row.kind == "command":
                        await repo.enqueue(
                            s,
                            room_id=row.room_id,
                            payload=Message(
                                f"Sorry, I could not handle this (ref {ref}). Nothing was "
                                "changed; please try again in a few minutes."
                            ).content(reply_to=row.event_id),
                            now=self.clock(),
                        )
            self.on_committed()
        except Exception:
            log.exception("could not record the failure of %s", row.event_id)
