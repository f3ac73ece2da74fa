"""Fixtures of the unit tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``BBWT_`` variable of the shell running the tests reaches the configuration."""
    for key in list(os.environ):
        if key.startswith("BBWT_"):
            monkeypatch.delenv(key)
