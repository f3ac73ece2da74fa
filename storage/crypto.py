"""End-to-end encryption state: the bot's Olm/Megolm store, its sealed secrets, messages it
could not decrypt yet, and the leader lease that lets only one process use all of that.

``crypto_state`` holds what matrix-nio's crypto store would keep in a file of its own, one
row per thing (``account`` = ``<user>/<device>``; ``kind`` is ``account``, ``olm``,
``megolm_in``, ``device``, ``trust``, ``room`` or ``key_request``). Values are JSON; the
pickles in them are encrypted by vodozemac with a key derived from the store key (see
``bot.crypto``). Secrets of the account itself (cross-signing seeds, the access token)
are rows of kind ``secret`` under ``account`` = the user id, sealed the same way.

Everything here is written inside a transaction the caller owns: the sync loop writes
crypto state, parked events and the sync token together, after checking the lease epoch
(:func:`check_epoch`), so a process that lost the lease can never write any of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Integer, String, Text, bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage import repo
from storage.db import dialect_of, insert_for
from storage.models import Base
from storage.prepared import Prepared


class CryptoRow(Base):
    __tablename__ = "crypto_state"
    account: Mapped[str] = mapped_column(String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(512), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    """JSON."""
    updated_at: Mapped[datetime]


class ParkedEvent(Base):
    """An encrypted event the bot has no key for yet: kept (still encrypted) until the key
    arrives, or until the person has been told that the bot cannot read it."""

    __tablename__ = "undecryptable_events"
    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    room_id: Mapped[str] = mapped_column(String(255))
    sender: Mapped[str] = mapped_column(String(255), index=True)
    session_id: Mapped[str] = mapped_column(String(255), index=True)
    raw: Mapped[dict[str, Any]]
    """The encrypted event as received (ciphertext only)."""
    received_at: Mapped[datetime]
    origin_ts: Mapped[datetime]
    key_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    notified_at: Mapped[datetime | None]
    """When the person was told (or, within the hour of an earlier notice, counted as told)."""


class UndecryptableNotice(Base):
    """When a person was last told that the bot could not read their message."""

    __tablename__ = "undecryptable_notices"
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    notified_at: Mapped[datetime]


class Lease(Base):
    """The leader lease: only the process holding it syncs, decrypts and sends. ``epoch``
    goes up by one with every new holder; writes check it (a fence)."""

    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    holder: Mapped[str] = mapped_column(String(255), default="")
    acquired_at: Mapped[datetime]


# --- crypto state ------------------------------------------------------------------------------


async def load_crypto_rows(session: AsyncSession, account: str) -> dict[tuple[str, str], str]:
    """Every row of one account: (kind, key) -> JSON text."""
    rows = await session.execute(
        select(CryptoRow.kind, CryptoRow.key, CryptoRow.value).where(CryptoRow.account == account)
    )
    return {(kind, key): value for kind, key, value in rows.all()}


async def write_crypto_rows(
    session: AsyncSession,
    account: str,
    rows: Iterable[tuple[str, str, str | None]],
    now: datetime,
) -> int:
    """Upsert (kind, key, JSON) rows of one account; a None value deletes the row."""
    insert = insert_for(session)
    written = 0
    for kind, key, value in rows:
        written += 1
        if value is None:
            await session.execute(
                delete(CryptoRow).where(
                    CryptoRow.account == account, CryptoRow.kind == kind, CryptoRow.key == key
                )
            )
            continue
        stmt = insert(CryptoRow).values(
            account=account, kind=kind, key=key, value=value, updated_at=now
        )
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=["account", "kind", "key"],
                set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
            )
        )
    return written


async def get_secret(session: AsyncSession, user_id: str, name: str) -> str | None:
    """A sealed secret of the account (see ``bot.crypto.keys``)."""
    return await session.scalar(
        select(CryptoRow.value).where(
            CryptoRow.account == user_id, CryptoRow.kind == "secret", CryptoRow.key == name
        )
    )


async def put_secret(
    session: AsyncSession, user_id: str, name: str, sealed: str, now: datetime
) -> None:
    await write_crypto_rows(session, user_id, [("secret", name, sealed)], now)


# --- the lease ---------------------------------------------------------------------------------


class LeaseLost(RuntimeError):
    """Another process holds the lease now: this one must stop writing and step down."""


async def take_lease(session: AsyncSession, name: str, holder: str, now: datetime) -> int:
    """Become the holder (the caller already holds the lock that makes it exclusive);
    returns the new epoch."""
    insert = insert_for(session)
    await session.execute(
        insert(Lease)
        .values(name=name, epoch=0, holder="", acquired_at=now)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    await session.execute(
        update(Lease)
        .where(Lease.name == name)
        .values(epoch=Lease.epoch + 1, holder=holder[:255], acquired_at=now)
    )
    epoch = await session.scalar(select(Lease.epoch).where(Lease.name == name))
    assert epoch is not None
    return int(epoch)


_EPOCH_STATEMENT = select(Lease.epoch).where(Lease.name == bindparam("name"))
_EPOCH = Prepared(_EPOCH_STATEMENT)
_EPOCH_LOCKED = Prepared(_EPOCH_STATEMENT.with_for_update())
"""Built once: every writing transaction of the active process checks the epoch."""


async def check_epoch(session: AsyncSession, name: str, epoch: int) -> None:
    """Raise :class:`LeaseLost` unless ``epoch`` is still the lease's. Locks the row until
    the caller's transaction ends, so a new holder cannot slip in between."""
    locking = dialect_of(session) == "postgresql"
    result = await repo.run_prepared(session, _EPOCH_LOCKED if locking else _EPOCH, {"name": name})
    current = result.scalar()
    if current != epoch:
        raise LeaseLost(f"the lease {name!r} is at epoch {current}, this process holds {epoch}")


