"""A private answer only goes to a room with the bot and its person in it (both databases).

Whether a room is a direct chat is decided from who is in it when the answer goes out, not
from what the room once was; a direct chat is opened once per person, even by two senders.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nio import ErrorResponse, RoomSendError

from bot.metrics import Metrics
from bot.rooms import MemberCache
from bot.sender import Sender
from commands.text import Message
from storage import Database, repo, rooms

BOT = "@bot:example.org"
ANNA = "@anna:example.org"
COLLEAGUE = "@colleague:example.org"
CHAT = "!chat:example.org"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@dataclass
class Sent:
    room_id: str
    content: dict[str, Any]
    txn: str


@dataclass
class FakeClient:
    user_id: str = BOT
    sent: list[Sent] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    rooms: dict[str, Any] = field(default_factory=dict)  # what nio knows (see ensure_room_known)
    encrypted_rooms: set[str] = field(default_factory=set)
    olm: Any = None
    store: Any = None
    elsewhere: list[str] = field(default_factory=list)  # rooms the bot is in besides those

    async def joined_rooms(self) -> Any:
        return type("Resp", (), {"rooms": [*self.elsewhere, *self.created]})()

    async def room_get_state_event(self, room_id: str, event_type: str) -> Any:
        return ErrorResponse("not found", "M_NOT_FOUND")  # no encryption state in these rooms

    async def room_send(
        self, room_id: str, _type: str, content: dict[str, Any], tx_id: str, **_: Any
    ) -> Any:
        self.sent.append(Sent(room_id, content, tx_id))
        return type("Resp", (), {"event_id": f"$out{len(self.sent)}"})()

    async def room_create(self, **_: Any) -> Any:
        await asyncio.sleep(0.01)  # let a second sender race for the same person
        room_id = f"!dm{len(self.created) + 1}:example.org"
        self.created.append(room_id)
        return type("Resp", (), {"room_id": room_id})()


def make_sender(
    db: Database, client: FakeClient, shared_rooms: frozenset[str] = frozenset()
) -> Sender:
    clock = lambda: NOW  # noqa: E731
    members = MemberCache(client, db, clock)  # type: ignore[arg-type]
    return Sender(
        client,  # type: ignore[arg-type]
        db,
        Metrics(),
        clock=clock,
        members=members,
        shared_rooms=shared_rooms,
    )


async def queue_private_answer(db: Database, room_id: str | None) -> None:
    content = Message("Your claim C1 is approved.").content(reply_to="$cmd")
    async with db.session() as s:
        if room_id is None:
            await repo.enqueue(s, to_user=ANNA, payload=content, now=NOW)
        else:
            await repo.enqueue(s, room_id=room_id, payload=content, private_to=ANNA, now=NOW)


async def test_an_answer_to_a_chat_that_is_still_private_goes_there(db: Database) -> None:
    async with db.session() as s:
        await rooms.load_member_list(s, CHAT, {BOT: "join", ANNA: "join"}, NOW)
    await queue_private_answer(db, CHAT)
    client = FakeClient()

    await make_sender(db, client).flush_once()

    assert [sent.room_id for sent in client.sent] == [CHAT]
    assert client.created == []


async def test_a_direct_chat_that_gained_a_colleague_gets_a_pointer_and_the_answer_moves(
    db: Database,
) -> None:
    async with db.session() as s:
        await rooms.load_member_list(s, CHAT, {BOT: "join", ANNA: "join"}, NOW)
        await repo.set_direct_room(s, ANNA, CHAT, now=NOW)
    await queue_private_answer(db, CHAT)
    async with db.session() as s:  # the colleague joins before the answer goes out
        await rooms.note_members(s, CHAT, {COLLEAGUE: "join"}, NOW)
    client = FakeClient()

    await make_sender(db, client).flush_once()

    assert client.created == ["!dm1:example.org"]
    pointer, answer = client.sent
    assert pointer.room_id == CHAT
    assert "private chat" in pointer.content["body"]
    assert "approved" not in pointer.content["body"]
    assert answer.room_id == "!dm1:example.org"
    assert "approved" in answer.content["body"]
    async with db.read() as s:
        assert await repo.get_direct_room(s, ANNA) == "!dm1:example.org"
        assert await repo.outbox_depth(s) == 0


async def test_two_senders_open_one_direct_chat_for_one_person(db: Database) -> None:
    await queue_private_answer(db, None)
    await queue_private_answer(db, None)
    client = FakeClient()

    # Two senders, each with its own engine as in two bot processes, take the same rows at
    # the same time (SQLite serves one process only; there the lock is in-process).
    other = db if db.is_sqlite else Database(db.url)
    try:
        await asyncio.gather(
            make_sender(db, client).flush_once(), make_sender(other, client).flush_once()
        )
    finally:
        if other is not db:
            await other.dispose()

    assert client.created == ["!dm1:example.org"]
    assert {sent.room_id for sent in client.sent} == {"!dm1:example.org"}


async def test_a_direct_chat_a_dead_process_opened_but_never_recorded_is_used(
    db: Database,
) -> None:
    # A process opened Anna's chat and died before recording it; the management room holds
    # just the bot and Anna (the only admin) too, but is nobody's direct chat.
    async with db.session() as s:
        await rooms.load_member_list(s, "!orphan:example.org", {BOT: "join", ANNA: "invite"}, NOW)
        await rooms.load_member_list(s, "!mgmt:example.org", {BOT: "join", ANNA: "join"}, NOW)
    await queue_private_answer(db, None)
    client = FakeClient(elsewhere=["!mgmt:example.org", "!orphan:example.org"])

    await make_sender(db, client, frozenset({"!mgmt:example.org"})).flush_once()

    assert client.created == []
    assert [sent.room_id for sent in client.sent] == ["!orphan:example.org"]
    async with db.read() as s:
        assert await repo.get_direct_room(s, ANNA) == "!orphan:example.org"


async def test_exclusive_admits_one_holder_at_a_time(db: Database) -> None:
    inside = 0
    most = 0

    async def hold() -> None:
        nonlocal inside, most
        async with db.exclusive("direct-room:@anna:example.org"):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.05)
            inside -= 1

    await asyncio.gather(*(hold() for _ in range(4)))

    assert most == 1


@dataclass
class PickyClient(FakeClient):
    """A homeserver that refuses events over 20,000 bytes of body, as Synapse does over 64 KiB."""

    async def room_send(
        self, room_id: str, _type: str, content: dict[str, Any], tx_id: str, **_: Any
    ) -> Any:
        if len(str(content.get("body", "")).encode()) > 20_000:
            return RoomSendError("event too large", "M_TOO_LARGE")
        return await super().room_send(room_id, _type, content, tx_id)


async def test_a_message_the_homeserver_finds_too_large_goes_out_in_parts(db: Database) -> None:
    lines = [f"line {n:05d} " + "x" * 80 for n in range(600)]  # about 54 KB
    content = {"msgtype": "m.notice", "body": "\n".join(lines), "m.mentions": {}}
    content["m.relates_to"] = {"m.in_reply_to": {"event_id": "$cmd"}}
    async with db.session() as s:
        await repo.enqueue(s, room_id=CHAT, payload=content, now=NOW)
    client = PickyClient()

    await make_sender(db, client).flush_once()

    assert len(client.sent) >= 3
    assert "\n".join(sent.content["body"] for sent in client.sent).splitlines() == lines
    assert client.sent[0].content["m.relates_to"] == {"m.in_reply_to": {"event_id": "$cmd"}}
    assert len({sent.txn for sent in client.sent}) == len(client.sent)
    async with db.read() as s:
        assert await repo.outbox_depth(s) == 0


async def test_an_encrypted_file_goes_on_as_it_is_to_an_encrypted_room_and_decrypted_elsewhere(
    db: Database,
) -> None:
    from nio import UploadResponse
    from nio.crypto.attachments import encrypt_attachment

    receipt = b"%PDF-1.4 a train ticket"
    ciphertext, keys = encrypt_attachment(receipt)
    uploaded: list[bytes] = []

    class FileClient(FakeClient):
        async def download(self, mxc: str) -> Any:
            assert mxc == "mxc://example.org/cipher"
            return type("Download", (), {"body": ciphertext})()

        async def upload(self, data: Any, **_: Any) -> Any:
            uploaded.append(data.read())
            return UploadResponse("mxc://example.org/plain"), None

    encrypted_room, plain_room = "!enc:example.org", "!plain:example.org"
    content = {
        "msgtype": "m.file",
        "body": "ticket.pdf",
        "info": {"mimetype": "application/pdf"},
        "file": {"url": "mxc://example.org/cipher", **keys, "mimetype": "application/pdf"},
    }
    async with db.session() as s:
        for room in (encrypted_room, plain_room):
            await repo.enqueue(s, room_id=room, payload=content, now=NOW)
    client = FileClient(encrypted_rooms={encrypted_room})

    await make_sender(db, client).flush_once()

    by_room = {sent.room_id: sent.content for sent in client.sent}
    assert by_room[encrypted_room]["file"] == content["file"]  # the key stays encrypted
    assert "file" not in by_room[plain_room]  # no key in the clear
    assert by_room[plain_room]["url"] == "mxc://example.org/plain"
    assert uploaded == [receipt]  # a decrypted copy


async def test_before_the_first_sync_is_stored_only_plain_replies_in_shared_rooms_go_out(
    db: Database,
) -> None:
    """While the sync is still reading what happened during a stop, a CoP room's replies go
    out; a private answer waits (who is in its room now may not be stored yet)."""
    cop_room = "!cop:example.org"
    async with db.session() as s:
        await rooms.load_member_list(s, CHAT, {BOT: "join", ANNA: "join"}, NOW)
        await repo.enqueue(s, room_id=cop_room, payload=Message("Seats: 3").content(), now=NOW)
    await queue_private_answer(db, CHAT)
    await queue_private_answer(db, None)
    client = FakeClient()
    sender = make_sender(db, client, frozenset({cop_room}))
    sender.caught_up = asyncio.Event()

    await sender.flush_once()

    assert [sent.room_id for sent in client.sent] == [cop_room]
    assert client.created == []

    sender.caught_up.set()  # the first sync, with its gaps, is stored
    await sender.flush_once()

    assert sorted(sent.room_id for sent in client.sent) == sorted(
        [cop_room, CHAT, "!dm1:example.org"]
    )
    async with db.read() as s:
        assert await repo.outbox_depth(s) == 0


@dataclass
class HeldClient(FakeClient):
    """A homeserver that holds each send until it is let go."""

    sending: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def room_send(
        self, room_id: str, _type: str, content: dict[str, Any], tx_id: str, **_: Any
    ) -> Any:
        self.sending.set()
        await self.release.wait()
        return await super().room_send(room_id, _type, content, tx_id)


async def test_the_sync_waits_while_a_reply_goes_out_and_never_longer_than_it_says(
    db: Database,
) -> None:
    """``settle`` is what the sync loop waits on after a sync that brought only the bot's
    own reply: it does not return while a reply is still going out, returns as soon as
    the sender has nothing left, and never holds the sync back longer than asked (a send
    that hangs does not stop the bot from reading new commands)."""
    cop_room = "!cop:example.org"
    async with db.session() as s:
        await repo.enqueue(s, room_id=cop_room, payload=Message("Seats: 3").content(), now=NOW)
    client = HeldClient()
    sender = make_sender(db, client, frozenset({cop_room}))
    running = asyncio.create_task(sender.run())
    sender.wake()
    await asyncio.wait_for(client.sending.wait(), 10)

    waiting = asyncio.create_task(sender.settle(60))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # the reply is still on its way
    await asyncio.wait_for(sender.settle(0.01), 10)  # a hanging send holds it back no longer

    client.release.set()
    await asyncio.wait_for(waiting, 10)
    assert [sent.room_id for sent in client.sent] == [cop_room]
    await asyncio.wait_for(sender.settle(60), 10)  # nothing left to send: at once

    sender.stopping = True
    sender.wake()
    await asyncio.wait_for(running, 10)
