"""The Matrix side: logging in, the rooms the bot keeps, and thin wrappers over matrix-nio."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import ClientResponse
from nio import (
    AsyncClient,
    AsyncClientConfig,
    ErrorResponse,
    JoinError,
    LoginResponse,
    RoomCreateError,
    RoomMessagesResponse,
    RoomPreset,
    RoomResolveAliasError,
    RoomVisibility,
    SyncResponse,
    WhoamiResponse,
)
from nio import responses as nio_responses
from nio.rooms import MatrixRoom

from bot.crypto.keys import StoreKeys
from config.models import Settings
from storage import Database, repo

log = logging.getLogger(__name__)


class MatrixError(RuntimeError):
    pass


def _event_problem(event: Any, *, timeline: bool) -> str | None:
    """Why nio could not parse this event at all (None when it can); no content is read."""
    if not isinstance(event, dict):
        return "not an object"
    if not isinstance(event.get("type"), str):
        return "type is not a string"
    if not isinstance(event.get("sender"), str):
        return "sender is not a string"
    if "content" in event and not isinstance(event["content"], dict):
        return "content is not an object"
    if timeline:
        if not isinstance(event.get("event_id"), str):
            return "event_id is not a string"
        ts = event.get("origin_server_ts")
        if isinstance(ts, bool) or not isinstance(ts, int) or ts < 0:
            return "origin_server_ts is not a timestamp"
    return None


def sanitize_events(
    container: Any, key: str, room_id: str, *, timeline: bool
) -> list[tuple[str, Any, str]]:
    """Take the events nio could not read out of ``container[key]`` (a list, or an object
    with an ``events`` list); returns (room id, event, reason) for each."""
    if not isinstance(container, dict):
        return []
    section = container.get(key)
    holder: dict[str, Any] = section if isinstance(section, dict) else container
    name = "events" if isinstance(section, dict) else key
    events = holder.get(name)
    if not isinstance(events, list):
        return []
    kept, removed = [], []
    for event in events:
        problem = _event_problem(event, timeline=timeline)
        if problem is None:
            kept.append(event)
        else:
            removed.append((room_id, event, problem))
    holder[name] = kept
    return removed


def sanitize_sync(body: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """Take out of a raw /sync body the events that would stop nio from reading the whole
    response; returns (room id or "", event, reason) for each one taken out."""
    removed: list[tuple[str, Any, str]] = []
    found = body.get("rooms")
    rooms: dict[str, Any] = found if isinstance(found, dict) else {}
    for kind, sections, timeline in (
        ("join", ("timeline", "state"), True),
        ("leave", ("timeline", "state"), True),
        ("invite", ("invite_state",), False),
    ):
        by_room = rooms.get(kind)
        for room_id, info in by_room.items() if isinstance(by_room, dict) else ():
            for section in sections:
                removed += sanitize_events(info, section, str(room_id), timeline=timeline)
    removed += sanitize_events(body, "to_device", "", timeline=False)
    return removed


def publishes_crypto_state(path: str) -> bool:
    """Does this request send what the crypto store must have saved first?"""
    plain = path.split("?", 1)[0]
    return "/sendToDevice/" in plain or plain.endswith("/keys/upload")


class BotClient(AsyncClient):  # type: ignore[misc]  # nio is untyped
    """nio's client, made safe against hostile events in a sync response.

    nio reads a whole /sync response at once; a single event with, say, a text timestamp
    makes it raise, and the same response would come back on every retry. Such events are
    taken out first and handed to the sync loop (``set_aside``), which records them.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.set_aside: list[tuple[str, Any, str]] = []
        self.before_request: Callable[[], Awaitable[Any]] | None = None
        """Awaited before every request that publishes crypto state (to-device messages,
        which advance Olm sessions, and one-time keys): the crypto store writes what
        changed first, so nothing leaves that the database would not remember after a
        crash. Other requests (a command reading an event inside its transaction, say)
        never wait for the database."""

    async def _send(
        self, response_class: type, method: str, path: str, *args: Any, **kwargs: Any
    ) -> Any:
        # nio's private request method (matrix-nio is pinned exactly for this hook; the
        # test tests/storage/test_crypto_store.py fails if it stops being called).
        if self.before_request is not None and publishes_crypto_state(path):
            await self.before_request()
        return await super()._send(response_class, method, path, *args, **kwargs)

    async def create_matrix_response(
        self,
        response_class: type,
        transport_response: ClientResponse,
        data: tuple[Any, ...] | None = None,
        save_to: Any = None,
    ) -> Any:
        sync = response_class is SyncResponse
        if not (sync or response_class is RoomMessagesResponse) or transport_response.status != 200:
            return await super().create_matrix_response(
                response_class, transport_response, data, save_to
            )
        body = await self.parse_body(transport_response)
        if sync:
            self.set_aside.extend(sanitize_sync(body))
            resp = nio_responses.SyncResponse.from_dict(body)
        else:  # a page of /messages, read when filling a gap
            room_id = str(data[0]) if data else ""
            self.set_aside.extend(sanitize_events(body, "chunk", room_id, timeline=True))
            resp = nio_responses.RoomMessagesResponse.from_dict(body, *(data or ()))
        resp.transport_response = transport_response
        return resp


