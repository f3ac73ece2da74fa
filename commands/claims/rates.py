"""Exchange rates for travel claims: the Commission's monthly accounting rates (InforEuro).

An expense in another currency is converted at the rate of the month of the event it was
made for. The rates are fetched by a scheduled job from ``claims.rates_url`` and kept in the
database (``exchange_rates``); a rate in ``[claims.rates]`` of the configuration overrides
the fetched one for every month. A month without a rate yet uses the latest month known,
and the reply says so.

The format read is the one of the InforEuro service
(``https://ec.europa.eu/budg/inforeuro/api/public/monthly-rates?lang=EN&year=2026&month=5``):
a JSON list with one object per currency, of which ``isoA3Code`` (``"SEK"``) and ``value``
(units of the currency per 1 EUR, ``11.0225``) are used; everything else is ignored.

The job runs only in the active bot process (the scheduler starts once the lease is held);
storing a month is an upsert, so even two processes fetching at once store one copy. A
failed fetch is logged and tried again at the next run; nothing else depends on it.
"""

from __future__ import annotations

import calendar
import json
import logging
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession

from commands.services import Services
from config.claims import CURRENCY_RE, ClaimsConfig
from storage import claims as store

log = logging.getLogger(__name__)
JOB_ID = "claims-rates"
MAX_BODY = 2 * 1024 * 1024
TIMEOUT_SECONDS = 30
COMMON = frozenset(
    ("EUR", "SEK", "NOK", "DKK", "ISK", "PLN", "CZK", "HUF", "RON", "BGN", "CHF", "GBP")
)
"""Currencies members write in lower case too (``1450 sek``); any other code must be written
in capitals, so that a note word like ``all`` or ``top`` is never taken for one."""


class RatesError(Exception):
    """The rates could not be fetched or read; the message says why."""


# --- months ---------------------------------------------------------------------------------


def month_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def previous_month(month: str) -> str:
    first = date(int(month[:4]), int(month[5:7]), 1)
    return month_of(first - timedelta(days=1))


def month_name(month: str) -> str:
    """``May 2026`` for ``2026-05``."""
    return f"{calendar.month_name[int(month[5:7])]} {month[:4]}"


# --- choosing a rate ------------------------------------------------------------------------


@dataclass(frozen=True)
class RateChoice:
    currency: str
    rate: Decimal
    wanted: str
    """The month of the expense."""
    month: str | None
    """The month of the InforEuro rate used; None for EUR and for a configured rate."""

    @property
    def fallback(self) -> bool:
        """No rate of the expense's month yet: another month's was used."""
        return self.month is not None and self.month != self.wanted

    def fallback_note(self) -> str:
        assert self.month is not None
        return (
            f"The Commission has no {self.currency} rate for {month_name(self.wanted)} "
            f"that I know of yet, so I used the latest I have, of {month_name(self.month)}."
        )


def is_currency_word(token: str, rules: ClaimsConfig) -> bool:
    """Is ``token`` (after an amount) meant as a currency? Capitals always; lower case only
    for the common European currencies and those of the configuration."""
    upper = token.upper()
    if len(token) != 3 or not upper.isascii() or not upper.isalpha():
        return False
    return token.isupper() or upper in COMMON or upper in rules.rates


async def choose_rate(
    session: AsyncSession, rules: ClaimsConfig, currency: str, month: str
) -> RateChoice | None:
    """The rate for an expense in ``currency`` in ``month``, or None when there is none."""
    code = currency.upper()
    if code == "EUR":
        return RateChoice("EUR", Decimal(1), month, None)
    configured = rules.rates.get(code)
    if configured is not None:
        return RateChoice(code, configured, month, None)
    stored = await store.rate_for(session, code, month)
    if stored is None:
        return None
    return RateChoice(code, stored.rate, month, stored.month)


