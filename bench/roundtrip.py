"""Command round trip and burst benchmark: the real bot against a bare nio echo bot.

One run starts a throwaway local Synapse (``bot.devserver.LocalSynapse``: 127.0.0.1, rate
limits raised), registers ``--users`` load users and then measures two bots under the same
conditions, each in its own room with the same users:

* ``bbwt-bot``: the real bot as a ``bbwt-bot run`` process (``tests.e2e.harness.BotProcess``)
  with one CoP whose moderators are the load users, so they are invited to its room;
* ``echo``: a bare matrix-nio bot in a child process (this file with ``--echo-bot``): it syncs
  and answers every ``m.text`` starting with ``!`` from someone else with an ``m.notice`` reply
  (``echo: `` and the command; with ``--echo-reply same``, the bot's own reply to the
  command, read from one command before the bench, so the homeserver spends the same on
  each reply of both bots). No database. It pages back over sync gaps (Synapse caps a sync
  timeline at 100 events), or it could not answer a burst completely.

For each bot:

* round trip: one user sends ``--commands`` commands one after the other to each bot (the
  bots take turns, command by command); each is timed from just before the send to the
  moment the reply arrives in a dedicated observer client's ``/sync`` (another device of the
  same user, long-polling continuously);
* burst: ``--users`` users send ``--burst`` commands at once (each user sequentially). The
  burst is done when every command has a reply; the time is from the first send to the
  server timestamp of the last first reply. Afterwards the room is read back completely
  with ``/messages`` to check that every command got exactly one reply.

* catch-up: each bot is stopped, ``--catch-up`` commands are sent (by the ``--users``
  users), and the bot is started again; timed from its start to the last first reply seen by
  the observer, and checked to be answered exactly once.

The bot's own time per stage (stored after sync, taken by a worker, reply sent) is read from
the timestamps its database keeps anyway and printed as median and p95; the echo bot's for
the same round trips (its sync back, its reply's send returned) next to it.

These run in plaintext rooms (the echo bot has no encryption). Then, for the real bot
only, the encrypted round trip: the first load user (an encrypting client, as in the
end-to-end tests) opens an encrypted direct chat and a plaintext one with the bot and sends
``--dm-commands`` commands in each, one after the other, timed from just before the send
to the decrypted reply in that user's own ``/sync``.

Run from the repository root::

    .venv/bin/python bench/roundtrip.py                      # 200 commands, 1,000 burst, 20 users
    .venv/bin/python bench/roundtrip.py --commands 20 --burst 100 --users 5 --catch-up 200
    .venv/bin/python bench/roundtrip.py --db postgresql      # the bot on a fresh PostgreSQL db

Everything listens on 127.0.0.1 only. The Synapse, both bots, the PostgreSQL database (with
``--db postgresql``) and the temporary folder are removed at the end, also on errors and
Ctrl-C (``--keep`` keeps the folder with the logs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import logging
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
REPO = SCRIPT.parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import asyncpg  # noqa: E402
from nio import (  # noqa: E402
    AsyncClient,
    AsyncClientConfig,
    MessageDirection,
    RoomCreateError,
    RoomMessagesError,
    RoomPreset,
    RoomSendResponse,
    SyncResponse,
)
from sqlalchemy import text as sql  # noqa: E402

from bot.devserver import LocalSynapse, SynapseUser  # noqa: E402
from storage import Database  # noqa: E402
from tests.dbs import PG_ADMIN_URL, drop_pg_database, pg_available, sqlite_url  # noqa: E402
from tests.e2e.harness import BotProcess, Person  # noqa: E402

Event = dict[str, Any]

COMMAND_TEXT = "!help"
WARMUP_COMMANDS = 3
ROUND_TRIP_TIMEOUT = 60.0  # one command -> its reply
SETUP_TIMEOUT = 120.0
MAX_GAP_PAGES = 200

# The observer and the echo bot only need room messages; the timeline limit is Synapse's cap.
MESSAGE_FILTER: dict[str, Any] = {
    "presence": {"types": []},
    "account_data": {"types": []},
    "room": {
        "timeline": {"limit": 100, "types": ["m.room.message"]},
        "state": {"lazy_load_members": True},
        "ephemeral": {"types": []},
        "account_data": {"types": []},
    },
}

log = logging.getLogger("bench")


def client_config() -> AsyncClientConfig:
    return AsyncClientConfig(max_limit_exceeded=None, store_sync_tokens=False)


def reply_target(event: Event) -> str | None:
    relates = (event.get("content") or {}).get("m.relates_to")
    target = relates.get("m.in_reply_to") if isinstance(relates, dict) else None
    event_id = target.get("event_id") if isinstance(target, dict) else None
    return event_id if isinstance(event_id, str) else None


async def fill_gap(client: AsyncClient, room_id: str, prev_batch: str, since: str) -> list[Event]:
    """The room messages between the previous sync token and ``prev_batch``, oldest first."""
    collected: list[Event] = []
    start = prev_batch
    for _ in range(MAX_GAP_PAGES):
        resp = await client.room_messages(
            room_id,
            start=start,
            end=since,
            direction=MessageDirection.back,
            limit=100,
            message_filter={"types": ["m.room.message"]},
        )
        if isinstance(resp, RoomMessagesError):
            raise RuntimeError(f"could not page back in {room_id}: {resp.message}")
        collected.extend(event.source for event in resp.chunk)
        if not resp.chunk or not resp.end or resp.end == start:
            break
        start = resp.end
    collected.reverse()
    return collected


async def timeline_events(
    client: AsyncClient, resp: SyncResponse, since: str | None
) -> list[tuple[str, Event]]:
    """(room id, event) for every joined room's new messages, sync gaps paged back."""
    out: list[tuple[str, Event]] = []
    for room_id, info in resp.rooms.join.items():
        events = [e.source for e in info.timeline.events]
        if since and info.timeline.limited and info.timeline.prev_batch:
            gap = await fill_gap(client, room_id, info.timeline.prev_batch, since)
            seen = {e.get("event_id") for e in events}
            events = [e for e in gap if e.get("event_id") not in seen] + events
        out.extend((room_id, e) for e in events)
    return out


