"""Who may join a CoP: countries, authority types and borderline cases."""

from __future__ import annotations

import pytest

from commands.args import ArgError
from commands.membership.apply import parse_answer
from commands.membership.rules import (
    BORDERLINE_TYPES,
    COUNTRIES,
    COUNTRY_CHOICES,
    TYPE_CHOICES,
    TYPE_LABELS,
    Verdict,
    assess,
    country_name,
    parse_country,
    parse_org,
    parse_type,
)
from config.models import AUTHORITY_TYPES

EU27 = "AT BE BG HR CY CZ DK EE FI FR DE EL HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE".split()
EEA = ["IS", "LI", "NO"]
OUTSIDE = ["US", "GB", "UK", "CH", "TR", "UA", "RS", "AL", "CN", "XX", "EU"]


def test_the_country_list_is_exactly_the_eu_27_and_the_eea() -> None:
    assert len(EU27) == 27
    assert set(COUNTRIES) == set(EU27) | set(EEA)
    assert sorted(COUNTRY_CHOICES) == sorted(COUNTRIES)


@pytest.mark.parametrize("code", EU27 + EEA)
def test_every_eu_and_eea_country_code_is_accepted_in_any_case(code: str) -> None:
    assert parse_country(code) == code
    assert parse_country(code.lower()) == code
    assert assess("City Council", code, "local-authority").verdict is Verdict.ELIGIBLE


@pytest.mark.parametrize("code", ["EL", "el", "GR", "gr", "Greece", "Ελλάδα", "ΕΛΛΆΔΑ", "Hellas"])
def test_greece_is_accepted_as_el_and_gr_and_stored_as_el(code: str) -> None:
    assert parse_country(code) == "EL"


def test_greece_is_shown_with_the_code_the_commission_uses() -> None:
    assert country_name("EL") == "Greece (EL)"
    assert country_name("GR") == "Greece (EL)"  # a profile saved before EL was stored
    assert assess("City of Athens", "GR", "local-authority").verdict is Verdict.ELIGIBLE


@pytest.mark.parametrize("code", OUTSIDE)
def test_countries_outside_the_eu_and_eea_are_refused_saying_who_may_join(code: str) -> None:
    with pytest.raises(ArgError) as info:
        parse_country(code)
    problem = str(info.value)
    assert f"{code} is not the code of an EU or EEA country" in problem
    assert "Only contracting authorities (public buyers) established in the EU or the EEA" in (
        problem
    )
    assert "AT, BE" not in problem  # no list of thirty codes
    assert assess("City Council", code, "local-authority").verdict is Verdict.REFUSED


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("Norway", "NO"),
        ("czech republic", "CZ"),
        ("Deutschland", "DE"),
        ("DEUTSCHLAND", "DE"),
        ("España", "ES"),
        ("espana", "ES"),
        ("Italia", "IT"),
        ("Polska", "PL"),
        ("Sverige", "SE"),
        ("Norge", "NO"),
        ("Österreich", "AT"),
        ("osterreich", "AT"),
        ("Nederland", "NL"),
        ("Belgique", "BE"),
        ("België", "BE"),
        ("belgie", "BE"),
        ("Magyarország", "HU"),
        ("România", "RO"),
        ("Éire", "IE"),
        ("Κύπρος", "CY"),
        ("България", "BG"),
        ("Suomi", "FI"),
        ("  the   Netherlands. ", "NL"),
        ("Deutsch\u200bland", "DE"),
        ("ＤＥ", "DE"),
    ],
)
def test_countries_are_understood_by_name_in_english_and_their_own_language(
    name: str, code: str
) -> None:
    assert parse_country(name) == code


@pytest.mark.parametrize("name", ["United States", "united states of america", "USA", "Schweiz"])
def test_well_known_countries_outside_are_named_as_outside(name: str) -> None:
    with pytest.raises(ArgError) as info:
        parse_country(name)
    assert f"{name} is not in the EU or the EEA" in str(info.value)
    assert "27 EU countries, Iceland, Liechtenstein and Norway" in str(info.value)


