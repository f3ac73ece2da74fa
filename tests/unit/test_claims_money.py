"""Money for travel claims: exact decimals, rounding, conversion, caps and totals."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commands.claims.rules import (
    LineInput,
    MoneyError,
    allocate,
    car_amount,
    cents,
    check_claim,
    convert,
    fmt,
    parse_amount,
    price_new_line,
    split_note,
)
from config.claims import ClaimsConfig

D = Decimal
RULES = ClaimsConfig(rates={"SEK": "11.05", "GBP": "0.8534", "HUF": 386.4})


# --- amounts as people type them -------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "value"),
    [
        ("120", D("120.00")),
        ("120.5", D("120.50")),
        ("120,50", D("120.50")),
        ("0.01", D("0.01")),
        ("€35", D("35.00")),
        ("35€", D("35.00")),
    ],
)
def test_amounts_are_read_as_exact_decimals_with_two_places(typed: str, value: Decimal) -> None:
    parsed = parse_amount(typed)
    assert parsed == value
    assert isinstance(parsed, Decimal)
    assert parsed.as_tuple().exponent == -2


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("12.345", "more than two decimals"),
        ("1,234", "more than two decimals"),
        ("-5", "cannot be negative"),
        ("abc", "is not an amount"),
        ("1e3", "is not an amount"),
        ("nan", "is not an amount"),
        ("1.234,56", "is not an amount"),
    ],
)
def test_amounts_people_could_misread_are_refused_with_the_way_to_write_them(
    typed: str, says: str
) -> None:
    with pytest.raises(MoneyError, match=says):
        parse_amount(typed)


def test_rounding_is_half_up_to_the_cent() -> None:
    assert cents(D("0.005")) == D("0.01")
    assert cents(D("0.015")) == D("0.02")  # banker's rounding would give 0.02 too
    assert cents(D("0.025")) == D("0.03")  # ... but 0.02 here: we round half up
    assert cents(D("2.675")) == D("2.68")  # the float 2.675 would round to 2.67
    assert cents(D("-0.005")) == D("-0.01")


def test_amounts_are_shown_with_the_currency_and_two_decimals() -> None:
    assert fmt(D("1234.5")) == "EUR 1,234.50"
    assert fmt(D("7"), "SEK") == "SEK 7.00"


def test_the_car_rate_prices_the_distance_exactly() -> None:
    assert car_amount(D("350"), RULES) == D("77.00")
    assert car_amount(D("12.5"), RULES) == D("2.75")
    assert car_amount(D("0.02"), RULES) == D("0.00")  # 0.0044 rounds down
    assert car_amount(D("0.03"), RULES) == D("0.01")  # 0.0066 rounds up


# --- currency conversion -------------------------------------------------------------------------


def test_other_currencies_convert_to_eur_at_the_configured_rate_and_show_both() -> None:
    conversion = convert(D("1105.00"), "sek", RULES)
    assert conversion.eur == D("100.00")
    assert conversion.currency == "SEK"
    assert conversion.describe() == "SEK 1,105.00 = EUR 100.00 (at 11.05 per EUR)"


def test_conversion_rounds_half_up_to_the_cent() -> None:
    # 10 / 0.8534 = 11.71783…
    assert convert(D("10.00"), "GBP", RULES).eur == D("11.72")
    # 1000 / 386.4 = 2.58799…
    assert convert(D("1000.00"), "HUF", RULES).eur == D("2.59")


def test_a_toml_float_rate_is_taken_as_written_not_as_a_binary_float() -> None:
    assert RULES.rates["HUF"] == D("386.4")


def test_eur_needs_no_conversion() -> None:
    conversion = convert(D("99.99"), "EUR", RULES)
    assert conversion.eur == D("99.99")
    assert conversion.describe() == "EUR 99.99"


def test_a_currency_without_a_rate_is_refused_with_the_known_ones() -> None:
    with pytest.raises(MoneyError, match="EUR, GBP, HUF, SEK"):
        convert(D("10"), "USD", RULES)


# --- lines and caps ------------------------------------------------------------------------------


def test_a_taxi_is_refused_with_the_rule() -> None:
    with pytest.raises(MoneyError, match="Taxis are not reimbursed"):
        price_new_line(category="taxi", amount=D("30"), currency=None, rules=RULES, days=1)


def test_an_unknown_category_lists_the_allowed_ones() -> None:
    with pytest.raises(MoneyError, match="rail, air, car, accommodation, daily-allowance"):
        price_new_line(category="parking", amount=D("30"), currency=None, rules=RULES, days=1)


def test_a_category_switched_off_in_the_config_is_refused() -> None:
    rules = ClaimsConfig(categories=["rail", "air"], receipt_required=["rail"])
    with pytest.raises(MoneyError, match="use one of rail, air"):
        price_new_line(category="car", amount=D("30"), currency=None, rules=rules, days=1)


def test_a_car_line_is_kilometres_priced_at_the_rate() -> None:
    line = price_new_line(category="car", amount=D("350"), currency=None, rules=RULES, days=1)
    assert (line.amount, line.currency, line.quantity) == (D("77.00"), "EUR", D("350"))
    with pytest.raises(MoneyError, match="distance in km"):
        price_new_line(category="car", amount=D("350"), currency="SEK", rules=RULES, days=1)


def test_the_daily_allowance_is_computed_from_the_event_days_when_no_amount_is_given() -> None:
    line = price_new_line(
        category="daily-allowance", amount=None, currency=None, rules=RULES, days=2
    )
    assert line.amount == D("226.00")
    assert line.quantity == D(2)


def test_accommodation_over_the_nightly_cap_is_flagged_and_capped() -> None:
    lines = [LineInput("accommodation", D("400.00"), quantity=D(2), has_receipt=True)]
    result = check_claim(lines, RULES, days=2)
    line = result.lines[0]
    assert line.cap == D("336.00")
    assert line.allowed == D("336.00")
    assert line.capped
    assert "capped at EUR 336.00" in line.flags[0]
    assert result.claimed == D("400.00")
    assert result.allowed == D("336.00")


def test_accommodation_nights_default_to_the_event_nights() -> None:
    one_day = check_claim([LineInput("accommodation", D("200"), has_receipt=True)], RULES, 1)
    three_days = check_claim([LineInput("accommodation", D("200"), has_receipt=True)], RULES, 3)
    assert one_day.lines[0].allowed == D("168.00")
    assert three_days.lines[0].allowed == D("200.00")


def test_accommodation_in_another_currency_is_capped_in_eur() -> None:
    lines = [LineInput("accommodation", D("2210.00"), "SEK", quantity=D(1), has_receipt=True)]
    line = check_claim(lines, RULES, days=1).lines[0]
    assert line.eur == D("200.00")
    assert line.allowed == D("168.00")


def test_the_daily_allowance_cap_covers_all_allowance_lines_of_a_claim() -> None:
    lines = [
        LineInput("daily-allowance", D("113.00")),
        LineInput("daily-allowance", D("113.00")),
    ]
    result = check_claim(lines, RULES, days=1)
    assert [line.allowed for line in result.lines] == [D("113.00"), D("0.00")]
    assert result.lines[1].flags
    assert not result.lines[0].flags


def test_air_for_a_trip_within_rail_distance_is_flagged_for_the_moderator() -> None:
    short = check_claim([LineInput("air", D("180"), distance_km=300, has_receipt=True)], RULES, 1)
    long = check_claim([LineInput("air", D("180"), distance_km=900, has_receipt=True)], RULES, 1)
    assert "rules pay rail up to 400 km" in short.lines[0].flags[0]
    assert short.allowed == D("180.00")
    assert not long.lines[0].flags


def test_rail_air_and_accommodation_without_a_receipt_block_submission() -> None:
    lines = [
        LineInput("rail", D("80")),
        LineInput("air", D("200"), has_receipt=True),
        LineInput("accommodation", D("150")),
        LineInput("other", D("12")),
        LineInput("car", D("22"), quantity=D(100)),
    ]
    result = check_claim(lines, RULES, days=1)
    assert result.blocking == (
        "line 1 (rail, EUR 80.00) needs a receipt",
        "line 3 (accommodation, EUR 150.00) needs a receipt",
    )


def test_receipt_requirements_come_from_the_config() -> None:
    rules = ClaimsConfig(receipt_required=["other"])
    result = check_claim([LineInput("rail", D("80")), LineInput("other", D("5"))], rules, 1)
    assert result.blocking == ("line 2 (other, EUR 5.00) needs a receipt",)


def test_an_empty_claim_cannot_be_submitted() -> None:
    assert check_claim([], RULES, days=1).blocking == ("the claim has no expenses yet",)


def test_km_and_nights_are_read_from_the_note() -> None:
    parts = split_note(["Brussels", "to", "Oslo", "km=1100", "nights=2"])
    assert (parts.note, parts.distance_km, parts.nights) == ("Brussels to Oslo", 1100, 2)
    with pytest.raises(MoneyError, match="whole number"):
        split_note(["km=far"])


# --- totals --------------------------------------------------------------------------------------


def test_a_claim_total_is_the_sum_of_its_rounded_lines() -> None:
    lines = [
        LineInput("other", D("10.00"), "GBP"),  # 11.72
        LineInput("other", D("10.00"), "GBP"),  # 11.72 (not 23.44 from 20/0.8534 = 23.4357)
        LineInput("other", D("0.01")),
    ]
    result = check_claim(lines, RULES, days=1)
    assert result.claimed == D("23.45")


def test_an_approved_amount_is_split_over_lines_to_the_cent() -> None:
    assert allocate(D("100.00"), [D("1"), D("1"), D("1")]) == [
        D("33.34"),
        D("33.33"),
        D("33.33"),
    ]
    assert allocate(D("50.00"), [D("0"), D("0")]) == [D("25.00"), D("25.00")]
    assert allocate(D("0.00"), [D("10"), D("20")]) == [D("0.00"), D("0.00")]
    assert allocate(D("10.00"), []) == []


money = st.decimals(
    min_value=D("0.01"), max_value=D("99999.99"), places=2, allow_nan=False, allow_infinity=False
)
lines_strategy = st.lists(
    st.builds(
        LineInput,
        category=st.sampled_from(["rail", "air", "accommodation", "daily-allowance", "other"]),
        amount=money,
        currency=st.sampled_from(["EUR", "SEK", "GBP", "HUF"]),
        quantity=st.one_of(st.none(), st.integers(1, 5).map(D)),
        distance_km=st.one_of(st.none(), st.integers(1, 3000)),
        has_receipt=st.booleans(),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(lines=lines_strategy, days=st.integers(1, 14))
def test_claim_totals_always_add_up_to_the_cent(lines: list[LineInput], days: int) -> None:
    result = check_claim(lines, RULES, days)
    assert result.claimed == sum((line.eur for line in result.lines), D(0))
    assert result.allowed == sum((line.allowed for line in result.lines), D(0))
    for line in result.lines:
        for value in (line.eur, line.allowed):
            assert isinstance(value, Decimal)
            assert value == value.quantize(D("0.01"))
        assert D(0) <= line.allowed <= line.eur
        if line.cap is not None:
            assert line.allowed <= line.cap
        if line.capped:
            assert line.flags, "a capped line always says why"
    assert result.allowed <= result.claimed
    allowance = sum(
        (line.allowed for line in result.lines if line.line.category == "daily-allowance"), D(0)
    )
    assert allowance <= RULES.daily_allowance * days


@settings(max_examples=300, deadline=None)
@given(
    total=st.decimals(min_value=D(0), max_value=D("99999.99"), places=2),
    weights=st.lists(st.decimals(min_value=D(0), max_value=D("9999.99"), places=2), max_size=20),
)
def test_an_allocated_amount_always_adds_up_exactly(total: Decimal, weights: list[Decimal]) -> None:
    parts = allocate(total, weights)
    assert len(parts) == len(weights)
    if weights:
        assert sum(parts, D(0)) == total
        assert all(part >= 0 and part == part.quantize(D("0.01")) for part in parts)


@settings(max_examples=200, deadline=None)
@given(amount=money, currency=st.sampled_from(["SEK", "GBP", "HUF"]))
def test_conversion_is_within_half_a_cent_of_the_exact_value(
    amount: Decimal, currency: str
) -> None:
    conversion = convert(amount, currency, RULES)
    exact = amount / RULES.rates[currency]
    assert abs(conversion.eur - exact) <= D("0.005")


@settings(max_examples=200, deadline=None)
@given(amount=money)
def test_any_typed_amount_reads_back_the_same(amount: Decimal) -> None:
    assert parse_amount(f"{amount}") == amount
    assert parse_amount(f"{amount}".replace(".", ",")) == amount
