"""The travel-claim rules as pure functions: pricing and caps, eligibility, and the claim's
state machine (money is in :mod:`commands.claims.money`). No database and no Matrix here,
so every rule is easy to test.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

from commands.claims.money import (
    MAX_AMOUNT,
    Conversion,
    MoneyError,
    allocate,
    cents,
    convert,
    fmt,
    is_amount,
    parse_amount,
)
from commands.roles import Role
from commands.text import plural
from config.claims import ClaimsConfig
from storage.claims import Status
from storage.events import claim_deadline_at, claim_deadline_day

__all__ = [
    "MAX_AMOUNT",
    "Conversion",
    "MoneyError",
    "allocate",
    "cents",
    "convert",
    "fmt",
    "is_amount",
    "parse_amount",
]


# --- lines and caps --------------------------------------------------------------------------


@dataclass(frozen=True)
class LineInput:
    """One expense as stored: what the claimant gave."""

    category: str
    amount: Decimal
    """In ``currency``; for ``car`` the price of the distance (km × rate), in EUR."""
    currency: str = "EUR"
    quantity: Decimal | None = None
    """Kilometres for car; nights for accommodation; days for daily allowance."""
    distance_km: int | None = None
    """One-way distance of a rail or air trip, if given."""
    note: str = ""
    has_receipt: bool = False
    rate: Decimal | None = None
    """The rate the line was added with; None: today's rate from the configuration."""


@dataclass(frozen=True)
class LineCheck:
    """A line after the rules: its EUR amount, any cap, and what may be paid."""

    number: int
    line: LineInput
    conversion: Conversion
    cap: Decimal | None
    allowed: Decimal
    flags: tuple[str, ...] = ()
    needs_receipt: bool = False

    @property
    def eur(self) -> Decimal:
        return self.conversion.eur

    @property
    def capped(self) -> bool:
        return self.allowed < self.eur


@dataclass(frozen=True)
class ClaimCheck:
    lines: tuple[LineCheck, ...]
    claimed: Decimal
    allowed: Decimal
    blocking: tuple[str, ...] = ()
    """Why the claim cannot be submitted as it is (empty: it can)."""

    @property
    def flagged(self) -> list[LineCheck]:
        return [line for line in self.lines if line.flags]


def car_amount(km: Decimal, rules: ClaimsConfig) -> Decimal:
    return cents(km * rules.car_rate_per_km)


def event_days(start: datetime, end: datetime, tz: ZoneInfo) -> list[date]:
    """The calendar days an event touches in its time zone (an end at midnight does not
    count the next day)."""
    first = start.astimezone(tz).date()
    last_moment = max(end, start + timedelta(microseconds=1)) - timedelta(microseconds=1)
    last = max(last_moment.astimezone(tz).date(), first)
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]


def default_nights(days: int) -> int:
    """Nights of an event of ``days`` days (a one-day meeting: one night)."""
    return max(days - 1, 1)


def allowed_nights(days: int, rules: ClaimsConfig) -> int:
    """The nights the rules pay for an event of ``days`` calendar days: the nights between
    its days, plus ``travel_nights`` for the journey (at least one night)."""
    return max(max(days, 1) - 1 + rules.travel_nights, 1)


def allowance_days(days: int, hours: Decimal | None, rules: ClaimsConfig) -> Decimal:
    """Meeting days the daily allowance is paid for: one per day of the event, or
    ``short_meeting_share`` of one for an event shorter than ``short_meeting_hours``."""
    if short_meeting(hours, rules):
        return rules.short_meeting_share
    return Decimal(max(days, 1))


def short_meeting(hours: Decimal | None, rules: ClaimsConfig) -> bool:
    limit = rules.short_meeting_hours
    return bool(hours is not None and limit and hours < limit)