def test_an_unknown_name_is_refused_and_a_near_miss_gets_a_suggestion() -> None:
    with pytest.raises(ArgError, match="I don't know “Narnia” as a country of the EU"):
        parse_country("Narnia")
    with pytest.raises(ArgError, match=r"Did you mean Germany \(DE\)\?"):
        parse_country("Germny")


@pytest.mark.parametrize("kind", AUTHORITY_TYPES)
def test_every_type_of_contracting_authority_is_eligible(kind: str) -> None:
    assert parse_type(kind) == kind
    assert parse_type(kind.upper().replace("-", " ")) == kind
    assert assess("Ministry of Transport", "DE", kind).verdict is Verdict.ELIGIBLE


@pytest.mark.parametrize("kind", BORDERLINE_TYPES)
def test_borderline_bodies_are_flagged_for_the_secretariat_not_refused(kind: str) -> None:
    result = assess("Oslo Sporveier", "NO", kind)
    assert result.verdict is Verdict.FLAGGED
    assert "check" in result.reason


@pytest.mark.parametrize("alias", ["utility", "publicly owned company", "other"])
def test_utilities_and_other_public_bodies_are_understood(alias: str) -> None:
    assert parse_type(alias) in BORDERLINE_TYPES


@pytest.mark.parametrize("org", ["Stadtwerke München GmbH", "Ruter AS", "Water Utility Ltd."])
def test_an_authority_whose_name_looks_like_a_company_is_flagged(org: str) -> None:
    result = assess(org, "DE", "body-governed-by-public-law")
    assert result.verdict is Verdict.FLAGGED
    assert "looks like a company" in result.reason


@pytest.mark.parametrize("kind", ["market-actor", "company", "consultancy", "NGO"])
def test_market_actors_are_refused_with_the_reason(kind: str) -> None:
    result = assess("Acme Consulting", "BE", parse_type(kind))
    assert result.verdict is Verdict.REFUSED
    assert "contracting authorities" in result.reason


def test_an_unknown_type_lists_the_valid_ones() -> None:
    with pytest.raises(ArgError) as info:
        parse_type("spaceship")
    for kind in AUTHORITY_TYPES:
        assert kind in str(info.value)


def test_a_missing_profile_is_not_eligible() -> None:
    assert assess(None, None, None).verdict is Verdict.REFUSED


def test_dialogue_answers_take_numbers_codes_or_names() -> None:
    assert parse_answer("country", str(COUNTRY_CHOICES.index("NO") + 1)) == "NO"
    assert parse_answer("country", "el") == "EL"
    assert parse_answer("country", "Sverige") == "SE"
    assert parse_answer("type", "3") == TYPE_CHOICES[2]
    assert parse_answer("type", "local authority") == "local-authority"
    assert parse_answer("org", "  City   of Oslo ") == "City of Oslo"
    with pytest.raises(ArgError, match="from 1 to 9"):
        parse_answer("type", "42")
    with pytest.raises(ArgError):
        parse_answer("country", "99")
    with pytest.raises(ArgError):
        parse_answer("org", "?")


def test_the_type_choices_start_with_the_contracting_authorities() -> None:
    assert set(TYPE_CHOICES[:6]) == set(AUTHORITY_TYPES)
    assert all(TYPE_LABELS[kind] for kind in TYPE_CHOICES)


def test_organisation_names_are_cleaned_and_bounded() -> None:
    assert parse_org(" Region  Skåne ") == "Region Skåne"
    with pytest.raises(ArgError):
        parse_org("x" * 301)


@pytest.mark.parametrize(
    "org", ["Acme Logistik G\u200bmbH", "Acme Logistik Gmb\u00adH", "Acme Logistik ＧｍｂＨ"]
)
def test_invisible_or_look_alike_characters_do_not_hide_a_company_form(org: str) -> None:
    result = assess(org, "DE", "local-authority")
    assert result.verdict is Verdict.FLAGGED
    assert "“GmbH”" in result.reason


def test_an_organisation_name_is_kept_as_typed_but_checked_without_invisible_characters() -> None:
    assert parse_org("Acme Logistik G\u200bmbH") == "Acme Logistik G\u200bmbH"
    with pytest.raises(ArgError):
        parse_org("\u200b\u200bX\u200b")
