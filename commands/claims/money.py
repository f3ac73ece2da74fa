"""Money in travel claims: exact decimals, never ``float``.

Every rounding is ``ROUND_HALF_UP`` to the cent, the rule of Council Regulation (EC) No
1103/97 (Art. 5) for euro amounts: what finance staff expect and what a calculator shows.
Each line is rounded once, when it is converted to euros; totals are sums of rounded
lines, so a claim's total is always exactly the sum of its lines, to the cent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation

from config.claims import ClaimsConfig

CENT = Decimal("0.01")
ROUNDING = ROUND_HALF_UP
MAX_AMOUNT = Decimal("999999999.99")
"""The largest amount a line may have (and what fits the database column)."""


class MoneyError(ValueError):
    """An amount, currency or line is not acceptable; the message says why, plainly."""


# --- money -----------------------------------------------------------------------------------


def cents(value: Decimal | int | str) -> Decimal:
    """Round to the cent, half up."""
    return Decimal(value).quantize(CENT, rounding=ROUNDING)


def fmt(amount: Decimal, currency: str = "EUR") -> str:
    """``EUR 1,234.50`` — the currency code first, as on an invoice."""
    return f"{currency} {cents(amount):,.2f}"


_AMOUNT_RE = re.compile(r"^(\d{1,9})(?:[.,](\d{1,2}))?$")


def parse_amount(token: str, what: str = "amount") -> Decimal:
    """An amount as people type it: ``120``, ``120.5``, ``120,50`` (decimal comma).

    Refuses thousands separators, more than two decimals, signs and anything else, with a
    message that says how to write it.
    """
    raw = token.strip().replace("\u00a0", "").replace(" ", "")
    raw = raw.removeprefix("€").removesuffix("€")
    match = _AMOUNT_RE.match(raw)
    if not match:
        if re.match(r"^\d+[.,]\d{3,}$", raw):
            raise MoneyError(
                f"{token!r} has more than two decimals; write the {what} with at most two, "
                "e.g. 1234.50 (no thousands separators)"
            )
        if raw.startswith("-"):
            raise MoneyError(f"the {what} cannot be negative")
        raise MoneyError(f"{token!r} is not an {what}; write it like 120 or 120.50")
    whole, frac = match.group(1), match.group(2) or "0"
    return cents(Decimal(f"{whole}.{frac}"))


@dataclass(frozen=True)
class Conversion:
    amount: Decimal
    """As claimed, in ``currency``."""
    currency: str
    rate: Decimal
    """Units of ``currency`` per 1 EUR."""
    eur: Decimal

    def describe(self) -> str:
        if self.currency == "EUR":
            return fmt(self.eur)
        return f"{fmt(self.amount, self.currency)} = {fmt(self.eur)} (at {self.rate} per EUR)"


def convert(
    amount: Decimal, currency: str, rules: ClaimsConfig, rate: Decimal | None = None
) -> Conversion:
    """Convert to EUR at the configured rate (or ``rate``, the one a stored line was added
    with), rounded half up to the cent."""
    code = currency.strip().upper()
    if rate is None:
        rate = rules.rates.get(code)
    if rate is None:
        raise MoneyError(
            f"{currency} is not a currency I have a rate for; I know "
            f"{', '.join(rules.currencies)}. Ask the Secretariat to add it, or give the "
            "amount in EUR"
        )
    eur = amount if code == "EUR" else cents(amount / rate)
    return Conversion(amount=cents(amount), currency=code, rate=rate, eur=cents(eur))


def allocate(total: Decimal, weights: Sequence[Decimal]) -> list[Decimal]:
    """Split ``total`` over lines in proportion to ``weights``, in whole cents, so that the
    parts add up to ``total`` exactly (largest remainder; ties go to the earlier line)."""
    if not weights:
        return []
    total = cents(total)
    units = int(total / CENT)
    base = [w if w > 0 else Decimal(0) for w in weights]
    weight_sum = sum(base, Decimal(0))
    if weight_sum == 0:
        base = [Decimal(1)] * len(weights)
        weight_sum = Decimal(len(weights))
    exact = [Decimal(units) * w / weight_sum for w in base]
    floors = [int(x.to_integral_value(rounding=ROUND_DOWN)) for x in exact]
    left = units - sum(floors)
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - floors[i]), i))
    for index in order[:left]:
        floors[index] += 1
    return [Decimal(unit) * CENT for unit in floors]


def is_amount(token: str) -> bool:
    try:
        parse_amount(token)
    except (MoneyError, InvalidOperation):
        return False
    return True
