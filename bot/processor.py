"""Workers that handle stored inbound events, exactly once.

For each event: mark it done, run the command, write its replies to the outbox, in one
transaction (a backlog of one room shares a transaction between a few events, see
``GROUP_MAX``). If the process dies before the commit, the event is still pending and is
handled on the next start; after the commit it is never handled again. Events of one room
are handled in order; rooms are handled concurrently.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nio import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession

from bot.metrics import Metrics
from bot.rooms import MemberCache
from bot.sync import Classifier
from commands.context import Context
from commands.conversation import POINTER_EVERY, acted_on, pointer
from commands.errors import CommandError
from commands.registry import Place, Registry
from commands.roles import Roles
from commands.services import Services
from commands.text import Message, excerpt
from config.models import Settings
from storage import Database, repo
from storage.models import InboundEvent

log = logging.getLogger(__name__)
MAX_TRIES = 3
BATCH = 200
"""Pending events a worker reads from the database at once."""
GROUP_MAX = 32
"""At most this many events of one room are handled in one transaction. A worker handles
the first event it has alone, then, while more are waiting (a burst, the backlog after a
restart), groups of 2, 4, 8... of them: the first answer goes out as soon as it would alone,
and a backlog pays one transaction (a commit, on PostgreSQL a flush to disk) per group
rather than per event. What bounds how long a group holds its answers (and, on SQLite,
other writers) is its time budget, ``process.group_seconds``; this only bounds how many
rows one claim locks (the figures that chose 32: the README's benchmarks)."""


class _Failed(Exception):
    """A command failed: roll its transaction back and answer in a new one."""

    def __init__(self, name: str, outcome: str, answer: Message | str, ctx: Context) -> None:
        super().__init__(outcome)
        self.name = name
        self.outcome = outcome
        self.answer = answer
        self.ctx = ctx


@dataclass(frozen=True)
class _Before:
    """What handling an event needs that is read before its transaction."""

    place: Place
    room_cop: str | None
    replied: dict[str, Any] | None


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
        self._handed: dict[str, list[InboundEvent]] = {}
        """Events the sync loop stored and handed over, per room, not taken by its worker yet."""
        self._in_hand: set[str] = set()
        """Rooms with no pending event but those handed over: their workers take handed
        events without reading the room from the database."""
        self._reread: set[str] = set()
        """Rooms the main loop's poll found pending events in: read them from the database."""
        self._tries: dict[int, int] = {}
        self.stopping = False
        self.services: Services | None = None

    def wake(self) -> None:
        self._wake.set()

    def take(self, rows: Sequence[InboundEvent]) -> None:
        """Events the sync loop just stored (committed, with their row ids): hand them to
        their rooms' workers now, without a round through the main loop and without the
        workers reading them back.

        A worker takes handed events as they are only while its room has no other pending
        event (``_in_hand``); otherwise it reads the room from the database, which includes
        them (they were committed before they were handed). Handling claims each event in
        its transaction, so an event that reaches a worker twice is still handled once.
        """
        if self.stopping:
            return
        for row in rows:
            self._handed.setdefault(row.room_id, []).append(row)
        for room_id in {row.room_id for row in rows}:
            self._start(room_id)

    def _start(self, room_id: str) -> None:
        task = self._room_tasks.get(room_id)
        if task is None or task.done():
            self._room_tasks[room_id] = asyncio.create_task(self._room_worker(room_id))

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
                self._reread.add(room_id)  # some may have come otherwise (a retry, a restart)
                self._start(room_id)

    async def _room_worker(self, room_id: str) -> None:
        first = True
        while True:
            if room_id in self._reread or room_id not in self._in_hand:
                self._reread.discard(room_id)
                self._handed.pop(room_id, None)  # stored before they were handed: read too
                try:
                    async with self.db.read() as s:
                        rows = await repo.pending_inbound(s, BATCH, room_id=room_id)
                except Exception:
                    # The main loop reads pending events again and starts a new worker.
                    self._in_hand.discard(room_id)
                    self.metrics.errors.labels("processor").inc()
                    log.exception("could not read the pending events of %s", room_id)
                    return
                whole_room = len(rows) < BATCH
                if not first:
                    rows = [r for r in rows if self._tries.get(r.id, 0) < MAX_TRIES]
                first = False
            else:
                rows, whole_room = self._handed.pop(room_id, []), True
            if not rows and whole_room:
                self._in_hand.add(room_id)
            if not rows:
                if room_id in self._reread or self._handed.get(room_id):
                    continue
                return
            self._in_hand.discard(room_id)  # until every one of these is done
            done, size, at = True, 1, 0
            while at < len(rows):
                if self.stopping:
                    return
                # One event alone; a backlog in growing groups (see GROUP_MAX).
                group, at = rows[at : at + size], at + size
                size = min(2 * size, GROUP_MAX)
                done = await self._handle_group(group) and done
                # Let the rest of the bot run between two transactions: on SQLite (on the
                # event loop, see storage.sqlite_inline) a command may not wait for anything,
                # and a backlog would otherwise hold up the sender (each reply it sends
                # waits for the loop) and the sync loop until the whole batch is done.
                await asyncio.sleep(0)
            if done and whole_room:
                self._in_hand.add(room_id)  # nothing of this room is pending any more

    async def settled(self) -> None:
        """Wait until every room's worker has nothing left to do (for benchmarks)."""
        while tasks := [t for t in self._room_tasks.values() if not t.done()]:
            await asyncio.wait(tasks)

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

    async def handle(self, row: InboundEvent) -> bool:
        """Handle one event; False when it failed and stays pending (it is tried again)."""
        started = time.monotonic()
        command_name = row.kind
        outcome = "ok"
        try:
            before = await self._before(row)
            try:
                async with self.db.session() as s:
                    await repo.batch_outbox(s)
                    handled = await self._within(s, row, before)
                    if handled is None:
                        return True  # another worker or process got it first
                    command_name, outcome = handled
            except _Failed as failed:
                # Nothing the command wrote is kept: only the event, done, and the answer.
                command_name, outcome = failed.name, failed.outcome
                async with self.db.session() as s:
                    if not await repo.claim_inbound(s, row.id, outcome, now=self.clock()):
                        return True
                    ctx = await self._context(s, row, before)
                    ctx.answer_where(failed.ctx)
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
            return False
        self._handled(row, command_name, outcome, time.monotonic() - started)
        self.on_committed()
        return True

    async def _handle_group(self, rows: Sequence[InboundEvent]) -> bool:
        """Handle several events of one room in shared transactions (a backlog: see
        ``GROUP_MAX``); False when one of them failed and stays pending."""
        if len(rows) == 1:
            return await self.handle(rows[0])
        try:
            befores = [await self._before(row) for row in rows]
        except Exception:
            return await self._one_by_one(rows)
        return await self._group(rows, befores)

    async def _group(self, rows: Sequence[InboundEvent], befores: Sequence[_Before]) -> bool:
        """Each event is claimed and handled exactly as by ``handle``, one after the other, in
        one transaction; the commit makes all of them done at once, and a crash before it
        leaves all of them pending. When one command fails, the transaction is rolled back:
        the events before it are handled again as a group, the failed one alone (so only its
        answer is kept) and the rest after it. A group that has run for ``process.group_seconds``
        (on SQLite every other writer waits for it, and its answers go out only after its
        commit) commits what it has and goes on in a new transaction; so does one whose claims, read
        with its senders' roles before its first command (``repo.claim_group``), a command
        may have changed (a member removed, a moderator added): the rest are claimed
        afresh and see the roles as they are."""
        if not rows:
            return True
        results: list[tuple[InboundEvent, tuple[str, str] | None, float]] = []
        try:
            async with self.db.session() as s:
                await repo.batch_outbox(s)  # the group's replies in one statement
                began, budget = time.monotonic(), self.settings.process.group_seconds
                # On PostgreSQL a group of commands is claimed, and its senders' roles
                # read, in one statement (None: each event is claimed on its own).
                claims = await repo.claim_group(s, rows, self.clock())
                for row, before in zip(rows, befores, strict=True):
                    if results and (
                        time.monotonic() - began > budget
                        or (claims is not None and claims.unsettled)
                    ):
                        if claims is not None:
                            # The rest make a group of their own, claimed afresh.
                            rest = rows[len(results) :]
                            await repo.unclaim(s, [r.id for r in rest if r.id in claims.claimed])
                        break
                    started = time.monotonic()
                    if claims is None:
                        handled = await self._within(s, row, before)
                    elif row.id in claims.claimed:
                        handled = await self._within(s, row, before, claims.claimed[row.id])
                    else:
                        handled = None  # another worker or process got it first
                    results.append((row, handled, time.monotonic() - started))
                    # Each command sees the database, not objects the one before it loaded
                    # (as in a transaction of its own; rows it locked stay, as current), and
                    # the rest of the bot runs between.
                    if s.new or s.dirty or s.deleted:
                        await s.flush()
                    repo.start_afresh(s)
                    await asyncio.sleep(0)
        except _Failed:
            failed = len(results)
            done = await self._group(rows[:failed], befores[:failed])
            done = await self.handle(rows[failed]) and done
            return await self._group(rows[failed + 1 :], befores[failed + 1 :]) and done
        except Exception:
            # A database error, or (PostgreSQL) a deadlock with another room's group.
            log.warning(
                "a group of %d events failed; handling them one by one", len(rows), exc_info=True
            )
            return await self._one_by_one(rows)
        for row, handled, seconds in results:
            if handled is not None:
                self._handled(row, *handled, seconds)
        self.on_committed()
        return await self._group(rows[len(results) :], befores[len(results) :])

    async def _one_by_one(self, rows: Sequence[InboundEvent]) -> bool:
        done = True
        for row in rows:
            done = await self.handle(row) and done
        return done

    def _handled(self, row: InboundEvent, command_name: str, outcome: str, seconds: float) -> None:
        self._tries.pop(row.id, None)
        self.metrics.handled(command_name, outcome, seconds)

    async def _before(self, row: InboundEvent) -> _Before:
        """What handling an event needs from outside the database, read before its
        transaction: where it was sent and the message it replies to (for the commands
        that read it)."""
        place, room_cop = await self.place_of(row.room_id, row.sender)
        return _Before(place, room_cop, await self._replied_event(row))

    async def _within(
        self,
        s: AsyncSession,
        row: InboundEvent,
        before: _Before,
        claimed: tuple[bool, repo.Roles] | None = None,
    ) -> tuple[str, str] | None:
        """Claim and handle one event in the transaction ``s``: (command, outcome), or None
        when another worker or process claimed it first. Raises ``_Failed`` when the
        command failed (the transaction must be rolled back). ``claimed``: a command this
        transaction claimed already (``repo.claim_group``), with what its claim said."""
        # Claimed as "ok", the usual outcome: any other is set before the commit. The same
        # statement says whether an edit of this message was handled before it (it came
        # late: its key arrived after its edit's).
        roles: Roles | None = None
        if claimed is not None:
            edited, roles = claimed[0], Roles.of(self.settings, row.sender, claimed[1])
        elif row.kind == "command":
            # A command's first step reads the sender's roles (the registry's gate), and
            # nothing is written before it: on PostgreSQL they come with the claim.
            found_roles = await repo.claim_with_roles(
                s, row.id, row.event_id, self.clock(), row.sender
            )
            if found_roles is None:
                return None
            edited, stored = found_roles
            if stored is not None:
                roles = Roles.of(self.settings, row.sender, stored)
        else:
            found = await repo.claim_to_handle(s, row.id, row.event_id, self.clock())
            if found is None:
                return None
            edited = found and row.kind != "edit"
        ctx = await self._context(s, row, before, roles)
        command_name, outcome = row.kind, "ok"
        if row.kind == "command":
            typed = self._typed(row)
            command_name, outcome = await self._command(ctx, row, typed, edited)
        elif row.kind == "text":
            command_name, outcome = await self._text(ctx, row, edited)
        elif row.kind == "edit":
            command_name, outcome = await self._edit(ctx, row)
        else:
            outcome = await self._hook(ctx, row)
        if outcome != "ok":
            await repo.set_inbound_outcome(s, row.id, outcome)
        return command_name, outcome

    def _typed(self, row: InboundEvent) -> str | None:
        """What the person typed that may be a command: a command without its prefix, plain
        text (a command if the first word names one, in a direct chat), or an edit's new
        version of either."""
        content = (row.content or {}).get("content") or {}
        if row.kind == "edit":
            new = content.get("m.new_content")
            if not isinstance(new, dict):
                return None
            content = new
        text = self.classifier.command_text(content)
        if text is None and row.kind in ("text", "edit"):
            text = self.classifier.plain_text(content)
        return text

    async def _context(
        self, s: AsyncSession, row: InboundEvent, before: _Before, roles: Roles | None = None
    ) -> Context:
        place, room_cop, replied = before.place, before.room_cop, before.replied
        if place is Place.DM and await repo.get_direct_room(s, row.sender) is None:
            await repo.set_direct_room(s, row.sender, row.room_id, now=self.clock())
        return Context(
            session=s,
            settings=self.settings,
            registry=self.registry,
            sender=row.sender,
            room_id=row.room_id,
            event_id=row.replaces or row.event_id,  # an edit: answer its message
            place=place,
            now=self.clock(),
            room_cop=room_cop,
            management_room=self.management_room,
            event=row.content,
            event_ts=row.origin_ts,
            services=self.services,
            replied_event=replied,
            _roles=roles,
        )

    async def _replied_event(self, row: InboundEvent) -> dict[str, Any] | None:
        """For a command that works on the message it replies to: that message, read now,
        before the transaction (None for every other event, or when it cannot be read)."""
        if row.kind not in ("command", "text", "edit"):
            return None
        if self.services is None or self.services.fetch_event is None:
            return None
        command, _ = self.registry.find(self._typed(row) or "")
        if command is None or not command.reads_replied_event:
            return None
        content = (row.content or {}).get("content") or {}
        if row.kind == "edit" and row.replaces:
            # An edit's new version carries no reply: the message it changes does.
            async with self.db.read() as s:
                original = await repo.find_inbound(s, row.replaces)
            content = ((original.content if original else None) or {}).get("content") or {}
        relates = content.get("m.relates_to")
        reply = relates.get("m.in_reply_to") if isinstance(relates, dict) else None
        target = reply.get("event_id") if isinstance(reply, dict) else None
        if not isinstance(target, str):
            return None
        return await self.services.fetch_event(row.room_id, target)

    async def _command(
        self, ctx: Context, row: InboundEvent, text: str | None, edited: bool
    ) -> tuple[str, str]:
        """``edited``: an edit of this message was handled before it (see ``handle``)."""
        text = text or ""
        if edited:
            # This message came late (its key arrived after its edit): the edit was handled
            # in its place, and a message is acted on once.
            return "superseded", "superseded"
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
        return (command.name if command else "unknown"), ctx.failed or "ok"

    async def _text(self, ctx: Context, row: InboundEvent, edited: bool) -> tuple[str, str]:
        """Plain text outside the CoP and management rooms. In a direct chat: an answer to
        the question the bot asked, else a command without its prefix, else one pointer to
        ``help`` now and then. Anywhere else it is conversation: forgotten at once."""
        if ctx.place is not Place.DM:
            await repo.forget_inbound(ctx.session, row.id, ctx.now)
            return "text", "ignored"
        text = self._typed(row)
        if not text:
            return "text", "ignored"
        if await self._answer(ctx, ctx.event):
            return "dialogue", "answer"
        if self.registry.find(text)[0] is not None:
            return await self._command(ctx, row, text, edited)
        if ctx.now - row.origin_ts > self.settings.matrix.offline_window:
            return "text", "ignored"  # chatter from while the bot was away: no answer
        since = ctx.now - POINTER_EVERY
        if await repo.last_outcome_for(ctx.session, row.sender, "pointer", since) is not None:
            return "text", "quiet"
        await ctx.reply(pointer(ctx.prefix))
        return "text", "pointer"

    async def _edit(self, ctx: Context, row: InboundEvent) -> tuple[str, str]:
        """An edit (``m.replace``) of a message. Acted on when no version of the message was
        acted on yet (the first one got an error, or was no command); otherwise the person
        is told the first version counted. The message's row is locked meanwhile, so two
        edits are decided one after the other."""
        content = (row.content or {}).get("content") or {}
        new = content.get("m.new_content")
        target = row.replaces
        if not isinstance(new, dict) or not target:
            return "edit", "ignored"
        prefixed = self.classifier.command_text(new)
        if prefixed is None and ctx.place is not Place.DM:
            # Without the prefix, text is a command only in a direct chat: conversation.
            await repo.forget_inbound(ctx.session, row.id, ctx.now)
            return "edit", "ignored"
        original = await repo.find_inbound(ctx.session, target, lock=True)
        if original is not None and (
            original.sender != row.sender or original.room_id != row.room_id
        ):
            return "edit", "ignored"  # only its author edits a message (or it was erased)
        text = prefixed if prefixed is not None else self._typed(row)
        is_command = text is not None and self.registry.find(text)[0] is not None
        earlier_edit = await repo.edit_acted_on(ctx.session, target, other_than=row.id)
        acted = (
            original is not None
            and original.kind in ("command", "text")
            and original.outcome in repo.ACTED_ON
        )
        if earlier_edit or acted:
            await ctx.reply(
                acted_on(ctx.prefix, earlier_edit=earlier_edit, edited=text if is_command else None)
            )
            return "edit", "acted-before"
        if original is not None and original.status == "pending":
            # Not handled yet (it waited for its key): the edit takes its place.
            await repo.claim_inbound(ctx.session, original.id, "superseded", now=ctx.now)
        # The message as it reads now; a reply it was stays one (``!claim attach``).
        first = ((original.content if original else None) or {}).get("content") or {}
        reply = first.get("m.relates_to") if isinstance(first, dict) else None
        version = {k: v for k, v in new.items() if k != "m.relates_to"}
        if isinstance(reply, dict) and "m.in_reply_to" in reply:
            version["m.relates_to"] = {"m.in_reply_to": reply["m.in_reply_to"]}
        ctx.event = {**(row.content or {}), "content": version}
        if text is None:
            return "edit", "ignored"
        if prefixed is None and await self._answer(ctx, ctx.event):
            return "dialogue", "answer"
        if prefixed is None and not is_command:
            return "edit", "ignored"
        return await self._command(ctx, row, text, edited=False)

    async def _answer(self, ctx: Context, event: dict[str, Any]) -> bool:
        """Offer plain text to the ``dialogue`` hooks: True when one took it as an answer."""
        _, taken = await self._run_hooks(ctx, "dialogue", event)
        return taken

    async def _hook(self, ctx: Context, row: InboundEvent) -> str:
        outcome, _ = await self._run_hooks(ctx, row.kind, row.content or {})
        return outcome

    async def _run_hooks(self, ctx: Context, kind: str, event: dict[str, Any]) -> tuple[str, bool]:
        """Every hook of ``kind``: (outcome, whether one said the event was its business)."""
        outcome, taken = "ok", False
        for hook in self.registry.hooks.get(kind, []):
            try:
                async with ctx.session.begin_nested():
                    taken = bool(await hook(ctx, event)) or taken
            except CommandError as exc:
                await ctx.dm(ctx.sender, exc.message)
                outcome, taken = exc.outcome, True
            except Exception:
                ref = secrets.token_hex(2).upper()
                log.exception("%s hook for %s failed (ref %s)", kind, ctx.event_id, ref)
                self.metrics.errors.labels(kind).inc()
                outcome, taken = "error", True  # no second answer to what a hook choked on
        return outcome, taken

    async def _give_up(self, row: InboundEvent) -> None:
        """After repeated database failures: answer once so nothing is silently dropped."""
        ref = secrets.token_hex(2).upper()
        log.error("giving up on %s after %d tries (ref %s)", row.event_id, MAX_TRIES, ref)
        try:
            async with self.db.session() as s:
                if await repo.claim_inbound(s, row.id, "failed", now=self.clock()):
                    if row.kind in ("command", "edit"):
                        await repo.enqueue(
                            s,
                            room_id=row.room_id,
                            payload=Message(
                                f"Sorry, I could not handle this (ref {ref}). Nothing was "
                                "changed; please try again in a few minutes."
                            ).content(reply_to=row.replaces or row.event_id),
                            now=self.clock(),
                        )
            self.on_committed()
        except Exception:
            log.exception("could not record the failure of %s", row.event_id)