# --- the echo bot (runs as a child process) ------------------------------------------------


def saved_token(path: Path) -> str | None:
    return (path.read_text().strip() or None) if path.exists() else None


def save_token(path: Path, token: str) -> None:
    path.write_text(token)


async def echo_bot_main() -> None:
    """Answer every ``!`` text message from someone else with an ``m.notice`` reply."""
    homeserver = os.environ["BENCH_ECHO_HOMESERVER"]
    user_id = os.environ["BENCH_ECHO_USER"]
    device_id = os.environ["BENCH_ECHO_DEVICE"]
    client = AsyncClient(homeserver, user_id, device_id=device_id, config=client_config())
    client.restore_login(user_id, device_id, os.environ["BENCH_ECHO_TOKEN"])
    token_file = Path(os.environ["BENCH_ECHO_TOKEN_FILE"])
    try:
        token = saved_token(token_file)  # restarted: catch up from where it stopped
        while token is None:
            first = await client.sync(timeout=0, sync_filter=MESSAGE_FILTER, full_state=False)
            if isinstance(first, SyncResponse):
                token = first.next_batch
            else:
                await asyncio.sleep(0.5)
        print("ready", flush=True)
        while True:
            try:
                token = await echo_once(client, token)
                save_token(token_file, token)
            except Exception as exc:  # a hiccup under load: the same sync again
                print(f"echo bot: {exc!r}", file=sys.stderr, flush=True)
                await asyncio.sleep(0.5)
    finally:
        await client.close()


ECHO_PAD = int(os.environ.get("BENCH_ECHO_PAD", "0"))
"""Bytes added to each echo reply, to match the size of the bot's replies (``--echo-pad``)."""


ECHO_CONTENT: dict[str, Any] = json.loads(os.environ.get("BENCH_ECHO_CONTENT") or "{}")
"""``--echo-reply same``: the content the echo bot answers with (the bot's own reply)."""


def echo_reply(body: str, event_id: str) -> dict[str, Any]:
    reply = {"m.relates_to": {"m.in_reply_to": {"event_id": event_id}}}
    if ECHO_CONTENT:
        return {**ECHO_CONTENT, **reply}
    return {"msgtype": "m.notice", "body": f"echo: {body}" + "." * ECHO_PAD, **reply}


async def echo_once(client: AsyncClient, token: str) -> str:
    """One sync and the replies it calls for; returns the next sync token."""
    resp = await client.sync(
        timeout=30_000, since=token, sync_filter=MESSAGE_FILTER, full_state=False
    )
    if not isinstance(resp, SyncResponse):
        await asyncio.sleep(0.5)
        return token
    received = time.time()
    gaps = sum(1 for info in resp.rooms.join.values() if info.timeline.limited)
    for _ in range(gaps):
        print("gap", flush=True)
    for room_id, event in await timeline_events(client, resp, token):
        content = event.get("content") or {}
        body = content.get("body")
        if (
            event.get("type") != "m.room.message"
            or event.get("sender") == client.user_id
            or content.get("msgtype") != "m.text"
            or not isinstance(body, str)
            or not body.startswith("!")
        ):
            continue
        reply = echo_reply(body, event["event_id"])
        for attempt in range(5):
            sent = await client.room_send(room_id, "m.room.message", reply)
            if isinstance(sent, RoomSendResponse):
                # Its times, as the bot's are read from its database (see echo_stages).
                origin = event.get("origin_server_ts", 0) / 1000
                print(f"stage {origin:.3f} {received:.6f} {time.time():.6f}", flush=True)
                break
            await asyncio.sleep(0.2 * (attempt + 1))
    for room_id in resp.rooms.invite:
        await client.join(room_id)
    return str(resp.next_batch)


