"""Travel-expense claims and their lines.

Money is stored as whole cents in 64-bit integers (exact on SQLite and PostgreSQL alike)
and read back as :class:`~decimal.Decimal` with two places; exchange rates and quantities
are stored as decimal text. Nothing here is ever a float.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    and_,
    delete,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.db import insert_for
from storage.models import Base, BigId

CENT = Decimal("0.01")


class Cents(TypeDecorator[Decimal]):
    """A euro (or other currency) amount kept as an integer number of cents."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError("money must be a Decimal, never a float")
        scaled = value * 100
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{value} has fractions of a cent")
        return int(scaled)

    def process_result_value(self, value: int | None, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return (Decimal(int(value)) * CENT).quantize(CENT)


class DecimalText(TypeDecorator[Decimal]):
    """An exact decimal (exchange rate, kilometres) kept as text."""

    impl = String(32)
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError("exact numbers must be Decimals")
        return str(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


class Status(StrEnum):
    """A claim's status; the allowed moves between them are in commands.claims_rules."""

    DRAFT = "draft"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"
    PAID = "paid"
    WITHDRAWN = "withdrawn"


DRAFT, SUBMITTED, APPROVED, REJECTED, PAID, WITHDRAWN = (
    Status.DRAFT,
    Status.SUBMITTED,
    Status.APPROVED,
    Status.REJECTED,
    Status.PAID,
    Status.WITHDRAWN,
)
OPEN = (DRAFT, SUBMITTED, APPROVED, PAID)
"""A person has at most one claim per event in these statuses (the database enforces it:
the partial unique index ``uq_claims_open``)."""
OPEN_WHERE = "status IN ('draft', 'submitted', 'approved', 'paid')"


class DuplicateClaim(Exception):
    """The person already has an open claim for the event (made at the same moment)."""


class Claim(Base):
    __tablename__ = "claims"
    __table_args__ = (
        Index(
            "uq_claims_open",
            "user_id",
            "event_id",
            unique=True,
            sqlite_where=text(OPEN_WHERE),
            postgresql_where=text(OPEN_WHERE),
        ),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255), index=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"), index=True)
    cop_code: Mapped[str] = mapped_column(ForeignKey("cops.code"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=DRAFT)
    days: Mapped[int] = mapped_column(Integer, default=1)
    """Meeting days of the event (daily allowance, default nights); frozen on submit."""
    claimed: Mapped[Decimal] = mapped_column(Cents, default=Decimal("0.00"))
    """Sum of the lines in EUR."""
    allowed: Mapped[Decimal] = mapped_column(Cents, default=Decimal("0.00"))
    """Sum of the lines after caps, in EUR."""
    approved: Mapped[Decimal | None] = mapped_column(Cents)
    """What a moderator approved (None until approved)."""
    reason: Mapped[str] = mapped_column(Text, default="")
    """Why another amount was approved, or why the claim was rejected."""
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()
    submitted_at: Mapped[datetime | None]
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(255))
    paid_at: Mapped[datetime | None]
    paid_by: Mapped[str | None] = mapped_column(String(255))
    withdrawn_at: Mapped[datetime | None]

    @property
    def code(self) -> str:
        return f"C{self.id}"


class ClaimLine(Base):
    __tablename__ = "claim_lines"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    claim_id: Mapped[int] = mapped_column(ForeignKey("claims.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    """The line's number within its claim (1, 2, …)."""
    category: Mapped[str] = mapped_column(String(32))
    amount: Mapped[Decimal] = mapped_column(Cents)
    """As claimed, in ``currency`` (car: the price of the distance, in EUR)."""
    currency: Mapped[str] = mapped_column(String(3))
    rate: Mapped[Decimal] = mapped_column(DecimalText)
    """Units of ``currency`` per 1 EUR when the line was added."""
    rate_month: Mapped[str | None] = mapped_column(String(7))
    """The month (``2026-05``) of the InforEuro rate used; None for EUR and for a rate the
    Secretariat set in the configuration."""
    eur: Mapped[Decimal] = mapped_column(Cents)
    quantity: Mapped[Decimal | None] = mapped_column(DecimalText)
    """Kilometres (car), nights (accommodation) or days (daily allowance)."""
    distance_km: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text, default="")
    cap: Mapped[Decimal | None] = mapped_column(Cents)
    allowed: Mapped[Decimal] = mapped_column(Cents)
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    approved: Mapped[Decimal | None] = mapped_column(Cents)
    """This line's share of the approved amount (the shares add up to it exactly)."""
    receipt_url: Mapped[str | None] = mapped_column(Text)
    """The receipt's ``mxc://`` address."""
    receipt_name: Mapped[str] = mapped_column(String(255), default="")
    receipt_mimetype: Mapped[str] = mapped_column(String(100), default="")
    receipt_size: Mapped[int | None] = mapped_column(BigInteger)
    receipt_event_id: Mapped[str | None] = mapped_column(String(255))
    receipt_file: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """The ``file`` object (url, key, iv, hashes) of a receipt uploaded encrypted; never
    logged or exported."""
    created_at: Mapped[datetime] = mapped_column()

    @property
    def has_receipt(self) -> bool:
        return bool(self.receipt_url)


# --- claims ----------------------------------------------------------------------------------


async def create_claim(
    session: AsyncSession, *, user_id: str, event_id: int, cop_code: str, days: int, now: datetime
) -> Claim:
    claim = Claim(
        user_id=user_id,
        event_id=event_id,
        cop_code=cop_code,
        status=DRAFT,
        days=days,
        claimed=Decimal("0.00"),
        allowed=Decimal("0.00"),
        reason="",
        created_at=now,
        updated_at=now,
    )
    try:
        async with session.begin_nested():
            session.add(claim)
            await session.flush()
    except IntegrityError:
        raise DuplicateClaim from None
    return claim


async def get_claim(session: AsyncSession, claim_id: int, *, lock: bool = False) -> Claim | None:
    """The claim ``C<claim_id>``; with ``lock`` its row stays locked until the transaction
    ends (PostgreSQL), so two moderators deciding at once are handled one after the other."""
    query = select(Claim).where(Claim.id == claim_id).execution_options(populate_existing=True)
    if lock:
        query = query.with_for_update()
    return await session.scalar(query)


async def open_claim_for_event(session: AsyncSession, user_id: str, event_id: int) -> Claim | None:
    """The person's claim for this event that still counts (not withdrawn or rejected)."""
    return await session.scalar(
        select(Claim)
        .where(Claim.user_id == user_id, Claim.event_id == event_id, Claim.status.in_(OPEN))
        .order_by(Claim.id.desc())
        .limit(1)
    )


async def rejected_claim_for_event(
    session: AsyncSession, user_id: str, event_id: int
) -> Claim | None:
    return await session.scalar(
        select(Claim)
        .where(Claim.user_id == user_id, Claim.event_id == event_id, Claim.status == REJECTED)
        .order_by(Claim.id.desc())
        .limit(1)
    )


async def claims_of(session: AsyncSession, user_id: str) -> list[Claim]:
    rows = await session.scalars(
        select(Claim).where(Claim.user_id == user_id).order_by(Claim.id.desc())
    )
    return list(rows.all())


async def claims_with_status(
    session: AsyncSession, statuses: Iterable[str], cops: Iterable[str] | None
) -> list[Claim]:
    """Claims in these statuses of these CoPs (None: every CoP), oldest first."""
    query = select(Claim).where(Claim.status.in_(list(statuses))).order_by(Claim.id)
    if cops is not None:
        query = query.where(Claim.cop_code.in_(list(cops)))
    return list((await session.scalars(query)).all())


async def save_claim(session: AsyncSession, claim: Claim, now: datetime) -> None:
    claim.updated_at = now
    await session.flush()


# --- lines -----------------------------------------------------------------------------------


async def lines_of(session: AsyncSession, claim_id: int) -> list[ClaimLine]:
    rows = await session.scalars(
        select(ClaimLine)
        .where(ClaimLine.claim_id == claim_id)
        .order_by(ClaimLine.position)
        .execution_options(populate_existing=True)
    )
    return list(rows.all())


async def lines_of_claims(
    session: AsyncSession, claim_ids: Sequence[int]
) -> dict[int, list[ClaimLine]]:
    out: dict[int, list[ClaimLine]] = {claim_id: [] for claim_id in claim_ids}
    if not claim_ids:
        return out
    rows = await session.scalars(
        select(ClaimLine)
        .where(ClaimLine.claim_id.in_(list(claim_ids)))
        .order_by(ClaimLine.claim_id, ClaimLine.position)
    )
    for line in rows.all():
        out[line.claim_id].append(line)
    return out


async def add_line(
    session: AsyncSession,
    claim: Claim,
    *,
    category: str,
    amount: Decimal,
    currency: str,
    rate: Decimal,
    eur: Decimal,
    quantity: Decimal | None,
    distance_km: int | None,
    note: str,
    now: datetime,
    rate_month: str | None = None,
) -> ClaimLine:
    position = int(
        await session.scalar(
            select(func.coalesce(func.max(ClaimLine.position), 0)).where(
                ClaimLine.claim_id == claim.id
            )
        )
        or 0
    )
    line = ClaimLine(
        claim_id=claim.id,
        position=position + 1,
        category=category,
        amount=amount,
        currency=currency,
        rate=rate,
        rate_month=rate_month,
        eur=eur,
        quantity=quantity,
        distance_km=distance_km,
        note=note,
        cap=None,
        allowed=eur,
        flags=[],
        receipt_name="",
        receipt_mimetype="",
        created_at=now,
    )
    session.add(line)
    await session.flush()
    return line


async def remove_line(session: AsyncSession, claim: Claim, position: int) -> bool:
    """Delete line ``position`` and renumber the ones after it; False if there is none."""
    lines = await lines_of(session, claim.id)
    target = next((line for line in lines if line.position == position), None)
    if target is None:
        return False
    await session.delete(target)
    await session.flush()
    for line in lines:
        if line.position > position:
            line.position -= 1
    await session.flush()
    return True


async def attach_receipt(
    session: AsyncSession,
    line: ClaimLine,
    *,
    url: str,
    name: str,
    mimetype: str,
    size: int | None,
    event_id: str,
    file: dict[str, Any] | None = None,
) -> None:
    line.receipt_url = url
    line.receipt_file = file
    line.receipt_name = name[:255]
    line.receipt_mimetype = mimetype[:100]
    line.receipt_size = size
    line.receipt_event_id = event_id
    await session.flush()


def record_assessment(
    claim: Claim,
    lines: Sequence[ClaimLine],
    assessed: Sequence[tuple[Decimal | None, Decimal, list[str]]],
    *,
    claimed: Decimal,
    allowed: Decimal,
) -> None:
    """Store the rules' verdict: per line (cap, allowed, flags) and the claim's totals."""
    for line, (cap, line_allowed, flags) in zip(lines, assessed, strict=True):
        line.cap = cap
        line.allowed = line_allowed
        line.flags = list(flags)
    claim.claimed = claimed
    claim.allowed = allowed


def record_approval(
    claim: Claim, lines: Sequence[ClaimLine], shares: Sequence[Decimal], total: Decimal
) -> None:
    for line, share in zip(lines, shares, strict=True):
        line.approved = share
    claim.approved = total


# --- exchange rates ------------------------------------------------------------------------


class ExchangeRate(Base):
    """The Commission's monthly accounting rate (InforEuro) of one currency: units of the
    currency per 1 EUR in ``month``, as fetched from ``claims.rates_url``."""

    __tablename__ = "exchange_rates"
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    """``2026-05``."""
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    rate: Mapped[Decimal] = mapped_column(DecimalText)
    source: Mapped[str] = mapped_column(Text, default="")
    """Where it was fetched from."""
    fetched_at: Mapped[datetime] = mapped_column()


@dataclass(frozen=True)
class StoredRate:
    currency: str
    rate: Decimal
    month: str


async def save_rates(
    session: AsyncSession, month: str, rates: dict[str, Decimal], *, source: str, now: datetime
) -> int:
    """Store (or refresh) one month's rates; an upsert, so two processes may do it at once.
    Returns how many currencies were written."""
    if not rates:
        return 0
    insert = insert_for(session)
    rows = [
        {
            "month": month,
            "currency": code,
            "rate": rate,
            "source": source,
            "fetched_at": now,
        }
        for code, rate in sorted(rates.items())
    ]
    stmt = insert(ExchangeRate).values(rows)
    stmt = stmt.on_conflict_do_update(
        index_elements=["month", "currency"],
        set_={
            "rate": stmt.excluded.rate,
            "source": stmt.excluded.source,
            "fetched_at": stmt.excluded.fetched_at,
        },
    )
    await session.execute(stmt)
    return len(rows)


async def months_with_rates(session: AsyncSession) -> list[str]:
    """Every month with stored rates, oldest first."""
    rows = await session.scalars(select(ExchangeRate.month).distinct().order_by(ExchangeRate.month))
    return list(rows.all())


async def rate_for(session: AsyncSession, currency: str, month: str) -> StoredRate | None:
    """The rate of ``currency`` for ``month``; without one, the latest stored before it;
    without that either, the earliest after it (the caller says which month it used)."""
    base = select(ExchangeRate).where(ExchangeRate.currency == currency)
    found = await session.scalar(
        base.where(ExchangeRate.month <= month).order_by(ExchangeRate.month.desc()).limit(1)
    )
    if found is None:
        found = await session.scalar(
            base.where(ExchangeRate.month > month).order_by(ExchangeRate.month).limit(1)
        )
    if found is None:
        return None
    return StoredRate(found.currency, found.rate, found.month)


async def known_currencies(session: AsyncSession) -> list[str]:
    rows = await session.scalars(
        select(ExchangeRate.currency).distinct().order_by(ExchangeRate.currency)
    )
    return list(rows.all())


# --- privacy: erasure and retention ------------------------------------------------------------


def closed_at(claim: Claim) -> datetime | None:
    """When a claim was settled for good (paid, rejected or withdrawn); None while open.
    Its retention period runs from then."""
    if claim.status == PAID:
        return claim.paid_at
    if claim.status == REJECTED:
        return claim.decided_at
    if claim.status == WITHDRAWN:
        return claim.withdrawn_at
    return None


@dataclass(frozen=True)
class KeptClaim:
    """A claim kept, under a pseudonym, after its claimant's data was erased."""

    code: str
    status: str
    until: datetime | None
    """When it is deleted; None while it is approved and not yet paid (then it is kept
    until the retention period after the payment ends)."""
    withdrawn_now: bool = False


async def _delete_claims(session: AsyncSession, claim_ids: Sequence[int]) -> None:
    if claim_ids:
        await session.execute(delete(ClaimLine).where(ClaimLine.claim_id.in_(list(claim_ids))))
        await session.execute(delete(Claim).where(Claim.id.in_(list(claim_ids))))


async def pseudonymise(
    session: AsyncSession, user_id: str, pseudonym: str, *, retention: timedelta, now: datetime
) -> tuple[list[KeptClaim], int]:
    """Erase a claimant's identity from their claims (returns the kept claims and how many
    were deleted).

    Drafts (never submitted) are no financial record: they are deleted. A submitted claim
    still waiting for a decision is withdrawn (its claimant can no longer follow it up).
    Every other claim is kept with ``pseudonym`` instead of the Matrix ID until ``retention``
    after it was settled. Decisions and payments the person recorded as a moderator keep
    the pseudonym too.
    """
    kept: list[KeptClaim] = []
    drafts: list[int] = []
    for claim in await claims_of(session, user_id):
        if claim.submitted_at is None:
            drafts.append(claim.id)
            continue
        withdrawn_now = claim.status == SUBMITTED
        if withdrawn_now:
            claim.status = WITHDRAWN
            claim.withdrawn_at = now
            claim.updated_at = now
        claim.user_id = pseudonym
        settled = closed_at(claim)
        until = settled + retention if settled is not None else None
        kept.append(KeptClaim(claim.code, claim.status, until, withdrawn_now))
    await session.flush()
    await _delete_claims(session, drafts)
    for column in (Claim.decided_by, Claim.paid_by):
        await session.execute(update(Claim).where(column == user_id).values({column: pseudonym}))
    return sorted(kept, key=lambda k: int(k.code[1:])), len(drafts)


async def delete_settled_before(session: AsyncSession, cutoff: datetime) -> list[Claim]:
    """Delete (with their lines) the claims settled before ``cutoff``; returns them."""
    rows = await session.scalars(
        select(Claim).where(
            or_(
                and_(Claim.status == PAID, Claim.paid_at < cutoff),
                and_(Claim.status == REJECTED, Claim.decided_at < cutoff),
                and_(Claim.status == WITHDRAWN, Claim.withdrawn_at < cutoff),
            )
        )
    )
    gone = list(rows.all())
    await _delete_claims(session, [claim.id for claim in gone])
    return gone


def _summary(claim: Claim) -> dict[str, Any]:
    return {
        "claim": claim.code,
        "event": f"E{claim.event_id}",
        "cop": claim.cop_code,
        "status": claim.status,
        "claimed_eur": str(claim.claimed),
        "approved_eur": None if claim.approved is None else str(claim.approved),
    }


async def data_of(session: AsyncSession, user_id: str) -> list[dict[str, Any]]:
    """Everything stored about a person's claims (for ``!mydata``)."""
    claims = await claims_of(session, user_id)
    lines = await lines_of_claims(session, [claim.id for claim in claims])
    out = []
    for claim in claims:
        item = _summary(claim)
        item["lines"] = [
            {
                "category": line.category,
                "amount": str(line.amount),
                "currency": line.currency,
                "eur": str(line.eur),
                "note": line.note,
                "receipt": line.receipt_name or None,
            }
            for line in lines[claim.id]
        ]
        out.append(item)
    return out
