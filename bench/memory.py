"""Memory and start-up benchmark: the real bot on a full database against a real Synapse.

    .venv/bin/python bench/memory.py [--members 10000] [--items 100000] [--events 10000]
                                     [--db sqlite|postgresql]

A throwaway local Synapse (``bot.devserver.LocalSynapse``) and the real ``bbwt-bot run``
process (``tests.e2e.harness.BotProcess``) with two CoPs. The bot is started once on an
empty database (it creates its rooms), stopped, and the database is filled: ``--members``
people with a membership each, ``--items`` intel items with tags and ``--events`` events
with five answers each. Then the bot is started again and measured:

* start-up: from starting the process to its first successful ``/sync`` (the
  ``bbwt_last_sync_timestamp_seconds`` metric turning non-zero), and to ``/healthz`` ok;
* the CPU time the process used until its first sync (less sensitive to a busy machine);
* memory: the process's resident set (RSS) and its peak (VmHWM) just after the first sync
  and again after ``--settle`` seconds.

Targets (issue 13): RSS <= 150 MB, first sync <= 3 s. Everything listens on 127.0.0.1 and
is removed at the end (``--keep`` keeps the folder with the logs).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
REPO = SCRIPT.parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from bench.digest import TAGS, sentence  # noqa: E402
from bench.roundtrip import shut_down  # noqa: E402
from bot.devserver import LocalSynapse  # noqa: E402
from storage import Database  # noqa: E402
from storage.events import Event, Rsvp  # noqa: E402
from storage.intel import IntelItem, IntelTag  # noqa: E402
from storage.models import Membership, Person  # noqa: E402
from tests.dbs import pg_available, sqlite_url  # noqa: E402
from tests.e2e.harness import BotProcess  # noqa: E402

NOW = datetime.now(UTC).replace(microsecond=0)
BATCH = 5000
COPS = [{"code": "HDEV", "name": "Heavy-duty EVs"}, {"code": "SOLAR", "name": "Solar"}]


async def fill(db_url: str, members: int, items: int, events: int) -> None:
    rng = random.Random(13)
    db = Database(db_url)
    users = [f"@m{i}:bench" for i in range(members)]
    try:
        for first in range(0, members, BATCH):
            chunk = users[first : first + BATCH]
            async with db.session() as s:
                await s.execute(
                    insert(Person),
                    [
                        {
                            "user_id": u,
                            "org": f"City {u}",
                            "country": "BE",
                            "authority_type": "local-authority",
                            "created_at": NOW,
                            "updated_at": NOW,
                        }
                        for u in chunk
                    ],
                )
                await s.execute(
                    insert(Membership),
                    [
                        {
                            "cop_code": COPS[n % 2]["code"],
                            "user_id": u,
                            "status": "member",
                            "message": "",
                            "flagged": False,
                            "flag_reason": "",
                            "applied_at": NOW - timedelta(days=rng.randint(1, 700)),
                            "decided_at": NOW,
                        }
                        for n, u in enumerate(chunk)
                    ],
                )
        span = timedelta(days=730)
        for first in range(1, items + 1, BATCH):
            rows: list[dict[str, Any]] = []
            tags: list[dict[str, Any]] = []
            for number in range(first, min(first + BATCH, items + 1)):
                item_tags = rng.sample(TAGS, rng.randint(0, 3))
                rows.append(
                    {
                        "id": number,
                        "cop_code": COPS[number % 2]["code"],
                        "author": rng.choice(users),
                        "title": sentence(rng, 3, 9).capitalize(),
                        "note": sentence(rng, 10, 80),
                        "tags": " ".join(item_tags),
                        "urls": [f"https://example.org/{number}"],
                        "created_at": NOW - span * (1 - number / items),
                    }
                )
                tags += [{"item_id": number, "tag": tag} for tag in item_tags]
            async with db.session() as s:
                await s.execute(insert(IntelItem), rows)
                if tags:
                    await s.execute(insert(IntelTag), tags)
        for first in range(0, events, BATCH):
            rows = []
            for number in range(first, min(first + BATCH, events)):
                starts = NOW + timedelta(days=rng.uniform(-700, 60), hours=rng.randint(0, 12))
                rows.append(
                    {
                        "id": number + 1,
                        "cop_code": COPS[number % 2]["code"],
                        "kind": "online-meeting",
                        "title": sentence(rng, 3, 7).capitalize(),
                        "starts_at": starts,
                        "ends_at": starts + timedelta(hours=2),
                        "timezone": "Europe/Brussels",
                        "location": "",
                        "url": "",
                        "capacity": rng.choice([None, 30, 60]),
                        "status": "scheduled",
                        "cancel_reason": "",
                        "created_by": users[0],
                        "created_at": NOW,
                        "updated_at": NOW,
                        "sequence": 0,
                    }
                )
            answers = [
                {
                    "event_id": row["id"],
                    "user_id": user,
                    "answer": rng.choice(["yes", "maybe", "no"]),
                    "queue_no": 0,
                    "answered_at": NOW,
                }
                for row in rows
                for user in rng.sample(users, 5)
            ]
            async with db.session() as s:
                await s.execute(insert(Event), rows)
                await s.execute(insert(Rsvp), answers)
    finally:
        await db.dispose()


def memory_of(pid: int) -> tuple[float, float]:
    """(RSS, peak RSS) of a process in MB, from /proc."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc: a start-up cost that does
    not grow with the machine's load the way wall-clock time does."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def first_sync(bot: BotProcess, timeout: float) -> float:  # noqa: ASYNC109
    """Start the bot; seconds until its first successful sync."""
    started = time.monotonic()
    task = asyncio.create_task(bot.start(timeout=timeout))
    try:
        async with aiohttp.ClientSession() as http:
            while time.monotonic() - started < timeout:
                if task.done():
                    task.result()  # raises if the bot died
                try:
                    url = f"http://127.0.0.1:{bot.port}/metrics"
                    async with http.get(url) as resp:
                        for line in (await resp.text()).splitlines():
                            if line.startswith("bbwt_last_sync_timestamp_seconds "):
                                if float(line.split()[1]) > 0:
                                    return time.monotonic() - started
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.02)
        raise RuntimeError(f"no first sync within {timeout} s:\n{bot.tail()}")
    finally:
        await task


