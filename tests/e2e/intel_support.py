"""Helpers for the intel and digest end-to-end tests: members, files, replies."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import update

from storage import Database
from storage.models import Cop
from tests.e2e.harness import BotProcess, Event, Person


def body(event: Event) -> str:
    return str(event["content"].get("body", ""))


async def backdate_cops(bot: BotProcess, when: datetime) -> None:
    """Pretend the bot has known its CoPs since ``when`` (as if it had run for a while)."""
    db = Database(bot.db_url)
    try:
        async with db.session() as s:
            await s.execute(update(Cop).values(created_at=when.astimezone(UTC)))
    finally:
        await db.dispose()


async def upload_file(person: Person, room_id: str, name: str, data: bytes, mimetype: str) -> str:
    """Upload ``data`` and post it as an ``m.file`` (encrypted in an encrypted room);
    returns the event id."""
    return await person.send_file(room_id, data, name, mimetype)


async def ask_in_reply(
    person: Person, room_id: str, replied: str, text: str, bot: str, *, timeout: float = 30
) -> Event:
    """Send ``text`` as a reply to the event ``replied`` and wait for the bot's answer."""
    event_id = await person.send(
        room_id, text, **{"m.relates_to": {"m.in_reply_to": {"event_id": replied}}}
    )
    return await person.reply_to(event_id, bot, timeout)


def digests_in(person: Person, room_id: str, bot: str) -> list[Event]:
    return [e for e in person.messages_from(bot, room_id) if body(e).startswith("Weekly digest")]
