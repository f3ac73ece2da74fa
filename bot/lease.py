"""Active/standby: only the process holding the leader lease touches Matrix.

One Olm/Megolm state cannot be used by two processes at once (both would consume the same
to-device messages and fork the Olm ratchets), so of the processes sharing a database one is
*active* — it logs in, syncs, decrypts, handles commands and sends — and the others wait on
*standby*, serving only ``/healthz`` and ``/metrics``, without reading the crypto store or
calling the homeserver. When the active process dies, a standby takes over within a
second or so and continues with the same device and keys from the database.

Two mechanisms, for two different questions:

* **Who may start?** A lock the database server (or the operating system) drops by itself
  when its holder dies: a PostgreSQL session advisory lock on a connection of its own, or,
  for SQLite (one machine), an exclusive ``flock`` on ``<database file>.lock``. A standby
  tries it every half second.
* **Who may still write?** An epoch fence. The new holder increments ``leases.epoch``; every
  transaction that writes crypto state or moves the sync token first checks (and locks)
  the epoch it started with (:func:`storage.crypto.check_epoch`). A process that lost its
  lock without noticing (a dropped database connection, a long pause) fails that check and
  stops before it can write anything; its outbox sends are harmless repeats (same device,
  same transaction ids, so the homeserver returns the events it already has).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from storage import Database
from storage import crypto as stored

log = logging.getLogger(__name__)

LEASE = "leader"
POLL_SECONDS = 0.5
WATCH_SECONDS = 2.0


class Leadership:
    def __init__(self, db: Database, *, name: str, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.name = name
        """Identifies this bot (its Matrix user id): bots on one database do not compete."""
        self.clock = clock
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self.epoch: int | None = None
        self.serving = False
        """Set by the app once everything runs (until then the role is ``starting``)."""
        self.waited = False
        """Another process held the lease when this one asked for it: this one waited on
        standby (and another version may have changed the schema meanwhile)."""
        self.lost = asyncio.Event()
        self._conn: AsyncConnection | None = None
        self._file: IO[Any] | None = None

    @property
    def active(self) -> bool:
        return self.epoch is not None and not self.lost.is_set()

    @property
    def role(self) -> str:
        if self.lost.is_set():
            return "stepping-down"
        if self.epoch is None:
            return "standby"
        return "active" if self.serving else "starting"

    # --- the lock ------------------------------------------------------------------------------
    async def _try_lock(self) -> bool:
        if self.db.is_sqlite:
            return self._try_flock()
        if self._conn is None:
            self._conn = await self.db.engine.connect()
        got = await self._conn.scalar(
            text("SELECT pg_try_advisory_lock(hashtextextended(:key, 0))"),
            {"key": f"bbwt-leader:{self.name}"},
        )
        await self._conn.commit()  # no transaction stays open on the lock's connection
        return bool(got)

    def _try_flock(self) -> bool:
        database = make_url(self.db.url).database or ""
        if not database or database == ":memory:":
            return True  # nothing another process could share
        if self._file is None:
            self._file = Path(f"{database}.lock").open("a+")  # noqa: SIM115 - held for life
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until this process holds the lease (True) or ``stop`` is set (False)."""
        while not stop.is_set():
            try:
                locked = await self._try_lock()
            except Exception as exc:
                log.warning("could not try the leader lock (%s); trying again", exc)
                await self._drop_connection()
                locked = False
            if locked:
                async with self.db.session() as s:
                    self.epoch = await stored.take_lease(s, LEASE, self.holder, self.clock())
                log.info("this process is active (lease epoch %d)", self.epoch)
                return True
            if not self.waited:
                log.info("another process is active; waiting on standby")
                self.waited = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_SECONDS)
        return False

    # --- the fence -----------------------------------------------------------------------------
    async def guard(self, session: AsyncSession) -> None:
        """Inside a writing transaction: raise ``LeaseLost`` unless this process still holds
        the lease (the lease row stays locked until the transaction ends)."""
        if self.epoch is None:
            raise stored.LeaseLost("this process never held the lease")
        try:
            await stored.check_epoch(session, LEASE, self.epoch)
        except stored.LeaseLost:
            self.lost.set()
            raise

    async def watch(self) -> None:
        """While active: notice a lost lock or a newer epoch, and say so via ``lost``."""
        while not self.lost.is_set():
            await asyncio.sleep(WATCH_SECONDS)
            try:
                if self._conn is not None:
                    await self._conn.scalar(text("SELECT 1"))
                    await self._conn.commit()
                async with self.db.read() as s:
                    current = await stored.lease_holder(s, LEASE)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._conn is not None:  # the lock went with the connection
                    log.error("lost the connection holding the leader lock: %s", exc)
                    self.lost.set()
                continue
            if current is not None and current[0] != self.epoch:
                log.error("another process took the lease (epoch %d, %s)", *current)
                self.lost.set()

    async def release(self) -> None:
        await self._drop_connection()
        if self._file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    async def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()  # closing the session releases the advisory lock
            self._conn = None
