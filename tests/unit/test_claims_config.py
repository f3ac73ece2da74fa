"""The ``[claims]`` section: the brief's defaults, exact figures, and clear errors at start."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from config import load_config
from config.claims import ClaimsConfig
from tests.support.config import config_problems

SHIPPED = Path(__file__).resolve().parents[2] / "bbwt_bot.toml"


def test_the_defaults_are_the_commissions_rules_for_experts() -> None:
    rules = ClaimsConfig()
    assert rules.deadline_days == 30
    assert rules.rail_max_km == 400
    assert rules.car_rate_per_km == Decimal("0.22")
    assert rules.daily_allowance == Decimal("113.00")
    assert rules.accommodation_per_night == Decimal("168.00")
    assert "taxi" in rules.refused
    assert rules.receipt_required == ["rail", "air", "accommodation"]
    assert "online-meeting" not in rules.eligible_kinds
    assert rules.currencies == ["EUR"]


def test_the_shipped_file_states_the_same_defaults() -> None:
    assert load_config(SHIPPED).claims == ClaimsConfig()


def test_figures_from_toml_floats_are_exact_decimals(tmp_path: Path) -> None:
    file = tmp_path / "bbwt_bot.toml"
    file.write_text(
        "[claims]\ncar_rate_per_km = 0.3\ndaily_allowance = 120\n"
        '[claims.rates]\nsek = 11.05\nGBP = "0.8534"\n',
        encoding="utf-8",
    )
    rules = load_config(file).claims
    assert rules.car_rate_per_km == Decimal("0.30")
    assert rules.daily_allowance == Decimal("120.00")
    assert rules.rates == {"SEK": Decimal("11.05"), "GBP": Decimal("0.8534"), "EUR": Decimal(1)}
    assert rules.currencies == ["EUR", "GBP", "SEK"]


@pytest.mark.parametrize(
    ("toml", "key", "says"),
    [
        ("car_rate_per_km = 0.225", "claims.car_rate_per_km", "more than 2 decimal places"),
        ('daily_allowance = "lots"', "claims.daily_allowance", "must be a number"),
        ("accommodation_per_night = -1", "claims.accommodation_per_night", "cannot be negative"),
        ("deadline_days = 0", "claims.deadline_days", "greater than or equal to 1"),
        ('categories = ["rail", "limo"]', "claims.categories", "unknown categor"),
        ('eligible_kinds = ["picnic"]', "claims.eligible_kinds", "unknown event kind"),
        ('receipt_required = ["car"]\ncategories = ["rail"]', "claims", "not in categories"),
        ('refused = {rail = "no"}', "claims", "both allowed and refused"),
        ("[claims.rates]\nSEK = 0", "claims.rates.SEK", "must be above zero"),
        ("[claims.rates]\nEUR = 2", "claims", "rates.EUR must be 1"),
        ("[claims.rates]\nkroner = 11", "claims.rates", "three-letter currency code"),
        ("colour = 1", "claims.colour", "Extra inputs are not permitted"),
    ],
)
def test_a_wrong_figure_stops_the_bot_at_start_naming_the_key(
    tmp_path: Path, toml: str, key: str, says: str
) -> None:
    problems = dict(config_problems(tmp_path, f"[claims]\n{toml}\n"))
    assert key in problems, problems
    assert says in problems[key]


def test_rates_are_accepted_with_up_to_six_decimals() -> None:
    assert ClaimsConfig(rates={"HUF": "386.123456"}).rates["HUF"] == Decimal("386.123456")
    with pytest.raises(ValidationError, match="more than 6 decimal places"):
        ClaimsConfig(rates={"HUF": "386.1234567"})
