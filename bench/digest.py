"""Benchmark: one digest and one search in a CoP with 100,000 intel items and 10,000 events.

    .venv/bin/python bench/digest.py [--items 100000] [--events 10000] [--backend both]

Fills a fresh database per backend (a temporary SQLite file; a throwaway PostgreSQL
database on BBWT_BENCH_PG, default postgresql://postgres@127.0.0.1:5432/test), then times
building one digest and running one search. Each figure is the median of several runs after
one warm-up run; the first (cold) run is printed too. Target: under 100 ms each.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg  # noqa: E402
from sqlalchemy import insert, text  # noqa: E402

from commands.digest import post as digest_module  # noqa: E402

# the package exports a function named "sections", which hides the module of that name
digest_sections = importlib.import_module("commands.digest.sections")
from commands.digest import build_digest  # noqa: E402
from config.models import Settings  # noqa: E402
from storage import Database, repo  # noqa: E402
from storage import intel as intel_store  # noqa: E402
from storage.intel import IntelItem, IntelTag  # noqa: E402
from storage.models import Membership, Person  # noqa: E402

PG_ADMIN = os.environ.get("BBWT_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
COP = "HDEV"
NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)  # Monday 09:00 in Brussels
SEARCHES = ("electric bus tender", "bus", "hydrogène")
"""The first is the figure the README quotes; one common word; one with an accent."""
BATCH = 5000
RUNS = 7

WORDS = (
    "electric bus truck charging hydrogen battery tender procurement market supplier price "
    "list study report criteria dialogue depot fleet zero emission vehicle heavy duty "
    "municipal regional framework contract lot award offer kilowatt range maintenance "
    "warranty lifecycle cost pilot deployment infrastructure grid pantograph overnight "
    "opportunity retrofit diesel biogas refuse collection coach school transit operator"
).split()
TAGS = "ebus etruck charging hydrogen tender study prices criteria pilot grid".split()


def sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


async def fill(db: Database, items: int, events: int) -> str:
    """Fill one CoP; returns what was filled (events only if the events tables exist)."""
    rng = random.Random(42)
    async with db.session() as s:
        await repo.sync_cops(
            s, [(COP, "Heavy-duty electric vehicles"), ("SOLAR", "Solar")], now=NOW
        )
        await repo.set_cop_room(s, COP, "!hdev:bench")
        people = [
            {
                "user_id": f"@m{i}:bench",
                "org": f"City {i}",
                "country": "NO",
                "created_at": NOW,
                "updated_at": NOW,
            }
            for i in range(2000)
        ]
        await s.execute(insert(Person), people)
        await s.execute(
            insert(Membership),
            [
                {
                    "cop_code": COP,
                    "user_id": p["user_id"],
                    "status": "member",
                    "message": "",
                    "flagged": False,
                    "flag_reason": "",
                    "reason": "",
                    "applied_at": NOW - timedelta(days=rng.randint(1, 700)),
                    "decided_at": NOW - timedelta(days=rng.randint(0, 700)),
                }
                for p in people
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
                    "cop_code": COP,
                    "author": f"@m{rng.randrange(2000)}:bench",
                    "title": sentence(rng, 3, 9).capitalize(),
                    "note": sentence(rng, 10, 80),
                    "tags": " ".join(item_tags),
                    "urls": [f"https://example.org/{number}"] if rng.random() < 0.5 else [],
                    "created_at": NOW - span * (1 - number / items),
                    "removed_at": NOW if rng.random() < 0.02 else None,
                }
            )
            tags += [{"item_id": number, "tag": tag} for tag in item_tags]
        if hasattr(intel_store, "search_columns"):  # word forms are computed when written
            for row in rows:
                row.update(intel_store.search_columns(row["title"], row["tags"], row["note"], None))
        async with db.session() as s:
            await s.execute(insert(IntelItem), rows)
            if tags:
                await s.execute(insert(IntelTag), tags)
    filled = f"{items:,} intel items"
    try:
        from storage.events import Event, Rsvp
    except ImportError:
        return filled + " (no events: the events tables do not exist yet)"
    for first in range(0, events, BATCH):
        rows = []
        for number in range(first, min(first + BATCH, events)):
            starts = NOW + timedelta(days=rng.uniform(-700, 60), hours=rng.randint(0, 12))
            rows.append(
                {
                    "id": number + 1,
                    "cop_code": COP,
                    "kind": rng.choice(["online-meeting", "study-visit", "market-dialogue"]),
                    "title": sentence(rng, 3, 7).capitalize(),
                    "starts_at": starts,
                    "ends_at": starts + timedelta(hours=rng.choice([2, 8, 30])),
                    "timezone": "Europe/Brussels",
                    "location": "",
                    "url": "",
                    "capacity": rng.choice([None, 30, 60]),
                    "status": "scheduled",
                    "cancel_reason": "",
                    "created_by": "@m1:bench",
                    "created_at": NOW,
                    "updated_at": NOW,
                    "sequence": 0,
                }
            )
        answers = [
            {
                "event_id": row["id"],
                "user_id": f"@m{user}:bench",
                "answer": rng.choice(["yes", "yes", "maybe", "no"]),
                "queue_no": 0,
                "answered_at": NOW,
            }
            for row in rows
            for user in rng.sample(range(2000), 5)
        ]
        async with db.session() as s:
            await s.execute(insert(Event), rows)
            await s.execute(insert(Rsvp), answers)
    return filled + f" and {events:,} events (5 answers each)"


async def timed(work: Callable[[], Awaitable[Any]]) -> tuple[float, float, Any]:
    """(cold ms, median ms of RUNS warm runs, last result)."""
    started = time.perf_counter()
    result = await work()
    cold = (time.perf_counter() - started) * 1000
    laps = []
    for _ in range(RUNS):
        started = time.perf_counter()
        result = await work()
        laps.append((time.perf_counter() - started) * 1000)
    return cold, statistics.median(laps), result


async def run(backend: str, items: int, events: int) -> None:
    pg_name = ""
    if backend == "sqlite":
        folder = tempfile.mkdtemp(prefix="bbwt-bench-")
        url = f"sqlite+aiosqlite:///{folder}/bench.db"
    else:
        pg_name = f"bbwt_bench_{uuid.uuid4().hex[:8]}"
        conn = await asyncpg.connect(PG_ADMIN)
        await conn.execute(f'CREATE DATABASE "{pg_name}"')
        await conn.close()
        base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        url = f"{base}/{pg_name}"
    db = Database(url)
    try:
        await db.upgrade()
        started = time.perf_counter()
        filled = await fill(db, items, events)
        async with db.engine.begin() as conn:
            await conn.execute(text("ANALYZE"))
        print(f"[{backend}] filled {filled} in {time.perf_counter() - started:.0f} s")
        settings = Settings(cops=[{"code": COP, "name": "Heavy-duty electric vehicles"}])

        async def one_digest() -> Any:
            async with db.session() as s:
                return await build_digest(s, settings, COP, NOW)

        cold, warm, digest = await timed(one_digest)
        print(
            f"[{backend}] digest: {warm:.1f} ms median ({cold:.1f} ms cold), "
            f"{len(digest.message.plain):,} characters"
        )
        for provider in sorted(digest_sections._PROVIDERS.values()):
            scope = digest_sections.DigestScope(
                settings=settings,
                cop=settings.cops[0],
                now=NOW,
                start=NOW - digest_module.WINDOW,
                tz=digest_module.cop_zone(settings, COP),
            )

            async def one_section(make: Any = provider.provider, scope: Any = scope) -> Any:
                async with db.session() as s:
                    return await make(s, scope)

            _cold, part, _ = await timed(one_section)
            print(f"[{backend}]   section {provider.name}: {part:.1f} ms")
        for query in SEARCHES:

            async def one_search(query: str = query) -> Any:
                async with db.session() as s:
                    return await intel_store.search_items(s, [COP], query, limit=10)

            cold, warm, found = await timed(one_search)
            print(
                f"[{backend}] search {query!r}: {warm:.1f} ms median ({cold:.1f} ms cold), "
                f"{found.total:,} matches"
            )
    finally:
        await db.dispose()
        if pg_name:
            conn = await asyncpg.connect(PG_ADMIN)
            await conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
            await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        asyncio.run(run(backend, args.items, args.events))


if __name__ == "__main__":
    main()
