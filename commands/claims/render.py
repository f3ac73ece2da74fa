"""How claims are written: the event line, each expense line with its caps and flags, the
whole claim and the next step; and :func:`assess`, which applies the rules to a draft."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from zoneinfo import ZoneInfo

from commands.claims.access import Loaded
from commands.claims.rates import month_name
from commands.claims.rules import ClaimCheck, LineInput, check_claim, deadline_day, event_days, fmt
from commands.context import Context
from commands.text import Message, plural
from config.claims import ClaimsConfig
from storage import claims as store
from storage import events as events_store
from storage.claims import ClaimLine, Status
from storage.events import Event


def days_of(event: Event) -> list[date]:
    return event_days(event.starts_at, event.ends_at, ZoneInfo(event.timezone))


def hours_of(event: Event) -> Decimal:
    """How long the event lasts, in hours."""
    seconds = int((event.ends_at - event.starts_at).total_seconds())
    return Decimal(max(seconds, 0)) / Decimal(3600)


def when(event: Event) -> str:
    days = days_of(event)
    if len(days) == 1:
        return days[0].isoformat()
    return f"{days[0].isoformat()} to {days[-1].isoformat()}"


def event_line(event: Event) -> Message:
    return (
        Message().bold(f"E{event.id}").text(f" “{event.title}” ({event.cop_code}, {when(event)})")
    )


def inputs(lines: Sequence[ClaimLine]) -> list[LineInput]:
    return [
        LineInput(
            category=line.category,
            amount=line.amount,
            currency=line.currency,
            quantity=line.quantity,
            distance_km=line.distance_km,
            note=line.note,
            has_receipt=line.has_receipt,
            rate=line.rate,
        )
        for line in lines
    ]


def assess(ctx: Context, loaded: Loaded) -> ClaimCheck:
    """Apply the rules to a draft and store the verdict (caps, flags, totals)."""
    claim = loaded.claim
    if claim.status == Status.DRAFT:
        claim.days = max(len(days_of(loaded.event)), 1)
    check = check_claim(
        inputs(loaded.lines), ctx.settings.claims, claim.days, hours_of(loaded.event)
    )
    store.record_assessment(
        claim,
        loaded.lines,
        [(item.cap, item.allowed, list(item.flags)) for item in check.lines],
        claimed=check.claimed,
        allowed=check.allowed,
    )
    return check


def plain_number(value: Decimal) -> str:
    """``350`` for 350.00, ``12.5`` for 12.50."""
    return f"{value.normalize():f}"


def describe_line(line: ClaimLine, rules: ClaimsConfig) -> Message:
    msg = Message().text(f"{line.position}. ").bold(line.category)
    if line.category == "car" and line.quantity is not None:
        msg.text(f", {plain_number(line.quantity)} km at {fmt(rules.car_rate_per_km)}")
    elif line.category == "accommodation" and line.quantity is not None:
        nights = int(line.quantity)
        msg.text(f", {plural(nights, 'night')}")
    elif line.category == "daily-allowance" and line.quantity is not None:
        days = line.quantity
        msg.text(f", {plain_number(days)} day{'s' if days != 1 else ''}")
    if line.distance_km is not None:
        msg.text(f", {line.distance_km} km one way")
    msg.text(" — ")
    if line.currency == "EUR":
        msg.text(fmt(line.eur))
    else:
        source = (
            f"InforEuro rate of {month_name(line.rate_month)}"
            if line.rate_month
            else "rate set by the Secretariat"
        )
        msg.text(
            f"{fmt(line.amount, line.currency)} = {fmt(line.eur)} "
            f"(at {line.rate} {line.currency} per EUR, {source})"
        )
    if line.note:
        msg.text(" · ").italic(line.note)
    if line.allowed < line.eur:
        msg.text(" · ").bold(f"capped at {fmt(line.allowed)}")
    for flag in line.flags:
        msg.br().text(f"   ⚠ {flag}")
    if line.has_receipt:
        msg.br().text("   receipt: ").text(line.receipt_name or "attached")
    elif line.category in rules.receipt_required:
        msg.br().text("   ⚠ needs a receipt")
    if line.approved is not None:
        msg.br().text(f"   approved: {fmt(line.approved)}")
    return msg


async def claim_message(ctx: Context, loaded: Loaded, *, heading: str | None = None) -> Message:
    claim, event, rules = loaded.claim, loaded.event, ctx.settings.claims
    msg = Message()
    if heading:
        msg.text(heading).para()
    msg.bold(f"Claim {claim.code}").text(f" · {claim.status} · ").append(event_line(event))
    if not loaded.actor.is_owner:
        profile = (await events_store.profiles(ctx.session, [claim.user_id])).get(claim.user_id)
        msg.br().text(f"Claimant: {claim.user_id}")
        if profile is not None and profile.org:
            msg.text(f" ({profile.org}, {profile.country or '?'})")
    if loaded.lines:
        msg.bullets(describe_line(line, rules) for line in loaded.lines)
    else:
        msg.br().text("No expenses yet.")
        msg.br()
    msg.text(f"Total: {fmt(claim.claimed)} claimed")
    if claim.allowed != claim.claimed:
        msg.text(f", {fmt(claim.allowed)} after the caps")
    msg.text(".")
    if claim.approved is not None:
        msg.br().bold(f"Approved: {fmt(claim.approved)}")
    if claim.reason:
        label = "Reason for the rejection" if claim.status == Status.REJECTED else "Reason"
        msg.br().text(f"{label}: ").text(claim.reason)
    if claim.decided_by:
        when = claim.decided_at.date().isoformat() if claim.decided_at else ""
        msg.br().text(f"Decided by {claim.decided_by} on {when}.")
    if claim.paid_at is not None:
        msg.br().text(f"Paid on {claim.paid_at.date().isoformat()}.")
    return msg


def next_steps(ctx: Context, loaded: Loaded, check: ClaimCheck | None) -> Message:
    claim, prefix = loaded.claim, ctx.prefix
    msg = Message()
    if claim.status != Status.DRAFT or not loaded.actor.is_owner:
        return msg
    last = deadline_day(days_of(loaded.event)[-1], ctx.settings.claims)
    if check is not None and check.blocking and loaded.lines:
        missing = [item for item in check.lines if item.needs_receipt]
        if missing:
            first = missing[0].number
            msg.text("Next: upload the receipt (photo or PDF) here and reply to it with ")
            msg.code(f"{prefix}claim attach {claim.code} {first}").text(". ")
    else:
        msg.text("Add more with ").code(f"{prefix}claim add {claim.code} <category> <amount>")
        msg.text(", or send it with ").code(f"{prefix}claim submit {claim.code}").text(". ")
    msg.text(f"Submit by {last.isoformat()} ({loaded.event.timezone} time).")
    return msg
