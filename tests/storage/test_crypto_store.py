"""The bot's crypto state lives in its database (both backends): the same device and
identity after a restart, nothing written without the lease, undecryptable events parked
in the token's transaction and opened when their key arrives."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from nio import RoomKeyEvent, SyncResponse, ToDeviceMessage
from nio.crypto import OutboundGroupSession
from pydantic import SecretStr

from bot.crypto.keys import StoreKeyError, StoreKeys
from bot.crypto.store import DbCryptoStore
from bot.lease import LEASE, Leadership
from bot.matrix import BotClient
from bot.metrics import Metrics
from bot.sync import Classifier, Syncer
from config.models import Settings
from storage import Database, repo
from storage import crypto as stored

BOT = "@bot:example.org"
ANNA = "@anna:example.org"
ROOM = "!room:example.org"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
KEYS = StoreKeys(SecretStr("a-long-random-store-key-for-tests"))


def clock() -> datetime:
    return NOW


class OfflineClient(BotClient):
    """The bot's client with its crypto, answering ``sync`` with crafted responses."""

    def __init__(self) -> None:
        settings = Settings(matrix={"homeserver": "http://127.0.0.1:9", "user_id": BOT})
        super().__init__(
            settings.matrix.homeserver,
            BOT,
            store_path="",
            config=make_config(),
        )
        self.restore_login(BOT, "BOTDEVICE", "token")
        self.responses: list[SyncResponse] = []

    async def sync(self, **_: Any) -> SyncResponse:
        return self.responses.pop(0)

    async def _send(self, *_: Any, **__: Any) -> Any:
        raise ConnectionError("no homeserver in this test")  # key queries etc. go nowhere

    async def keys_query(self) -> None:
        self.olm.users_for_key_query.clear()


def make_config() -> Any:
    from nio import AsyncClientConfig

    return AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)


async def leader(db: Database) -> Leadership:
    lease = Leadership(db, name=BOT, clock=clock)
    async with db.session() as s:
        lease.epoch = await stored.take_lease(s, LEASE, "test", NOW)
    return lease


async def crypto_client(db: Database, lease: Leadership, keys: StoreKeys = KEYS) -> OfflineClient:
    client = OfflineClient()
    store = DbCryptoStore(db, BOT, "BOTDEVICE", keys.pickle_key, guard=lease.guard, clock=clock)
    await store.load()
    store.install(client)
    client.olm.account.shared = True  # as if the keys were uploaded: no network here
    return client


async def test_a_restart_loads_the_same_identity_from_the_database(db: Database) -> None:
    lease = await leader(db)
    first = await crypto_client(db, lease)
    assert await first.store.flush() > 0

    again = await crypto_client(db, lease)

    assert again.olm.account.identity_keys == first.olm.account.identity_keys


async def test_a_changed_store_key_is_refused_rather_than_making_a_new_identity(
    db: Database,
) -> None:
    lease = await leader(db)
    await (await crypto_client(db, lease)).store.flush()

    with pytest.raises(StoreKeyError, match="STORE_KEY"):
        await crypto_client(db, lease, StoreKeys(SecretStr("another-key-of-enough-length")))


async def test_a_process_that_lost_the_lease_writes_no_crypto_state(db: Database) -> None:
    old = await leader(db)
    client = await crypto_client(db, old)
    await client.store.flush()
    await leader(db)  # another process takes over (epoch + 1)
    client.olm.account.generate_one_time_keys(5)  # changes the account

    with pytest.raises(stored.LeaseLost):
        await client.store.flush()

    assert old.lost.is_set()
    async with db.read() as s:
        rows = await stored.load_crypto_rows(s, f"{BOT}/BOTDEVICE")
    saved = json.loads(rows[("account", "")])["pickle"]
    assert saved != client.olm.account.pickle(KEYS.pickle_key).decode()  # not written


