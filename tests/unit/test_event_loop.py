"""The event loop the bot's process runs on (``[process] event_loop``)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
import uvloop

from bot import loop as event_loop
from bot.cli import main
from config import ConfigError, load_config
from tests.support.config import write_config

REPO = Path(__file__).resolve().parents[2]


async def _loop_kind() -> str:
    await asyncio.sleep(0)
    return "uvloop" if isinstance(asyncio.get_running_loop(), uvloop.Loop) else "asyncio"


pytestmark = pytest.mark.usefixtures("clean_env")


def test_the_bot_runs_on_uvloop_unless_the_configuration_asks_for_asyncio() -> None:
    assert load_config(REPO / "bbwt_bot.toml").process.event_loop == "uvloop"
    assert event_loop.run(_loop_kind()) == "uvloop"
    assert event_loop.run(_loop_kind(), "uvloop") == "uvloop"
    assert event_loop.run(_loop_kind(), "asyncio") == "asyncio"


def test_without_uvloop_installed_the_bot_runs_on_asyncio_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    assert event_loop.run(_loop_kind(), "uvloop") == "asyncio"
    assert "uvloop is not installed" in caplog.text


def test_the_event_loop_is_set_in_the_file_or_the_environment_and_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, '[process]\nevent_loop = "asyncio"\n')
    assert load_config(path).process.event_loop == "asyncio"
    with pytest.raises(SystemExit):
        main(["check-config", str(path)])
    assert "Event loop: asyncio" in capsys.readouterr().out

    monkeypatch.setenv("BBWT_PROCESS__EVENT_LOOP", "uvloop")
    assert load_config(path).process.event_loop == "uvloop"
    monkeypatch.setenv("BBWT_PROCESS__EVENT_LOOP", "tokio")
    with pytest.raises(ConfigError) as problem:
        load_config(path)
    assert "event_loop" in str(problem.value)
    assert "'uvloop' or 'asyncio'" in str(problem.value)
