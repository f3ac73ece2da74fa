"""The replies of the intel commands: wording, escaping, refusals (SQLite only; the
database-dependent behaviour is tested on both backends in tests/storage/test_intel.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import intel as store
from tests.storage.intel_support import (
    ADMIN,
    ANNA,
    MOD,
    ROOMS,
    SOFIA,
    STRANGER,
    Bench,
    bench_from_template,
    file_event,
    migrated_template,
    replying_to,
    share,
)


@pytest.fixture(scope="session")
async def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return await migrated_template(tmp_path_factory)


@pytest.fixture
async def bench(tmp_path: Path, template: Path) -> AsyncIterator[Bench]:
    async with bench_from_template(template, tmp_path) as bench:
        yield bench


async def test_shared_text_is_escaped_in_the_reply(bench: Bench) -> None:
    reply = await bench.reply("!intel share <script>alert(1)</script> @room")

    assert "<script>" not in reply.html
    assert "&lt;script&gt;" in reply.html
    assert "@room" not in reply.body


async def test_sharing_without_text_shows_the_usage(bench: Bench) -> None:
    reply = await bench.reply("!intel share")

    assert "Usage: !intel share" in reply.body
    assert "tell me what to share" in reply.body.lower()


async def test_someone_who_is_not_a_member_cannot_share(bench: Bench) -> None:
    reply = await bench.reply("!intel share Hello", sender=STRANGER)

    assert "only for members" in reply.body
    assert await bench.in_session(lambda s: store.get_item(s, 1)) is None


async def test_a_member_of_another_cop_cannot_share_in_this_room(bench: Bench) -> None:
    reply = await bench.reply("!intel share Hello", sender=SOFIA, where="HDEV")

    assert "only members of HDEV" in reply.body


async def test_sharing_works_only_in_a_cop_room(bench: Bench) -> None:
    reply = await bench.reply("!intel share Hello", where="dm")

    assert "works only in a CoP room" in reply.body


async def test_a_note_that_is_too_long_is_refused_with_a_way_out(bench: Bench) -> None:
    reply = await bench.reply("!intel share Title\n" + "x" * 25_000)

    assert "longer than I can keep" in reply.body
    assert "upload it as a file" in reply.body


async def test_a_file_shared_without_a_title_is_named_after_the_file(bench: Bench) -> None:
    bench.fetched["$file1"] = file_event("market study.docx")

    await bench.reply("!intel share", content=replying_to("$file1", "!intel share"))

    item = await bench.in_session(lambda s: store.get_item(s, 1))
    assert item.title == "market study.docx"


async def test_replying_to_an_ordinary_message_without_text_explains_what_to_do(
    bench: Bench,
) -> None:
    bench.fetched["$text"] = {
        "type": "m.room.message",
        "content": {"msgtype": "m.text", "body": "hi"},
    }

    reply = await bench.reply("!intel share", content=replying_to("$text", "!intel share"))

    assert "not a file" in reply.body


async def test_a_reply_whose_message_cannot_be_read_is_not_shared(bench: Bench) -> None:
    reply = await bench.reply("!intel share X", content=replying_to("$gone", "!intel share X"))

    assert "could not read the message you replied to" in reply.body
    assert await bench.in_session(lambda s: store.get_item(s, 1)) is None


async def test_a_long_note_is_shown_in_parts(bench: Bench) -> None:
    note = " ".join(f"w{i}" for i in range(2000))  # about 11,000 characters
    await share(bench, f"Long report\n{note}")

    first = await bench.reply("!intel show I1")
    last = await bench.reply("!intel show I1 page=4")
    beyond = await bench.reply("!intel show I1 page=9")

    assert "(part 1 of 4)" in first.body and "!intel show I1 page=2" in first.body
    assert "(part 4 of 4)" in last.body and "w1999" in last.body
    assert "has 4 parts" in beyond.body


async def test_show_of_a_missing_item_says_so_plainly(bench: Bench) -> None:
    reply = await bench.reply("!intel show I99")

    assert "cannot find the intel item I99" in reply.body


async def test_show_with_a_bad_number_gives_the_usage(bench: Bench) -> None:
    reply = await bench.reply("!intel show x1")

    assert "is not an intel item number" in reply.body
    assert "Usage: !intel show <I#>" in reply.body


async def test_an_empty_list_invites_to_share(bench: Bench) -> None:
    reply = await bench.reply("!intel list")

    assert "No market intelligence in HDEV yet" in reply.body
    assert "!intel share" in reply.body


async def test_titles_with_a_link_are_linked_in_the_list(bench: Bench) -> None:
    await share(bench, "Tender <b>now</b>\nhttps://example.org/t?a=1&b=2")

    reply = await bench.reply("!intel list")

    assert '<a href="https://example.org/t?a=1&amp;b=2">Tender &lt;b&gt;now&lt;/b&gt;</a>' in (
        reply.html
    )


async def test_in_a_room_another_cops_items_are_not_shown_even_when_asked(bench: Bench) -> None:
    reply = await bench.reply("!intel list cop=SOLAR", sender=ADMIN, where="HDEV")

    assert "only show HDEV's items" in reply.body


async def test_a_member_cannot_pick_a_cop_they_do_not_belong_to(bench: Bench) -> None:
    reply = await bench.reply("!intel list cop=SOLAR", sender=ANNA, where="dm")

    assert "only members of SOLAR" in reply.body


async def test_search_that_matches_nothing_suggests_what_to_do(bench: Bench) -> None:
    await share(bench, "Bus tender")

    reply = await bench.reply("!intel search zeppelin")

    assert "Nothing in HDEV matches zeppelin" in reply.body
    assert "!intel list" in reply.body


async def test_search_without_words_shows_the_usage(bench: Bench) -> None:
    reply = await bench.reply("!intel search ?!")

    assert "give at least one word" in reply.body.lower()


async def test_a_removal_is_written_to_the_audit_log(bench: Bench) -> None:
    from storage import repo

    await share(bench, "Bus tender")
    await bench.reply("!intel remove I1", sender=MOD)

    entries = await bench.in_session(lambda s: repo.recent_audit(s, 5))
    assert [(e.actor, e.action, e.target) for e in entries] == [(MOD, "intel.remove", "I1")]


async def test_replies_go_to_the_room_that_asked(bench: Bench) -> None:
    sent = await bench.run("!intel list", where="HDEV")

    assert [s.room_id for s in sent] == [ROOMS["HDEV"]]


async def test_a_search_with_very_many_matches_ranks_the_newest_and_says_so(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "SEARCH_CANDIDATES", 5)
    for number in range(8):
        await share(bench, f"Tender {number}")

    reply = await bench.reply("!intel search tender")

    assert "Showing 1–5 of more than 5" in reply.body
    assert "I ranked the newest 5; more words narrow the search down" in reply.body
    assert "page=2" not in reply.body
    assert "Tender 7" in reply.body and "Tender 2" not in reply.body
