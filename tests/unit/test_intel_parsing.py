"""What members type after ``!intel share``: titles, notes, links and tags."""

from __future__ import annotations

import pytest

from commands.args import ArgError
from commands.intel.parse import (
    MAX_TITLE,
    Search,
    find_tags,
    find_urls,
    human_size,
    parse_search,
    parse_share,
    split_text,
    tag_arg,
)
from storage.intel import search_words


def test_the_first_line_is_the_title_and_the_rest_the_note() -> None:
    share = parse_share(
        "Oslo tenders 40 e-buses\nDeadline is 12 January.\n\nLots spread over 3 years."
    )

    assert share.title == "Oslo tenders 40 e-buses"
    assert share.note == "Deadline is 12 January.\n\nLots spread over 3 years."


def test_blank_lines_before_the_title_are_ignored_and_spaces_tidied() -> None:
    share = parse_share("\n\n   Market   study  on   chargers  \nnote")

    assert share.title == "Market study on chargers"
    assert share.note == "note"


def test_a_one_line_share_has_no_note() -> None:
    assert parse_share("Just a title").note == ""


def test_nothing_to_share_gives_an_empty_title() -> None:
    assert parse_share("  \n \n").title == ""


def test_a_very_long_first_line_is_shortened_for_the_title_but_kept_whole_in_the_note() -> None:
    line = "word " * 100
    share = parse_share(line + "\nsecond line")

    assert len(share.title) <= MAX_TITLE
    assert share.title.endswith("…")
    assert share.note.startswith(line.strip())
    assert share.note.endswith("second line")


def test_links_are_found_anywhere_in_order_and_once() -> None:
    text = (
        "Tender (see https://example.org/tender?id=4&lang=en). Also http://b.example.com/x, "
        "and again https://example.org/tender?id=4&lang=en!"
    )
    assert find_urls(text) == ["https://example.org/tender?id=4&lang=en", "http://b.example.com/x"]


def test_brackets_belonging_to_a_link_are_kept() -> None:
    url = "https://en.wikipedia.org/wiki/Bus_(vehicle)"
    assert find_urls(f"read {url}.") == [url]
    assert find_urls(f"(read {url})") == [url]


def test_things_that_only_look_like_links_are_not_links() -> None:
    assert find_urls("ftp://files.example.org and www.example.org and https://") == []


def test_tags_are_lower_case_unique_and_without_the_hash() -> None:
    assert find_tags("#EBus tender #hydrogen, #ebus and #Charging-Points.") == [
        "ebus",
        "hydrogen",
        "charging-points",
    ]


def test_tags_inside_links_numbers_and_words_are_not_tags() -> None:
    text = "See https://example.org/page#section, issue #12, C# code, a&#39;b and x#y"
    assert find_tags(text) == []


def test_tags_in_other_languages_work() -> None:
    assert find_tags("#énergie #Kreislaufwirtschaft") == ["énergie", "kreislaufwirtschaft"]


def test_the_share_collects_tags_and_links_from_title_and_note() -> None:
    share = parse_share("#ebus Oslo tender\nDetails: https://example.org/t #procurement")

    assert share.tags == ["ebus", "procurement"]
    assert share.urls == ["https://example.org/t"]


def test_a_tag_argument_may_have_the_hash_or_not() -> None:
    assert tag_arg("#EBus") == "ebus"
    assert tag_arg("ebus") == "ebus"


@pytest.mark.parametrize("token", ["#", "#12", "two words", "#a#b"])
def test_a_tag_argument_that_is_no_tag_is_refused(token: str) -> None:
    with pytest.raises(ArgError, match="not a tag"):
        tag_arg(token)


def test_search_words_drop_punctuation_and_small_words() -> None:
    assert search_words('the "electric" buses AND (Oslo)*') == ["electric", "buses", "oslo"]


def test_a_search_of_only_small_words_keeps_them() -> None:
    assert search_words("the and") == ["the", "and"]


def test_page_and_cop_are_taken_out_of_search_words() -> None:
    assert parse_search("electric buses page=2 cop=hdev") == Search("electric buses", 2, "HDEV")


def test_a_long_note_is_split_at_word_ends_and_nothing_is_lost() -> None:
    text = " ".join(f"word{i}" for i in range(2000))
    parts = split_text(text, 1000)

    assert all(len(part) <= 1000 for part in parts)
    assert " ".join(parts) == text


def test_file_sizes_are_readable() -> None:
    assert human_size(512) == "512 bytes"
    assert human_size(2048) == "2.0 KB"
    assert human_size(5 * 1024 * 1024) == "5.0 MB"
    assert human_size(None) == "size unknown"
