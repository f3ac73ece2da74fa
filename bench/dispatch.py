"""Benchmark: the bot's own cost per command, with no homeserver in the loop.

    .venv/bin/python bench/dispatch.py [--rsvp 4000] [--help-cmds 4000] [--backend both]
                                       [--history 100000] [--repeat 1]

Real storage (a fresh SQLite file, or a throwaway PostgreSQL database on BBWT_BENCH_PG,
default postgresql://postgres@127.0.0.1:5432/test) holding the history of a bot that has
run for a while (``--history`` commands handled and answered), the real registry and the real
``Processor.handle``; the Matrix side is a stand-in that only says who the bot is. The
commands are stored as inbound events first (as the sync loop does), then handled with their
replies written to the outbox, exactly as in the running bot, twice: one by one
(``Processor.handle`` for each, a transaction each, as in a conversation of one command at a
time), and as a backlog handed to the room's worker (``Processor.take``, as after a burst or
a restart: the worker handles it in groups sharing a transaction). Printed: commands per
second, the per-command median and p95 (one by one) and the CPU time per command. With
``--repeat N`` each is measured N times, taking turns, and the median run is printed with
the range of the N (wall-clock figures on a shared machine move by 10-20 % between runs).

Targets (issue 13): ``!rsvp`` >= 2,000/s on SQLite and >= 1,000/s on PostgreSQL;
``!help`` >= 5,000/s.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg  # noqa: E402
from aiohttp import web  # noqa: E402
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # noqa: E402
from sqlalchemy import insert, make_url  # noqa: E402

from bot import loop as event_loop  # noqa: E402
from bot.app import freeze_long_lived  # noqa: E402
from bot.metrics import Metrics  # noqa: E402
from bot.processor import Processor  # noqa: E402
from bot.rooms import MemberCache  # noqa: E402
from bot.sync import Classifier  # noqa: E402
from commands import build_registry  # noqa: E402
from commands.services import Services  # noqa: E402
from config.models import Settings  # noqa: E402
from storage import Database, repo  # noqa: E402
from storage import events as events_store  # noqa: E402
from storage.models import InboundEvent, OutboxMessage  # noqa: E402

PG_ADMIN = os.environ.get("BBWT_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
BOT = "@bot:bench"
ROOM = "!hdev:bench"
MGMT = "!mgmt:bench"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MEMBERS = 200
OPTIONS: dict[str, str | None] = {"profile": None}
PROFILED: list[str] = []


class StandIn:
    """All the processor asks of the Matrix client here: who the bot is."""

    user_id = BOT
    client_session = None


def settings() -> Settings:
    return Settings(
        matrix={"user_id": BOT},
        secretariat={"admins": ["@sec:bench"]},
        cops=[{"code": "HDEV", "name": "Heavy-duty electric vehicles"}],
    )


async def prepare(db: Database, config: Settings) -> list[str]:
    await db.upgrade()
    members = [f"@member{n:03d}:bench" for n in range(MEMBERS)]
    async with db.session() as s:
        await repo.sync_cops(s, [("HDEV", "Heavy-duty electric vehicles")], now=NOW)
        await repo.set_cop_room(s, "HDEV", ROOM)
        for user in members:
            await repo.seed_member(
                s,
                user_id=user,
                org=f"City {user}",
                country="BE",
                authority_type="local-authority",
                cop_code="HDEV",
                now=NOW,
            )
        start = NOW + timedelta(days=10)
        await events_store.create_event(
            s,
            cop_code="HDEV",
            kind="online-meeting",
            title="Charging standards",
            starts_at=start,
            ends_at=start + timedelta(hours=1),
            timezone="Europe/Brussels",
            created_by="@sec:bench",
            capacity=50,
            now=NOW,
        )
    return members


async def add_history(db: Database, members: list[str], count: int) -> None:
    """``count`` commands handled and answered in the past, as in a bot that has run for a
    while (one in ten of them an edit): the per-command cost must not grow with them."""
    inbound = InboundEvent.__table__
    outbox = OutboxMessage.__table__
    then = NOW - timedelta(days=30)
    for start in range(0, count, 5000):
        rows = range(start, min(start + 5000, count))
        async with db.session() as s:
            await s.execute(
                insert(inbound),
                [
                    {
                        "event_id": f"$old{n}",
                        "room_id": ROOM,
                        "sender": members[n % len(members)],
                        "kind": "edit" if n % 10 == 9 else "command",
                        "origin_ts": then,
                        "content": {"type": "m.room.message", "content": {"body": "!help"}},
                        "received_at": then,
                        "status": "done",
                        "outcome": "ok",
                        "handled_at": then,
                        "replaces": f"$old{n - 1}" if n % 10 == 9 else None,
                    }
                    for n in rows
                ],
            )
            await s.execute(
                insert(outbox),
                [
                    {
                        "room_id": ROOM,
                        "kind": "message",
                        "payload": {"msgtype": "m.notice", "body": "an answer"},
                        "created_at": then,
                        "attempts": 1,
                        "sent_at": then,
                        "failed": False,
                        "result": f"$sent{n}",
                    }
                    for n in rows
                ],
            )


async def store_commands(db: Database, members: list[str], texts: list[str]) -> list[InboundEvent]:
    async with db.session() as s:
        for n, text in enumerate(texts):
            await repo.add_inbound(
                s,
                event_id=f"${uuid.uuid4().hex}",
                room_id=ROOM,
                sender=members[n % len(members)],
                origin_ts=NOW,
                content={"type": "m.room.message", "content": {"msgtype": "m.text", "body": text}},
                kind="command",
                now=NOW,
            )
    async with db.read() as s:
        return await repo.pending_inbound(s, limit=len(texts) + 10)


async def measure(
    db: Database, config: Settings, members: list[str], texts: list[str], *, backlog: bool
) -> Any:
    registry = build_registry("!")
    client = StandIn()
    clock = lambda: NOW  # noqa: E731
    processor = Processor(
        db=db,
        settings=config,
        registry=registry,
        client=client,  # type: ignore[arg-type]
        classifier=Classifier(BOT, "!", registry.hooks, listening=registry.listening),
        metrics=Metrics(),
        cop_rooms={ROOM: "HDEV"},
        management_room=MGMT,
        on_committed=lambda: None,
        clock=clock,
        members=MemberCache(client, db, clock),  # type: ignore[arg-type]
    )
    processor.services = Services(
        settings=config,
        db=db,
        registry=registry,
        scheduler=AsyncIOScheduler(timezone="UTC"),
        http=web.Application(),
        clock=clock,
        wake_sender=lambda: None,
        cop_rooms={ROOM: "HDEV"},
        management_room=MGMT,
        bot_user=BOT,
    )
    rows = await store_commands(db, members, texts)
    times: list[float] = []
    profile = OPTIONS["profile"]
    profiler = cProfile.Profile() if profile else None
    cpu = time.process_time()
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    if backlog:
        processor.take(rows)  # as the sync loop hands what it stored to the room's worker
        await processor.settled()
    else:
        for row in rows:
            one = time.perf_counter()
            await processor.handle(row)
            times.append(time.perf_counter() - one)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(f"{profile}.{len(PROFILED)}")
        PROFILED.append(str(profile))
    total = time.perf_counter() - started
    cpu = time.process_time() - cpu
    async with db.read() as s:
        done = await repo.count_inbound(s, "done")
    return total, times, done, cpu


def describe(name: str, count: int, total: float, times: list[float], cpu: float) -> str:
    if times:
        ordered = sorted(times)
        p50 = statistics.median(ordered) * 1000
        p95 = ordered[int(len(ordered) * 0.95) - 1] * 1000
        each = f"p50 {p50:6.2f} ms   p95 {p95:6.2f} ms"
    else:
        each = f"{'(one transaction per group)':<30}"
    return (
        f"  {name:<18} {count / total:8.0f} commands/s   {each}"
        f"   CPU {cpu / count * 1000:6.3f} ms/command ({count / cpu:6.0f}/s of CPU)"
    )


def median_run(name: str, count: int, runs: list[tuple[float, list[float], float]]) -> str:
    """The run of median speed, described, with the range of all of them."""
    ordered = sorted(runs, key=lambda run: run[0])
    total, times, cpu = ordered[len(ordered) // 2]
    line = describe(name, count, total, times, cpu)
    if len(runs) > 1:
        slowest, fastest = count / ordered[-1][0], count / ordered[0][0]
        line += f"   [median of {len(runs)}: {slowest:.0f}-{fastest:.0f}/s]"
    return line


async def one_backend(backend: str, rsvp: int, helps: int, history: int, repeat: int) -> None:
    folder = tempfile.mkdtemp(prefix="bbwt-dispatch-")
    pg_name = None
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{folder}/bench.db"
    else:
        pg_name = f"bbwt_bench_{uuid.uuid4().hex[:8]}"
        conn = await asyncpg.connect(PG_ADMIN)
        await conn.execute(f'CREATE DATABASE "{pg_name}"')
        await conn.close()
        # (A URL with ?host=/var/run/postgresql measures the server's Unix socket.)
        target = make_url(PG_ADMIN).set(drivername="postgresql+asyncpg", database=pg_name)
        url = target.render_as_string(hide_password=False)
    db = Database(url)
    try:
        config = settings()
        members = await prepare(db, config)
        await add_history(db, members, history)
        freeze_long_lived()  # as the bot does once it has started
        print(f"{backend} ({history:,} commands handled before):")
        answers = ["yes", "no", "maybe"]
        runs = [
            ("!rsvp", [f"!rsvp E1 {answers[n % 3]}" for n in range(rsvp)]),
            ("!help", ["!help"] * helps),
        ]
        expected = history
        for name, texts in runs:
            if not texts:
                continue
            results: dict[bool, list[tuple[float, list[float], float]]] = {False: [], True: []}
            for _ in range(repeat):
                for backlog in (False, True):
                    total, times, done, cpu = await measure(
                        db, config, members, texts, backlog=backlog
                    )
                    results[backlog].append((total, times, cpu))
                    expected += len(texts)
                    assert done == expected, f"{done} commands handled, not {expected}"
            for backlog in (False, True):
                label = f"{name} {'backlog' if backlog else 'one by one'}"
                print(median_run(label, len(texts), results[backlog]))
    finally:
        await db.dispose()
        if pg_name is not None:
            conn = await asyncpg.connect(PG_ADMIN)
            await conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
            await conn.close()


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rsvp", type=int, default=4000)
    parser.add_argument("--help-cmds", type=int, default=4000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--history", type=int, default=100_000, help="commands handled before (and answered)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="measure each this many times: the median run"
    )
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the commands")
    parser.add_argument(
        "--event-loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="the loop to run on (the bot's default: uvloop)",
    )
    return parser.parse_args()


async def main(args: argparse.Namespace) -> None:
    OPTIONS["profile"] = args.profile
    print(f"load at start: {os.getloadavg()[0]:.2f}; event loop: {args.event_loop}")
    for backend in ("sqlite", "postgresql") if args.backend == "both" else (args.backend,):
        await one_backend(backend, args.rsvp, args.help_cmds, args.history, max(args.repeat, 1))
    print(f"load at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    ARGS = arguments()
    event_loop.run(main(ARGS), ARGS.event_loop)
