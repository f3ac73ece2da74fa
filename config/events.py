"""The ``[events]`` section: reminders, calendar feeds and limits for events."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, field_validator

from config.models import Duration, _Section

EVENT_KINDS = (
    "online-meeting",
    "in-person-meeting",
    "study-visit",
    "market-dialogue",
    "pitching-session",
    "industry-meeting",
)
"""The kinds of event a CoP holds (``!event new <kind> …``)."""
IN_PERSON_KINDS: tuple[str, ...] = tuple(kind for kind in EVENT_KINDS if kind != "online-meeting")
"""The kinds people travel to (by default the ones a travel claim may be for)."""


class EventsConfig(_Section):
    reminders: list[Duration] = Field(
        default_factory=lambda: [timedelta(hours=24), timedelta(hours=1)]
    )
    """How long before the start people who answered yes get a reminder (one DM each)."""
    reminder_check: Duration = timedelta(seconds=60)
    """How often the bot looks for reminders that are due (a safety net for the exact jobs)."""
    feed_history: Duration = timedelta(days=60)
    """How far back calendar feeds keep past events."""
    max_ahead: Duration = timedelta(days=730)
    """Events further in the future than this are refused (usually a typo in the year)."""
    max_duration: Duration = timedelta(days=14)
    """The longest event that can be created."""

    @field_validator("reminders")
    @classmethod
    def _reminders_positive(cls, value: list[timedelta]) -> list[timedelta]:
        if any(offset < timedelta(minutes=1) for offset in value):
            raise ValueError("each reminder must be at least 1m before the start, e.g. 24h")
        if len(set(value)) != len(value):
            raise ValueError("the same reminder time is listed twice")
        return sorted(value, reverse=True)

    @field_validator("reminder_check")
    @classmethod
    def _check_interval(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=5):
            raise ValueError("must be at least 5s")
        return value
