"""Market intelligence on both databases: what is stored, who sees it, search ranking,
paging and removal. (Wording and refusals are in tests/unit/test_intel_commands.py.)"""

from __future__ import annotations

import re
from datetime import timedelta

from storage import intel as store
from tests.support.cast import ADMIN, ANNA, BEN, HDEV_ROOM, MGMT, MOD, SOFIA, SOLAR_ROOM
from tests.support.world import World, file_event, replying_to


async def test_a_member_shares_a_multi_line_note_and_gets_its_number(world: World) -> None:
    reply = await world.only(
        ANNA,
        "!intel share Oslo tenders 40 e-buses #EBus\n"
        "Deadline 12 January, see https://example.org/tender.\n#procurement",
        HDEV_ROOM,
    )

    assert "Shared with HDEV as I1" in reply.body
    assert "tags #ebus #procurement" in reply.body
    assert "1 link" in reply.body
    assert '<a href="https://example.org/tender">' in reply.html
    item = await world.in_session(lambda s: store.get_item(s, 1))
    assert item.title == "Oslo tenders 40 e-buses"  # the tag is not repeated in the title
    assert item.note.startswith("Deadline 12 January")
    assert item.tag_list == ["ebus", "procurement"]
    assert item.urls == ["https://example.org/tender"]
    assert item.author == ANNA and item.cop_code == "HDEV"


async def test_replying_to_a_file_shares_the_file(world: World) -> None:
    world.fetched["$file1"] = file_event()

    reply = await world.only(
        ANNA,
        "!intel share Supplier price list #prices",
        HDEV_ROOM,
        content=replying_to("$file1", "!intel share Supplier price list #prices"),
    )

    assert "Shared with HDEV as I1" in reply.body
    assert "the file prices-2026.pdf (120.6 KB)" in reply.body
    item = await world.in_session(lambda s: store.get_item(s, 1))
    assert (item.file_url, item.file_name, item.file_size, item.file_mimetype) == (
        "mxc://example.org/AbCdEf",
        "prices-2026.pdf",
        123_456,
        "application/pdf",
    )
    assert item.title == "Supplier price list"


async def test_show_gives_the_whole_item_and_posts_the_file_again(world: World) -> None:
    world.fetched["$file1"] = file_event(msgtype="m.image")
    await world.only(
        ANNA,
        "!intel share Charger photo\nsee https://example.org/c",
        HDEV_ROOM,
        content=replying_to("$file1", "!intel share Charger photo\nsee https://example.org/c"),
    )

    text, file = await world.run(BEN, "!intel show i1", HDEV_ROOM)

    assert "I1 · Charger photo" in text.body
    assert "https://example.org/c" in text.body
    assert "prices-2026.pdf" in text.body
    assert "https://matrix.to/#/" in text.html  # the original message
    assert "Europe/Brussels" in text.body
    assert file.payload["msgtype"] == "m.image"
    assert file.payload["url"] == "mxc://example.org/AbCdEf"
    assert file.payload["info"] == {"mimetype": "application/pdf", "size": 123_456}


async def test_the_list_is_newest_first_ten_at_a_time(world: World) -> None:
    for number in range(1, 13):
        world.now += timedelta(minutes=1)
        await world.share(f"Item number {number}")

    first = await world.only(ANNA, "!intel list", HDEV_ROOM)
    second = await world.only(ANNA, "!intel list page=2", HDEV_ROOM)

    titles = re.findall(r"Item number (\d+)", first.body)
    assert titles == [str(n) for n in range(12, 2, -1)]
    assert "Showing 1–10 of 12" in first.body
    assert "!intel list page=2" in first.body
    assert "<ul><li>" in first.html
    assert re.findall(r"Item number (\d+)", second.body) == ["2", "1"]
    assert "Showing 11–12 of 12" in second.body


async def test_the_list_can_be_narrowed_to_a_tag(world: World) -> None:
    await world.share("Bus tender #ebus")
    await world.share("Solar study #pv")

    reply = await world.only(ANNA, "!intel list #EBUS", HDEV_ROOM)

    assert "Bus tender" in reply.body
    assert "Solar study" not in reply.body
    assert "tagged #ebus" in reply.body


async def test_each_cop_sees_only_its_own_items(world: World) -> None:
    await world.share("Bus tender Oslo")
    await world.share("Solar tender Espoo", sender=SOFIA, room=SOLAR_ROOM)

    hdev = await world.only(ANNA, "!intel list", HDEV_ROOM)
    solar = await world.only(SOFIA, "!intel list", SOLAR_ROOM)
    search = await world.only(SOFIA, "!intel search tender")
    show = await world.only(SOFIA, "!intel show I1")

    assert "Bus tender" in hdev.body and "Solar tender" not in hdev.body
    assert "Solar tender" in solar.body and "Bus tender" not in solar.body
    assert "Solar tender" in search.body and "Bus tender" not in search.body
    assert "cannot find the intel item I1" in show.body