def check_claim(
    lines: Sequence[LineInput], rules: ClaimsConfig, days: int, hours: Decimal | None = None
) -> ClaimCheck:
    """Apply every rule: convert, cap, flag, and say what blocks submission.

    Accommodation is capped over the whole claim: the nights claimed (each line's
    ``nights=``; a line without it may cover every night the event allows), never more than
    the event allows, times the nightly cap; more nights than allowed (a line without
    ``nights=`` counting one) are flagged. The daily allowance is capped at the meeting
    days (see :func:`allowance_days`) times the daily rate. ``hours``: the event's length.
    """
    checked: list[LineCheck] = []
    allowance_left = cents(rules.daily_allowance * allowance_days(days, hours, rules))
    may_stay = allowed_nights(days, rules)
    stays = [line for line in lines if line.category == "accommodation"]
    nights_claimed = sum(int(line.quantity) if line.quantity else 1 for line in stays)
    if any(not line.quantity for line in stays):
        nights_paid = may_stay  # a bill without nights= may cover every night allowed
    else:
        nights_paid = min(nights_claimed, may_stay)
    pool = cents(rules.accommodation_per_night * nights_paid)
    stay_left = pool
    too_many_nights = nights_claimed > may_stay
    for number, line in enumerate(lines, start=1):
        conversion = convert(line.amount, line.currency, rules, line.rate)
        flags: list[str] = []
        cap: Decimal | None = None
        allowed = conversion.eur
        if line.category == "accommodation":
            cap = stay_left
            if too_many_nights:
                flags.append(
                    f"{plural(nights_claimed, 'night')} claimed, but the event allows "
                    f"{plural(may_stay, 'night')} ({plural(max(days, 1), 'day')} plus "
                    f"{plural(rules.travel_nights, 'travel night')})"
                )
            if conversion.eur > cap:
                flags.append(
                    f"over the accommodation cap of {fmt(rules.accommodation_per_night)} a "
                    f"night ({plural(nights_paid, 'night')}: {fmt(pool)} for the whole "
                    f"claim); capped at {fmt(cap)}"
                )
        elif line.category == "daily-allowance":
            cap = allowance_left
            if conversion.eur > cap:
                if short_meeting(hours, rules):
                    why = (
                        f"the event lasted under {plain(rules.short_meeting_hours)} hours, "
                        f"so it counts as {plain(rules.short_meeting_share)} of a meeting day"
                    )
                else:
                    why = f"{plural(days, 'meeting day')}"
                flags.append(
                    f"over the daily allowance of {fmt(rules.daily_allowance)} a meeting day "
                    f"({why}); capped at {fmt(cap)}"
                )
        elif (
            line.category == "air"
            and line.distance_km is not None
            and line.distance_km <= rules.rail_max_km
        ):
            flags.append(
                f"air travel for {line.distance_km} km one way: the rules pay rail up to "
                f"{rules.rail_max_km} km, so a moderator will check this fare"
            )
        if cap is not None:
            allowed = min(conversion.eur, cap)
        if line.category == "daily-allowance":
            allowance_left -= allowed
        if line.category == "accommodation":
            stay_left -= allowed
        needs_receipt = line.category in rules.receipt_required and not line.has_receipt
        checked.append(
            LineCheck(
                number=number,
                line=line,
                conversion=conversion,
                cap=cap,
                allowed=allowed,
                flags=tuple(flags),
                needs_receipt=needs_receipt,
            )
        )
    blocking: list[str] = []
    if not checked:
        blocking.append("the claim has no expenses yet")
    for item in checked:
        if item.needs_receipt:
            blocking.append(
                f"line {item.number} ({item.line.category}, {fmt(item.eur)}) needs a receipt"
            )
    return ClaimCheck(
        lines=tuple(checked),
        claimed=sum((item.eur for item in checked), Decimal("0.00")),
        allowed=sum((item.allowed for item in checked), Decimal("0.00")),
        blocking=tuple(blocking),
    )


def plain(value: Decimal) -> str:
    """``4`` for 4.00, ``0.5`` for 0.50."""
    return f"{value.normalize():f}"