def encrypted_message(session: OutboundGroupSession, n: int, body: str) -> dict[str, Any]:
    payload = {"type": "m.room.message", "content": {"msgtype": "m.text", "body": body}}
    return {
        "type": "m.room.encrypted",
        "event_id": f"$enc{n}",
        "sender": ANNA,
        "origin_server_ts": int(NOW.timestamp() * 1000) - 1000 + n,
        "content": {
            "algorithm": "m.megolm.v1.aes-sha2",
            "ciphertext": session.encrypt(json.dumps({**payload, "room_id": ROOM})),
            "sender_key": "annas-curve25519-key",
            "session_id": session.id,
            "device_id": "ANNADEVICE",
        },
    }


def sync_response(events: list[dict[str, Any]], token: str) -> SyncResponse:
    return SyncResponse.from_dict(
        {
            "next_batch": token,
            "rooms": {
                "join": {
                    ROOM: {
                        "timeline": {"events": events, "limited": False, "prev_batch": "p"},
                        "state": {"events": []},
                    }
                }
            },
        }
    )


async def test_an_event_without_its_key_is_parked_and_handled_once_the_key_arrives(
    db: Database,
) -> None:
    lease = await leader(db)
    client = await crypto_client(db, lease)
    metrics = Metrics()
    syncer = Syncer(
        client,
        db,
        Classifier(BOT, "!", set()),
        metrics,
        timeout_ms=0,
        on_stored=lambda rooms: None,
        on_invite=lambda *_: None,
        clock=clock,
        crypto=client.store,
        guard=lease.guard,
    )
    syncer.token = "s1"
    anna = OutboundGroupSession()
    anna.shared = True
    session_key = anna.session_key  # before the first message: index 0
    client.responses.append(sync_response([encrypted_message(anna, 1, "!help")], "s2"))

    await syncer.sync_once(timeout_ms=0)

    async with db.read() as s:
        assert await repo.pending_inbound(s) == []
        parked = await stored.parked_for_sessions(s, [anna.id])
        assert await repo.get_state(s, "sync_token") == "s2"
    assert [p.event_id for p in parked] == ["$enc1"]
    assert "ciphertext" in parked[0].raw["content"]
    assert metrics.undecryptable._value.get() == 1

    # The key comes in a later sync (as a to-device room key): the event opens.
    client.olm.create_group_session(
        "annas-curve25519-key", "annas-ed25519", ROOM, anna.id, session_key
    )
    later = sync_response([], "s3")
    later.to_device_events.append(
        RoomKeyEvent(
            {"type": "m.room_key"},
            ANNA,
            "annas-curve25519-key",
            ROOM,
            anna.id,
            "m.megolm.v1.aes-sha2",
        )
    )
    client.responses.append(later)
    await syncer.sync_once(timeout_ms=0)

    async with db.read() as s:
        rows = await repo.pending_inbound(s)
        assert await stored.parked_for_sessions(s, [anna.id]) == []
    assert [(r.event_id, r.content["content"]["body"]) for r in rows] == [("$enc1", "!help")]
    assert metrics.decrypted_late._value.get() == 1


async def test_nio_sends_to_device_messages_through_the_hook_that_stores_crypto_state_first() -> (
    None
):
    """The bot hooks nio's private ``AsyncClient._send`` (nio is pinned exactly for it):
    if an upgrade stops routing requests through it, this fails. Requests that publish
    nothing (reading an event) do not wait for the database."""
    seen: list[str] = []

    async def whoami(_request: web.Request) -> web.Response:
        seen.append("whoami")
        return web.json_response({"user_id": BOT, "device_id": "BOTDEVICE"})

    async def to_device(_request: web.Request) -> web.Response:
        seen.append("sendToDevice")
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/_matrix/client/v3/account/whoami", whoami)
    app.router.add_put("/_matrix/client/v3/sendToDevice/{type}/{txn}", to_device)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    client = BotClient(
        str(server.make_url("")).rstrip("/"), BOT, store_path="", config=make_config()
    )
    client.access_token = "token"

    async def before() -> None:
        seen.append("flush")

    client.before_request = before
    try:
        await client.whoami()
        await client.to_device(ToDeviceMessage("m.dummy", ANNA, "ANNADEVICE", {}))
    finally:
        await client.close()
        await server.close()

    assert seen == ["whoami", "flush", "sendToDevice"]
