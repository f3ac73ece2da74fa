"""The replies of the intel commands: wording, escaping, refusals (SQLite only; the
database-dependent behaviour is tested on both backends in tests/storage/test_intel.py)."""

from __future__ import annotations

import pytest

from storage import intel as store
from tests.support.cast import ADMIN, ANNA, HDEV_ROOM, MOD, ROOMS, SOFIA, STRANGER
from tests.support.world import World, file_event, replying_to


async def test_shared_text_is_escaped_in_the_reply(world: World) -> None:
    reply = await world.only(ANNA, "!intel share <script>alert(1)</script> @room", HDEV_ROOM)

    assert "<script>" not in reply.html
    assert "&lt;script&gt;" in reply.html
    assert "@room" not in reply.body


async def test_sharing_without_text_shows_the_usage(world: World) -> None:
    reply = await world.only(ANNA, "!intel share", HDEV_ROOM)

    assert "Usage: !intel share" in reply.body
    assert "tell me what to share" in reply.body.lower()


async def test_someone_who_is_not_a_member_cannot_share(world: World) -> None:
    reply = await world.only(STRANGER, "!intel share Hello", HDEV_ROOM)

    assert "only for members" in reply.body
    assert await world.in_session(lambda s: store.get_item(s, 1)) is None


async def test_a_member_of_another_cop_cannot_share_in_this_room(world: World) -> None:
    reply = await world.only(SOFIA, "!intel share Hello", HDEV_ROOM)

    assert "only members of HDEV" in reply.body


async def test_sharing_works_only_in_a_cop_room(world: World) -> None:
    reply = await world.only(ANNA, "!intel share Hello")

    assert "works only in a CoP room" in reply.body


async def test_a_note_that_is_too_long_is_refused_with_a_way_out(world: World) -> None:
    reply = await world.only(ANNA, "!intel share Title\n" + "x" * 25_000, HDEV_ROOM)

    assert "longer than I can keep" in reply.body
    assert "upload it as a file" in reply.body


async def test_a_file_shared_without_a_title_is_named_after_the_file(world: World) -> None:
    world.fetched["$file1"] = file_event("market study.docx")

    await world.only(ANNA, "!intel share", HDEV_ROOM, content=replying_to("$file1", "!intel share"))

    item = await world.in_session(lambda s: store.get_item(s, 1))
    assert item.title == "market study.docx"


async def test_replying_to_an_ordinary_message_without_text_explains_what_to_do(
    world: World,
) -> None:
    world.fetched["$text"] = {
        "type": "m.room.message",
        "content": {"msgtype": "m.text", "body": "hi"},
    }

    reply = await world.only(
        ANNA, "!intel share", HDEV_ROOM, content=replying_to("$text", "!intel share")
    )

    assert "not a file" in reply.body


async def test_a_reply_whose_message_cannot_be_read_is_not_shared(world: World) -> None:
    reply = await world.only(
        ANNA, "!intel share X", HDEV_ROOM, content=replying_to("$gone", "!intel share X")
    )

    assert "could not read the message you replied to" in reply.body
    assert await world.in_session(lambda s: store.get_item(s, 1)) is None


async def test_a_long_note_is_shown_in_parts(world: World) -> None:
    note = " ".join(f"w{i}" for i in range(2000))  # about 11,000 characters
    await world.share(f"Long report\n{note}")

    first = await world.only(ANNA, "!intel show I1", HDEV_ROOM)
    last = await world.only(ANNA, "!intel show I1 page=4", HDEV_ROOM)
    beyond = await world.only(ANNA, "!intel show I1 page=9", HDEV_ROOM)

    assert "(part 1 of 4)" in first.body and "!intel show I1 page=2" in first.body
    assert "(part 4 of 4)" in last.body and "w1999" in last.body
    assert "has 4 parts" in beyond.body


async def test_show_of_a_missing_item_says_so_plainly(world: World) -> None:
    reply = await world.only(ANNA, "!intel show I99", HDEV_ROOM)

    assert "cannot find the intel item I99" in reply.body


async def test_show_with_a_bad_number_gives_the_usage(world: World) -> None:
    reply = await world.only(ANNA, "!intel show x1", HDEV_ROOM)

    assert "is not an intel item number" in reply.body
    assert "Usage: !intel show <I#>" in reply.body


async def test_an_empty_list_invites_to_share(world: World) -> None:
    reply = await world.only(ANNA, "!intel list", HDEV_ROOM)

    assert "No market intelligence in HDEV yet" in reply.body
    assert "!intel share" in reply.body


async def test_titles_with_a_link_are_linked_in_the_list(world: World) -> None:
    await world.share("Tender <b>now</b>\nhttps://example.org/t?a=1&b=2")

    reply = await world.only(ANNA, "!intel list", HDEV_ROOM)

    assert '<a href="https://example.org/t?a=1&amp;b=2">Tender &lt;b&gt;now&lt;/b&gt;</a>' in (
        reply.html
    )


async def test_in_a_room_another_cops_items_are_not_shown_even_when_asked(world: World) -> None:
    reply = await world.only(ADMIN, "!intel list cop=SOLAR", HDEV_ROOM)

    assert "only show HDEV's items" in reply.body


async def test_a_member_cannot_pick_a_cop_they_do_not_belong_to(world: World) -> None:
    reply = await world.only(ANNA, "!intel list cop=SOLAR")

    assert "only members of SOLAR" in reply.body


async def test_search_that_matches_nothing_suggests_what_to_do(world: World) -> None:
    await world.share("Bus tender")

    reply = await world.only(ANNA, "!intel search zeppelin", HDEV_ROOM)

    assert "Nothing in HDEV matches zeppelin" in reply.body
    assert "!intel list" in reply.body


async def test_search_without_words_shows_the_usage(world: World) -> None:
    reply = await world.only(ANNA, "!intel search ?!", HDEV_ROOM)

    assert "give at least one word" in reply.body.lower()


async def test_a_removal_is_written_to_the_audit_log(world: World) -> None:
    from storage import repo

    await world.share("Bus tender")
    await world.only(MOD, "!intel remove I1", HDEV_ROOM)

    entries = await world.in_session(lambda s: repo.recent_audit(s, 5))
    assert [(e.actor, e.action, e.target) for e in entries] == [(MOD, "intel.remove", "I1")]


async def test_replies_go_to_the_room_that_asked(world: World) -> None:
    sent = await world.run(ANNA, "!intel list", HDEV_ROOM)

    assert [s.room_id for s in sent] == [ROOMS["HDEV"]]


async def test_a_search_with_very_many_matches_ranks_the_newest_and_says_so(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "SEARCH_CANDIDATES", 5)
    for number in range(8):
        await world.share(f"Tender {number}")

    reply = await world.only(ANNA, "!intel search tender", HDEV_ROOM)

    assert "Showing 1–5 of more than 5" in reply.body
    assert "I ranked the newest 5; more words narrow the search down" in reply.body
    assert "page=2" not in reply.body
    assert "Tender 7" in reply.body and "Tender 2" not in reply.body
