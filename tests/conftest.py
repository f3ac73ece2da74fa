"""Shared fixtures: the test world and its database on each backend (``tests/support``),
and an optional clock shift.

``BBWT_TEST_CLOCK_SHIFT=<days>`` moves the wall clock of the whole test run that many days
ahead (``time-machine``, ticking): ``./dev test`` runs the unit and storage suites once more
that way, which proves that no test and no code under test depends on today's date.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from tests.support.database import (
    BACKENDS,
    db,
    db_templates,
    make_database_url,
    migrated_database_url,
)
from tests.support.world import world

_TRAVEL: time_machine.travel | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _TRAVEL  # noqa: PLW0603 - one clock shift for the whole run
    days = os.environ.get("BBWT_TEST_CLOCK_SHIFT", "").strip()
    if days and _TRAVEL is None:
        _TRAVEL = time_machine.travel(datetime.now(UTC) + timedelta(days=float(days)), tick=True)
        _TRAVEL.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    global _TRAVEL  # noqa: PLW0603
    if _TRAVEL is not None:
        _TRAVEL.stop()
        _TRAVEL = None


def pytest_report_header(config: pytest.Config) -> str | None:
    if _TRAVEL is not None:
        return f"clock moved ahead: it is {datetime.now(UTC):%Y-%m-%d %H:%M} UTC for this run"
    return None


__all__ = [
    "BACKENDS",
    "db",
    "db_templates",
    "make_database_url",
    "migrated_database_url",
    "world",
]
