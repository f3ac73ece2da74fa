"""``[claims]``: the travel reimbursement rules. Every figure lives here, with the defaults
of the Commission's rules for experts (Decision C(2007)5858 as updated)."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator, model_validator

from config.events import EVENT_KINDS, IN_PERSON_KINDS
from config.models import DAYS_PER_YEAR, Duration, _Section, only_known, upper_keys

CATEGORIES = ("rail", "air", "car", "accommodation", "daily-allowance", "other")
"""Every category the bot knows how to price. ``categories`` picks the allowed ones."""

CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
INFOREURO_URL = (
    "https://ec.europa.eu/budg/inforeuro/api/public/monthly-rates?lang=EN&year={year}&month={month}"
)
"""The Commission's published monthly accounting rates (InforEuro), as JSON."""


def _exact_decimal(value: Any, places: int, what: str) -> Decimal:
    """A Decimal from TOML: strings and integers as written, floats via their shortest
    decimal form (TOML ``0.22`` is the float 0.2200000000000000011…, which must not leak)."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number")
    if isinstance(value, float):
        value = repr(value)
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{what} must be a number such as 0.22") from None
    if not number.is_finite():
        raise ValueError(f"{what} must be a finite number")
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > places:
        raise ValueError(f"{what} has more than {places} decimal places")
    return number


def _money(value: Any) -> Decimal:
    number = _exact_decimal(value, 2, "an amount in EUR")
    if number < 0:
        raise ValueError("an amount in EUR cannot be negative")
    return number.quantize(Decimal("0.01"))


def _rate(value: Any) -> Decimal:
    number = _exact_decimal(value, 6, "an exchange rate")
    if number <= 0:
        raise ValueError("an exchange rate must be above zero")
    return number


Money = Annotated[Decimal, BeforeValidator(_money)]
Rate = Annotated[Decimal, BeforeValidator(_rate)]


def _default_rates() -> dict[str, Decimal]:
    return {"EUR": Decimal(1)}


class ClaimsConfig(_Section):
    """Travel-expense claims. Amounts are euros with cents; rates are per 1 EUR."""

    deadline_days: int = Field(30, ge=1, le=366)
    """Claims are made and submitted within this many calendar days after the event's
    last day, counted in the event's time zone."""
    eligible_kinds: list[str] = Field(default_factory=lambda: list(IN_PERSON_KINDS))
    """Event kinds travel can be claimed for."""
    categories: list[str] = Field(default_factory=lambda: list(CATEGORIES))
    """Expense categories that may be claimed."""
    receipt_required: list[str] = Field(default_factory=lambda: ["rail", "air", "accommodation"])
    """Categories whose lines need a receipt before the claim can be submitted."""
    refused: dict[str, str] = Field(
        default_factory=lambda: {
            "taxi": "Taxis are not reimbursed under the Commission's rules for experts. "
            "Public transport can be claimed as rail or other."
        }
    )
    """Categories people may try that are never reimbursed, with the rule to quote."""
    rail_max_km: int = Field(400, ge=0, le=100_000)
    """Rail up to this one-way distance, economy air beyond: an air line for a shorter
    trip (when a distance is given) is flagged for the moderator."""
    car_rate_per_km: Money = Decimal("0.22")
    daily_allowance: Money = Decimal("113.00")
    """Per meeting day."""
    accommodation_per_night: Money = Decimal("168.00")
    """Cap per night, pooled over the claim's accommodation lines."""
    travel_nights: int = Field(1, ge=0, le=7)
    """Nights allowed besides the event's own (its days minus one): the night before the
    first day or after the last, when the journey needs it. A one-day meeting: one night."""
    short_meeting_hours: Decimal = Field(Decimal(4), ge=0, le=24)
    """An event shorter than this (in total) is no full meeting day: its daily allowance is
    ``short_meeting_share`` of one day's. 0 turns the rule off."""
    short_meeting_share: Decimal = Field(Decimal("0.5"), ge=0, le=1)
    rates_url: str = INFOREURO_URL
    """Where the monthly rates are fetched (``{year}`` and ``{month}`` are filled in); empty:
    never fetched, only ``rates`` are used."""
    rates_every: Duration = timedelta(hours=6)
    """How often the rates job looks for a month it does not have yet."""
    rates: dict[str, Rate] = Field(default_factory=_default_rates)
    """A manual override: a rate given here (units of the currency one euro buys, the
    InforEuro convention, e.g. ``SEK = 11.05``) is used for every month instead of the
    fetched one."""
    retention: Duration = timedelta(days=5 * DAYS_PER_YEAR)
    """Claims are financial records: a claim is deleted this long after it was paid,
    rejected or withdrawn (the Financial Regulation asks for at least five years)."""

    @field_validator("eligible_kinds")
    @classmethod
    def _known_kinds(cls, value: list[str]) -> list[str]:
        return only_known(value, EVENT_KINDS, "event kind(s)")

    @field_validator("categories", "receipt_required")
    @classmethod
    def _known_categories(cls, value: list[str]) -> list[str]:
        return only_known(value, CATEGORIES, "categor(y/ies)")

    @field_validator("refused")
    @classmethod
    def _refused_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, rule in value.items():
            if not re.match(r"^[a-z][a-z0-9\-]*$", name):
                raise ValueError(f"{name!r}: use lower-case words such as taxi")
            if not rule.strip():
                raise ValueError(f"{name!r}: give the rule to quote when it is refused")
        return value

    @field_validator("short_meeting_hours", "short_meeting_share", mode="before")
    @classmethod
    def _exact(cls, value: Any) -> Decimal:
        return _exact_decimal(value, 2, "this value")

    @field_validator("rates_url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip()
        if value and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http(s) address, or empty to fetch no rates")
        return value

    @field_validator("rates", mode="before")
    @classmethod
    def _currency_codes(cls, value: Any) -> Any:
        return upper_keys(value, CURRENCY_RE, "a three-letter currency code such as SEK")

    @model_validator(mode="after")
    def _consistent(self) -> ClaimsConfig:
        if not self.categories:
            raise ValueError("categories: allow at least one category")
        if not self.eligible_kinds:
            raise ValueError("eligible_kinds: allow at least one event kind")
        extra = [cat for cat in self.receipt_required if cat not in self.categories]
        if extra:
            raise ValueError(
                f"receipt_required names {', '.join(extra)}, which is not in categories"
            )
        clash = [name for name in self.refused if name in self.categories]
        if clash:
            raise ValueError(f"{', '.join(clash)} cannot be both allowed and refused")
        eur = self.rates.get("EUR")
        if eur is not None and eur != 1:
            raise ValueError("rates.EUR must be 1 (amounts are converted to EUR)")
        self.rates.setdefault("EUR", Decimal(1))
        if self.retention < timedelta(days=1):
            raise ValueError("retention must be at least 1d, e.g. 5y")
        return self

    @property
    def currencies(self) -> list[str]:
        """Accepted currency codes, EUR first."""
        return ["EUR", *sorted(code for code in self.rates if code != "EUR")]
