"""Helpers for the travel-claim end-to-end tests."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from storage import Database
from storage import events as events_store
from tests.e2e.harness import Event, Person


async def move_event_into_the_past(bot_db_url: str, event_id: int, now: datetime) -> None:
    """Let time pass: the event took place the day before yesterday and yesterday, 09:00 to
    17:00 in its time zone (attendance can only be marked once an event has started, and
    nobody waits days in a test)."""
    db = Database(bot_db_url)
    try:
        async with db.session() as s:
            event = await events_store.get_event(s, event_id)
            assert event is not None
            zone = ZoneInfo(event.timezone)
            today = now.astimezone(zone).date()
            first, last = today - timedelta(days=2), today - timedelta(days=1)
            event.starts_at = datetime.combine(first, time(9), zone).astimezone(UTC)
            event.ends_at = datetime.combine(last, time(17), zone).astimezone(UTC)
    finally:
        await db.dispose()


async def upload(person: Person, room: str, data: bytes, name: str, mimetype: str) -> str:
    """Upload a file and post it in ``room`` the way a Matrix client does (encrypted in an
    encrypted room); returns its id."""
    return await person.send_file(room, data, name, mimetype)


async def ask_replying(person: Person, room: str, text: str, *, target: str, bot: str) -> Event:
    """Send a command as a reply to ``target`` and wait for the bot's answer."""
    extra: dict[str, Any] = {"m.relates_to": {"m.in_reply_to": {"event_id": target}}}
    event_id = await person.send(room, text, **extra)
    return await person.reply_to(event_id, bot)


def bodies(person: Person, room: str, sender: str) -> list[str]:
    return [str(e["content"].get("body", "")) for e in person.messages_from(sender, room)]


async def wait_for_text(person: Person, room: str, sender: str, text: str) -> str:
    found = await person.wait_until(
        lambda: [body for body in bodies(person, room, sender) if text in body],
        what=f"a message with {text!r}",
    )
    return str(found[-1])


async def download(person: Person, message: Event) -> bytes:
    """The file of a message, as the person's client opens it (decrypted if need be)."""
    return await person.download(message["content"])