async def test_admins_see_every_cop_in_a_direct_message_but_only_the_rooms_cop_in_a_room(
    world: World,
) -> None:
    await world.share("Bus tender Oslo")
    await world.share("Solar tender Espoo", sender=SOFIA, room=SOLAR_ROOM)

    in_dm = await world.only(ADMIN, "!intel list")
    in_room = await world.only(ADMIN, "!intel list", HDEV_ROOM)
    one_cop = await world.only(ADMIN, "!intel list cop=solar", MGMT)

    assert "Bus tender" in in_dm.body and "Solar tender" in in_dm.body
    assert "all CoPs" in in_dm.body
    assert "Bus tender" in in_room.body and "Solar tender" not in in_room.body
    assert "Solar tender" in one_cop.body and "Bus tender" not in one_cop.body


async def test_search_ranks_a_title_match_above_a_mention_in_the_note(world: World) -> None:
    await world.share("Market study\nA short remark about hydrogen among other things.")
    await world.share("Hydrogen buses: tender results\nOslo and Bergen.")
    await world.share("Unrelated\nNothing to see.")

    reply = await world.only(ANNA, "!intel search hydrogen", HDEV_ROOM)

    assert "Hydrogen buses" in reply.body and "Market study" in reply.body
    assert reply.body.index("Hydrogen buses") < reply.body.index("Market study")
    assert "Unrelated" not in reply.body


async def test_search_ranks_items_with_all_the_words_first_and_finds_word_forms(
    world: World,
) -> None:
    await world.share("Charging points for electric trucks")
    await world.share("Electric bus tender")

    both = await world.store_search("electric tenders")
    some = await world.store_search("tender zeppelin")

    assert [item.title for item in both.items] == ["Electric bus tender"]
    assert both.all_words
    assert [item.title for item in some.items] == ["Electric bus tender"]
    assert not some.all_words


async def test_search_words_never_break_the_query(world: World) -> None:
    await world.share("Bus tender")

    for query in ('"unclosed', "AND OR NOT", "a* (b", "title:x", "-minus", "x' OR 1=1 --"):
        reply = await world.only(ANNA, f"!intel search {query} bus", HDEV_ROOM)
        assert "Bus tender" in reply.body, (query, reply.body)


async def test_search_results_come_ten_at_a_time(world: World) -> None:
    for number in range(12):
        await world.share(f"Tender {number}")

    first = await world.only(ANNA, "!intel search tender", HDEV_ROOM)
    second = await world.only(ANNA, "!intel search tender page=2", HDEV_ROOM)

    assert "Showing 1–10 of 12" in first.body
    assert "!intel search tender page=2" in first.body
    assert "Showing 11–12 of 12" in second.body


async def test_the_author_removes_an_item_and_it_vanishes_everywhere(world: World) -> None:
    await world.share("Bus tender #ebus")
    await world.share("Truck tender #ebus")

    reply = await world.only(ANNA, "!intel remove 1", HDEV_ROOM)

    assert "Removed I1 (Bus tender)" in reply.body
    listed = await world.only(ANNA, "!intel list", HDEV_ROOM)
    tagged = await world.only(ANNA, "!intel list #ebus", HDEV_ROOM)
    found = await world.only(ANNA, "!intel search bus", HDEV_ROOM)
    shown = await world.only(ANNA, "!intel show I1", HDEV_ROOM)
    again = await world.only(ANNA, "!intel remove I1", HDEV_ROOM)
    assert "Bus tender" not in listed.body and "Truck tender" in listed.body
    assert "Bus tender" not in tagged.body
    assert "Nothing in HDEV matches" in found.body
    assert "cannot find the intel item I1" in shown.body
    assert "cannot find the intel item I1" in again.body


async def test_another_member_cannot_remove_an_item_but_a_moderator_can(world: World) -> None:
    await world.share("Bus tender")

    refused = await world.only(BEN, "!intel remove I1", HDEV_ROOM)
    removed = await world.only(MOD, "!intel remove I1", MGMT)

    assert f"Only {ANNA}, who shared I1, or a moderator of HDEV can remove it" in refused.body
    assert "Removed I1" in removed.body


async def test_forgetting_a_person_deletes_what_they_shared_from_list_and_search(
    world: World,
) -> None:
    await world.share("Bus tender #ebus")
    await world.share("Truck tender #ebus", sender=BEN)

    async def erase(s):  # type: ignore[no-untyped-def]
        mine = await store.items_by_author(s, ANNA)
        return [item.title for item in mine], await store.erase_author(s, ANNA)

    titles, erased = await world.in_session(erase)

    assert (titles, erased) == (["Bus tender"], 1)
    assert [item.title for item in (await world.store_search("tender")).items] == ["Truck tender"]
    listed = await world.only(ANNA, "!intel list #ebus", HDEV_ROOM)
    assert "Bus tender" not in listed.body and "Truck tender" in listed.body
