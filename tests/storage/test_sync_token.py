"""A sync that brings nothing to store costs no transaction; the token is still stored often
enough, and always with anything that is stored (both databases)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from nio import SyncResponse

from bot.metrics import Metrics
from bot.sync import SETTLE_AT_MOST, TOKEN_EVERY, Classifier, Syncer
from storage import Database, repo
from tests.storage.test_sync_hostile import BOT, NOW, FakeClient, message, sync_body


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def make_syncer(
    db: Database,
    client: FakeClient,
    handed: list[str],
    clock: Clock,
    settle: Callable[[float], Awaitable[None]] | None = None,
) -> Syncer:
    """A sync loop on ``client`` that notes the event ids it hands to the workers."""
    return Syncer(
        client,  # type: ignore[arg-type]
        db,
        Classifier(BOT, "!", {"member", "reaction"}),
        Metrics(),
        timeout_ms=0,
        on_stored=lambda rows: handed.extend(row.event_id for row in rows),
        on_invite=lambda *_: None,
        clock=clock,
        settle=settle,
    )


async def stored_token(db: Database) -> str | None:
    async with db.read() as s:
        return await repo.get_state(s, "sync_token")


async def test_an_empty_sync_moves_the_token_in_memory_until_something_is_stored(
    db: Database,
) -> None:
    clock = Clock()
    client = FakeClient(sync_body([], token="s2"))
    handed: list[str] = []
    syncer = make_syncer(db, client, handed, clock)
    syncer.token = "s1"  # as loaded at start: the first sync of a process always stores
    await syncer.sync_once(timeout_ms=0)
    assert await stored_token(db) == "s2"

    client.body = sync_body([], token="s3")  # nothing to store: no transaction
    clock.now += timedelta(seconds=5)
    await syncer.sync_once(timeout_ms=0)
    assert syncer.token == "s3" and await stored_token(db) == "s2"

    client.body = sync_body([message(1)], token="s4")  # a command: stored with its token
    await syncer.sync_once(timeout_ms=0)
    assert handed == ["$e1"] and await stored_token(db) == "s4"

    client.body = sync_body([], token="s5")
    clock.now += TOKEN_EVERY  # empty, but the stored token is old enough to be replaced
    await syncer.sync_once(timeout_ms=0)
    assert await stored_token(db) == "s5"


class OneAfterAnother(FakeClient):
    """Serves the given sync bodies one per sync, and then stops the sync loop."""

    def __init__(self, bodies: list[dict[str, Any]]) -> None:
        super().__init__(bodies[0])
        self.bodies = bodies
        self.syncer: Syncer | None = None

    async def sync(self, **kwargs: Any) -> SyncResponse:
        self.body = self.bodies.pop(0)
        if not self.bodies and self.syncer is not None:
            self.syncer.stopping = True
        return await super().sync(**kwargs)


async def test_each_sync_waits_for_what_it_brought_to_be_answered_before_the_next(
    db: Database,
) -> None:
    """After a sync, the next one first waits (at most ``SETTLE_AT_MOST``) until what it
    brought is handled and answered: a sync asked for while an answer is sent slows the
    send down, and the bot's own reply would end a long poll at once. The commands are
    handed to the workers before the wait, so the wait is for their answers."""
    own_reply = message(2, body="Here is what I can do", sender=BOT)
    client = OneAfterAnother(
        [
            sync_body([message(1)], token="s2"),
            sync_body([own_reply], token="s3"),
            sync_body([message(3)], token="s4"),
        ]
    )
    handed: list[str] = []
    waits: list[tuple[str | None, float, list[str]]] = []

    async def settle(at_most: float) -> None:
        waits.append((syncer.token, at_most, list(handed)))

    syncer = make_syncer(db, client, handed, Clock(), settle=settle)
    client.syncer = syncer
    syncer.token = "s1"
    await syncer.run()

    assert handed == ["$e1", "$e3"]
    assert waits[:3] == [
        ("s2", SETTLE_AT_MOST, ["$e1"]),
        ("s3", SETTLE_AT_MOST, ["$e1"]),
        ("s4", SETTLE_AT_MOST, ["$e1", "$e3"]),
    ]