def run_echo_bot() -> int:
    # Stop as soon as the parent closes our stdin, or dies: no orphan survives the bench.
    def guard() -> None:
        with contextlib.suppress(OSError):
            while sys.stdin.buffer.read1(4096):
                pass
        os._exit(0)

    threading.Thread(target=guard, daemon=True).start()
    logging.basicConfig(level=logging.ERROR)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(echo_bot_main())
    return 0


class EchoProcess:
    """The echo bot as a child process of the bench."""

    def __init__(
        self,
        synapse: LocalSynapse,
        account: SynapseUser,
        folder: Path,
        pad: int = 0,
        content: dict[str, Any] | None = None,
    ) -> None:
        self.pad = pad
        self.content = content or {}
        self.synapse = synapse
        self.account = account
        self.user_id = account.user_id
        self.log_path = folder / "echo.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.gaps = 0
        self.stages: list[tuple[float, float, float]] = []
        """For each reply: the command's homeserver timestamp, when its sync came back and
        when the reply's send returned (seconds since the epoch)."""
        self._ready = asyncio.Event()
        self._ready.clear()
        self._reader: asyncio.Task[None] | None = None

    async def start(self, timeout: float = SETUP_TIMEOUT) -> None:  # noqa: ASYNC109
        self._ready = asyncio.Event()
        env = {
            **os.environ,
            "BENCH_ECHO_HOMESERVER": self.synapse.base_url,
            "BENCH_ECHO_USER": self.account.user_id,
            "BENCH_ECHO_DEVICE": self.account.device_id,
            "BENCH_ECHO_TOKEN": self.account.access_token,
            "BENCH_ECHO_TOKEN_FILE": str(self.log_path.with_name("echo.since")),
            "BENCH_ECHO_PAD": str(self.pad),
            "BENCH_ECHO_CONTENT": json.dumps(self.content),
            "PYTHONUNBUFFERED": "1",
        }
        with self.log_path.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(SCRIPT),
                "--echo-bot",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                cwd=REPO,
                env=env,
                start_new_session=True,
            )
        self._reader = asyncio.create_task(self._read())
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            raise RuntimeError(f"the echo bot did not start in {timeout:.0f} s") from None

    async def _read(self) -> None:
        proc = self.proc
        assert proc is not None
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            word = line.decode(errors="replace").strip()
            if word == "ready":
                self._ready.set()
            elif word == "gap":
                self.gaps += 1
            elif word.startswith("stage "):
                origin, received, sent = (float(part) for part in word.split()[1:4])
                self.stages.append((origin, received, sent))

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader


# --- measuring ------------------------------------------------------------------------------


class Observer:
    """A dedicated client that long-polls /sync and notes when each reply arrives.

    Sync gaps are paged back with /messages, so no reply is missed; a reply found that way
    gets the arrival time of the sync that revealed the gap.
    """

    def __init__(self, synapse: LocalSynapse, account: SynapseUser) -> None:
        self.client = AsyncClient(
            synapse.base_url, account.user_id, device_id=account.device_id, config=client_config()
        )
        self.client.restore_login(account.user_id, account.device_id, account.access_token)
        # command event id -> (arrival, first reply event)
        self.first_reply: dict[str, tuple[float, Event]] = {}
        self.gaps = 0
        self._waiters: dict[str, asyncio.Future[tuple[float, Event]]] = {}
        self._changed = asyncio.Event()
        self._token: str | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        deadline = time.monotonic() + SETUP_TIMEOUT
        while self._token is None:
            resp = await self.client.sync(timeout=0, sync_filter=MESSAGE_FILTER, full_state=False)
            if isinstance(resp, SyncResponse):
                self._token = resp.next_batch
            elif time.monotonic() > deadline:
                raise RuntimeError(f"the observer cannot sync: {resp}")
            else:
                await asyncio.sleep(0.5)
        self._task = asyncio.create_task(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.client.close()

    async def _loop(self) -> None:
        while True:
            try:
                resp = await self.client.sync(
                    timeout=30_000,
                    since=self._token,
                    sync_filter=MESSAGE_FILTER,
                    full_state=False,
                )
                arrival = time.perf_counter()
                if not isinstance(resp, SyncResponse):
                    await asyncio.sleep(0.2)
                    continue
                self.gaps += sum(1 for i in resp.rooms.join.values() if i.timeline.limited)
                for _room_id, event in await timeline_events(self.client, resp, self._token):
                    self._record(event, arrival)
                self._token = resp.next_batch
                self._changed.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a hiccup under load: sync again
                log.warning("observer sync failed: %s", exc)
                await asyncio.sleep(0.5)

    def _record(self, event: Event, arrival: float) -> None:
        target = reply_target(event)
        if target is None or target in self.first_reply:
            return
        self.first_reply[target] = (arrival, event)
        waiter = self._waiters.pop(target, None)
        if waiter is not None and not waiter.done():
            waiter.set_result((arrival, event))

    async def reply_to(self, event_id: str, timeout: float) -> tuple[float, Event]:  # noqa: ASYNC109
        if event_id in self.first_reply:
            return self.first_reply[event_id]
        waiter = self._waiters.setdefault(event_id, asyncio.get_running_loop().create_future())
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout)
        finally:
            self._waiters.pop(event_id, None)

    async def wait_all(self, event_ids: list[str], timeout: float) -> bool:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while not all(e in self.first_reply for e in event_ids):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 1.0))
        return True