async def lease_holder(session: AsyncSession, name: str) -> tuple[int, str] | None:
    row = await session.get(Lease, name)
    return (row.epoch, row.holder) if row else None


# --- events the bot could not decrypt ---------------------------------------------------------


@dataclass(frozen=True)
class Parked:
    event_id: str
    room_id: str
    sender: str
    session_id: str
    raw: dict[str, Any]
    origin_ts: datetime


async def park(session: AsyncSession, event: Parked, now: datetime) -> bool:
    """Keep an undecryptable event; False when it was parked before."""
    insert = insert_for(session)
    result = await session.execute(
        insert(ParkedEvent)
        .values(
            event_id=event.event_id,
            room_id=event.room_id,
            sender=event.sender,
            session_id=event.session_id,
            raw=event.raw,
            received_at=now,
            origin_ts=event.origin_ts,
            key_requested=False,
        )
        .on_conflict_do_nothing(index_elements=["event_id"])
    )
    return bool(getattr(result, "rowcount", 0))


async def parked_for_sessions(
    session: AsyncSession, session_ids: Iterable[str]
) -> list[ParkedEvent]:
    """Parked events (not given up on) that one of these Megolm sessions may open."""
    ids = sorted(set(session_ids))
    if not ids:
        return []
    rows = await session.scalars(
        select(ParkedEvent)
        .where(ParkedEvent.session_id.in_(ids), ParkedEvent.notified_at.is_(None))
        .order_by(ParkedEvent.origin_ts)
    )
    return list(rows.all())


async def unparked(session: AsyncSession, event_ids: Sequence[str]) -> None:
    """Forget parked events (decrypted now, or given up on)."""
    if event_ids:
        await session.execute(delete(ParkedEvent).where(ParkedEvent.event_id.in_(event_ids)))


async def without_key_request(session: AsyncSession, limit: int = 100) -> list[ParkedEvent]:
    rows = await session.scalars(
        select(ParkedEvent)
        .where(ParkedEvent.key_requested.is_(False), ParkedEvent.notified_at.is_(None))
        .order_by(ParkedEvent.received_at)
        .limit(limit)
    )
    return list(rows.all())


async def mark_key_requested(session: AsyncSession, event_ids: Sequence[str]) -> None:
    if event_ids:
        await session.execute(
            update(ParkedEvent)
            .where(ParkedEvent.event_id.in_(event_ids))
            .values(key_requested=True)
        )


async def due_for_notice(
    session: AsyncSession, received_before: datetime, limit: int = 100
) -> list[ParkedEvent]:
    """Parked events nobody has been told about, waiting since before ``received_before``."""
    rows = await session.scalars(
        select(ParkedEvent)
        .where(ParkedEvent.notified_at.is_(None), ParkedEvent.received_at < received_before)
        .order_by(ParkedEvent.received_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(rows.all())


async def last_notice(session: AsyncSession, user_id: str) -> datetime | None:
    row = await session.get(UndecryptableNotice, user_id)
    return row.notified_at if row else None


async def note_notice(session: AsyncSession, user_id: str, now: datetime) -> None:
    row = await session.get(UndecryptableNotice, user_id)
    if row is None:
        session.add(UndecryptableNotice(user_id=user_id, notified_at=now))
    else:
        row.notified_at = now
    await session.flush()


async def data_of(session: AsyncSession, user_id: str) -> dict[str, Any]:
    """For ``!mydata``: the person's devices as the bot's encryption knows them (ids and
    names; public keys only), the messages it could not decrypt and when it told them."""
    devices = await session.execute(
        select(CryptoRow.kind, CryptoRow.key, CryptoRow.value).where(
            CryptoRow.kind.in_(("device", "trust")), CryptoRow.key.startswith(f"{user_id}|")
        )
    )
    known: list[dict[str, Any]] = []
    for kind, key, value in devices.all():
        parts = key.split("|")
        row = json.loads(value)
        if kind == "device":
            known.append({"device": parts[1], "name": row.get("display_name") or ""})
        else:
            known.append({"device": parts[1], "trust": row.get("state")})
    parked = await session.scalars(
        select(ParkedEvent).where(ParkedEvent.sender == user_id).order_by(ParkedEvent.origin_ts)
    )
    told = await last_notice(session, user_id)
    return {
        "your_devices": known,
        "messages_not_decrypted": [
            {
                "event_id": row.event_id,
                "room_id": row.room_id,
                "sent_at": row.origin_ts.isoformat(),
                "told_at": row.notified_at.isoformat() if row.notified_at else None,
            }
            for row in parked.all()
        ],
        "last_told_at": told.isoformat() if told else None,
    }


async def forget_user(session: AsyncSession, user_id: str) -> None:
    """Erasure: the person's device keys and trust as the bot knew them (their devices'
    names may name them), their undecryptable messages and when they were told. The bot
    learns their devices again from the homeserver if it meets them in a room again."""
    await session.execute(
        delete(CryptoRow).where(
            CryptoRow.kind.in_(("device", "trust")), CryptoRow.key.startswith(f"{user_id}|")
        )
    )
    await session.execute(delete(ParkedEvent).where(ParkedEvent.sender == user_id))
    await session.execute(delete(UndecryptableNotice).where(UndecryptableNotice.user_id == user_id))


async def forget_parked_before(session: AsyncSession, before: datetime) -> int:
    """Drop parked events the person was told about long ago (their key never came)."""
    result = await session.execute(
        delete(ParkedEvent).where(
            ParkedEvent.notified_at.is_not(None), ParkedEvent.notified_at < before
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)
