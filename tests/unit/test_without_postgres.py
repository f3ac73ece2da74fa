"""``./dev test`` on a machine without PostgreSQL: everything else runs, the summary says
which tests did not and how to install PostgreSQL; under CI those tests fail instead.

Each case runs pytest on the PostgreSQL variant of one storage test, with the test
PostgreSQL pointed at a closed port (the shared server is left alone)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ONE_TEST = (
    "tests/storage/test_foundation_storage.py::test_state_values_are_kept_and_replaced[postgresql]"
)
CLOSED = "postgresql://postgres@127.0.0.1:1/test"


def run_pytest(**env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("CI", "BBWT_TEST_REQUIRE_PG")}
    environ.update(BBWT_TEST_PG=CLOSED, **env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", ONE_TEST],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_without_postgresql_the_rest_runs_and_the_summary_says_what_did_not() -> None:
    result = run_pytest()

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert "PostgreSQL is not reachable on 127.0.0.1:1, so 1 test did not run" in result.stdout
    assert "tests/storage/test_foundation_storage.py: 1" in result.stdout
    assert "sudo apt-get install postgresql" in result.stdout
    assert "pg_ctlcluster" in result.stdout


def test_under_ci_postgresql_stays_required() -> None:
    result = run_pytest(CI="true")

    assert result.returncode != 0
    assert "1 error" in result.stdout
    assert "this run needs it (CI)" in result.stdout


def test_ci_runs_exactly_dev_test() -> None:
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert [line for line in lines if line and not line.startswith("#")][-1] == "exec ./dev test"