@dataclass
class Target:
    name: str
    user_id: str
    room_id: str


@dataclass
class Result:
    name: str
    round_trips: list[float] = field(default_factory=list)  # seconds
    round_trip_failures: int = 0
    burst_commands: int = 0
    burst_send_seconds: float = 0.0
    burst_seconds: float | None = None  # first send -> server timestamp of the last reply
    burst_seen_seconds: float | None = None  # first send -> observer saw the last reply
    answered_once: int = 0
    unanswered: int = 0
    duplicated: int = 0
    gaps: int = 0
    catch_up_commands: int = 0
    catch_up_seconds: float | None = None  # process start -> observer saw the last reply
    catch_up_first: float | None = None  # process start -> observer saw the first reply
    catch_up_once: int = 0
    catch_up_missing: int = 0
    catch_up_duplicated: int = 0
    catch_up_again: float | None = None  # --echo-again: the echo bot's second catch-up


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


async def measure_round_trips(
    targets: list[Target], sender: Person, observer: Observer, count: int, text: str
) -> dict[str, Result]:
    """Sequential round trips, the bots taking turns command by command, so that a change
    in the machine's speed during the run weighs on both alike."""
    results = {target.name: Result(target.name) for target in targets}
    for i in range(WARMUP_COMMANDS + count):
        for target in targets:
            result = results[target.name]
            started = time.perf_counter()
            event_id = await sender.send(target.room_id, text)
            try:
                arrival, _reply = await observer.reply_to(event_id, ROUND_TRIP_TIMEOUT)
            except TimeoutError:
                result.round_trip_failures += 1
                print(f"  {target.name}: no reply to command {i} within {ROUND_TRIP_TIMEOUT:.0f} s")
                continue
            if i >= WARMUP_COMMANDS:
                result.round_trips.append(arrival - started)
    return results


async def measure_dm_round_trips(
    person: Person, bot_user: str, count: int, text: str, *, encrypted: bool
) -> list[float]:
    """Sequential commands in a direct chat the person opens (encrypted or not); each
    timed from just before the send to the (decrypted) reply in the person's own sync."""
    room = await person.open_dm(bot_user, encrypted=encrypted)
    times: list[float] = []
    for i in range(WARMUP_COMMANDS + count):
        started = time.perf_counter()
        event_id = await person.send(room, text)
        await person.reply_to(event_id, bot_user, ROUND_TRIP_TIMEOUT)
        if i >= WARMUP_COMMANDS:
            times.append(time.perf_counter() - started)
    return times


def report_dm(round_trips: dict[str, list[float]]) -> None:
    print()
    print("direct chat round trip (ms)   p50    p95   mean")
    for kind, values in round_trips.items():
        if not values:
            continue
        mean = sum(values) / len(values)
        print(
            f"  {kind:27} {fmt_ms(percentile(values, 50)):>5}  "
            f"{fmt_ms(percentile(values, 95)):>5}  {fmt_ms(mean):>5}"
        )
    enc, plain = round_trips.get("encrypted"), round_trips.get("plaintext")
    if enc and plain:
        print(f"  encrypted/plaintext p50: {ratio(percentile(enc, 50), percentile(plain, 50))}")


async def measure_burst(
    target: Target,
    *,
    senders: list[Person],
    reader: Person,
    observer: Observer,
    total: int,
    text: str,
    result: Result,
) -> None:
    started_wall = time.time()
    started = time.perf_counter()
    commands = await send_shared(senders, target.room_id, total, text)
    result.burst_send_seconds = time.perf_counter() - started
    result.burst_commands = len(commands)
    timeout = max(300.0, 1.0 * total)
    if await observer.wait_all(commands, timeout):
        result.burst_seen_seconds = max(observer.first_reply[c][0] for c in commands) - started
    else:
        print(f"  {target.name}: not every command was answered within {timeout:.0f} s")

    replies = await replies_in_room(target, reader)
    result.answered_once, result.unanswered, result.duplicated = once_none_twice(replies, commands)
    if result.unanswered == 0:
        last = max(min(r["origin_server_ts"] for r in replies[c]) for c in commands)
        result.burst_seconds = last / 1000 - started_wall


async def replies_in_room(target: Target, reader: Person) -> dict[str, list[Event]]:
    """The complete room, read with /messages: the bot's replies by the command they answer."""
    replies: dict[str, list[Event]] = {}
    for event in await reader.history(target.room_id):
        if event.get("sender") != target.user_id or event.get("type") != "m.room.message":
            continue
        replied = reply_target(event)
        if replied is not None:
            replies.setdefault(replied, []).append(event)
    return replies


