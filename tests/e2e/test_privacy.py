"""``!mydata`` and ``!forgetme`` through a real Synapse with the bot as a real process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from tests.e2e.claims_support import (
    download,
    move_event_into_the_past,
    wait_for_text,
)
from tests.e2e.conftest import BotFactory
from tests.e2e.harness import Event, Person
from tests.e2e.membership_support import message_containing, seed_member

pytestmark = pytest.mark.e2e


async def test_mydata_in_a_direct_chat_delivers_a_json_file_with_the_profile(
    people, make_bot: BotFactory
) -> None:
    anna: Person = await people("anna")
    bot = await make_bot()
    dm = await anna.open_dm(bot.user_id)
    saved = await anna.ask(
        dm, '!profile set org="City of Oslo" country=NO type=local-authority', bot.user_id
    )
    assert "City of Oslo" in saved["content"]["body"]

    file_reply = await anna.ask(dm, "!mydata", bot.user_id)

    assert file_reply["content"]["msgtype"] == "m.file"
    assert file_reply["content"]["info"]["mimetype"] == "application/json"
    data = json.loads(await download(anna, file_reply))
    assert data["user_id"] == anna.user_id
    assert data["profile"]["organisation"] == "City of Oslo"
    assert data["profile"]["country"] == "NO"


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 30) -> Any:
    """Ask the homeserver again until ``check`` gives something (things go out in order,
    but asynchronously)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await check()
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


def room_path(room: str, rest: str) -> str:
    return f"/_matrix/client/v3/rooms/{quote(room, safe='')}/{rest}"


async def redaction_of(person: Person, room: str, event_id: str) -> Event:
    """The event as ``person`` reads it once it has been redacted."""

    async def check() -> Event | None:
        event = await person.api("GET", room_path(room, f"event/{quote(event_id, safe='')}"))
        return event if "redacted_because" in (event.get("unsigned") or {}) else None

    found: Event = await eventually(check, f"{event_id} to be redacted")
    return found


async def membership_of(person: Person, room: str, user: str) -> str:
    state = await person.api("GET", room_path(room, f"state/m.room.member/{user}"))
    return str(state.get("membership", ""))


