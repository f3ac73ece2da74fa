"""A gap (a limited sync: more came in than one sync holds, as after a stop) is read forwards
from the previous sync token, and in a room the bot was in its pages are stored and handed
to the room's worker one by one, before the sync token moves (both databases).

The fake homeserver serves the gap in pages the way Synapse does: forwards from the
previous sync token up to the timeline's ``prev_batch``, an empty page at the end.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from nio import RoomMessagesError, RoomMessagesResponse, SyncResponse

from bot.metrics import Metrics
from bot.sync import Classifier, GapFillError, Syncer
from storage import Database, repo, rooms
from storage.models import InboundEvent
from tests.storage.test_sync_hostile import ANNA, BOT, NOW, ROOM, TS, message

BERT = "@bert:example.org"


def member(n: int, user: str, membership: str, before: str | None = None) -> dict[str, Any]:
    return {
        "event_id": f"$m{n}",
        "sender": BOT if user == BOT else ANNA,
        "origin_server_ts": TS + n,
        "type": "m.room.member",
        "state_key": user,
        "content": {"membership": membership},
        "unsigned": {"prev_content": {"membership": before}} if before else {},
    }


class GapServer:
    """A limited sync of ``timeline`` with ``gap`` before it, served page by page."""

    user_id = BOT

    def __init__(
        self,
        gap: list[dict[str, Any]],
        timeline: list[dict[str, Any]],
        state: list[dict[str, Any]] | None = None,
    ) -> None:
        self.gap = gap
        self.timeline = timeline
        self.state = state or []
        self.asked: list[tuple[str, str | None, str, int]] = []
        self.fail_at: str | None = None
        """A page token the homeserver answers with an error (once)."""
        self.set_aside: list[tuple[str, Any, str]] = []
        self.on_page: Callable[[str], Awaitable[None]] | None = None
        """Called as each page is asked for, with its token (what the bot stored so far)."""

    async def sync(self, **_: Any) -> SyncResponse:
        timeline = {"events": copy.deepcopy(self.timeline), "limited": True, "prev_batch": "p1"}
        room = {"timeline": timeline, "state": {"events": copy.deepcopy(self.state)}}
        return SyncResponse.from_dict({"next_batch": "s2", "rooms": {"join": {ROOM: room}}})

    async def room_messages(
        self, room_id: str, start: str, end: str | None = None, **kw: Any
    ) -> RoomMessagesResponse | RoomMessagesError:
        direction, limit = kw["direction"].value, kw["limit"]
        self.asked.append((start, end, direction, limit))
        assert room_id == ROOM and end == "p1" and direction == "f"
        if self.on_page is not None:
            await self.on_page(start)
        if start == self.fail_at:
            self.fail_at = None
            return RoomMessagesError("the homeserver is restarting")
        at = 0 if start == "s1" else int(start.removeprefix("g"))
        chunk = copy.deepcopy(self.gap[at : at + limit])
        page = {"chunk": chunk, "start": start, "end": f"g{at + len(chunk)}"}
        resp = RoomMessagesResponse.from_dict(page, room_id)
        assert isinstance(resp, RoomMessagesResponse)
        return resp


class Bot:
    """The sync loop, with what it hands to the workers (one list per hand-over)."""

    def __init__(self, db: Database, server: GapServer) -> None:
        self.handed: list[list[str]] = []
        self.syncer = Syncer(
            server,  # type: ignore[arg-type]
            db,
            Classifier(BOT, "!", {"member"}),
            Metrics(),
            timeout_ms=0,
            on_stored=self.take,
            on_invite=lambda *_: None,
            clock=lambda: NOW,
        )
        self.syncer.token = "s1"

    def take(self, rows: list[InboundEvent]) -> None:
        self.handed.append([row.event_id for row in rows])

    async def sync(self) -> None:
        await self.syncer.sync_once(timeout_ms=0)


async def pending(db: Database) -> list[str]:
    async with db.read() as s:
        return [row.event_id for row in await repo.pending_inbound(s)]


async def token(db: Database) -> str | None:
    async with db.read() as s:
        return await repo.get_state(s, "sync_token")


async def bot_in_room(db: Database) -> None:
    async with db.session() as s:
        await rooms.load_member_list(s, ROOM, {BOT: "join", ANNA: "join"}, NOW)
        await repo.set_state(s, "sync_token", "s1", now=NOW)  # the previous sync's


def commands(first: int, last: int) -> list[dict[str, Any]]:
    return [message(n) for n in range(first, last + 1)]


async def test_a_long_gap_is_handed_to_the_worker_page_by_page_before_the_token_moves(
    db: Database,
) -> None:
    await bot_in_room(db)
    server = GapServer(gap=commands(1, 450), timeline=commands(451, 460))
    bot = Bot(db, server)
    before_page: dict[str, tuple[list[str], str | None]] = {}

    async def look(start: str) -> None:
        before_page[start] = (await pending(db), await token(db))

    server.on_page = look

    await bot.sync()

    # Forwards from the previous sync token, small pages first, then larger ones, until a
    # page comes back empty.
    assert [(a[0], a[3]) for a in server.asked] == [
        ("s1", 100),
        ("g100", 200),
        ("g300", 400),
        ("g450", 800),
    ]
    # Each page was stored and went to the worker as soon as it was read, oldest first,
    # while the sync token stayed where it was; the sync's own events came last, with it.
    assert before_page["g100"] == ([f"$e{n}" for n in range(1, 101)], "s1")
    assert before_page["g300"] == ([f"$e{n}" for n in range(1, 301)], "s1")
    assert [len(h) for h in bot.handed] == [100, 200, 150, 10]
    assert sum(bot.handed, []) == [f"$e{n}" for n in range(1, 461)]
    assert await pending(db) == [f"$e{n}" for n in range(1, 461)]
    assert await token(db) == "s2"


async def test_a_gap_cut_short_by_an_error_is_read_again_and_stored_once(db: Database) -> None:
    await bot_in_room(db)
    server = GapServer(gap=commands(1, 250), timeline=commands(251, 255))
    server.fail_at = "g100"  # the second page fails: the sync fails, its token stays
    bot = Bot(db, server)

    with pytest.raises(GapFillError, match="restarting"):
        await bot.sync()
    assert bot.handed == [[f"$e{n}" for n in range(1, 101)]]  # being answered already
    assert await token(db) == "s1"

    await bot.sync()  # the same gap again (after a stop, the next process reads it again)

    handed = sum(bot.handed, [])
    assert handed == [f"$e{n}" for n in range(1, 256)]  # each event handed once
    assert await pending(db) == [f"$e{n}" for n in range(1, 256)]
    assert await token(db) == "s2"


async def test_the_first_page_is_stored_with_the_rooms_members_as_they_are_now(
    db: Database,
) -> None:
    """A direct chat where someone else was invited later in the gap: the first commands are
    answered now, into the room as it is now, so they must see that person already."""
    await bot_in_room(db)
    later = member(900, BERT, "invite")
    server = GapServer(gap=[*commands(1, 150), later], timeline=commands(151, 152), state=[later])
    bot = Bot(db, server)
    members: dict[str, set[str] | None] = {}

    async def look(start: str) -> None:
        async with db.read() as s:
            members[start] = await rooms.present_members(s, ROOM)

    server.on_page = look

    await bot.sync()

    assert bot.handed[0] == [f"$e{n}" for n in range(1, 101)]
    assert members["s1"] == {BOT, ANNA}
    assert members["g100"] == {BOT, ANNA, BERT}  # with the first page, before its answers


async def test_a_room_the_bot_was_not_in_keeps_nothing_from_before_its_invitation(
    db: Database,
) -> None:
    """The bot was invited and joined during the gap: what was said before the invitation
    (visible to it by the room's history settings) is not for the bot to answer."""
    gap = [
        *commands(1, 120),
        member(200, BOT, "invite"),
        message(201),  # typed between the invitation and the join: kept
        member(202, BOT, "join", before="invite"),
        *commands(203, 320),
    ]
    server = GapServer(gap=gap, timeline=commands(321, 322))
    bot = Bot(db, server)

    await bot.sync()

    expected = ["$e201", *(f"$e{n}" for n in range(203, 323))]
    assert sum(bot.handed, []) == expected
    assert len(bot.handed) == 1  # nothing before the token: the bot was not in the room
    assert await pending(db) == expected


async def test_when_the_bot_left_and_came_back_in_the_gap_only_the_pages_before_go_early(
    db: Database,
) -> None:
    await bot_in_room(db)
    gap = [
        *commands(1, 100),
        *commands(101, 150),
        member(200, BOT, "leave", before="join"),
        *commands(201, 210),  # said while the bot was away
        member(211, BOT, "invite", before="leave"),
        member(212, BOT, "join", before="invite"),
        *commands(213, 230),
    ]
    server = GapServer(gap=gap, timeline=commands(231, 232))
    bot = Bot(db, server)

    await bot.sync()

    # Early: what was said while the bot was still in the room, page by page.
    assert bot.handed[:2] == [
        [f"$e{n}" for n in range(1, 101)],
        [f"$e{n}" for n in range(101, 151)],
    ]
    # With the token: what came after its return; nothing from while it was away.
    assert bot.handed[2:] == [[f"$e{n}" for n in range(213, 233)]]


async def test_a_display_name_change_of_the_bot_does_not_stop_the_early_pages(
    db: Database,
) -> None:
    await bot_in_room(db)
    renamed = member(150, BOT, "join", before="join")
    renamed["content"]["displayname"] = "BBWT bot"
    server = GapServer(gap=[*commands(1, 120), renamed, *commands(151, 329)], timeline=[])
    bot = Bot(db, server)

    await bot.sync()

    assert [len(h) for h in bot.handed] == [100, 199]  # page by page, to the end
    assert sum(bot.handed, []) == [
        *(f"$e{n}" for n in range(1, 121)),
        *(f"$e{n}" for n in range(151, 330)),
    ]
