"""Market intelligence through a real Synapse and the real bot process."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import BotFactory
from tests.e2e.harness import Person
from tests.e2e.intel_support import ask_in_reply, body, upload_file
from tests.e2e.membership_support import seed_member

pytestmark = pytest.mark.e2e


async def test_members_share_text_and_files_then_list_search_show_and_remove(
    people, make_bot: BotFactory
) -> None:
    anna: Person = await people("anna")
    bot = await make_bot(cops=[{"code": "HDEV", "name": "Heavy-duty EVs"}])
    await seed_member(bot.db_url, anna, "HDEV")
    room = await anna.join(bot.alias("hdev"))  # the bot's invite arrives after the seeding

    text = await anna.ask(
        room,
        "!intel share Oslo tenders 40 e-buses #EBus\n"
        "Deadline 12 January, details at https://example.org/tender.",
        bot.user_id,
    )
    assert "Shared with HDEV as I1" in body(text)
    assert "tags #ebus" in body(text)

    data = b"supplier,price\nVolvo,1\n"
    file_event = await upload_file(anna, room, "prices-2026.csv", data, "text/csv")
    shared = await ask_in_reply(
        anna, room, file_event, "!intel share Supplier price list #prices", bot.user_id
    )
    assert "Shared with HDEV as I2" in body(shared)
    assert "the file prices-2026.csv" in body(shared)

    listed = await anna.ask(room, "!intel list", bot.user_id)
    assert body(listed).index("I2 Supplier price list") < body(listed).index("I1 Oslo tenders")
    assert '<a href="https://example.org/tender">' in listed["content"]["formatted_body"]

    found = await anna.ask(room, "!intel search tenders oslo", bot.user_id)
    assert "I1 Oslo tenders" in body(found) and "I2" not in body(found)

    show = await anna.send(room, "!intel show i2")
    replies = await anna.wait_until(
        lambda: len(anna.replies_to(show, bot.user_id)) >= 2 and anna.replies_to(show, bot.user_id),
        what="the item and its file",
    )
    text_reply, file_reply = replies[0], replies[1]
    assert "I2 · Supplier price list" in body(text_reply)
    assert file_reply["content"]["msgtype"] == "m.file"
    original = next(e for e in anna.events[room] if e.get("event_id") == file_event)
    assert file_reply["content"]["file"]["url"] == original["content"]["file"]["url"]
    assert await anna.download(file_reply["content"]) == data  # the encrypted file opens

    removed = await anna.ask(room, "!intel remove I1", bot.user_id)
    assert "Removed I1" in body(removed)
    after = await anna.ask(room, "!intel list", bot.user_id)
    assert "I1" not in body(after) and "I2 Supplier price list" in body(after)


async def test_a_search_finds_other_forms_of_the_words(people, make_bot: BotFactory) -> None:
    anna: Person = await people("anna")
    bot = await make_bot(cops=[{"code": "HDEV", "name": "Heavy-duty EVs"}])
    await seed_member(bot.db_url, anna, "HDEV")
    room = await anna.join(bot.alias("hdev"))

    shared = await anna.ask(room, "!intel share Oslo tenders 40 electric buses #ebus", bot.user_id)
    assert "Shared with HDEV as I1: Oslo tenders 40 electric buses" in body(shared)

    one_word = await anna.ask(room, "!intel search bus", bot.user_id)
    two_words = await anna.ask(room, "!intel search electric bus", bot.user_id)
    accented = await anna.ask(room, "!intel search électrique", bot.user_id)

    for found in (one_word, two_words, accented):
        assert "I1 Oslo tenders 40 electric buses" in body(found), body(found)
        assert "no item has all the words" not in body(found)
        assert body(found).count("#ebus") == 1