async def feed_status(url: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status


async def test_forgetme_erases_a_member_the_seat_moves_on_and_notices_are_redacted(
    people, make_bot: BotFactory
) -> None:
    anna: Person = await people("anna")
    ben: Person = await people("ben")
    mo: Person = await people("mo")
    bot = await make_bot(
        cops=[{"code": "HDEV", "name": "Heavy-duty EVs", "moderators": [mo.user_id]}]
    )
    await seed_member(bot.db_url, ben, org="Ville de Lyon")
    management = await mo.join(bot.alias("secretariat"))
    hdev = await mo.join(bot.alias("hdev"))
    dm = await anna.open_dm(bot.user_id)
    ben_dm = await ben.open_dm(bot.user_id)

    # Anna applies; the notice in the management room names her; she is approved.
    await anna.ask(
        dm, '!profile set org="City of Oslo" country=NO type=local-authority', bot.user_id
    )
    await anna.ask(dm, "!join HDEV", bot.user_id)
    notice = await message_containing(mo, management, bot.user_id, "New application to")
    assert anna.user_id in notice["content"]["body"]
    await mo.ask(management, f"!approve {anna.user_id} HDEV", bot.user_id)
    await anna.wait_until(lambda: hdev in anna.invites, what="the invitation to HDEV")
    await anna.join(hdev)

    # A full study visit: Anna has the only seat, Ben waits.
    day = (datetime.now(UTC) + timedelta(days=10)).astimezone(ZoneInfo("Europe/Brussels"))
    for number, title, seats in ((1, "Depot visit", 1), (2, "Factory visit", 20)):
        created = await mo.ask(
            management,
            f'!event create HDEV study-visit {day:%Y-%m-%d} 09:00 2d "{title}" capacity={seats}',
            bot.user_id,
        )
        assert f"Created E{number}" in created["content"]["body"]
    await anna.ask(dm, "!rsvp E1 yes", bot.user_id)
    waiting = await ben.ask(ben_dm, "!rsvp E1 yes", bot.user_id)
    assert "waiting list" in waiting["content"]["body"]

    # A claim waiting for a decision, for a visit that has taken place.
    await anna.ask(dm, "!rsvp E2 yes", bot.user_id)
    await move_event_into_the_past(bot.db_url, 2, datetime.now(UTC))
    await mo.ask(management, f"!attended E2 {anna.user_id}", bot.user_id)
    await anna.ask(dm, "!claim new E2", bot.user_id)
    await anna.ask(dm, '!claim add C1 other 24.00 "Metro tickets"', bot.user_id)
    submitted = await anna.ask(dm, "!claim submit C1", bot.user_id)
    assert "Submitted C1" in submitted["content"]["body"]

    # Shared intel, and a calendar feed that works.
    shared = await anna.ask(hdev, "!intel share Oslo tenders 40 electric buses #ebus", bot.user_id)
    assert "Shared with HDEV as I1" in shared["content"]["body"]
    await anna.ask(dm, "!calendar", bot.user_id)
    link = await wait_for_text(anna, dm, bot.user_id, "/calendar/")
    feed = next(word for word in link.split() if "/calendar/" in word)
    assert await feed_status(feed) == 200

    # Anna asks, sees what goes and what stays, and confirms.
    plan = await anna.ask(dm, "!forgetme", bot.user_id)
    assert "Nothing is erased yet" in plan["content"]["body"]
    assert "C1 is still waiting for a decision" in plan["content"]["body"]
    done = await anna.ask(dm, "!forgetme confirm", bot.user_id)
    body = done["content"]["body"]
    assert "Done: your personal data is erased." in body
    assert "your seat at E1 goes to the next person waiting" in body
    assert "C1 was waiting for a decision: it is withdrawn" in body
    alias = next(word for word in body.split() if word.startswith("erased-")).rstrip(",.")

    # The waiting list moved on, and Ben was told.
    await wait_for_text(ben, ben_dm, bot.user_id, "a seat freed up at E1")
    seat = await ben.ask(ben_dm, "!event E1", bot.user_id)
    assert "Your answer: going" in seat["content"]["body"]

    # The notice of her application and the bot's messages to her are redacted.
    gone = await redaction_of(mo, management, notice["event_id"])
    assert gone["content"] == {}
    await redaction_of(anna, dm, plan["event_id"])
    kept = await anna.api("GET", room_path(dm, f"event/{done['event_id']}"))
    assert kept["content"] and "redacted_because" not in (kept.get("unsigned") or {})

    # She is out of the CoP room, the bot has left her chat, her feed is gone.
    await eventually(
        lambda: _is(membership_of(mo, hdev, anna.user_id), "leave"), "Anna out of HDEV"
    )
    await eventually(lambda: _is(membership_of(anna, dm, bot.user_id), "leave"), "the bot out")
    await eventually(lambda: _is(feed_status(feed), 404), "the feed to be gone")

    # The claim is kept for finance under the pseudonym; the intel stays, unnamed.
    claim = await mo.ask(management, "!claim show C1", bot.user_id)
    assert alias in claim["content"]["body"] and anna.user_id not in claim["content"]["body"]
    assert "withdrawn" in claim["content"]["body"].lower()
    item = await ben.ask(ben_dm, "!intel show I1", bot.user_id)
    assert "Shared by a former member in HDEV" in item["content"]["body"]
    told = await message_containing(mo, management, bot.user_id, "erase their personal data")
    assert "their claim C1, waiting for a decision, is withdrawn" in told["content"]["body"]
    assert anna.user_id not in told["content"]["body"]


async def _is(value: Awaitable[Any], wanted: Any) -> bool:
    return bool(await value == wanted)