def once_none_twice(replies: dict[str, list[Event]], commands: list[str]) -> tuple[int, int, int]:
    """How many commands got exactly one reply, none, more than one."""
    counts = [len(replies.get(c, [])) for c in commands]
    return (
        sum(1 for n in counts if n == 1),
        sum(1 for n in counts if n == 0),
        sum(1 for n in counts if n > 1),
    )


async def send_shared(senders: list[Person], room_id: str, total: int, text: str) -> list[str]:
    """``total`` commands, shared out over ``senders`` (each sends its share in turn)."""
    shares = [
        total // len(senders) + (1 if i < total % len(senders) else 0) for i in range(len(senders))
    ]

    async def one(person: Person, share: int) -> list[str]:
        return [await person.send(room_id, text) for _ in range(share)]

    sent = await asyncio.gather(*(one(p, n) for p, n in zip(senders, shares, strict=True)))
    return [event_id for ids in sent for event_id in ids]


async def measure_catch_up(
    target: Target,
    *,
    stop: Callable[[], Any],
    start: Callable[[], Any],
    senders: list[Person],
    reader: Person,
    observer: Observer,
    total: int,
    text: str,
    result: Result,
) -> None:
    """``total`` commands sent while the bot is down; then the bot is started and timed
    from its start until the observer has seen the last first reply."""
    await stop()
    commands = await send_shared(senders, target.room_id, total, text)
    started = time.perf_counter()
    await start()
    result.catch_up_commands = len(commands)
    timeout = max(300.0, 1.0 * total)
    if await observer.wait_all(commands, timeout):
        seen = [observer.first_reply[c][0] for c in commands]
        result.catch_up_seconds = max(seen) - started
        result.catch_up_first = min(seen) - started
    else:
        print(f"  {target.name}: not every command was answered within {timeout:.0f} s")
    replies = await replies_in_room(target, reader)
    once, missing, twice = once_none_twice(replies, commands)
    result.catch_up_once, result.catch_up_missing, result.catch_up_duplicated = once, missing, twice


# --- where the bot's time goes ---------------------------------------------------------------


async def bot_stages(
    db_url: str, room_id: str, skip: set[str] | None = None
) -> tuple[dict[str, list[float]], set[str]]:
    """The bot's own time per stage for every command answered in ``room_id``, from the
    timestamps it stores anyway: the homeserver's timestamp of the command, when the sync
    loop stored it, when a worker took it (the reply is queued in that transaction, with
    that time) and when the reply was sent. Marking it sent happens in the background,
    off the path (see bot/sender.py). Commands in ``skip`` are left out; returns the stages
    and the commands measured."""
    db = Database(db_url)
    stages: dict[str, list[float]] = {
        "homeserver -> stored": [],
        "stored -> taken by a worker": [],
        "taken -> reply sent": [],
        "bot total (stored -> sent)": [],
    }
    try:
        async with db.read() as s:
            inbound = (
                await s.execute(
                    sql(
                        "SELECT event_id, origin_ts, received_at, handled_at FROM inbound_events"
                        " WHERE room_id = :room AND kind = 'command' AND handled_at IS NOT NULL"
                    ),
                    {"room": room_id},
                )
            ).all()
            outbox = (
                await s.execute(
                    sql(
                        "SELECT payload, sent_at FROM outbox WHERE room_id = :room"
                        " AND sent_at IS NOT NULL"
                    ),
                    {"room": room_id},
                )
            ).all()
    finally:
        await db.dispose()

    def when(value: Any) -> float:
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return float(value.timestamp())

    sent: dict[str, float] = {}
    for payload, sent_at in outbox:
        data = payload if isinstance(payload, dict) else json.loads(payload)
        target = reply_target({"content": data})
        if target is not None and target not in sent:
            sent[target] = when(sent_at)
    measured: set[str] = set()
    for event_id, origin, received, handled in inbound:
        if event_id not in sent or event_id in (skip or set()):
            continue
        measured.add(event_id)
        stages["homeserver -> stored"].append(when(received) - when(origin))
        stages["stored -> taken by a worker"].append(when(handled) - when(received))
        stages["taken -> reply sent"].append(sent[event_id] - when(handled))
        stages["bot total (stored -> sent)"].append(sent[event_id] - when(received))
    return stages, measured


def echo_stages(samples: list[tuple[float, float, float]]) -> dict[str, list[float]]:
    """The echo bot's times for the same stages as the bot's (``bot_stages``): from the
    command's homeserver timestamp to its sync coming back, and on to its reply's send
    returning. The bot's "stored" is taken just before its storing transaction, so the
    first stages compare; the bot's second also holds its worker and its handling."""
    return {
        "homeserver -> received": [received - origin for origin, received, _ in samples],
        "received -> reply sent": [sent - received for _, received, sent in samples],
    }


