"""Trust at the core, through a real Synapse: hostile events, what a direct chat is, and
two processes opening direct chats."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from urllib.parse import quote

from sqlalchemy import func, select

from bot.devserver import LocalSynapse
from storage import Database, repo
from storage.models import InboundEvent
from tests.e2e.conftest import BotFactory
from tests.e2e.harness import Event, Person, has_file
from tests.e2e.membership_support import body


class AppService:
    """An application service user: it may send with a timestamp of its choosing."""

    def __init__(self, synapse: LocalSynapse, name: str = "hostile") -> None:
        self.synapse = synapse
        self.token = synapse.app_services[name]
        self.user_id = f"@{name}-{uuid.uuid4().hex[:6]}:{synapse.server_name}"

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Event:
        sep = "&" if "?" in path else "?"
        path = f"{path}{sep}user_id={quote(self.user_id)}"
        return await self.synapse.admin_request(method, path, self.token, body)

    async def register(self) -> None:
        localpart = self.user_id[1:].split(":")[0]
        await self.synapse.admin_request(
            "POST",
            "/_matrix/client/v3/register",
            self.token,
            {"type": "m.login.application_service", "username": localpart},
        )

    async def send(self, room_id: str, content: dict[str, Any], *, ts: int | None = None) -> str:
        path = (
            f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/send/m.room.message/"
            f"{uuid.uuid4().hex}"
        )
        if ts is not None:
            path += f"?ts={ts}"
        return str((await self.call("PUT", path, content))["event_id"])


async def test_hostile_events_are_set_aside_and_the_bot_keeps_answering(
    people, make_bot: BotFactory, synapse: LocalSynapse
) -> None:
    anna: Person = await people("anna")  # an admin, so the bot accepts her invite
    bot = await make_bot(admins=[anna.user_id])
    hostile = AppService(synapse)
    await hostile.register()
    room = await anna.api("POST", "/_matrix/client/v3/createRoom", {"preset": "private_chat"})
    room_id = str(room["room_id"])
    for user in (bot.user_id, hostile.user_id):
        await anna.client.room_invite(room_id, user)
    await hostile.call("POST", f"/_matrix/client/v3/join/{quote(room_id, safe='')}")
    await anna.wait_for_join(room_id, bot.user_id)

    # From the year 10,207 (beyond what the bot's clock types can hold) ...
    await hostile.send(room_id, {"msgtype": "m.text", "body": "!help"}, ts=260_000_000_000_000)
    # ... a relation of the wrong shape (bodies that are not text Synapse refuses from its
    # own users; they can only come over federation: tests/storage/test_sync_hostile.py),
    odd = await hostile.send(
        room_id, {"msgtype": "m.text", "body": "!cops", "m.relates_to": "sideways"}
    )
    # ... 60 KB of text, and a state event with odd content.
    huge = await hostile.send(room_id, {"msgtype": "m.text", "body": "!x" + "A" * 60_000})
    await hostile.call(
        "PUT",
        f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/state/m.room.member/"
        + quote(hostile.user_id),
        {"membership": "join", "displayname": ["not", "a", "string"]},
    )

    reply = await anna.ask(room_id, "!help", bot.user_id)

    assert "!cops" in body(reply)
    assert "HDEV" in body(await anna.reply_to(odd, bot.user_id))
    unknown = body(await anna.reply_to(huge, bot.user_id))
    assert "I don't know the command" in unknown
    assert len(unknown) < 400  # an excerpt of what was typed, not all 60 KB of it
    metrics = await bot.metrics()
    assert metrics["bbwt_quarantined_events_total"] >= 1
    assert "set aside event" in bot.log_text()
    assert "A" * 200 not in bot.log_text()


async def dm_invites(person: Person, bot_user: str) -> list[str]:
    """Direct chats the bot has invited this person to (a fresh sync sees every pending
    invite; the invite to the management room, say, is not a direct one)."""
    resp = await person.api("GET", "/_matrix/client/v3/sync?timeout=0")
    invites = (resp.get("rooms") or {}).get("invite") or {}
    found = []
    for room_id, info in invites.items():
        for event in (info.get("invite_state") or {}).get("events", []):
            if (
                event.get("type") == "m.room.member"
                and event.get("state_key") == person.user_id
                and event.get("sender") == bot_user
                and (event.get("content") or {}).get("is_direct")
            ):
                found.append(room_id)
    return found


async def test_a_chat_created_as_direct_with_a_colleague_in_it_gets_no_private_answers(
    people, make_bot: BotFactory
) -> None:
    anna: Person = await people("anna")
    colleague: Person = await people("colleague")
    bot = await make_bot()
    created = await anna.api(
        "POST",
        "/_matrix/client/v3/createRoom",
        {
            "is_direct": True,
            "preset": "trusted_private_chat",
            "invite": [bot.user_id, colleague.user_id],
        },
    )
    chat = str(created["room_id"])
    await colleague.join(chat)
    await anna.wait_for_join(chat, bot.user_id)
    await anna.ask(
        chat, '!profile set org="City of Oslo" country=NO type=local-authority', bot.user_id
    )

    pointer = await anna.ask(chat, "!mydata", bot.user_id)

    assert "direct message" in body(pointer)
    in_chat = [e for e in anna.messages_from(bot.user_id, chat) if has_file(e)]
    assert in_chat == []  # the file never landed where the colleague can read it
    invites = await dm_invites(anna, bot.user_id)
    assert len(invites) == 1
    private = await anna.join(invites[0])
    files = await anna.wait_until(
        lambda: [e for e in anna.messages_from(bot.user_id, private) if has_file(e)],
        what="the data file in the private chat",
    )
    assert files[0]["content"]["info"]["mimetype"] == "application/json"


async def test_a_busy_room_the_admin_invited_the_bot_to_is_no_direct_chat_after_a_restart(
    people, make_bot: BotFactory
) -> None:
    sofia: Person = await people("sofia")  # admin
    others = [await people(f"member{i}") for i in range(3)]
    bot = await make_bot(admins=[sofia.user_id])
    created = await sofia.api("POST", "/_matrix/client/v3/createRoom", {"preset": "private_chat"})
    room = str(created["room_id"])
    for person in others:
        await sofia.client.room_invite(room, person.user_id)
        await person.join(room)
    await sofia.client.room_invite(room, bot.user_id)
    await sofia.ask(room, "!help", bot.user_id)
    await bot.stop()
    await bot.start()  # the bot's client knows no members after a restart

    answer = await sofia.ask(room, "!claims", bot.user_id)

    assert "direct message" in body(answer)


async def handled_everything(db_url: str, commands: int) -> bool:
    """Every stored command handled and every outbox row sent (read from the database,
    which outlives any one bot process)."""
    db = Database(db_url)
    try:
        async with db.read() as s:
            handled = await s.scalar(
                select(func.count())
                .select_from(InboundEvent)
                .where(InboundEvent.status != "pending")
            )
            return int(handled or 0) >= commands and await repo.outbox_depth(s) == 0
    finally:
        await db.dispose()


async def test_a_takeover_mid_way_still_opens_exactly_one_direct_chat_for_each_of_50_people(
    people, make_bot: BotFactory, tmp_path
) -> None:
    crowd: list[Person] = [await people(f"p{i}") for i in range(50)]
    host = crowd[0]  # an admin: the bot joins the room she invites it to
    bot = await make_bot(admins=[host.user_id], backend="postgresql")
    # A plain group room (the encrypted direct chats the bot opens are what is tested here;
    # 50 people sending their first message to a 50-member encrypted room would mostly
    # measure Synapse delivering 2,500 room keys).
    created = await host.api("POST", "/_matrix/client/v3/createRoom", {"preset": "public_chat"})
    room = str(created["room_id"])
    await host.client.room_invite(room, bot.user_id)
    await asyncio.gather(*(person.join(room) for person in crowd[1:]))
    await asyncio.gather(*(person.stop_syncing() for person in crowd[1:]))
    await host.wait_for_join(room, bot.user_id)
    standby = bot.twin(tmp_path / "second")
    await standby.start(role="standby")

    # Nobody has a direct chat with the bot yet; each answer must open one (encrypted).
    # The active process is killed while it is doing that; the standby finishes the job.
    sending = asyncio.gather(*(person.send(room, "!mydata") for person in crowd))
    await asyncio.sleep(1.5)
    await bot.kill()
    await sending
    await standby.wait_role("active", timeout=60)
    for _ in range(240):
        if await handled_everything(bot.db_url, 50):
            break
        await asyncio.sleep(1)

    at_once = asyncio.Semaphore(10)

    async def files_in_direct_chats(person: Person) -> tuple[int, int]:
        async with at_once:
            invites = await dm_invites(person, bot.user_id)
            if len(invites) != 1:
                return len(invites), 0
            private = await person.join(invites[0])
            await person.catch_up()  # the room key of the file came while they did not sync
            history = await person.history(private)
            return 1, sum(1 for e in history if e.get("sender") == bot.user_id and has_file(e))

    found = await asyncio.gather(*(files_in_direct_chats(person) for person in crowd))
    assert found == [(1, 1)] * 50
