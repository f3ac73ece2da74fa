"""Turning what nio gives back into the raw event JSON the pipeline stores, and the crypto
chores nio's ``sync_forever`` would do around each sync."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from nio import AsyncClient, ForwardedRoomKeyEvent, MegolmEvent, RoomKeyEvent

log = logging.getLogger(__name__)


def event_json(event: Any, room_id: str) -> dict[str, Any]:
    """The raw JSON of an event nio parsed. For an event nio decrypted, ``source`` already
    is the decrypted event (type, content, event_id, sender, origin_server_ts)."""
    source = dict(event.source) if isinstance(getattr(event, "source", None), dict) else {}
    source.setdefault("room_id", room_id)
    return source


def decrypt_raw(client: AsyncClient, raw: dict[str, Any], room_id: str) -> dict[str, Any] | None:
    """Decrypt an ``m.room.encrypted`` event's JSON; None while its key is missing."""
    event = MegolmEvent.from_dict(raw)
    if not isinstance(event, MegolmEvent) or getattr(client, "olm", None) is None:
        return None
    event.room_id = room_id
    try:
        decrypted = client.decrypt_event(event)
    except Exception:  # nio raises EncryptionError while the session is unknown
        return None
    if isinstance(decrypted, MegolmEvent):
        return None
    return event_json(decrypted, room_id)


def room_key_sessions(to_device_events: Iterable[Any]) -> set[str]:
    """Megolm sessions whose keys arrived in a sync (they may open parked events)."""
    return {
        str(event.session_id)
        for event in to_device_events
        if isinstance(event, RoomKeyEvent | ForwardedRoomKeyEvent)
    }


async def housekeeping(client: AsyncClient) -> list[str]:
    """What nio's ``sync_forever`` does after each sync: send queued to-device messages
    (key requests, unwedging), top up one-time keys, query changed device lists and claim
    keys for wedged sessions. Returns what it did."""
    done: list[str] = []
    if getattr(client, "olm", None) is None:
        return done
    if client.outgoing_to_device_messages:
        await client.send_to_device_messages()
        done.append("to_device")
    if client.should_upload_keys:
        await client.keys_upload()
        done.append("keys_upload")
    if client.should_query_keys:
        await client.keys_query()
        done.append("keys_query")
    if client.should_claim_keys:
        await client.keys_claim(client.get_users_for_key_claiming())
        done.append("keys_claim")
    return done
