"""The bot reads the wall clock in one place only: everything else is given the time.

Storage functions, command handlers and the Matrix core take ``now`` (or a clock) from their
caller, so a test can pin "now" and the suite passes on any date. ``./dev test`` also runs
the unit and storage suites with the clock moved a year ahead (``BBWT_TEST_CLOCK_SHIFT``).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "commands", "storage", "config")
WALL_CLOCK = {
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
    ("time", "time"),
    ("time", "time_ns"),
    ("time", "localtime"),
    ("time", "gmtime"),
}
# The one wall clock: BotApp's default, handed to everything else.
ALLOWED = {("bot/app.py", "datetime", "now")}


def wall_clock_reads(root: Path) -> list[str]:
    found: list[str] = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=relative)
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                    continue
                owner = node.func.value
                name = owner.id if isinstance(owner, ast.Name) else None
                if name is None and isinstance(owner, ast.Attribute):
                    name = owner.attr  # datetime.datetime.now
                key = (name or "", node.func.attr)
                if key in WALL_CLOCK and (relative, *key) not in ALLOWED:
                    found.append(f"{relative}:{node.lineno} {key[0]}.{key[1]}()")
    return found


def test_no_code_reads_the_wall_clock_except_the_bots_one_clock() -> None:
    assert wall_clock_reads(REPO) == []


def test_the_check_finds_a_wall_clock_read_in_storage(tmp_path: Path) -> None:
    (tmp_path / "storage").mkdir()
    (tmp_path / "storage" / "x.py").write_text(
        "import datetime, time\na = datetime.datetime.now(datetime.UTC)\nb = time.time()\n",
        encoding="utf-8",
    )
    (tmp_path / "bot").mkdir()
    (tmp_path / "bot" / "app.py").write_text(
        "from datetime import datetime\nclock = lambda: datetime.now()\n", encoding="utf-8"
    )

    assert wall_clock_reads(tmp_path) == [
        "storage/x.py:2 datetime.now()",
        "storage/x.py:3 time.time()",
    ]