def report_stages(
    parts: list[tuple[str, dict[str, list[float]]]], metrics: dict[str, float]
) -> None:
    for title, stages in parts:
        print()
        print(title)
        print("  stage                              p50      p95")
        for name, values in stages.items():
            if values:
                print(
                    f"  {name:32} {percentile(values, 50) * 1000:7.1f}  "
                    f"{percentile(values, 95) * 1000:7.1f}"
                )
    count = sum(v for k, v in metrics.items() if k.startswith("bbwt_command_seconds_count"))
    total = sum(v for k, v in metrics.items() if k.startswith("bbwt_command_seconds_sum"))
    if count:
        print(f"  handling (claim -> commit), mean   {total / count * 1000:6.1f}")


async def create_bench_database() -> str:
    """A fresh, empty PostgreSQL database for the bot; returns its SQLAlchemy URL."""
    name = f"bbwt_bench_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}"


# --- set-up and report -------------------------------------------------------------------


def fmt_ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


def fmt_s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b <= 0 else f"{a / b:.2f}"


def report(bot: Result, echo: Result, args: argparse.Namespace) -> None:
    Row = tuple[str, str, str, str]

    def figure(
        label: str, value: Callable[[Result], float | None], fmt: Callable[[float | None], str]
    ) -> Row:
        b, e = value(bot), value(echo)
        return (label, fmt(b), fmt(e), ratio(b, e))

    def text(label: str, value: Callable[[Result], str]) -> Row:
        return (label, value(bot), value(echo), "")

    def p(q: float) -> Callable[[Result], float | None]:
        return lambda r: percentile(r.round_trips, q) if r.round_trips else None

    def mean(r: Result) -> float | None:
        return sum(r.round_trips) / len(r.round_trips) if r.round_trips else None

    def rate(r: Result) -> float | None:
        return r.burst_commands / r.burst_seconds if r.burst_seconds else None

    def fmt_rate(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    rows = [
        figure("round trip p50 (ms)", p(50), fmt_ms),
        figure("round trip p95 (ms)", p(95), fmt_ms),
        figure("round trip mean (ms)", mean, fmt_ms),
        text("round trip max (ms)", lambda r: fmt_ms(max(r.round_trips, default=None))),
        text("round trips measured", lambda r: f"{len(r.round_trips)}/{args.commands}"),
        text(f"burst of {args.burst}: all sent (s)", lambda r: fmt_s(r.burst_send_seconds)),
        figure("burst: all answered (s)", lambda r: r.burst_seconds, fmt_s),
        figure("burst: last reply seen (s)", lambda r: r.burst_seen_seconds, fmt_s),
        figure("burst: commands/s", rate, fmt_rate),
        text("burst: exactly one reply", lambda r: f"{r.answered_once}/{r.burst_commands}"),
        text("burst: no reply / duplicates", lambda r: f"{r.unanswered} / {r.duplicated}"),
        text("sync gaps the bot paged back", lambda r: str(r.gaps)),
    ]
    if args.catch_up > 0:
        rows += [
            figure(
                f"catch-up of {args.catch_up}: start -> all answered (s)",
                lambda r: r.catch_up_seconds,
                fmt_s,
            ),
            figure(
                "catch-up: start -> first answer (s)",
                lambda r: r.catch_up_first,
                fmt_s,
            ),
            text(
                "catch-up: exactly one reply", lambda r: f"{r.catch_up_once}/{r.catch_up_commands}"
            ),
            text(
                "catch-up: no reply / duplicates",
                lambda r: f"{r.catch_up_missing} / {r.catch_up_duplicated}",
            ),
        ]
    if args.catch_up > 0 and echo.catch_up_again is not None:
        between = [v for v in (echo.catch_up_seconds, echo.catch_up_again) if v is not None]
        rows += [
            ("catch-up: echo again, after the bot's (s)", "", fmt_s(echo.catch_up_again), ""),
            (
                "catch-up: bot / mean of the echo's two",
                "",
                "",
                ratio(bot.catch_up_seconds, sum(between) / len(between)),
            ),
        ]
    echo_name = "echo (nio)"
    if args.echo_reply == "same":
        echo_name = "echo, same reply"
    elif args.echo_pad:
        echo_name = f"echo +{args.echo_pad} B"
    headers: Row = ("", f"bbwt-bot ({args.db})", echo_name, "bot/echo")
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(4)]

    def line(cells: Row) -> str:
        return "  ".join(
            c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(cells)
        )

    print()
    print(line(headers))
    print("-" * len(line(headers)))
    for row in rows:
        print(line(row))
    print()


def versions() -> str:
    out = []
    for dist in ("matrix-synapse", "matrix-nio"):
        try:
            out.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(f"{dist} ?")
    return ", ".join(out)