def make_client(settings: Settings, pickle_key: str = "") -> BotClient:
    """The bot's client, with encryption on. Its crypto store is the database's
    (``bot.crypto.store``), installed after login: ``store_path=""`` keeps nio from opening
    a file of its own."""
    config = AsyncClientConfig(
        max_limit_exceeded=0,  # the sender handles rate limits itself, with bounds
        max_timeouts=2,
        store_sync_tokens=False,
        encryption_enabled=True,
        pickle_key=pickle_key,
        request_timeout=settings.matrix.sync_timeout.total_seconds() + 30,
    )
    return BotClient(
        settings.matrix.homeserver, settings.matrix.user_id, store_path="", config=config
    )


async def login(
    client: AsyncClient,
    settings: Settings,
    db: Database,
    clock: Callable[[], datetime],
    keys: StoreKeys,
) -> None:
    """Log in once and keep the device: a restart reuses the stored token (sealed with the
    store key) and device id."""
    mcfg = settings.matrix
    if mcfg.access_token is not None:
        client.access_token = mcfg.access_token.get_secret_value()
        who = await client.whoami()
        if not isinstance(who, WhoamiResponse):
            raise MatrixError(f"the access token was refused: {who}")
        if who.user_id != mcfg.user_id:
            raise MatrixError(f"the access token belongs to {who.user_id}, not {mcfg.user_id}")
        client.restore_login(mcfg.user_id, who.device_id or "", client.access_token)
        return

    async with db.session() as s:
        sealed = await repo.get_state(s, "access_token_sealed")
        token = keys.unseal(sealed) if sealed else await repo.get_state(s, "access_token")
        device = await repo.get_state(s, "device_id")
        owner = await repo.get_state(s, "access_token_user")
        if token and not sealed:  # kept in the clear by an older version: seal it now
            await repo.set_state(s, "access_token_sealed", keys.seal(token), now=clock())
            await repo.delete_state(s, "access_token")
    if token and device and owner == mcfg.user_id:
        client.restore_login(mcfg.user_id, device, token)
        who = await client.whoami()
        if isinstance(who, WhoamiResponse):
            log.info("resumed session of %s on device %s", mcfg.user_id, device)
            return
        log.warning("stored access token no longer works (%s); logging in again", who)

    if mcfg.password is None:
        raise MatrixError(
            "no way to log in: set BBWT_MATRIX__PASSWORD or BBWT_MATRIX__ACCESS_TOKEN"
        )
    auth: dict[str, Any] = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": mcfg.user_id},
        "password": mcfg.password.get_secret_value(),
        "initial_device_display_name": mcfg.device_name,
    }
    if device and owner == mcfg.user_id:
        auth["device_id"] = device  # keep the same device: transaction ids stay idempotent
    resp = await client.login_raw(auth)
    if not isinstance(resp, LoginResponse):
        raise MatrixError(f"login as {mcfg.user_id} failed: {resp}")
    client.restore_login(mcfg.user_id, resp.device_id, resp.access_token)
    async with db.session() as s:
        await repo.set_state(s, "access_token_sealed", keys.seal(resp.access_token), now=clock())
        await repo.delete_state(s, "access_token")
        await repo.set_state(s, "device_id", resp.device_id, now=clock())
        await repo.set_state(s, "access_token_user", mcfg.user_id, now=clock())
    log.info("logged in as %s on device %s", mcfg.user_id, resp.device_id)


ENCRYPTION_STATE: dict[str, Any] = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}
"""The initial state that makes a new room encrypted (as Element and Element X do)."""