def price_new_line(
    *,
    category: str,
    amount: Decimal | None,
    currency: str | None,
    rules: ClaimsConfig,
    days: int,
    quantity: Decimal | None = None,
    distance_km: int | None = None,
    note: str = "",
    hours: Decimal | None = None,
) -> LineInput:
    """Turn what the claimant typed into a line, or say what is wrong (the currency's rate
    is looked up by the caller)."""
    category = category.strip().lower()
    if category in rules.refused:
        raise MoneyError(rules.refused[category])
    if category not in rules.categories:
        raise MoneyError(
            f"{category!r} is not a category you can claim; use one of "
            f"{', '.join(rules.categories)}"
        )
    code = (currency or "EUR").upper()
    if category == "car":
        if amount is None:
            raise MoneyError("for car, give the distance driven in km, e.g. car 350")
        if currency is not None and code != "KM":
            raise MoneyError(
                "for car, give the distance in km (it is priced at "
                f"{fmt(rules.car_rate_per_km)} a km), not an amount of money"
            )
        return LineInput(
            category="car",
            amount=car_amount(amount, rules),
            currency="EUR",
            quantity=amount,
            note=note,
        )
    if category == "daily-allowance" and amount is None:
        meeting_days = allowance_days(days, hours, rules)
        return LineInput(
            category=category,
            amount=cents(rules.daily_allowance * meeting_days),
            currency="EUR",
            quantity=meeting_days,
            note=note,
        )
    if amount is None:
        raise MoneyError(f"give the amount you paid for {category}, e.g. {category} 120.50")
    if amount <= 0:
        raise MoneyError("the amount must be above zero")
    if category == "accommodation" and quantity is not None and quantity < 1:
        raise MoneyError("nights must be 1 or more")
    return LineInput(
        category=category,
        amount=amount,
        currency=code,
        quantity=quantity,
        distance_km=distance_km if category in ("rail", "air") else None,
        note=note,
    )


# --- eligibility -----------------------------------------------------------------------------


def deadline_day(last_day: date, rules: ClaimsConfig) -> date:
    """The last calendar day on which a claim may be made and submitted."""
    return claim_deadline_day(last_day, rules.deadline_days)


def within_deadline(now: datetime, last_day: date, tz: ZoneInfo, rules: ClaimsConfig) -> bool:
    """Is it still ``deadline_day`` or earlier, in the event's time zone?"""
    return now <= claim_deadline_at(last_day, tz, rules.deadline_days)


@dataclass(frozen=True)
class EventFacts:
    """What eligibility needs to know about one event and one person."""

    kind: str
    rsvp: str | None
    attended: bool
    days: list[date]
    tz: ZoneInfo
    cancelled: bool = False


def eligibility_problems(facts: EventFacts, now: datetime, rules: ClaimsConfig) -> list[str]:
    """Every reason the person cannot claim for the event (empty: they can)."""
    problems: list[str] = []
    if facts.cancelled:
        problems.append("the event was cancelled")
    if facts.kind not in rules.eligible_kinds:
        kinds = ", ".join(rules.eligible_kinds)
        problems.append(
            f"it is an {facts.kind.replace('-', ' ')}; travel is reimbursed only for "
            f"in-person events ({kinds})"
        )
    if facts.rsvp != "yes":
        problems.append(
            "you did not RSVP yes to it"
            if facts.rsvp is None
            else f"your RSVP is {facts.rsvp!r}, not yes"
        )
    if not facts.attended:
        problems.append("you are not marked as having attended (a moderator does that)")
    if facts.days and not within_deadline(now, facts.days[-1], facts.tz, rules):
        last = deadline_day(facts.days[-1], rules)
        problems.append(
            f"the deadline has passed: claims were due by {last.isoformat()} "
            f"({plural(rules.deadline_days, 'day')} after the event, {facts.tz.key} time)"
        )
    return problems


# --- the state machine -----------------------------------------------------------------------


class Action(StrEnum):
    EDIT = "edit"
    SUBMIT = "submit"
    WITHDRAW = "withdraw"
    APPROVE = "approve"
    REJECT = "reject"
    PAY = "pay"


