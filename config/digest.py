"""The ``[digest]`` section: when each CoP room gets its weekly digest."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

from pydantic import Field, field_validator

from config.models import COP_CODE_RE, Duration, _Section, upper_keys

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_TIME_RE = re.compile(r"^\s*([01]?\d|2[0-3]):([0-5]\d)\s*$")


def parse_weekday(value: Any) -> str:
    """``monday``, ``Mon`` or ``MONDAY`` -> ``monday``."""
    text = str(value).strip().lower()
    for day in WEEKDAYS:
        if text in (day, day[:3]):
            return day
    raise ValueError("must be a day of the week such as monday (or mon)")


def parse_time(value: Any) -> str:
    """``9:00`` or ``09:00`` -> ``09:00``."""
    match = _TIME_RE.match(str(value))
    if not match:
        raise ValueError("must be a time of day as HH:MM, e.g. 09:00")
    return f"{int(match.group(1)):02d}:{match.group(2)}"


class DigestOverride(_Section):
    """Per-CoP changes to the digest schedule; keys left out follow ``[digest]``."""

    enabled: bool | None = None
    weekday: str | None = None
    time: str | None = None

    @field_validator("weekday")
    @classmethod
    def _weekday(cls, value: str | None) -> str | None:
        return None if value is None else parse_weekday(value)

    @field_validator("time")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        return None if value is None else parse_time(value)


class DigestSchedule(_Section):
    """The effective schedule of one CoP."""

    enabled: bool
    weekday: str
    time: str

    @property
    def weekday_index(self) -> int:
        """0 = Monday, as ``date.weekday()``."""
        return WEEKDAYS.index(self.weekday)

    @property
    def clock_time(self) -> dt.time:
        hour, minute = self.time.split(":")
        return dt.time(int(hour), int(minute))


class DigestConfig(_Section):
    enabled: bool = True
    """Post weekly digests at all."""
    weekday: str = "monday"
    time: str = "09:00"
    """Local time in the CoP's time zone."""
    empty_week: Literal["say", "skip"] = "say"
    """A week with nothing new: ``say`` posts one line, ``skip`` posts nothing."""
    max_items: int = Field(15, ge=1, le=50)
    """At most this many lines per section; the rest is summed up with a pointer."""
    retry_every: Duration = dt.timedelta(minutes=10)
    """How often a digest that is due but not posted (its run failed, say on a database
    hiccup) is tried again, without waiting for a restart. Posting stays once a week."""
    cops: dict[str, DigestOverride] = Field(default_factory=dict)
    """Per-CoP overrides keyed by CoP code: ``[digest.cops.HDEV]``."""

    @field_validator("weekday")
    @classmethod
    def _weekday(cls, value: str) -> str:
        return parse_weekday(value)

    @field_validator("time")
    @classmethod
    def _time(cls, value: str) -> str:
        return parse_time(value)

    @field_validator("cops", mode="before")
    @classmethod
    def _codes(cls, value: Any) -> Any:
        return upper_keys(value, COP_CODE_RE, "a CoP code such as HDEV")

    def schedule_for(self, code: str) -> DigestSchedule:
        override = self.cops.get(code.upper()) or DigestOverride()
        return DigestSchedule(
            enabled=self.enabled if override.enabled is None else override.enabled,
            weekday=override.weekday or self.weekday,
            time=override.time or self.time,
        )
