"""Event times: local wall-clock times to UTC and back (clock changes included), lengths,
and how times are written for people. Times are stored in UTC with the IANA zone they were
given in; everything shown names the zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from commands.args import ArgError
from commands.events.parse import Length
from commands.text import plural
from config.events import EventsConfig
from storage.events import Event


def resolve_local(day: date, at: time, zone_name: str) -> tuple[datetime, str | None]:
    """The UTC instant of a wall-clock time in a zone, and a note when it was ambiguous.

    A time that does not exist (skipped when the clocks go forward) is refused with the
    time it would become; a time that happens twice (the clocks go back) means the first.
    """
    zone = ZoneInfo(zone_name)
    naive = datetime.combine(day, at)
    first = naive.replace(tzinfo=zone, fold=0)
    second = naive.replace(tzinfo=zone, fold=1)
    back = first.astimezone(UTC).astimezone(zone)
    if back.replace(tzinfo=None) != naive:
        raise ArgError(
            f"{day.isoformat()} {at:%H:%M} does not exist in {zone_name}: the clocks move "
            f"forward that night. Did you mean {back:%H:%M}?"
        )
    if first.utcoffset() != second.utcoffset():
        note = (
            f"{at:%H:%M} happens twice on {day.isoformat()} in {zone_name} because the clocks "
            f"go back that night; I used the first one ({first:%H:%M %Z}, "
            f"{first.astimezone(UTC):%H:%M} UTC)."
        )
        return first.astimezone(UTC), note
    return first.astimezone(UTC), None


def end_of(start: datetime, length: Length, zone_name: str) -> datetime:
    """Whole days keep the local time of day (across clock changes); hours are exact."""
    end = start
    if length.days:
        zone = ZoneInfo(zone_name)
        local = start.astimezone(zone).replace(tzinfo=None) + timedelta(days=length.days)
        end = local.replace(tzinfo=zone).astimezone(UTC)
    return end + timedelta(minutes=length.minutes)


def plan_times(
    day: date,
    at: time,
    length: Length,
    zone_name: str,
    *,
    now: datetime,
    config: EventsConfig,
) -> tuple[datetime, datetime, str | None]:
    """Start and end in UTC for an event given in local time; refuses the past."""
    start, note = resolve_local(day, at, zone_name)
    if start <= now:
        shown = now.astimezone(ZoneInfo(zone_name))
        raise ArgError(
            f"{day.isoformat()} {at:%H:%M} ({zone_name}) is in the past; it is now "
            f"{shown:%Y-%m-%d %H:%M} there"
        )
    if start - now > config.max_ahead:
        raise ArgError(f"{day.isoformat()} is very far ahead; please check the year")
    end = end_of(start, length, zone_name)
    if end - start > config.max_duration:
        raise ArgError(f"an event can last {plural(config.max_duration.days, 'day')} at most")
    return start, end, note


def when_text(start: datetime, end: datetime, zone_name: str, *, year: bool = True) -> str:
    """``Tue 12 May 2026, 10:00–11:30 CEST (Europe/Brussels)``."""
    zone = ZoneInfo(zone_name)
    s = start.astimezone(zone)
    e = end.astimezone(zone)
    day_fmt = "%a %d %b %Y" if year else "%a %d %b"
    abbr_s, abbr_e = s.tzname() or "", e.tzname() or ""
    same_day = s.date() == e.date() or (e - s <= timedelta(hours=24) and e.time() == time(0))
    if same_day:
        if abbr_s == abbr_e:
            text = f"{s.strftime(day_fmt)}, {s:%H:%M}–{e:%H:%M} {abbr_e}"
        else:  # the clocks change during the event: each time with its own zone
            text = f"{s.strftime(day_fmt)}, {s:%H:%M} {abbr_s} – {e:%H:%M} {abbr_e}"
    else:
        first = f"{s:%H:%M}" if abbr_s == abbr_e else f"{s:%H:%M} {abbr_s}"
        text = f"{s.strftime(day_fmt)} {first} – {e.strftime(day_fmt)} {e:%H:%M} {abbr_e}"
    if zone_name not in (abbr_s, abbr_e):
        text += f" ({zone_name})"
    return text.replace("  ", " ")


def event_when(event: Event, zone_name: str | None = None, *, year: bool = True) -> str:
    return when_text(event.starts_at, event.ends_at, zone_name or event.timezone, year=year)


def duration_of(event: Event) -> Length:
    """Whole local days when the event ends at the time of day it starts, else minutes."""
    zone = ZoneInfo(event.timezone)
    start, end = event.starts_at.astimezone(zone), event.ends_at.astimezone(zone)
    if end.date() > start.date() and end.time() == start.time():
        return Length(days=(end.date() - start.date()).days)
    return Length(minutes=int((event.ends_at - event.starts_at).total_seconds() // 60))


def reminder_list(config: EventsConfig, starts_at: datetime, now: datetime) -> str:
    """``24 hours and 1 hour``: the reminders that will still go out before an event that
    starts at ``starts_at`` (empty when it starts too soon for any)."""
    return " and ".join(
        offset_text(offset) for offset in config.reminders if starts_at - offset > now
    )


def offset_text(offset: timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    if minutes % 1440 == 0 and minutes >= 2880:
        days = minutes // 1440
        return plural(days, "day")
    if minutes % 60 == 0:
        hours = minutes // 60
        return plural(hours, "hour")
    return plural(minutes, "minute")


def in_text(delta: timedelta) -> str:
    """``24 hours``, ``59 minutes``: how soon something starts."""
    minutes = max(1, round(delta.total_seconds() / 60))
    if minutes < 90:
        return plural(minutes, "minute")
    hours = round(minutes / 60)
    if hours < 48:
        return f"{hours} hours"
    return f"{round(hours / 24)} days"
