"""Encryption through a real Synapse: messages the bot cannot read, rooms encrypted later,
and the plaintext direct chats that still exist."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any
from urllib.parse import quote

import pytest
from nio.crypto import OutboundGroupSession
from sqlalchemy import select

from bot.crypto.cross_signing import signed_by
from storage import Database, repo
from storage.crypto import ParkedEvent
from tests.e2e.conftest import BotFactory
from tests.e2e.harness import Event, Person

pytestmark = pytest.mark.e2e


async def raw_event(person: Person, room_id: str, event_id: str) -> Event:
    """The event as the homeserver stores it (encrypted or not)."""
    path = f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/event/{quote(event_id, safe='')}"
    return await person.api("GET", path)


async def send_without_sharing_the_key(person: Person, room_id: str, body: str) -> str:
    """An encrypted message whose room key nobody got (a client that withheld it, a key
    lost on the way): what the bot meets when it cannot decrypt."""
    session = OutboundGroupSession()
    session.shared = True
    olm = person.client.olm
    assert olm is not None
    payload = {"type": "m.room.message", "content": {"msgtype": "m.text", "body": body}}
    content: dict[str, Any] = {
        "algorithm": "m.megolm.v1.aes-sha2",
        "ciphertext": session.encrypt(json.dumps({**payload, "room_id": room_id})),
        "sender_key": olm.account.identity_keys["curve25519"],
        "session_id": session.id,
        "device_id": person.client.device_id,
    }
    path = (
        f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/send/m.room.encrypted/"
        f"{uuid.uuid4().hex}"
    )
    return str((await person.api("PUT", path, content))["event_id"])


async def parked(db_url: str) -> list[ParkedEvent]:
    db = Database(db_url)
    try:
        async with db.read() as s:
            return list((await s.scalars(select(ParkedEvent))).all())
    finally:
        await db.dispose()


async def covered_by_a_notice(db_url: str, event_id: str, timeout: float = 30) -> ParkedEvent:
    """Wait until the bot has dealt with a parked event (told, or counted as told)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        rows = {row.event_id: row for row in await parked(db_url)}
        if event_id in rows and rows[event_id].notified_at is not None:
            return rows[event_id]
        await asyncio.sleep(0.2)
    raise AssertionError(f"{event_id} was never dealt with")


async def test_a_message_the_bot_cannot_decrypt_gets_a_plain_answer_once_an_hour(
    people, make_bot: BotFactory
) -> None:
    anna: Person = await people("anna")
    bot = await make_bot(matrix={"key_wait": "2s"})
    dm = await anna.open_dm(bot.user_id)
    await anna.ask(dm, "!help", bot.user_id)  # the chat works

    unreadable = await send_without_sharing_the_key(anna, dm, "!cops")
    notice = await anna.reply_to(unreadable, bot.user_id)

    text = notice["content"]["body"]
    assert "could not read your message" in text
    assert "send your message again" in text
    assert "unverified sessions" in text  # what to check, in plain words
    # A second one within the hour is counted, but not answered again.
    again = await send_without_sharing_the_key(anna, dm, "!cops")
    covered = await covered_by_a_notice(bot.db_url, again)
    assert covered.key_requested  # the bot asked Anna's device for the key
    await anna.ask(dm, "!help", bot.user_id)  # everything the bot queued before is out
    assert anna.replies_to(again, bot.user_id) == []
    metrics = await bot.metrics()
    assert metrics["bbwt_undecryptable_events_total"] == 2
    assert metrics["bbwt_undecryptable_notices_total"] == 1
    assert "!cops" not in bot.log_text()  # nor was anything of it logged


async def test_a_room_a_moderator_encrypts_later_keeps_working(
    people, make_bot: BotFactory
) -> None:
    mod: Person = await people("sofia")  # an admin: power 100 in the CoP room
    bot = await make_bot(admins=[mod.user_id], matrix={"encrypt_rooms": False})
    room = await mod.join(bot.alias("hdev"))
    before = await mod.ask(room, "!cops", bot.user_id)
    assert (await raw_event(mod, room, before["event_id"]))["type"] == "m.room.message"

    # Synapse lets power 100 switch encryption on (it cannot be undone).
    path = f"/_matrix/client/v3/rooms/{quote(room, safe='')}/state/m.room.encryption/"
    await mod.api("PUT", path, {"algorithm": "m.megolm.v1.aes-sha2"})
    await mod.wait_until(lambda: mod.encrypted(room), what="the room to be encrypted")

    after = await mod.ask(room, "!cops", bot.user_id)

    assert "HDEV" in after["content"]["body"]
    assert (await raw_event(mod, room, after["event_id"]))["type"] == "m.room.encrypted"


async def test_a_plaintext_direct_chat_still_works(people, make_bot: BotFactory) -> None:
    # Element Web opens plaintext chats with a bot that has no keys, and old chats exist.
    anna: Person = await people("anna")
    bot = await make_bot()
    dm = await anna.open_dm(bot.user_id, encrypted=False)

    reply = await anna.ask(dm, "!cops", bot.user_id)

    assert "HDEV" in reply["content"]["body"]
    assert (await raw_event(anna, dm, reply["event_id"]))["type"] == "m.room.message"


async def cross_signing_of(person: Person, user_id: str) -> tuple[str, dict[str, Any], Event]:
    """(master key, the user's devices, self-signing key) as another user sees them."""
    keys = await person.api("POST", "/_matrix/client/v3/keys/query", {"device_keys": {user_id: []}})
    master = next(iter(keys["master_keys"][user_id]["keys"].values()))
    return master, keys["device_keys"][user_id], keys["self_signing_keys"][user_id]


async def test_a_new_device_of_the_bot_keeps_its_identity_and_is_cross_signed(
    people, make_bot: BotFactory
) -> None:
    anna: Person = await people("anna")
    bot = await make_bot()
    master, devices, _ = await cross_signing_of(anna, bot.user_id)
    first_device = next(iter(devices))

    # The bot loses its session (say, an administrator logged it out everywhere): it logs in
    # again, which makes a new device. Its identity must not change.
    await bot.stop()
    db = Database(bot.db_url)
    try:
        async with db.session() as s:
            for key in ("access_token_sealed", "device_id"):
                await repo.delete_state(s, key)
    finally:
        await db.dispose()
    await bot.start()

    again, devices, self_signing = await cross_signing_of(anna, bot.user_id)
    assert again == master  # the same identity: nobody sees "identity changed"
    new_device = next(d for d in devices if d != first_device)
    signer = next(iter(self_signing["keys"].values()))
    assert signed_by(devices[new_device], bot.user_id, signer)
    assert signed_by(self_signing, bot.user_id, master)
    dm = await anna.open_dm(bot.user_id)
    assert "HDEV" in (await anna.ask(dm, "!cops", bot.user_id))["content"]["body"]
