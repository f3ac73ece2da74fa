"""The claims CSV for finance (``!export claims``, management room only): one row per
expense line of every submitted, decided or paid claim, adding up to the cent."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from commands.claims.render import days_of, plain_number
from commands.context import Context
from commands.export import csv_bytes, exporter
from commands.registry import Place
from storage import claims as store
from storage import events as events_store
from storage.claims import Status

CSV_COLUMNS = (
    "claim",
    "status",
    "cop",
    "event",
    "event_title",
    "event_last_day",
    "claimant",
    "organisation",
    "country",
    "line",
    "category",
    "note",
    "quantity",
    "distance_km",
    "amount",
    "currency",
    "rate_per_eur",
    "rate_month",
    "amount_eur",
    "cap_eur",
    "allowed_eur",
    "approved_eur",
    "receipt",
    "flags",
    "claim_claimed_eur",
    "claim_allowed_eur",
    "claim_approved_eur",
    "submitted_at",
    "decided_by",
    "decided_at",
    "reason",
    "paid_at",
)
EXPORTED = (Status.SUBMITTED, Status.APPROVED, Status.REJECTED, Status.PAID)


def _stamp(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


def _money_cell(value: Decimal | None) -> str:
    return "" if value is None else f"{value:.2f}"


async def claims_csv(ctx: Context, cops: set[str] | None) -> tuple[bytes, int]:
    """The CSV for finance: one row per line of every submitted, decided or paid claim.

    Money is written with a dot and two decimals and no thousands separators. Per claim,
    ``amount_eur``, ``allowed_eur`` and ``approved_eur`` of its rows add up exactly to
    ``claim_claimed_eur``, ``claim_allowed_eur`` and ``claim_approved_eur`` (a rejected
    claim: 0.00; a claim still waiting for a decision: empty).
    """
    claims = await store.claims_with_status(ctx.session, EXPORTED, cops)
    lines = await store.lines_of_claims(ctx.session, [claim.id for claim in claims])
    people = await events_store.profiles(ctx.session, {claim.user_id for claim in claims})
    rows: list[list[object]] = []
    for claim in claims:
        event = await events_store.get_event(ctx.session, claim.event_id)
        person = people.get(claim.user_id)
        rejected = claim.status == Status.REJECTED
        approved_total = Decimal("0.00") if rejected else claim.approved
        for line in lines[claim.id]:
            approved = Decimal("0.00") if rejected else line.approved
            rows.append(
                [
                    claim.code,
                    claim.status,
                    claim.cop_code,
                    f"E{claim.event_id}",
                    event.title if event else "",
                    days_of(event)[-1].isoformat() if event else "",
                    claim.user_id,
                    person.org if person and person.org else "",
                    person.country if person and person.country else "",
                    line.position,
                    line.category,
                    line.note,
                    "" if line.quantity is None else plain_number(line.quantity),
                    "" if line.distance_km is None else line.distance_km,
                    _money_cell(line.amount),
                    line.currency,
                    str(line.rate),
                    line.rate_month or "",
                    _money_cell(line.eur),
                    _money_cell(line.cap),
                    _money_cell(line.allowed),
                    _money_cell(approved),
                    line.receipt_name if line.has_receipt else "",
                    "; ".join(line.flags),
                    _money_cell(claim.claimed),
                    _money_cell(claim.allowed),
                    _money_cell(approved_total),
                    _stamp(claim.submitted_at),
                    claim.decided_by or "",
                    _stamp(claim.decided_at),
                    claim.reason,
                    _stamp(claim.paid_at),
                ]
            )
    return csv_bytes(CSV_COLUMNS, rows), len(rows)


@exporter(
    "claims",
    "travel claims (one row per expense line)",
    places=Place.MANAGEMENT,
    label="Travel claims",
)
async def export_claims(ctx: Context, cops: list[str]) -> tuple[str, bytes]:
    """``!export claims [COP]``: in the management room only, never in a shared room."""
    data, _ = await claims_csv(ctx, set(cops))
    return "claims", data