OWNER_ACTIONS = frozenset({Action.EDIT, Action.SUBMIT, Action.WITHDRAW})
DECIDER_ACTIONS = frozenset({Action.APPROVE, Action.REJECT, Action.PAY})

TRANSITIONS: dict[Action, tuple[frozenset[Status], Status]] = {
    Action.EDIT: (frozenset({Status.DRAFT}), Status.DRAFT),
    Action.SUBMIT: (frozenset({Status.DRAFT}), Status.SUBMITTED),
    Action.WITHDRAW: (frozenset({Status.DRAFT, Status.SUBMITTED}), Status.WITHDRAWN),
    Action.APPROVE: (frozenset({Status.SUBMITTED}), Status.APPROVED),
    Action.REJECT: (frozenset({Status.SUBMITTED}), Status.REJECTED),
    Action.PAY: (frozenset({Status.APPROVED}), Status.PAID),
}
"""Action -> (the statuses it may start from, the status it leads to). Only forward."""

_VERB = {
    Action.EDIT: "changed",
    Action.SUBMIT: "submitted",
    Action.WITHDRAW: "withdrawn",
    Action.APPROVE: "approved",
    Action.REJECT: "rejected",
    Action.PAY: "marked paid",
}

_WHY_NOT = {
    Status.DRAFT: "it is still a draft that its owner has not submitted",
    Status.SUBMITTED: "it has been submitted and is waiting for a decision",
    Status.APPROVED: "it has been approved and is waiting to be paid",
    Status.REJECTED: "it was rejected, which is final",
    Status.PAID: "it has been paid, which is final",
    Status.WITHDRAWN: "it was withdrawn, which is final",
}


@dataclass(frozen=True)
class Actor:
    """Who acts on a claim: their role in the claim's CoP and whether the claim is theirs."""

    role: Role
    is_owner: bool = False


class TransitionRefused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def transition(status: Status, action: Action, actor: Actor, cop: str = "the CoP") -> Status:
    """The status after ``action``, or :class:`TransitionRefused` saying why not.

    Owners edit, submit and withdraw their own claims; moderators of the claim's CoP and
    admins approve, reject and mark paid, but never their own claims.
    """
    if action in OWNER_ACTIONS and not actor.is_owner:
        raise TransitionRefused(f"only the person who made a claim can have it {_VERB[action]}")
    if action in DECIDER_ACTIONS:
        if actor.role < Role.MODERATOR:
            raise TransitionRefused(
                f"only moderators of {cop} or the Secretariat can have a claim {_VERB[action]}"
            )
        if actor.is_owner:
            raise TransitionRefused(
                "you cannot decide on your own claim; another moderator or the Secretariat will"
            )
    sources, target = TRANSITIONS[action]
    if status not in sources:
        raise TransitionRefused(f"it cannot be {_VERB[action]} now: {_WHY_NOT[status]}")
    return target


def may_view(actor: Actor) -> bool:
    """Owners, moderators of the claim's CoP and admins may see a claim; nobody else."""
    return actor.is_owner or actor.role >= Role.MODERATOR


# --- small helpers -------------------------------------------------------------------------


@dataclass
class NoteParts:
    """Extras a claimant may put in the note: ``km=350`` (one-way distance) and
    ``nights=2`` (accommodation)."""

    note: str = ""
    distance_km: int | None = None
    nights: int | None = None
    unknown: list[str] = field(default_factory=list)


def split_note(words: Iterable[str]) -> NoteParts:
    parts = NoteParts()
    kept: list[str] = []
    for word in words:
        key, sep, value = word.partition("=")
        if sep and key.lower() in ("km", "nights"):
            if not value.isdigit() or int(value) <= 0 or int(value) > 100_000:
                raise MoneyError(f"{key.lower()}= needs a whole number above zero")
            if key.lower() == "km":
                parts.distance_km = int(value)
            else:
                parts.nights = int(value)
        else:
            kept.append(word)
    parts.note = " ".join(kept).strip()
    return parts