async def bench(args: argparse.Namespace, folder: Path) -> None:
    print(
        f"bench: {args.commands} sequential commands, burst of {args.burst} from {args.users} users"
    )
    print(
        f"bench: {versions()}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} at start"
    )
    synapse = LocalSynapse(folder / "synapse")
    bot: BotProcess | None = None
    echo: EchoProcess | None = None
    observer: Observer | None = None
    people: list[Person] = []
    pg_url: str | None = None
    try:
        began = time.monotonic()
        await synapse.start()
        accounts = [await synapse.register(f"load{i}") for i in range(args.users)]
        people = [Person(synapse, a, folder / "people" / a.localpart) for a in accounts]

        # The real bot, with one CoP whose moderators are the load users.
        if args.db == "postgresql":
            if not pg_available():
                raise RuntimeError("PostgreSQL is not reachable on 127.0.0.1:5432")
            pg_url = await create_bench_database()
            db_url = pg_url
        else:
            db_url = sqlite_url(folder)
        bot_folder = folder / "bot"
        bot_folder.mkdir()
        bot = BotProcess(
            synapse,
            bot_folder,
            account=await synapse.register("bbwt-bench-bot"),
            db_url=db_url,
            admins=[],
            cops=[
                {
                    "code": "HDEV",
                    "name": "Heavy-duty EVs",
                    "moderators": [p.user_id for p in people],
                }
            ],
            matrix={"encrypt_rooms": False},  # compared with the echo bot, which has none
        )
        await bot.start()
        for person in people:
            await person.start()
        bot_room = await people[0].join(bot.alias("hdev"))
        for person in people[1:]:
            await person.join(bot_room)

        # The echo bot: its own account and room, the same users invited.
        echo_account = await synapse.register("echo-bench-bot")
        creator = AsyncClient(
            synapse.base_url,
            echo_account.user_id,
            device_id=echo_account.device_id,
            config=client_config(),
        )
        creator.restore_login(
            echo_account.user_id, echo_account.device_id, echo_account.access_token
        )
        try:
            created = await creator.room_create(
                name="Echo bench",
                invite=[p.user_id for p in people],
                preset=RoomPreset.private_chat,
            )
        finally:
            await creator.close()
        if isinstance(created, RoomCreateError):
            raise RuntimeError(f"could not create the echo room: {created}")
        echo_room = str(created.room_id)
        same: dict[str, Any] = {}
        if args.echo_reply == "same":
            # The homeserver's cost per message grows with its size and formatting, and that
            # cost is not the bot's own: the echo bot answers with the bot's own reply.
            warm_up = await people[0].ask(bot_room, args.text, bot.user_id, timeout=60)
            same = {k: v for k, v in warm_up["content"].items() if k != "m.relates_to"}
            size = len(json.dumps(same).encode())
            print(f"bench: the echo bot answers with the bot's own reply ({size} bytes)")
        echo = EchoProcess(synapse, echo_account, folder, pad=args.echo_pad, content=same)
        await echo.start()
        for person in people:
            await person.join(echo_room)
        # Only the first user keeps syncing (for the direct chats); idle clients do not sync,
        # as in a real burst, and every live /sync makes each message dearer for Synapse.
        for person in people[1:]:
            await person.stop_syncing()

        # The observer: a second device of the user who sends the sequential commands.
        observer = Observer(
            synapse, await synapse.login(accounts[0].localpart, accounts[0].password)
        )
        await observer.start()
        print(f"bench: set up in {time.monotonic() - began:.1f} s; measuring")

        targets = [
            Target("echo", echo.user_id, echo_room),
            Target("bbwt-bot", bot.user_id, bot_room),
        ]
        print(f"  echo and bbwt-bot: {args.commands} sequential round trips each, taking turns")
        results = await measure_round_trips(targets, people[0], observer, args.commands, args.text)
        sequential_stages, sequential = await bot_stages(db_url, bot_room)
        echo_sequential = echo_stages(list(echo.stages))
        for target in targets:
            print(f"  {target.name}: burst of {args.burst}")
            gaps_before = observer.gaps
            await measure_burst(
                target,
                senders=people,
                reader=people[0],
                observer=observer,
                total=args.burst,
                text=args.text,
                result=results[target.name],
            )
            print(
                f"  {target.name}: {results[target.name].answered_once}/{args.burst} answered "
                f"exactly once (observer paged back {observer.gaps - gaps_before} sync gaps)"
            )
        results["echo"].gaps = echo.gaps
        metrics: dict[str, float] = {}
        try:
            metrics = await bot.metrics()
            results["bbwt-bot"].gaps = int(metrics.get("bbwt_sync_gaps_total", 0))
        except OSError:
            pass
        burst_stages, _ = await bot_stages(db_url, bot_room, skip=sequential)
        stage_parts = [
            (
                f"the bot's own time per stage, ms: {len(sequential)} sequential round trips",
                sequential_stages,
            ),
            (
                "the echo bot's time per stage, ms: the same round trips",
                echo_sequential,
            ),
            (
                f"the bot's own time per stage, ms: burst of {args.burst}"
                " (replies of one room go out one after the other)",
                burst_stages,
            ),
        ]
        if args.catch_up > 0:
            running_bot, running_echo = bot, echo
            for target, stop, start in (
                (targets[0], running_echo.stop, running_echo.start),
                (targets[1], running_bot.stop, running_bot.start),
            ):
                print(f"  {target.name}: catch-up of {args.catch_up} sent while it was down")
                await measure_catch_up(
                    target,
                    stop=stop,
                    start=start,
                    senders=people,
                    reader=people[0],
                    observer=observer,
                    total=args.catch_up,
                    text=args.text,
                    result=results[target.name],
                )
            if args.echo_again:
                # The homeserver's database has grown by two catch-ups since the echo bot's
                # first one: its second, after the bot's, shows how much that costs.
                print(f"  {targets[0].name}: catch-up of {args.catch_up} again, after the bot's")
                again = Result(targets[0].name)
                await measure_catch_up(
                    targets[0],
                    stop=running_echo.stop,
                    start=running_echo.start,
                    senders=people,
                    reader=people[0],
                    observer=observer,
                    total=args.catch_up,
                    text=args.text,
                    result=again,
                )
                print(
                    f"  {targets[0].name}: again {again.catch_up_once}/{again.catch_up_commands}"
                    f" answered exactly once"
                )
                results[targets[0].name].catch_up_again = again.catch_up_seconds
        dm_round_trips: dict[str, list[float]] = {}
        for encrypted in (True, False):
            kind = "encrypted" if encrypted else "plaintext"
            print(f"  bbwt-bot: {args.dm_commands} round trips in {kind} direct chat")
            dm_round_trips[kind] = await measure_dm_round_trips(
                people[0], bot.user_id, args.dm_commands, args.text, encrypted=encrypted
            )
        print(f"bench: load average {os.getloadavg()[0]:.2f} at the end")
        report(results["bbwt-bot"], results["echo"], args)
        report_stages(stage_parts, metrics)
        report_dm(dm_round_trips)
    finally:
        if observer is not None:
            await observer.close()
        for person in people:
            await person.close()
        if echo is not None:
            await echo.stop()
        await shut_down(bot, synapse, pg_url)


