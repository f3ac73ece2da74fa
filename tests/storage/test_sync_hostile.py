"""One bad event never stops the sync loop (crafted sync responses, both databases).

Each event is checked on its own; what cannot be stored is set aside in
``quarantined_events`` (with the reason, never the content) and everything else in the
batch, and the sync token, goes on.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from nio import SyncResponse

from bot.matrix import sanitize_sync
from bot.metrics import Metrics
from bot.sync import Classifier, Syncer
from storage import Database, repo, rooms
from storage.models import InboundEvent

BOT = "@bot:example.org"
ANNA = "@anna:example.org"
ROOM = "!room:example.org"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TS = int(NOW.timestamp() * 1000) - 5000


def message(n: int, body: Any = "!help", **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": f"$e{n}",
        "sender": ANNA,
        "origin_server_ts": TS + n,
        "type": "m.room.message",
        "content": {"msgtype": "m.text", "body": body},
    }
    event.update(fields)
    return event


class FakeClient:
    """Serves crafted /sync bodies the way the bot's client reads them."""

    user_id = BOT

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.set_aside: list[tuple[str, Any, str]] = []

    async def sync(self, **_: Any) -> SyncResponse:
        body = copy.deepcopy(self.body)
        self.set_aside.extend(sanitize_sync(body))
        return SyncResponse.from_dict(body)


def sync_body(events: list[Any], token: str = "s2") -> dict[str, Any]:
    return {
        "next_batch": token,
        "rooms": {
            "join": {
                ROOM: {
                    "timeline": {"events": events, "limited": False, "prev_batch": "p1"},
                    "state": {"events": []},
                }
            }
        },
    }


async def run_sync(db: Database, events: list[Any]) -> tuple[Syncer, Metrics]:
    metrics = Metrics()
    syncer = Syncer(
        FakeClient(sync_body(events)),  # type: ignore[arg-type]
        db,
        Classifier(BOT, "!", {"member", "reaction"}),
        metrics,
        timeout_ms=0,
        on_stored=lambda rooms: None,
        on_invite=lambda *_: None,
        clock=lambda: NOW,
    )
    syncer.token = "s1"
    await syncer.sync_once(timeout_ms=0)
    return syncer, metrics


async def stored(db: Database) -> dict[str, InboundEvent]:
    async with db.read() as s:
        rows = await repo.pending_inbound(s)
    return {row.event_id: row for row in rows}


async def test_a_timestamp_beyond_the_year_9999_is_set_aside_and_the_rest_goes_on(
    db: Database,
) -> None:
    events = [message(1, origin_server_ts=260_000_000_000_000), message(2)]

    _, metrics = await run_sync(db, events)

    assert set(await stored(db)) == {"$e2"}
    async with db.read() as s:
        aside = await rooms.quarantined(s)
        assert await repo.get_state(s, "sync_token") == "s2"
    assert [(q.event_id, q.room_id, q.sender) for q in aside] == [("$e1", ROOM, ANNA)]
    assert "origin_server_ts" in aside[0].reason
    assert metrics.quarantined._value.get() == 1


async def test_every_kind_of_hostile_event_is_handled_on_its_own(db: Database) -> None:
    long_command = "!x " + "A" * 60_000
    events: list[Any] = [
        message(1, origin_server_ts=-5),  # nio itself refuses it: taken out before parsing
        message(2, origin_server_ts="yesterday"),  # would make nio raise on the whole sync
        message(3, body=["!help"]),  # a list: not a command, nothing to store
        message(4, body=12),  # a number: likewise
        message(5, body=long_command),  # 60 KB of text: stored, it is a command
        message(6, content={"msgtype": "m.text", "body": "!cops", "m.relates_to": "odd"}),
        {  # a member event with content of the wrong shape
            "type": "m.room.member",
            "state_key": ANNA,
            "sender": ANNA,
            "event_id": "$m7",
            "origin_server_ts": TS,
            "content": ["join"],
        },
        "not even an object",
        message(9, event_id=None),
        message(10, content={"msgtype": "m.text", "body": "!help \ud800 broken"}),
        message(11),
    ]

    syncer, _ = await run_sync(db, events)

    rows = await stored(db)
    assert {"$e5", "$e6", "$e11"} <= set(rows)
    assert rows["$e5"].content["content"]["body"] == long_command
    async with db.read() as s:
        aside = await rooms.quarantined(s)
        token = await repo.get_state(s, "sync_token")
    assert token == "s2"
    assert syncer.token == "s2"
    reasons = {q.event_id: q.reason for q in aside}
    assert "origin_server_ts" in reasons["$e1"]
    assert "origin_server_ts" in reasons["$e2"]
    assert "content" in reasons["$m7"]
    assert "$e3" not in reasons and "$e4" not in reasons  # read fine, simply not commands
    # A lone surrogate: one database takes it, the other refuses it; either way it is
    # accounted for and did not hold back the rest.
    assert ("$e10" in rows) != ("$e10" in reasons)
    assert sum(1 for q in aside if q.event_id is None) == 2  # the string and $e9
    for entry in aside:
        assert "help" not in entry.reason and "AAAA" not in entry.reason  # no content kept


async def test_a_later_sync_after_a_poisoned_one_moves_on(db: Database) -> None:
    await run_sync(db, [message(1, origin_server_ts=10**15)])
    await run_sync(db, [message(2)])

    assert set(await stored(db)) == {"$e2"}
