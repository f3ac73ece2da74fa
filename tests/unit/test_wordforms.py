"""How words are cut, folded and stemmed for intel search (storage/wordforms.py)."""

from __future__ import annotations

from storage import wordforms


def shares_a_form(query: str, written: str) -> bool:
    (word,) = wordforms.query_terms(query)
    stored = set(wordforms.index_terms(written).split())
    return bool(stored & set(word.exact)) or (
        word.prefix is not None and any(term.startswith(word.prefix) for term in stored)
    )


def test_accents_capitals_and_letters_of_their_own_are_folded() -> None:
    assert wordforms.fold("Électriques") == "electriques"
    assert wordforms.fold("Łódź") == "lodz"
    assert wordforms.fold("Straße") == "strasse"
    assert wordforms.fold("Ørsted") == "orsted"


def test_words_are_letters_and_digits() -> None:
    assert wordforms.words("e-buses, CO2: 40 buses_total!") == [
        "e",
        "buses",
        "co2",
        "40",
        "buses",
        "total",
    ]


def test_a_word_and_its_forms_meet_in_every_listed_language() -> None:
    pairs = [
        ("bus", "buses"),
        ("buses", "bus"),
        ("tender", "tendering"),
        ("Ausschreibung", "Ausschreibungen"),
        ("electrique", "électriques"),
        ("autobús", "autobuses"),
        ("appalto", "appalti"),
        ("aanbesteding", "aanbestedingen"),
        ("przetarg", "przetargów"),
        ("contratação", "contratações"),
    ]
    for query, written in pairs:
        assert shares_a_form(query, written), (query, written)


def test_unrelated_words_stay_apart() -> None:
    for query, written in [("bus", "business"), ("gara", "gas"), ("hydrogen", "hydro")]:
        assert not shares_a_form(query, written), (query, written)


def test_stop_words_are_dropped_unless_nothing_else_is_left() -> None:
    assert wordforms.query_words("the tender of the city") == ["tender", "city"]
    assert wordforms.query_words("der Bus und die Bahn") == ["bus", "bahn"]
    assert wordforms.query_words("the") == ["the"]


def test_numbers_are_not_stemmed() -> None:
    assert wordforms.forms("2026") == ("2026",)
