"""Benchmark: one erasure and one daily retention run on a busy bot's database.

    .venv/bin/python bench/privacy.py [--events 100000] [--sent 30000] [--backend both]

Fills a fresh database per backend (a temporary SQLite file; a throwaway PostgreSQL
database on BBWT_BENCH_PG, default postgresql://postgres@127.0.0.1:5432/test) with 2,000
members, ``--events`` handled commands spread over 60 days, ``--sent`` delivered messages
over the last 7 days (one in ten a 20 kB file), 20,000 audit entries, and one person with
500 commands and 300 messages of their own; then times erasing that person (the whole
transaction of ``!forgetme confirm`` in storage) and the retention run of the next day.
On SQLite both hold the one writer's lock for that long: commands wait meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from storage import Database, erasure, repo, retention  # noqa: E402
from storage.models import (  # noqa: E402
    AuditEntry,
    InboundEvent,
    Membership,
    OutboxMessage,
    Person,
)

PG_ADMIN = os.environ.get("BBWT_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
TARGET = "@target:bench"
BATCH = 5000
KEY = b"k" * 32
POLICY = retention.Policy(
    inbound=timedelta(days=30),
    outbox=timedelta(days=7),
    claims=timedelta(days=1830),
    audit=timedelta(days=732),
    members=timedelta(days=366),
)


async def insert_many(db: Database, model: Any, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), BATCH):
        async with db.session() as s:
            await s.execute(insert(model), rows[start : start + BATCH])


def command(i: int, sender: str, at: datetime) -> dict[str, Any]:
    body = f"!rsvp E{i % 500} yes"
    return {
        "event_id": f"$in{i}",
        "room_id": f"!dm-{i % 2000}:bench",
        "sender": sender,
        "kind": "command",
        "origin_ts": at,
        "content": {"type": "m.room.message", "content": {"msgtype": "m.text", "body": body}},
        "received_at": at,
        "status": "done",
        "outcome": "ok",
        "handled_at": at,
    }


def message(i: int, to: str | None, at: datetime, file: bytes | None) -> dict[str, Any]:
    payload: dict[str, Any] = {"msgtype": "m.notice", "body": f"You're going to E{i % 500}."}
    kind = "message"
    if file is not None:
        kind = "file"
        payload = {"filename": "x.csv", "mimetype": "text/csv", "data_b64": file.decode()}
    return {
        "room_id": f"!dm-{i % 2000}:bench",
        "kind": kind,
        "payload": payload,
        "created_at": at,
        "sent_at": at,
        "result": f"$out{i}",
        "private_to": to,
        "attempts": 0,
        "failed": False,
    }


async def fill(db: Database, events: int, sent: int) -> None:
    people = [
        {
            "user_id": f"@m{i}:bench",
            "org": f"City {i}",
            "country": "NO",
            "created_at": NOW,
            "updated_at": NOW,
        }
        for i in range(2000)
    ] + [
        {
            "user_id": TARGET,
            "org": "Target City",
            "country": "NO",
            "created_at": NOW,
            "updated_at": NOW,
        }
    ]
    async with db.session() as s:
        await repo.sync_cops(s, [("HDEV", "Heavy-duty electric vehicles")], now=NOW)
    await insert_many(db, Person, people)
    await insert_many(
        db,
        Membership,
        [
            {
                "cop_code": "HDEV",
                "user_id": p["user_id"],
                "status": "member",
                "message": "",
                "flagged": False,
                "flag_reason": "",
                "applied_at": NOW,
                "reason": "",
            }
            for p in people
        ],
    )
    span = timedelta(days=60) / events
    rows = [command(i, f"@m{i % 2000}:bench", NOW - i * span) for i in range(events)]
    rows += [command(events + i, TARGET, NOW - i * timedelta(hours=2)) for i in range(500)]
    await insert_many(db, InboundEvent, rows)
    blob = base64.b64encode(b"user,organisation\n" + b"@m1:bench,City 1\n" * 1200)
    week = timedelta(days=7) / sent
    out = [
        message(i, f"@m{i % 2000}:bench", NOW - i * week, blob if i % 10 == 0 else None)
        for i in range(sent)
    ]
    out += [message(sent + i, TARGET, NOW - i * timedelta(minutes=30), None) for i in range(300)]
    await insert_many(db, OutboxMessage, out)
    await insert_many(
        db,
        AuditEntry,
        [
            {
                "actor": f"@m{i % 2000}:bench",
                "action": "approve",
                "target": TARGET if i % 100 == 0 else f"@m{i}:bench",
                "detail": "",
                "at": NOW - timedelta(hours=i),
            }
            for i in range(20000)
        ],
    )


async def measure(url: str, events: int, sent: int) -> dict[str, float]:
    db = Database(url)
    try:
        await db.upgrade()
        await fill(db, events, sent)
        started = time.perf_counter()
        async with db.session() as s:
            erased = await erasure.erase_person(
                s,
                TARGET,
                alias=erasure.pseudonym(KEY, TARGET),
                now=NOW,
                claims_retention=POLICY.claims,
            )
        erase_s = time.perf_counter() - started
        started = time.perf_counter()
        async with db.session() as s:
            counts = await retention.run(
                s, POLICY, key=KEY, actor="@bot:bench", now=NOW + timedelta(days=1)
            )
        run_s = time.perf_counter() - started
        assert counts is not None
        print(
            f"    erasure: {erase_s * 1000:.0f} ms ({erased.commands} commands, "
            f"{erased.messages} messages, {len(erased.redact)} redactions)"
        )
        print(f"    retention run: {run_s * 1000:.0f} ms {counts}")
        return {"erase": erase_s, "run": run_s}
    finally:
        await db.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--sent", type=int, default=30_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as folder:
            print("SQLite")
            await measure(f"sqlite+aiosqlite:///{folder}/bench.db", args.events, args.sent)
    if args.backend in ("postgresql", "both"):
        name = f"bbwt_bench_{uuid.uuid4().hex[:8]}"
        conn = await asyncpg.connect(PG_ADMIN)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()
        base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        try:
            print("PostgreSQL")
            await measure(f"{base}/{name}", args.events, args.sent)
        finally:
            conn = await asyncpg.connect(PG_ADMIN)
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