async def main_async(args: argparse.Namespace) -> int:
    folder = Path(tempfile.mkdtemp(prefix="bbwt-bench-"))
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        async with asyncio.timeout(args.timeout):
            await bench(args, folder)
        return 0
    except TimeoutError:
        print(f"bench: gave up after {args.timeout:.0f} s", file=sys.stderr)
        return 1
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        if args.keep:
            print(f"bench: logs kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/roundtrip.py",
        description="Round trip and burst figures of bbwt-bot against a bare nio echo bot.",
    )
    parser.add_argument("--commands", type=int, default=200, help="sequential commands (200)")
    parser.add_argument("--burst", type=int, default=1000, help="commands in the burst (1000)")
    parser.add_argument("--users", type=int, default=20, help="users sending the burst (20)")
    parser.add_argument("--dm-commands", type=int, default=50, help="commands per direct chat (50)")
    parser.add_argument(
        "--catch-up",
        type=int,
        default=5000,
        help="commands sent while each bot is down, then answered on start (5000; 0: skip)",
    )
    parser.add_argument(
        "--echo-pad",
        type=int,
        default=0,
        help="bytes added to each short echo reply (0)",
    )
    parser.add_argument(
        "--echo-reply",
        choices=["short", "same"],
        default="short",
        help="the echo bot's reply: 'short' ('echo: ' and the command, plus --echo-pad), or "
        "'same': the bot's own reply to --text (read from one command before the bench), so "
        "the homeserver's cost per message, which grows with its size, is the same for both",
    )
    parser.add_argument(
        "--echo-again",
        action="store_true",
        help="run the echo bot's catch-up again after the bot's (the homeserver's database "
        "grows with each catch-up; the bot's runs second)",
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--text", default=COMMAND_TEXT, help=f"the command ({COMMAND_TEXT!r})")
    parser.add_argument(
        "--timeout", type=float, default=3600, help="give up after this many seconds (3600)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    parser.add_argument("--echo-bot", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.echo_bot:
        return run_echo_bot()
    if args.commands < 1 or args.burst < 1 or args.users < 1:
        parser.error("--commands, --burst and --users must be at least 1")
    if not args.text.startswith("!"):
        parser.error("--text must be a command starting with '!'")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("nio").setLevel(logging.ERROR)
    try:
        return asyncio.run(main_async(args))
    except KeyboardInterrupt:
        print("bench: interrupted; cleaned up", file=sys.stderr)
        return 130
    except asyncio.CancelledError:  # SIGTERM
        print("bench: stopped; cleaned up", file=sys.stderr)
        return 143


async def shut_down(bot: BotProcess | None, synapse: LocalSynapse, pg_url: str | None) -> None:
    """Stop the bot (if it still runs), Synapse, and drop the bench's PostgreSQL database."""
    if bot is not None and bot.proc is not None and bot.proc.returncode is None:
        try:
            await bot.stop(timeout=30)
        except RuntimeError as exc:
            print(f"bench: {exc.args[0].splitlines()[0]}")
    await synapse.stop()
    if pg_url is not None:
        await drop_pg_database(pg_url)


if __name__ == "__main__":
    sys.exit(main())
