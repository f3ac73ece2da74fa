"""When each CoP's digest is due: the ``[digest]`` section and its per-CoP overrides."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from commands.digest import due_moment
from config import load_config
from config.digest import DigestConfig
from tests.support.config import config_problems

BRUSSELS = ZoneInfo("Europe/Brussels")


def test_the_default_digest_is_monday_at_nine() -> None:
    schedule = DigestConfig().schedule_for("HDEV")

    assert (schedule.enabled, schedule.weekday, schedule.time) == (True, "monday", "09:00")


def test_a_cop_can_have_its_own_day_and_time_and_keeps_the_rest() -> None:
    config = DigestConfig(
        weekday="Tue", time="8:30", cops={"hdev": {"weekday": "FRIDAY"}, "MOB": {"enabled": False}}
    )

    assert config.schedule_for("HDEV").weekday == "friday"
    assert config.schedule_for("HDEV").time == "08:30"
    assert config.schedule_for("SOLAR").weekday == "tuesday"
    assert config.schedule_for("MOB").enabled is False


def test_the_due_moment_is_in_the_cops_time_zone() -> None:
    schedule = DigestConfig().schedule_for("HDEV")
    wednesday = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

    due = due_moment(schedule, BRUSSELS, wednesday)

    assert due == datetime(2026, 11, 23, 9, 0, tzinfo=BRUSSELS)
    assert due.astimezone(UTC).hour == 8  # CET is UTC+1 in November


def test_the_due_moment_belongs_to_the_iso_week_in_the_cops_zone() -> None:
    # Sunday 23:30 UTC is already Monday in Helsinki: a new week there.
    schedule = DigestConfig(weekday="monday", time="00:15").schedule_for("X")
    helsinki = ZoneInfo("Europe/Helsinki")

    due = due_moment(schedule, helsinki, datetime(2026, 11, 29, 23, 30, tzinfo=UTC))

    assert due == datetime(2026, 11, 30, 0, 15, tzinfo=helsinki)


def test_summer_time_keeps_the_local_hour() -> None:
    schedule = DigestConfig().schedule_for("HDEV")

    due = due_moment(schedule, BRUSSELS, datetime(2026, 7, 1, 12, 0, tzinfo=UTC))

    assert due.astimezone(UTC).hour == 7  # CEST is UTC+2


@pytest.mark.parametrize(
    ("line", "key", "problem"),
    [
        ('weekday = "someday"', "digest.weekday", "day of the week"),
        ('time = "25:00"', "digest.time", "HH:MM"),
        ('empty_week = "shout"', "digest.empty_week", "say"),
        ('cops = { "not a code" = { weekday = "mon" } }', "digest.cops", "CoP code"),
    ],
)
def test_a_wrong_digest_setting_names_the_key(
    tmp_path: Path, line: str, key: str, problem: str
) -> None:
    problems = config_problems(tmp_path, f"[digest]\n{line}\n")

    assert any(k.startswith(key) and problem in msg for k, msg in problems), problems


def test_the_shipped_configuration_file_is_valid() -> None:
    settings = load_config(Path(__file__).resolve().parents[2] / "bbwt_bot.toml")

    assert settings.digest.schedule_for("HDEV").weekday == "monday"
