"""Reading what moderators type when they create events: kinds, dates, times, durations,
time zones, the nights the clocks change, and clear refusals."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from commands.args import ArgError, parse_arguments
from commands.events import register
from commands.events.parse import (
    Length,
    parse_answer,
    parse_capacity,
    parse_date,
    parse_duration,
    parse_event_id,
    parse_kind,
    parse_time,
    parse_url,
    parse_zone,
)
from commands.events.times import end_of, plan_times, resolve_local, when_text
from commands.registry import Registry
from config.events import EventsConfig
from storage.events import KINDS

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CONFIG = EventsConfig()
BRUSSELS = "Europe/Brussels"


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_of_event_is_understood_in_any_case(kind: str) -> None:
    assert parse_kind(kind.upper()) == kind


def test_an_unknown_kind_is_refused_with_the_list_of_kinds() -> None:
    with pytest.raises(ArgError, match="not a kind of event.*study-visit"):
        parse_kind("webinar")


def test_a_near_miss_kind_gets_a_suggestion() -> None:
    with pytest.raises(ArgError, match="Did you mean market-dialogue"):
        parse_kind("market-dialog")


def test_a_date_where_the_kind_should_be_says_the_kind_is_missing() -> None:
    with pytest.raises(ArgError, match="kind of event is missing"):
        parse_kind("2026-05-12")


@pytest.mark.parametrize(
    ("text", "length"),
    [
        ("90m", Length(minutes=90)),
        ("2h", Length(minutes=120)),
        ("1h30m", Length(minutes=90)),
        ("45min", Length(minutes=45)),
        ("1d", Length(days=1)),
        ("3D", Length(days=3)),
    ],
)
def test_durations_in_minutes_hours_and_days(text: str, length: Length) -> None:
    assert parse_duration(text) == length


@pytest.mark.parametrize("text", ["2 hours", "90", "h", "1.5h", "", "0m", "-2h"])
def test_durations_that_are_not_understood_are_refused(text: str) -> None:
    with pytest.raises(ArgError, match="duration"):
        parse_duration(text)


def test_durations_read_back_in_words() -> None:
    assert Length(minutes=90).text() == "1 hour 30 minutes"
    assert Length(days=2).text() == "2 days"


def test_dates_must_be_real_calendar_dates() -> None:
    assert parse_date("2026-05-12") == date(2026, 5, 12)
    assert parse_date("2028-02-29") == date(2028, 2, 29)
    with pytest.raises(ArgError, match="not a real date"):
        parse_date("2026-02-30")
    with pytest.raises(ArgError, match="not a real date"):
        parse_date("2026-13-01")
    with pytest.raises(ArgError, match="like 2026-05-12"):
        parse_date("12/05/2026")


def test_times_use_the_24_hour_clock() -> None:
    assert parse_time("09:30") == time(9, 30)
    assert parse_time("9:30") == time(9, 30)
    with pytest.raises(ArgError, match="24-hour"):
        parse_time("25:00")
    with pytest.raises(ArgError, match="24-hour"):
        parse_time("2pm")


def test_time_zones_are_iana_names_in_any_case() -> None:
    assert parse_zone("europe/lisbon") == "Europe/Lisbon"
    assert parse_zone("UTC") == "UTC"
    with pytest.raises(ArgError, match="not a time zone I know"):
        parse_zone("Mars/Olympus_Mons")


def test_event_numbers_are_accepted_with_or_without_the_letter() -> None:
    assert parse_event_id("E12") == parse_event_id("e12") == parse_event_id("12") == 12
    with pytest.raises(ArgError, match="E12"):
        parse_event_id("twelve")


def test_answers_capacities_and_links() -> None:
    assert parse_answer("YES") == "yes"
    assert parse_answer("?") == "maybe"
    with pytest.raises(ArgError, match="yes, no or maybe"):
        parse_answer("perhaps")
    assert parse_capacity("30") == 30
    assert parse_capacity("none") is None
    with pytest.raises(ArgError):
        parse_capacity("0")
    assert parse_url("https://meet.example.org/x") == "https://meet.example.org/x"
    with pytest.raises(ArgError, match="https://"):
        parse_url("javascript:alert(1)")


def test_a_wall_clock_time_becomes_utc_in_summer_and_in_winter() -> None:
    winter, note = resolve_local(date(2026, 1, 15), time(10, 0), BRUSSELS)
    summer, _ = resolve_local(date(2026, 7, 15), time(10, 0), BRUSSELS)
    assert note is None
    assert winter == datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
    assert summer == datetime(2026, 7, 15, 8, 0, tzinfo=UTC)


def test_a_time_skipped_when_the_clocks_go_forward_in_brussels_is_refused() -> None:
    # On 2026-03-29 the clocks in Brussels jump from 02:00 to 03:00.
    with pytest.raises(ArgError, match=r"does not exist in Europe/Brussels.*03:30"):
        resolve_local(date(2026, 3, 29), time(2, 30), BRUSSELS)


def test_a_time_that_happens_twice_when_the_clocks_go_back_means_the_first_one() -> None:
    # On 2026-10-25 the clocks in Brussels go back from 03:00 to 02:00.
    start, note = resolve_local(date(2026, 10, 25), time(2, 30), BRUSSELS)
    assert start == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    assert note is not None and "happens twice" in note and "CEST" in note


def test_an_event_across_the_night_of_the_clock_change_lasts_exactly_its_hours() -> None:
    start, end, _ = plan_times(
        date(2026, 3, 28), time(23, 0), parse_duration("4h"), BRUSSELS, now=NOW, config=CONFIG
    )
    assert start == datetime(2026, 3, 28, 22, 0, tzinfo=UTC)
    assert end - start == timedelta(hours=4)
    shown = when_text(start, end, BRUSSELS)
    assert shown == "Sat 28 Mar 2026 23:00 CET – Sun 29 Mar 2026 04:00 CEST (Europe/Brussels)"


def test_a_short_event_on_the_night_the_clocks_go_back_names_the_zone_of_each_time() -> None:
    start = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    shown = when_text(start, start + timedelta(hours=1), BRUSSELS)
    assert shown == "Sun 25 Oct 2026, 02:30 CEST – 02:30 CET (Europe/Brussels)"


def test_a_multi_day_event_keeps_its_local_time_of_day_across_the_clock_change() -> None:
    start, _ = resolve_local(date(2026, 3, 28), time(9, 0), BRUSSELS)
    end = end_of(start, Length(days=2), BRUSSELS)
    assert end == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)  # 09:00 CEST
    assert end - start == timedelta(hours=47)


def test_times_are_shown_with_the_zone_named() -> None:
    start = datetime(2026, 5, 12, 8, 0, tzinfo=UTC)
    shown = when_text(start, start + timedelta(minutes=90), BRUSSELS)
    assert shown == "Tue 12 May 2026, 10:00–11:30 CEST (Europe/Brussels)"
    assert when_text(start, start + timedelta(hours=1), "UTC") == "Tue 12 May 2026, 08:00–09:00 UTC"


def test_dates_in_the_past_are_refused_with_the_current_time() -> None:
    with pytest.raises(ArgError, match=r"in the past; it is now 2026-03-01 13:00"):
        plan_times(
            date(2026, 2, 28), time(10, 0), Length(minutes=60), BRUSSELS, now=NOW, config=CONFIG
        )


def test_dates_years_ahead_and_endless_events_are_refused() -> None:
    with pytest.raises(ArgError, match="check the year"):
        plan_times(
            date(2036, 3, 1), time(10, 0), Length(minutes=60), BRUSSELS, now=NOW, config=CONFIG
        )
    with pytest.raises(ArgError, match="14 days at most"):
        plan_times(date(2026, 4, 1), time(10, 0), Length(days=30), BRUSSELS, now=NOW, config=CONFIG)


def _create_command() -> tuple[Registry, object]:
    registry = Registry(prefix="!")
    register(registry)
    command = registry.get("event create")
    assert command is not None
    return registry, command


def test_the_create_command_reads_a_quoted_title_and_options_without_a_cop_code() -> None:
    _, command = _create_command()
    values = parse_arguments(
        'study-visit 2026-06-02 09:00 2d "Solar parks in Portugal" where="Évora, PT" '
        "capacity=12 tz=europe/lisbon",
        command.args,  # type: ignore[attr-defined]
        command.options,  # type: ignore[attr-defined]
    )
    assert values["cop"] is None
    assert values["kind"] == "study-visit"
    assert values["duration"] == Length(days=2)
    assert values["title"] == "Solar parks in Portugal"
    assert values["options"] == {"where": "Évora, PT", "capacity": 12, "tz": "Europe/Lisbon"}


def test_the_create_command_usage_line_shows_every_part() -> None:
    registry, command = _create_command()
    usage = command.usage("!")  # type: ignore[attr-defined]
    assert usage == (
        '!event create [<COP>] <kind> <YYYY-MM-DD> <HH:MM> <duration> "<title>" '
        "[where=…] [url=…] [capacity=…] [tz=…]"
    )