async def bench(args: argparse.Namespace, folder: Path) -> None:
    print(f"bench: load average {os.getloadavg()[0]:.2f} at start, {os.cpu_count()} CPUs")
    synapse = LocalSynapse(folder / "synapse")
    bot: BotProcess | None = None
    pg_url: str | None = None
    try:
        await synapse.start()
        if args.db == "postgresql":
            if not pg_available():
                raise RuntimeError("PostgreSQL is not reachable on 127.0.0.1:5432")
            from bench.roundtrip import create_bench_database

            pg_url = db_url = await create_bench_database()
        else:
            db_url = sqlite_url(folder)
        (folder / "bot").mkdir()
        bot = BotProcess(
            synapse,
            folder / "bot",
            account=await synapse.register("bbwt-memory-bot"),
            db_url=db_url,
            admins=[],
            cops=COPS,
        )
        await bot.start()  # an empty database: the bot sets up its rooms
        assert bot.proc is not None
        empty_rss, _ = memory_of(bot.proc.pid)
        await bot.stop()
        began = time.monotonic()
        await fill(db_url, args.members, args.items, args.events)
        print(
            f"bench: filled {args.members:,} members, {args.items:,} intel items and "
            f"{args.events:,} events in {time.monotonic() - began:.0f} s"
        )
        started = time.monotonic()
        to_sync = await first_sync(bot, timeout=120)
        assert bot.proc is not None
        rss, peak = memory_of(bot.proc.pid)
        cpu = cpu_of(bot.proc.pid)
        to_healthy = await bot.wait_role("active", timeout=60) + (time.monotonic() - started)
        await asyncio.sleep(args.settle)
        rss_later, peak_later = memory_of(bot.proc.pid)
        print(f"bench: load average {os.getloadavg()[0]:.2f} at the end")
        print()
        print(f"bot on {args.db}                          figure   target")
        print(f"  RSS on an empty database (MB)      {empty_rss:8.0f}")
        print(f"  start -> first sync (s)            {to_sync:8.2f}   <= 3")
        print(f"  CPU used until the first sync (s)  {cpu:8.2f}")
        print(f"  start -> /healthz ok (s)           {to_healthy:8.2f}")
        print(f"  RSS at the first sync (MB)         {rss:8.0f}   <= 150")
        print(f"  RSS after {args.settle:.0f} s (MB)              {rss_later:8.0f}   <= 150")
        print(f"  peak RSS (MB)                      {max(peak, peak_later):8.0f}")
    finally:
        await shut_down(bot, synapse, pg_url)


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/memory.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds before the 2nd RSS")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bbwt-memory-"))
    try:
        asyncio.run(bench(args, folder))
    finally:
        if args.keep:
            print(f"bench: logs kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
