"""The events' CSV exports for ``!export``: ``events`` (one row per event with its answer
counts) and ``rsvps`` (one row per answer, with waiting-list places and attendance)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from commands.context import Context
from commands.export import csv_bytes, exporter, utc_cell
from storage import events as store
from storage.events import WAITING


def _local(dt: datetime, zone_name: str) -> str:
    return dt.astimezone(ZoneInfo(zone_name)).strftime("%Y-%m-%d %H:%M")


@exporter("events", "events with their answer counts")
async def export_events(ctx: Context, cops: list[str]) -> tuple[str, bytes]:
    events = await store.list_events(ctx.session, cops=cops, include_cancelled=True)
    ids = [event.id for event in events]
    counts = await store.rsvp_counts(ctx.session, ids)
    attended = await store.attendance_counts(ctx.session, ids)
    header = [
        "event", "cop", "kind", "title", "start_local", "end_local", "timezone", "start_utc",
        "end_utc", "where", "url", "capacity", "status", "yes", "maybe", "waiting", "no",
        "attended",
    ]  # fmt: skip
    rows = [
        [
            e.code,
            e.cop_code,
            e.kind,
            e.title,
            _local(e.starts_at, e.timezone),
            _local(e.ends_at, e.timezone),
            e.timezone,
            utc_cell(e.starts_at),
            utc_cell(e.ends_at),
            e.location,
            e.url,
            e.capacity if e.capacity is not None else "",
            e.status,
            counts[e.id].yes,
            counts[e.id].maybe,
            counts[e.id].waiting,
            counts[e.id].no,
            attended.get(e.id, 0),
        ]  # fmt: skip
        for e in events
    ]
    return "events", csv_bytes(header, rows)


@exporter("rsvps", "answers to events, with waiting lists and attendance")
async def export_rsvps(ctx: Context, cops: list[str]) -> tuple[str, bytes]:
    events = await store.list_events(ctx.session, cops=cops, include_cancelled=True)
    by_id = {event.id: event for event in events}
    rsvps = await store.rsvps_of_events(ctx.session, list(by_id))
    marked = await store.attended_set(ctx.session, list(by_id))
    people = await store.profiles(ctx.session, [r.user_id for r in rsvps])
    guests: dict[int, set[str]] = {}
    for event_id in by_id:
        guests[event_id] = set(await store.guests_of(ctx.session, event_id))
    positions: dict[tuple[int, str], int] = {}
    for event_id in by_id:
        waiting = sorted(
            (r for r in rsvps if r.event_id == event_id and r.answer == WAITING),
            key=lambda r: (r.queue_no, r.id),
        )
        for place, r in enumerate(waiting, start=1):
            positions[(event_id, r.user_id)] = place
    header = [
        "event", "cop", "title", "start_utc", "user", "organisation", "country", "answer",
        "waiting_position", "answered_at_utc", "guest", "attended",
    ]  # fmt: skip
    rows = []
    for r in rsvps:
        event = by_id[r.event_id]
        position = positions.get((r.event_id, r.user_id), "")
        person = people.get(r.user_id)
        rows.append(
            [
                event.code,
                event.cop_code,
                event.title,
                utc_cell(event.starts_at),
                r.user_id,
                person.org if person else "",
                person.country if person else "",
                r.answer,
                position,
                utc_cell(r.answered_at),
                "yes" if r.user_id in guests[r.event_id] else "no",
                "yes" if (r.event_id, r.user_id) in marked else "no",
            ]  # fmt: skip
        )
    return "rsvps", csv_bytes(header, rows)