def ensure_room_known(
    client: AsyncClient, room_id: str, *, invited: list[str] | None = None
) -> MatrixRoom:
    """Make nio know the room before sending to it.

    With encryption on, nio refuses to send to a room it has not seen in a sync since this
    process started (after a restart, or right after creating it): "No such room". A bare
    room with the encryption flag from the crypto store is enough: nio then loads the
    joined members itself. ``invited`` people (of a direct chat the bot just opened) are
    added too, so that they get the room key although they have not joined yet.
    """
    room = client.rooms.get(room_id)
    if room is None:
        room = MatrixRoom(room_id, client.user_id, room_id in client.encrypted_rooms)
        client.rooms[room_id] = room
    for user in invited or []:
        if user not in room.users:
            room.add_member(user, None, None, invited=True)
            if client.olm is not None and room.encrypted:
                client.olm.users_for_key_query.add(user)
    return room


def mark_encrypted(client: AsyncClient, room_id: str) -> None:
    """A room the bot created with encryption on: nio learns it only from the next sync."""
    client.encrypted_rooms.add(room_id)
    if client.store is not None:
        client.store.save_encrypted_rooms([room_id])
    ensure_room_known(client, room_id).encrypted = True


async def _retrying(call: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a nio call, waiting out rate limits a few times."""
    for _ in range(6):
        resp = await call(*args, **kwargs)
        if isinstance(resp, ErrorResponse) and resp.status_code == "M_LIMIT_EXCEEDED":
            await asyncio.sleep(min((resp.retry_after_ms or 1000) / 1000, 30))
            continue
        return resp
    return resp


async def join_room(client: AsyncClient, ref: str) -> str:
    resp = await _retrying(client.join, ref)
    if isinstance(resp, JoinError):
        raise MatrixError(f"could not join {ref}: {resp.message} ({resp.status_code})")
    return str(resp.room_id)


# --- room versions --------------------------------------------------------------------------
#
# From room version 12 on, a room's creators (the sender of ``m.room.create`` and its
# ``additional_creators``) hold unlimited power and must never be listed in
# ``m.room.power_levels`` ``users``: the server refuses such an event. Before 12 the creator's
# rank is an ordinary ``users`` entry (100). Everything that writes power levels asks which
# kind of room it is dealing with.


def creators_are_privileged(room_version: str) -> bool:
    """True for room versions whose creators hold unlimited power (12 and later)."""
    if room_version.isdigit():
        return int(room_version) >= 12
    return room_version.startswith("org.matrix.hydra")


@dataclass(frozen=True)
class RoomFacts:
    """What a room's create event says, which never changes for the room's life."""

    version: str
    creators: frozenset[str]

    @property
    def privileged_creators(self) -> bool:
        return creators_are_privileged(self.version)

    def listable(self, user_id: str) -> bool:
        """May ``user_id`` appear in the power levels' ``users``?"""
        return not (self.privileged_creators and user_id in self.creators)


async def client_json(
    client: AsyncClient, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    """A client-server API call nio has no method for: (HTTP status, JSON body)."""
    if client.client_session is None:
        raise MatrixError("not connected to the homeserver yet")
    headers = {"Authorization": f"Bearer {client.access_token}"}
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body)
    resp = await client.send(method, path, data=data, headers=headers)
    try:
        payload = await resp.json(content_type=None)
    except (ValueError, aiohttp.ContentTypeError):
        payload = {}
    finally:
        resp.release()
    return resp.status, payload if isinstance(payload, dict) else {}


async def default_room_version(client: AsyncClient) -> str | None:
    """The version the homeserver gives new rooms (``/capabilities``), None if unknown."""
    try:
        status, body = await client_json(client, "GET", "/_matrix/client/v3/capabilities")
    except Exception as exc:
        log.warning("could not read the homeserver's capabilities: %s", exc)
        return None
    versions = (body.get("capabilities") or {}).get("m.room_versions") or {}
    default = versions.get("default") if status == 200 else None
    return str(default) if default else None


async def room_facts(client: AsyncClient, room_id: str) -> RoomFacts:
    """The room's version and creators, read from its ``m.room.create`` event."""
    path = f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/state/m.room.create/?format=event"
    status, event = await client_json(client, "GET", path)
    if status != 200:
        raise MatrixError(f"could not read the create event of {room_id} (HTTP {status})")
    content = event.get("content") if isinstance(event.get("content"), dict) else event
    assert isinstance(content, dict)
    creators = {str(event["sender"])} if isinstance(event.get("sender"), str) else set()
    if isinstance(content.get("creator"), str):  # room versions 1-10
        creators.add(content["creator"])
    extra = content.get("additional_creators")
    if isinstance(extra, list):
        creators.update(str(user) for user in extra if isinstance(user, str))
    return RoomFacts(version=str(content.get("room_version") or "1"), creators=frozenset(creators))


def power_levels_for_new_room(
    bot_user: str, room_version: str | None, power_users: dict[str, int]
) -> dict[str, Any]:
    """``power_level_content_override`` for a room the bot creates.

    The bot is the creator: from version 12 on its rank comes from that and it must not be
    listed; before, it is listed at 100 (``users`` replaces the server's default list, which
    would otherwise hold it). When the version is unknown, ``users`` is left to the server
    and the levels are set afterwards, as for any room.
    """
    power: dict[str, Any] = {"invite": 50, "kick": 50, "ban": 50}
    if room_version is None:
        return power
    users = {user: level for user, level in power_users.items() if user != bot_user}
    if not creators_are_privileged(room_version):
        users[bot_user] = 100
    power["users"] = users
    return power


async def ensure_room(
    client: AsyncClient,
    *,
    configured: str,
    known_id: str | None,
    alias_localpart: str,
    name: str,
    topic: str,
    invite: list[str],
    power_users: dict[str, int],
    encrypted: bool = False,
) -> str:
    """Join the configured room, or the one created before, or create it (encrypted when
    ``encrypted``); return its id."""
    if configured:
        return await join_room(client, configured)
    if known_id:
        return await join_room(client, known_id)
    server = client.user_id.split(":", 1)[1]
    alias = f"#{alias_localpart}:{server}"
    resolved = await _retrying(client.room_resolve_alias, alias)
    if not isinstance(resolved, RoomResolveAliasError):
        return await join_room(client, resolved.room_id)
    version = await default_room_version(client)
    created = await _retrying(
        client.room_create,
        visibility=RoomVisibility.private,
        alias=alias_localpart,
        name=name,
        topic=topic,
        preset=RoomPreset.private_chat,
        invite=[user for user in invite if user != client.user_id],
        power_level_override=power_levels_for_new_room(client.user_id, version, power_users),
        room_version=version,
        initial_state=[ENCRYPTION_STATE] if encrypted else [],
    )
    if isinstance(created, RoomCreateError):
        if created.status_code == "M_ROOM_IN_USE":  # another process created it just now
            resolved = await _retrying(client.room_resolve_alias, alias)
            if not isinstance(resolved, RoomResolveAliasError):
                return await join_room(client, resolved.room_id)
        raise MatrixError(f"could not create {alias}: {created.message}")
    log.info("created room %s (%s, room version %s)", alias, created.room_id, version)
    if encrypted:
        mark_encrypted(client, str(created.room_id))
    return str(created.room_id)


async def setup_rooms(
    client: AsyncClient, settings: Settings, db: Database, clock: Callable[[], datetime]
) -> tuple[dict[str, str], str]:
    """Make sure the bot sits in every CoP room and the management room.

    Returns (room id -> CoP code, management room id); both are stored in the database.
    """
    prefix = settings.matrix.alias_prefix
    admins = list(settings.secretariat.admins)
    async with db.session() as s:
        await repo.sync_cops(s, [(cop.code, cop.name) for cop in settings.cops], now=clock())
        await repo.sync_config_moderators(
            s, {c.code: list(c.moderators) for c in settings.cops}, now=clock()
        )
        known = {cop.code: cop.room_id for cop in await repo.list_cops(s)}
        management_known = await repo.get_state(s, "management_room")

    rooms: dict[str, str] = {}
    for cop in settings.cops:
        room_id = await ensure_room(
            client,
            configured=cop.room,
            known_id=known.get(cop.code),
            alias_localpart=f"{prefix}-{cop.code.lower()}",
            name=f"BBWT · {cop.name}",
            topic=cop.description or f"Members-only room of the BBWT CoP {cop.name}.",
            invite=admins + list(cop.moderators),
            power_users={**{u: 50 for u in cop.moderators}, **{u: 100 for u in admins}},
            encrypted=settings.matrix.encrypt_rooms,
        )
        rooms[room_id] = cop.code
        async with db.session() as s:
            await repo.set_cop_room(s, cop.code, room_id)

    moderators = sorted({u for cop in settings.cops for u in cop.moderators} - set(admins))
    management = await ensure_room(
        client,
        configured=settings.secretariat.management_room,
        known_id=management_known,
        alias_localpart=f"{prefix}-secretariat",
        name="BBWT · Secretariat",
        topic="Management room of the BBWT Secretariat and the CoP moderators.",
        invite=admins + moderators,
        power_users={**{u: 50 for u in moderators}, **{u: 100 for u in admins}},
        encrypted=settings.matrix.encrypt_rooms,
    )
    async with db.session() as s:
        await repo.set_state(s, "management_room", management, now=clock())
    return rooms, management
