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

from tests.dbs import PG_HOWTO, PG_SKIP_REASON, pg_where
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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Without PostgreSQL (not under CI) its tests are skipped: say which, and how to run them."""
    per_file: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = getattr(report, "longrepr", None)
        if isinstance(longrepr, tuple) and PG_SKIP_REASON in str(longrepr[-1]):
            path = report.nodeid.split("::", 1)[0]
            per_file[path] = per_file.get(path, 0) + 1
    if not per_file:
        return
    total = sum(per_file.values())
    terminalreporter.section("tests that did not run: no PostgreSQL", yellow=True)
    terminalreporter.write_line(
        f"PostgreSQL is not reachable on {pg_where()}, so {total} "
        f"{'test' if total == 1 else 'tests'} did not run (the PostgreSQL variant of each "
        "storage and command test, and the end-to-end tests that need PostgreSQL):"
    )
    for path, count in sorted(per_file.items()):
        terminalreporter.write_line(f"    {path}: {count}")
    terminalreporter.write_line(PG_HOWTO)


__all__ = [
    "BACKENDS",
    "db",
    "db_templates",
    "make_database_url",
    "migrated_database_url",
    "world",
]