async def unknown_currency(session: AsyncSession, rules: ClaimsConfig, code: str) -> str:
    """What to say about a currency without a rate."""
    known = sorted((set(rules.rates) | set(await store.known_currencies(session))) - {"EUR"})
    if not known:
        have = "I have no exchange rates yet, so I can only take amounts in EUR"
    elif len(known) <= 12:
        have = f"I have rates for EUR, {', '.join(known)}"
    else:
        have = (
            f"I have the Commission's rates for {len(known)} currencies "
            f"(e.g. {', '.join(c for c in ('SEK', 'NOK', 'DKK', 'PLN', 'CHF') if c in known)})"
        )
    return (
        f"{code} is not a currency I have a rate for; {have}. Check the three-letter code, "
        "give the amount in EUR, or ask the Secretariat to add a rate"
    )


# --- fetching -------------------------------------------------------------------------------


def parse_rates(body: bytes | str) -> dict[str, Decimal]:
    """The rates in an InforEuro answer: currency code -> units per 1 EUR (EUR left out)."""
    try:
        data: Any = json.loads(body, parse_float=Decimal, parse_int=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RatesError(f"the answer is not JSON ({exc})") from None
    if isinstance(data, dict):
        message = data.get("message") or data.get("error") or "no list of rates"
        raise RatesError(f"the service answered: {message}")
    if not isinstance(data, list):
        raise RatesError("the answer is not a list of rates")
    rates: dict[str, Decimal] = {}
    for item in data:
        if not isinstance(item, dict):
            continue
        code = str(item.get("isoA3Code") or "").strip().upper()
        value = item.get("value")
        if not CURRENCY_RE.match(code) or code == "EUR":
            continue
        try:
            rate = Decimal(str(value))
        except (InvalidOperation, ValueError):
            continue
        if rate.is_finite() and rate > 0:
            rates[code] = rate
    if not rates:
        raise RatesError("the answer holds no rates")
    return rates


def month_url(template: str, month: str) -> str:
    return template.format(year=int(month[:4]), month=int(month[5:7]))


async def fetch_month(template: str, month: str) -> dict[str, Decimal]:
    """Fetch and read the rates of ``month`` (``2026-05``)."""
    url = month_url(template, month)
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(url, headers={"Accept": "application/json"}) as response,
        ):
            if response.status != 200:
                raise RatesError(f"HTTP {response.status} from {url}")
            body = bytearray()
            async for chunk in response.content.iter_chunked(65536):
                body += chunk
                if len(body) > MAX_BODY:
                    raise RatesError(f"the answer from {url} is too large")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise RatesError(f"{type(exc).__name__} {exc} ({url})") from None
    return parse_rates(bytes(body))


async def refresh_rates(services: Services) -> dict[str, int]:
    """Fetch the months the database lacks (this month and the one before); returns the
    months stored, with how many currencies each. Failures are logged, never raised."""
    rules = services.settings.claims
    if not rules.rates_url:
        return {}
    now = services.clock()
    this_month = month_of(now.date())
    async with services.db.read() as session:
        have = set(await store.months_with_rates(session))
    stored: dict[str, int] = {}
    for month in (this_month, previous_month(this_month)):
        if month in have:
            continue
        try:
            rates = await fetch_month(rules.rates_url, month)
        except RatesError as exc:
            log.warning(
                "could not fetch the exchange rates of %s: %s; trying again in %s",
                month,
                exc,
                rules.rates_every,
            )
            continue

        async def save(
            session: AsyncSession, month: str = month, rates: dict[str, Decimal] = rates
        ) -> int:
            return await store.save_rates(
                session, month, rates, source=month_url(rules.rates_url, month), now=now
            )

        stored[month] = await services.run(save)
        log.info("stored the exchange rates of %s (%d currencies)", month, stored[month])
    return stored


def schedule(services: Services) -> None:
    rules = services.settings.claims
    if not rules.rates_url:
        log.info("claims.rates_url is empty: exchange rates come only from [claims.rates]")
        return

    async def job() -> None:
        try:
            await refresh_rates(services)
        except Exception:
            log.exception("the exchange-rate job failed; it runs again in %s", rules.rates_every)

    services.every(job, rules.rates_every, JOB_ID, at_once=True)
