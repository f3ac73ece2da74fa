"""Reading bbwt_bot.toml and environment overrides."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bot.cli import main
from config import ConfigError, load_config
from tests.support.config import config_problems, write_config

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("clean_env")


def test_the_shipped_example_config_is_valid_and_seeds_the_ten_cops() -> None:
    settings = load_config(REPO / "bbwt_bot.toml")
    codes = [cop.code for cop in settings.cops]
    assert codes == ["ZECS", "HDEV", "CC", "SOLAR", "MOB", "ICT", "SOCIAL", "NEB", "HCE", "HCS"]
    assert settings.matrix.command_prefix == "!"
    assert settings.secretariat.timezone == "Europe/Brussels"
    assert settings.database.url.startswith("sqlite+aiosqlite://")


def test_defaults_apply_when_keys_are_left_out(tmp_path: Path) -> None:
    settings = load_config(write_config(tmp_path, '[matrix]\nuser_id = "@bot:example.org"\n'))
    assert settings.matrix.offline_window == timedelta(hours=24)
    assert settings.database.url == "sqlite+aiosqlite:///bbwt_bot.db"
    assert settings.matrix.server_name == "example.org"


def test_environment_variables_override_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path, '[matrix]\nhomeserver = "http://file:8008"\n')
    monkeypatch.setenv("BBWT_MATRIX__HOMESERVER", "https://matrix.example.org")
    monkeypatch.setenv("BBWT_DATABASE__URL", "postgresql+asyncpg://u@127.0.0.1/bbwt")
    monkeypatch.setenv("BBWT_SECRETARIAT__ADMINS", '["@a:example.org"]')
    monkeypatch.setenv("BBWT_MATRIX__PASSWORD", "s3cret")
    settings = load_config(path)
    assert settings.matrix.homeserver == "https://matrix.example.org"
    assert settings.database.url.startswith("postgresql+asyncpg://")
    assert settings.secretariat.admins == ["@a:example.org"]
    assert settings.matrix.password is not None
    assert settings.matrix.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


def test_a_password_in_the_file_is_refused_with_the_variable_to_use(tmp_path: Path) -> None:
    assert (
        "matrix.password",
        "secrets may not be in the file; set BBWT_MATRIX__PASSWORD instead",
    ) in config_problems(tmp_path, '[matrix]\npassword = "oops"\n')


def test_every_wrong_key_is_named_with_what_is_wrong(tmp_path: Path) -> None:
    text = """
