"""Helpers for the membership end-to-end tests (reading rooms, invites, kicks)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from nio import RoomResolveAliasResponse

from storage import Database, repo
from tests.e2e.harness import Event, Person


async def seed_member(
    db_url: str, person: Person, cop: str = "HDEV", org: str = "City of Oslo"
) -> None:
    """Make ``person`` a member of ``cop`` in the bot's database the way an approval would
    (the bot then invites them)."""
    db = Database(db_url)
    try:
        async with db.session() as s:
            await repo.seed_member(
                s,
                user_id=person.user_id,
                org=org,
                country="NO",
                authority_type="local-authority",
                cop_code=cop,
                now=datetime.now(UTC),
            )
    finally:
        await db.dispose()


def body(event: Event) -> str:
    return str(event["content"].get("body", ""))


async def room_id_of(person: Person, alias: str) -> str:
    resp = await person.client.room_resolve_alias(alias)
    assert isinstance(resp, RoomResolveAliasResponse), resp
    return str(resp.room_id)


async def message_containing(person: Person, room_id: str, sender: str, text: str) -> Event:
    """Wait until ``sender`` has said something containing ``text`` in ``room_id``."""
    found = await person.wait_until(
        lambda: [e for e in person.messages_from(sender, room_id) if text in body(e)],
        what=f"a message with {text!r}",
    )
    return dict(found[-1])


def membership_change(person: Person, room_id: str, user: str, membership: str) -> Event | None:
    """The latest ``m.room.member`` event of ``user`` with ``membership`` that ``person`` saw."""
    for event in reversed(person.events.get(room_id, [])):
        if (
            event.get("type") == "m.room.member"
            and event.get("state_key") == user
            and event["content"].get("membership") == membership
        ):
            return event
    return None


async def kicked(watcher: Person, room_id: str, user: str, by: str) -> Event:
    """Wait until ``watcher`` (someone in the room) sees ``by`` take ``user`` out of it."""
    event = await watcher.wait_until(
        lambda: (
            (e := membership_change(watcher, room_id, user, "leave")) and e["sender"] == by and e
        ),
        what=f"{user} to be removed from {room_id}",
    )
    return dict(event)


async def react(person: Person, room_id: str, event_id: str, key: str) -> None:
    content: dict[str, Any] = {
        "m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}
    }
    await person.send_content(room_id, content, "m.reaction")


async def direct_message_containing(person: Person, bot: str, text: str) -> Event:
    """Accept the direct chat the bot opened and wait for a message in it."""

    def bots_invite() -> str | None:
        for room_id, room in person.client.invited_rooms.items():
            if room.inviter == bot and room_id not in person.events:
                return str(room_id)
        return None

    if not [e for e in person.messages_from(bot) if text in body(e)]:
        room_id = await person.wait_until(bots_invite, what=f"{bot} to open a direct chat")
        await person.join(room_id)
    return await person.wait_until(
        lambda: next((e for e in person.messages_from(bot) if text in body(e)), None),
        what=f"a direct message with {text!r}",
    )
