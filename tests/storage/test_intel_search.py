"""Intel search finds word forms in the languages members write, with accents folded, on
both databases; titles are tidied. (Ranking and paging basics are in test_intel.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import text

from commands.digest import build_digest
from storage import Database
from storage import intel as store
from tests.support.cast import ANNA, HDEV_ROOM
from tests.support.database import migrate
from tests.support.world import World

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def found(world: World, query: str) -> list[str]:
    return [item.title for item in (await world.store_search(query)).items]


async def test_a_member_finds_electric_buses_by_bus_and_by_electric_bus(world: World) -> None:
    await world.share("Oslo tenders 40 electric buses")
    await world.share("Charging depot study")

    one = await world.only(ANNA, "!intel search bus", HDEV_ROOM)
    two = await world.store_search("electric bus")

    assert "I1 Oslo tenders 40 electric buses" in one.body
    assert "Charging depot" not in one.body
    assert [item.title for item in two.items] == ["Oslo tenders 40 electric buses"]
    assert two.all_words


@pytest.mark.parametrize(
    ("shared", "query"),
    [
        ("Oslo tenders 40 electric buses", "bus"),  # English plural
        ("Tendering for charging points in Bergen", "tender"),
        ("Electric bus tender", "buses"),  # and the other way round
        ("Ausschreibungen für Elektrobusse in München", "Ausschreibung"),  # German
        ("Marchés publics de bus électriques à Lyon", "electrique"),  # French, accents folded
        ("Licitaciones de autobuses eléctricos en Madrid", "autobús"),  # Spanish
        ("Appalti per autobus elettrici a Milano", "appalto"),  # Italian
        ("Aanbestedingen voor elektrische bussen in Utrecht", "aanbesteding"),  # Dutch
        ("Przetargi na autobusy elektryczne w Łodzi", "przetarg"),  # Polish
        ("Przetargi na autobusy elektryczne w Łodzi", "lodzi"),  # Polish letters folded
        ("Contratação de autocarros elétricos em Lisboa", "contratacao"),  # Portuguese
    ],
)
async def test_a_word_finds_its_other_forms(world: World, shared: str, query: str) -> None:
    await world.share(shared)
    await world.share("Something else entirely")

    assert await found(world, query) == [shared]


async def test_accents_and_case_fold_both_ways(world: World) -> None:
    await world.share("Hydrogène vert pour camions")
    await world.share("GREEN HYDROGEN FOR TRUCKS")

    assert sorted(await found(world, "hydrogene")) == [
        "GREEN HYDROGEN FOR TRUCKS",
        "Hydrogène vert pour camions",
    ]
    assert sorted(await found(world, "HYDROGÈNE")) == sorted(await found(world, "hydrogen"))


async def test_the_start_of_a_long_word_finds_compounds(world: World) -> None:
    await world.share("Ausschreibungsunterlagen der Stadt Wien")

    assert await found(world, "Ausschreibung") == ["Ausschreibungsunterlagen der Stadt Wien"]
    assert await found(world, "bus") == []  # short words match whole forms only


async def test_a_word_in_the_title_ranks_above_the_tags_above_the_note(world: World) -> None:
    world.now += timedelta(minutes=1)
    await world.share("Market study\nThe depots will need new chargers for buses.")
    world.now += timedelta(minutes=1)
    await world.share("Depot planning #buses")
    world.now += timedelta(minutes=1)
    await world.share("Bus depots in Oslo")

    assert await found(world, "bus") == ["Bus depots in Oslo", "Depot planning", "Market study"]


async def test_a_file_is_found_by_its_name(world: World) -> None:
    async def add(s):  # type: ignore[no-untyped-def]
        return await store.add_item(
            s,
            cop_code="HDEV",
            author=ANNA,
            title="Price list",
            file={"url": "mxc://x/y", "name": "Elektrobusse-Preise.pdf"},
            created_at=world.now,
        )

    await world.in_session(add)

    assert await found(world, "preise") == ["Price list"]


async def test_items_stored_before_the_word_forms_are_found_after_the_upgrade(
    db: Database,
) -> None:
    await migrate(db, lambda c: command.downgrade(c, "0008s-1"))
    async with db.session() as s:
        await s.execute(
            text("INSERT INTO cops (code, name, created_at) VALUES ('HDEV', 'H', :t)"), {"t": T0}
        )
        await s.execute(
            text(
                "INSERT INTO intel_items (cop_code, author, title, note, tags, urls, created_at) "
                "VALUES ('HDEV', '@a:x', 'Oslo tenders 40 electric buses', 'Ausschreibungen', "
                "'ebus', '[]', :t)"
            ),
            {"t": T0},
        )
    await migrate(db, lambda c: command.upgrade(c, "heads"))

    async with db.read() as s:
        for query in ("bus", "electric bus", "ausschreibung", "ebus"):
            result = await store.search_items(s, ["HDEV"], query)
            assert [item.title for item in result.items] == ["Oslo tenders 40 electric buses"]


# --- titles ------------------------------------------------------------------------------


async def test_a_link_only_share_is_titled_by_its_domain_and_path(world: World) -> None:
    reply = await world.only(
        ANNA, "!intel share https://www.ted.europa.eu/notice/123?lang=en #tender", HDEV_ROOM
    )

    assert "as I1: ted.europa.eu/notice/123" in reply.body
    item = await world.in_session(lambda s: store.get_item(s, 1))
    assert item.title == "ted.europa.eu/notice/123"
    assert item.urls == ["https://www.ted.europa.eu/notice/123?lang=en"]
    assert await found(world, "notice") == ["ted.europa.eu/notice/123"]


async def test_tags_and_links_leave_the_title_and_are_shown_once(world: World) -> None:
    await world.share("Oslo tenders 40 e-buses #ebus https://example.org/t #tender")

    listed = await world.only(ANNA, "!intel list", HDEV_ROOM)
    shown = await world.only(ANNA, "!intel show I1", HDEV_ROOM)
    digest = await world.in_session(
        lambda s: build_digest(s, world.settings, "HDEV", world.now + timedelta(hours=1))
    )

    for body in (listed.body, shown.body, digest.message.plain):
        assert "Oslo tenders 40 e-buses" in body
        assert body.count("#ebus") == 1, body


async def test_a_title_of_tags_only_comes_from_the_next_line(world: World) -> None:
    await world.share("#ebus #tender\nBergen buys 20 buses\nDetails follow.")

    item = await world.in_session(lambda s: store.get_item(s, 1))

    assert (item.title, item.note, item.tag_list) == (
        "Bergen buys 20 buses",
        "Details follow.",
        ["ebus", "tender"],
    )