[matrix]
homeserver = "matrix.example.org"
user_id = "bot"
offline_window = "soon"
[secretariat]
timezone = "Europe/Atlantis"
admins = ["@ok:example.org", "nobody"]
[[cops]]
code = "HDEV"
name = "One"
[[cops]]
code = "hdev"
name = "Two"
[[cops]]
code = "X"
name = "Bad code"
"""
    problems = config_problems(tmp_path, text)
    keys = {key for key, _ in problems}
    assert {
        "matrix.homeserver",
        "matrix.user_id",
        "matrix.offline_window",
        "secretariat.timezone",
        "secretariat.admins[1]",
        "cops[2] (X).code",
    } <= keys
    assert any("Europe/Atlantis" in problem for _, problem in problems)


def test_duplicate_cop_codes_are_refused(tmp_path: Path) -> None:
    text = '[[cops]]\ncode = "HDEV"\nname = "A"\n[[cops]]\ncode = "hdev"\nname = "B"\n'
    with pytest.raises(ConfigError, match="repeated: HDEV"):
        load_config(write_config(tmp_path, text))


def test_an_unknown_key_is_reported(tmp_path: Path) -> None:
    problems = config_problems(tmp_path, '[matrix]\nhomserver = "http://typo"\n')
    assert problems[0][0] == "matrix.homserver"


def test_check_config_prints_a_summary_or_the_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as ok:
        main(["check-config", str(REPO / "bbwt_bot.toml")])
    assert ok.value.code == 0
    assert "CoPs (10)" in capsys.readouterr().out

    bad = write_config(tmp_path, "[http]\nport = 99999\n")
    with pytest.raises(SystemExit) as failed:
        main(["check-config", str(bad)])
    assert failed.value.code != 0
    assert "http.port" in capsys.readouterr().err


def test_retention_periods_read_weeks_and_years_that_are_never_short(tmp_path: Path) -> None:
    text = (
        '[privacy]\ninbound_retention = "6w"\naudit_retention = "3y"\n[claims]\nretention = "10y"\n'
    )
    settings = load_config(write_config(tmp_path, text))

    assert settings.privacy.inbound_retention == timedelta(weeks=6)
    assert settings.privacy.audit_retention == timedelta(days=3 * 366)
    assert settings.claims.retention == timedelta(days=10 * 366)
    assert settings.privacy.outbox_retention == timedelta(days=7)
    assert settings.privacy.member_retention == timedelta(days=366)


def test_commands_are_not_forgotten_before_they_are_too_old_to_run(tmp_path: Path) -> None:
    text = '[matrix]\noffline_window = "2d"\n[privacy]\ninbound_retention = "2d"\n'
    with pytest.raises(ConfigError, match="longer than matrix.offline_window"):
        load_config(write_config(tmp_path, text))
    short = config_problems(tmp_path, '[privacy]\noutbox_retention = "12h"\n')
    assert short[0][0] == "privacy.outbox_retention"


def test_the_pseudonym_key_comes_from_the_environment_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="BBWT_PRIVACY__PSEUDONYM_KEY"):
        load_config(write_config(tmp_path, f'[privacy]\npseudonym_key = "{"k" * 40}"\n'))
    monkeypatch.setenv("BBWT_PRIVACY__PSEUDONYM_KEY", "short")
    with pytest.raises(ConfigError, match="at least 32 characters"):
        load_config(write_config(tmp_path, ""))


def test_check_config_shows_the_retention_periods_and_warns_without_a_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["check-config", str(REPO / "bbwt_bot.toml")])
    out = capsys.readouterr().out
    assert "commands received (their text) 30 days; messages sent (their copy) 7 days" in out
    assert "audit log 2 years; people who left 1 year; settled travel claims 5 years" in out
    assert "Warning: set BBWT_PRIVACY__PSEUDONYM_KEY" in out

    monkeypatch.setenv("BBWT_PRIVACY__PSEUDONYM_KEY", "k" * 64)
    with pytest.raises(SystemExit):
        main(["check-config", str(REPO / "bbwt_bot.toml")])
    out = capsys.readouterr().out
    assert "Pseudonyms of erased people: key from the environment" in out
    assert "PSEUDONYM_KEY (e.g." not in out


def test_check_config_says_clearly_that_the_store_key_is_missing_or_too_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["check-config", str(REPO / "bbwt_bot.toml")])
    out = capsys.readouterr().out
    assert "store key NOT SET" in out
    assert "set BBWT_MATRIX__STORE_KEY to run" in out

    monkeypatch.setenv("BBWT_MATRIX__STORE_KEY", "too-short")
    with pytest.raises(ConfigError) as caught:
        load_config(REPO / "bbwt_bot.toml")
    assert caught.value.problems[0][0] == "matrix.store_key"
    assert "openssl rand" in caught.value.problems[0][1]

    monkeypatch.setenv("BBWT_MATRIX__STORE_KEY", "a-long-enough-random-secret")
    settings = load_config(REPO / "bbwt_bot.toml")
    assert "a-long-enough" not in repr(settings)
    assert settings.matrix.encrypt_rooms is True
    assert settings.matrix.key_wait == timedelta(seconds=30)


def test_a_store_key_in_the_file_is_refused(tmp_path: Path) -> None:
    assert (
        "matrix.store_key",
        "secrets may not be in the file; set BBWT_MATRIX__STORE_KEY instead",
    ) in config_problems(tmp_path, '[matrix]\nstore_key = "0123456789abcdefXYZ"\n')


def test_a_backlog_groups_time_budget_is_read_and_never_negative(tmp_path: Path) -> None:
    base = '[matrix]\nuser_id = "@bot:example.org"\n'
    assert load_config(write_config(tmp_path, base)).process.group_seconds == 0.02
    settings = load_config(write_config(tmp_path, base + "[process]\ngroup_seconds = 0.5\n"))
    assert settings.process.group_seconds == 0.5
    problems = config_problems(tmp_path, base + "[process]\ngroup_seconds = -1\n")
    assert [key for key, _ in problems] == ["process.group_seconds"]
    assert "greater than or equal to 0" in problems[0][1]
