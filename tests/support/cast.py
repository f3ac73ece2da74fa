"""Who is who in every test: two CoPs, people in every role, their rooms, one clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from config.models import Settings

BOT = "@bot:test"
ADMIN = "@sec:test"  # the Secretariat
MOD = "@mod:test"  # moderates HDEV (configuration)
MOD_SOLAR = "@mod-solar:test"  # moderates SOLAR (configuration)
ANNA = "@anna:test"  # member of HDEV
BEN = "@ben:test"  # member of HDEV
CARL = "@carl:test"  # member of HDEV
SOFIA = "@sofia:test"  # member of SOLAR
STRANGER = "@stranger:test"  # nobody
APPLICANT = "@applicant:test"  # no profile yet
GUEST = "@sales:supplier.test"  # a market actor

HDEV_ROOM = "!hdev:test"
SOLAR_ROOM = "!solar:test"
MGMT = "!mgmt:test"
OTHER_ROOM = "!other:test"  # a shared room that is no CoP's
ROOMS = {"HDEV": HDEV_ROOM, "SOLAR": SOLAR_ROOM}

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
SEEDED = datetime(2026, 1, 5, tzinfo=UTC)
"""When the cast joined: long before the weeks the digests look at."""

MEMBERS = {
    ANNA: ("HDEV", "City of Oslo", "NO", "local-authority"),
    BEN: ("HDEV", "Ville de Lyon", "FR", "local-authority"),
    CARL: ("HDEV", "Comune di Milano", "IT", "local-authority"),
    SOFIA: ("SOLAR", "Région Île-de-France", "FR", "regional-authority"),
}

# One person of each kind, for tests that walk every kind of caller.
CALLERS = {
    "anyone": STRANGER,
    "member of another CoP": SOFIA,
    "member": ANNA,
    "moderator of another CoP": MOD_SOLAR,
    "moderator": MOD,
    "admin": ADMIN,
}


def dm_room(user: str) -> str:
    """The room id of ``user``'s direct chat with the bot."""
    return f"!dm-{user}"


def make_settings(**sections: Any) -> Settings:
    """The cast's configuration; ``sections`` replace whole sections (``digest={...}``)."""
    values: dict[str, Any] = {
        "matrix": {"user_id": BOT},
        "secretariat": {"admins": [ADMIN]},
        "http": {"host": "127.0.0.1", "port": 8099, "public_url": "https://bot.example.org/"},
        "cops": [
            {"code": "HDEV", "name": "Heavy-duty electric vehicles", "moderators": [MOD]},
            {
                "code": "SOLAR",
                "name": "Sustainable solar panels",
                "moderators": [MOD_SOLAR],
                "timezone": "Europe/Lisbon",
            },
        ],
        "claims": {"rates": {"SEK": "11.05"}, "rates_url": ""},
    }
    values.update(sections)
    return Settings(**values)


def in_days(days: float, now: datetime = NOW) -> str:
    """A date ``days`` after ``now`` as YYYY-MM-DD."""
    return (now + timedelta(days=days)).strftime("%Y-%m-%d")
