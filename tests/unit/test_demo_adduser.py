"""``./dev demo adduser NAME`` answers plainly when it cannot add anyone."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.demo import adduser


async def test_a_name_matrix_cannot_take_is_refused_with_an_example(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await adduser(tmp_path / "synapse", "Maria Rossi!") == 2
    assert "cannot be a Matrix user name" in capsys.readouterr().err


async def test_without_a_demo_it_says_to_start_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await adduser(tmp_path / "synapse", "maria") == 1
    assert "start it once with ./dev demo" in capsys.readouterr().err
