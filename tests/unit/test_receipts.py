"""The bot marks the newest event it handled in a room as read, privately, once per moment."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bot.metrics import Metrics
from bot.receipts import ReadReceipts


@dataclass
class Response:
    status: int

    async def json(self, content_type: Any = None) -> dict[str, Any]:
        return {} if self.status == 200 else {"errcode": "M_FORBIDDEN"}

    def release(self) -> None:
        pass


@dataclass
class FakeClient:
    """Answers the receipt requests; ``refuse`` names rooms the bot is no longer in."""

    access_token: str = "token"
    client_session: object = object()
    posted: list[tuple[str, str, Any]] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)

    async def send(self, method: str, path: str, data: Any = None, **_: Any) -> Response:
        self.posted.append((method, path, json.loads(data) if data else None))
        return Response(403 if any(room in path for room in self.refuse) else 200)


async def test_one_private_receipt_per_room_for_the_newest_event_handled() -> None:
    client = FakeClient()
    metrics = Metrics()
    receipts = ReadReceipts(client, metrics, every=0.01)  # type: ignore[arg-type]

    for n in range(1, 4):
        receipts.handled("!cop:example.org", f"$c{n}")
    receipts.handled("!dm:example.org", "$d1")
    assert client.posted == []  # the replies go first
    assert receipts._task is not None
    await receipts._task

    assert sorted(client.posted) == [
        ("POST", "/_matrix/client/v3/rooms/%21cop%3Aexample.org/receipt/m.read.private/%24c3", {}),
        ("POST", "/_matrix/client/v3/rooms/%21dm%3Aexample.org/receipt/m.read.private/%24d1", {}),
    ]
    assert metrics.receipts._value.get() == 2


async def test_a_refused_receipt_is_counted_and_the_next_ones_still_go() -> None:
    client = FakeClient(refuse={"left"})
    metrics = Metrics()
    receipts = ReadReceipts(client, metrics, every=0.01)  # type: ignore[arg-type]

    receipts.handled("!left:example.org", "$x1")
    assert receipts._task is not None
    await receipts._task
    receipts.handled("!cop:example.org", "$c9")
    await receipts._task

    assert [path.rsplit("/", 1)[-1] for _, path, _ in client.posted] == ["%24x1", "%24c9"]
    assert metrics.errors.labels("receipt")._value.get() == 1
    assert metrics.receipts._value.get() == 1


async def test_closing_drops_what_is_not_sent_yet() -> None:
    client = FakeClient()
    receipts = ReadReceipts(client, Metrics(), every=60)  # type: ignore[arg-type]

    receipts.handled("!cop:example.org", "$c1")
    await receipts.close()

    assert client.posted == []
