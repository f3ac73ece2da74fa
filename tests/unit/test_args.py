"""Typed argument parsing and usage errors."""

from __future__ import annotations

import pytest

from commands.args import (
    Arg,
    ArgError,
    Options,
    Tokenizer,
    choice,
    cop_code,
    parse_arguments,
    positive_int,
    prefixed_id,
    user_id,
)


def test_quoted_values_keep_their_spaces() -> None:
    tokens = Tokenizer('HDEV "City of Oslo" org="Région Île-de-France" “curly quotes”')
    assert [tokens.next() for _ in range(4)] == [
        "HDEV",
        "City of Oslo",
        "org=Région Île-de-France",
        "curly quotes",
    ]
    assert tokens.next() is None


def test_an_unclosed_quote_is_reported() -> None:
    with pytest.raises(ArgError, match="not closed"):
        Tokenizer('"City of Oslo').next()


@pytest.mark.parametrize("text", ["E12", "e12", "12", "#E12"])
def test_event_ids_are_accepted_with_or_without_the_letter(text: str) -> None:
    assert prefixed_id("E", "an event")(text) == 12


@pytest.mark.parametrize("text", ["C12", "E", "E-1", "E0", "twelve"])
def test_wrong_event_ids_say_what_an_id_looks_like(text: str) -> None:
    with pytest.raises(ArgError, match="E12"):
        prefixed_id("E", "an event")(text)


def test_user_ids_cop_codes_numbers_and_choices() -> None:
    assert user_id("@anna:example.org") == "@anna:example.org"
    with pytest.raises(ArgError, match="Matrix ID"):
        user_id("anna")
    assert cop_code("hdev") == "HDEV"
    with pytest.raises(ArgError):
        cop_code("h")
    assert positive_int("10") == 10
    with pytest.raises(ArgError):
        positive_int("-3")
    assert choice("yes", "no")("YES") == "yes"
    with pytest.raises(ArgError, match="yes, no"):
        choice("yes", "no")("perhaps")


def test_positional_optional_rest_and_options_together() -> None:
    args = [Arg("cop", cop_code), Arg("n", positive_int, optional=True)]
    options = Options({"where": str, "capacity": positive_int})
    values = parse_arguments('hdev 3 where="Town hall" capacity=20', args, options)
    assert values == {
        "cop": "HDEV",
        "n": 3,
        "options": {"where": "Town hall", "capacity": 20},
    }
    values = parse_arguments("hdev", args, options)
    assert values == {"cop": "HDEV", "n": None, "options": {}}


def test_rest_takes_the_remaining_text_with_new_lines() -> None:
    values = parse_arguments(
        "HDEV first line\nsecond line", [Arg("cop", cop_code), Arg("text", rest=True)], None
    )
    assert values == {"cop": "HDEV", "text": "first line\nsecond line"}


def test_missing_extra_and_unknown_option_arguments_are_explained() -> None:
    with pytest.raises(ArgError, match="<cop> is missing"):
        parse_arguments("", [Arg("cop", cop_code)], None)
    with pytest.raises(ArgError, match="more than I expected"):
        parse_arguments("HDEV extra", [Arg("cop", cop_code)], None)
    with pytest.raises(ArgError, match="'colour' is not an option"):
        parse_arguments("colour=red", [], Options({"where": str}))
