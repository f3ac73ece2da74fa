"""Parsers of the event commands' arguments: kinds, dates, times, durations, zones,
titles, places, links, seats, answers, event numbers and lists of people."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, time
from functools import lru_cache
from zoneinfo import available_timezones

from commands.args import Arg, ArgError, positive_int, prefixed_id, user_id
from commands.text import plural
from storage.events import KINDS, MAYBE, NO, YES


def parse_kind(token: str) -> str:
    value = token.strip().lower().replace("_", "-")
    if value in KINDS:
        return value
    if re.match(r"^\d{4}-\d{1,2}-\d{1,2}$", value):
        raise ArgError(f"the kind of event is missing before the date (kinds: {', '.join(KINDS)})")
    close = [kind for kind in KINDS if kind.split("-")[0] == value.split("-")[0]]
    hint = f" Did you mean {close[0]}?" if close else ""
    raise ArgError(f"{token!r} is not a kind of event I know.{hint} Kinds: {', '.join(KINDS)}")


def parse_date(token: str) -> date:
    match = re.match(r"^(\d{4})-(\d{1,2})-(\d{1,2})$", token.strip())
    if not match:
        raise ArgError(f"{token!r} is not a date like 2026-05-12 (year-month-day)")
    year, month, day = (int(part) for part in match.groups())
    try:
        value = date(year, month, day)
    except ValueError:
        raise ArgError(f"{token} is not a real date (check the month and the day)") from None
    if year < 2000:
        raise ArgError(f"{token} is too long ago; please check the year")
    return value


def parse_time(token: str) -> time:
    match = re.match(r"^(\d{1,2})[:.h](\d{2})$", token.strip())
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ArgError(f"{token!r} is not a time like 14:30 (24-hour clock)")
    return time(int(match.group(1)), int(match.group(2)))


@dataclass(frozen=True)
class Length:
    """How long an event lasts: whole days follow the local calendar, the rest is exact."""

    days: int = 0
    minutes: int = 0

    def text(self) -> str:
        parts = []
        if self.days:
            parts.append(plural(self.days, "day"))
        hours, minutes = divmod(self.minutes, 60)
        if hours:
            parts.append(plural(hours, "hour"))
        if minutes:
            parts.append(plural(minutes, "minute"))
        return " ".join(parts) or "0 minutes"


_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)(?:m|min))?$")


def parse_duration(token: str) -> Length:
    value = token.strip().lower().replace(" ", "")
    match = _DURATION.match(value)
    if not value or not match:
        raise ArgError(f"{token!r} is not a duration like 90m, 2h, 1h30m or 2d")
    days, hours, minutes = (int(part or 0) for part in match.groups())
    if days == hours == minutes == 0:
        raise ArgError("the duration must be longer than zero, e.g. 90m, 2h or 1d")
    return Length(days=days, minutes=hours * 60 + minutes)


@lru_cache(maxsize=1)
def _zones() -> dict[str, str]:
    names = available_timezones() | {"UTC"}
    return {name.lower(): name for name in names}


def parse_zone(token: str) -> str:
    name = _zones().get(token.strip().lower())
    if name is None:
        raise ArgError(
            f"{token!r} is not a time zone I know; use a name such as Europe/Brussels, "
            "Europe/Lisbon or UTC"
        )
    return name


def parse_title(token: str) -> str:
    value = " ".join(token.split())
    if not value:
        raise ArgError("the title is empty")
    if len(value) > 200:
        raise ArgError("the title is too long (200 characters at most)")
    return value


def parse_where(token: str) -> str:
    value = " ".join(token.split())
    if len(value) > 300:
        raise ArgError("where= is too long (300 characters at most)")
    return value


def parse_url(token: str) -> str:
    value = token.strip()
    if value and (not re.match(r"^https?://[^\s/]+\S*$", value) or len(value) > 500):
        raise ArgError(f"{token!r} is not a web link starting with https://")
    return value


def parse_capacity(token: str) -> int | None:
    if token.strip().lower() in ("none", "unlimited", "no", "-"):
        return None
    value = positive_int(token.strip())
    if value > 10000:
        raise ArgError("capacity is too large (10000 seats at most)")
    return value


def parse_answer(token: str) -> str:
    value = token.strip().lower()
    aliases = {"y": YES, "going": YES, "n": NO, "not": NO, "m": MAYBE, "?": MAYBE}
    value = aliases.get(value, value)
    if value in (YES, NO, MAYBE):
        return value
    raise ArgError(f"{token!r} is not an answer; use yes, no or maybe")


_event_number = prefixed_id("E", "an event")


def parse_event_id(token: str) -> int:
    return int(_event_number(token))


event_arg = Arg("event", parse_event_id, metavar="<E#>")
"""The ``<E#>`` argument of the commands on one event."""


def parse_event_or_sub(token: str) -> int:
    """``!event <E#>``; a wrong word gets a hint about the subcommands."""
    try:
        return parse_event_id(token)
    except ArgError:
        raise ArgError(
            f"{token!r} is not an event number such as E12 (or one of: create, edit, cancel)"
        ) from None


def parse_user_list(text: str) -> list[str]:
    users: list[str] = []
    for token in re.split(r"[\s,]+", text.strip()):
        if token and (value := user_id(token)) not in users:
            users.append(value)
    if not users:
        raise ArgError("name at least one person, e.g. @anna:example.org")
    return users
