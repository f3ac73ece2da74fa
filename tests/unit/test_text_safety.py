"""People's text, made safe: folded for the rules (NFKC, no format characters), keys for
matching names, and bidi isolation of every piece that goes into a message."""

from __future__ import annotations

import pytest

from commands.text import FSI, PDI, Message, balance_bidi, fold, isolate, match_key

RLO, LRO, RLE, PDF = "\u202e", "\u202d", "\u202b", "\u202c"
LRI, RLI = "\u2066", "\u2067"


@pytest.mark.parametrize(
    ("typed", "folded"),
    [
        ("G\u200bmbH", "GmbH"),  # zero-width space
        ("G\u200dmb\u200cH", "GmbH"),  # zero-width joiner and non-joiner
        ("Gmb\u00adH", "GmbH"),  # soft hyphen
        ("\ufeffGmbH\u2060", "GmbH"),  # byte order mark, word joiner
        ("Roma\u202eATI\u2066", "RomaATI"),  # bidi controls
        ("ＧｍｂＨ", "GmbH"),  # full-width letters (NFKC)
        ("ﬁrma", "firma"),  # a ligature (NFKC)
        ("Region Skåne", "Region Skåne"),  # letters stay as they are
    ],
)
def test_fold_normalises_and_drops_format_characters(typed: str, folded: str) -> None:
    assert fold(typed) == folded


def test_match_keys_ignore_case_accents_spaces_and_invisible_characters() -> None:
    assert match_key("  Österreich ") == match_key("osterreich") == "osterreich"
    assert match_key("ESPAÑA") == "espana"
    assert match_key("Ελλάδα") == match_key("ΕΛΛΑΔΑ") == "ελλαδα"
    assert match_key("the\u200b  Netherlands") == "the netherlands"


def test_plain_text_is_left_exactly_as_it_is() -> None:
    for text in ("City of Oslo", "Région Île-de-France", "Δήμος Αθηναίων", "a — b ✅"):
        assert isolate(text) == text
        assert Message().text(text).plain == text


@pytest.mark.parametrize(
    ("text", "balanced"),
    [
        (f"Roma{RLO}ATI{LRI}", "RomaATI"),  # opened, never closed
        (f"Roma{PDF}ATI{PDI}", "RomaATI"),  # closing what was never opened
        (f"a{RLO}b{PDF}c", f"a{RLO}b{PDF}c"),  # a proper pair stays
        (f"a{RLI}b{PDI}c", f"a{RLI}b{PDI}c"),
        (f"a{RLI}b{RLO}c{PDI}d", f"a{RLI}bc{PDI}d"),  # the isolate's end cuts the override
        (f"a{RLO}b{RLI}c{PDF}d{PDI}", f"ab{RLI}cd{PDI}"),  # a PDF cannot close across it
        (f"a{RLO}b\nc{PDF}", "ab\nc"),  # a line's end closes everything
    ],
)
def test_unpaired_bidi_controls_are_removed(text: str, balanced: str) -> None:
    assert balance_bidi(text) == balanced


def test_right_to_left_text_and_paired_controls_are_isolated_line_by_line() -> None:
    assert isolate("שלום") == f"{FSI}שלום{PDI}"
    assert isolate(f"x{RLE}y{PDF}") == f"{FSI}x{RLE}y{PDF}{PDI}"
    assert isolate("مرحبا\nHello") == f"{FSI}مرحبا{PDI}\nHello"
    assert isolate(f"Comune di Roma{RLO}ATI{LRI}") == "Comune di RomaATI"


def test_every_way_into_a_message_isolates_the_text() -> None:
    hostile = f"Roma{RLO}ATI"
    msg = (
        Message("Organisation: ")
        .text(hostile)
        .text(" · ")
        .bold(hostile)
        .italic(hostile)
        .code(hostile)
        .link("https://example.org/", hostile)
        .bullets([hostile])
    )
    assert RLO not in msg.plain and RLO not in msg.html
    assert msg.plain.count("RomaATI") == 6
    arabic = Message("Organisation: ").text("بلدية").text(" (CY)")
    assert arabic.plain == f"Organisation: {FSI}بلدية{PDI} (CY)"
    assert f"{FSI}بلدية{PDI}" in arabic.html


def test_room_pings_are_still_defused_in_isolated_text() -> None:
    msg = Message().text("שלום @room")
    assert "@room" not in msg.plain and msg.plain.startswith(FSI)
