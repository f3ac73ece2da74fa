"""Writing a configuration file for a test, and what ``load_config`` says is wrong with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import ConfigError, load_config


def write_config(folder: Path, text: str) -> Path:
    path = folder / "bbwt_bot.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_problems(folder: Path, text: str) -> list[tuple[str, str]]:
    """The (key, problem) pairs ``load_config`` refuses a file holding ``text`` with."""
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(folder, text))
    return list(caught.value.problems)
