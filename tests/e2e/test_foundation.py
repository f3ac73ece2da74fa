"""The foundation, driven through a real Synapse with the bot as a real process."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest
from sqlalchemy import text

from storage import Database
from tests.e2e.conftest import BotFactory
from tests.e2e.harness import BotProcess, Person

pytestmark = pytest.mark.e2e


async def test_help_in_a_direct_chat_lists_the_commands(people, make_bot: BotFactory) -> None:
    anna: Person = await people("anna")
    bot = await make_bot()
    dm = await anna.open_dm(bot.user_id)

    reply = await anna.ask(dm, "!help", bot.user_id)

    assert reply["content"]["msgtype"] == "m.notice"
    assert "!cops" in reply["content"]["body"]
    assert "<code>!help" in reply["content"]["formatted_body"]
    assert reply["content"]["m.mentions"] == {}
    topic = await anna.ask(dm, "!help events", bot.user_id)
    assert topic["content"]["body"].startswith("Events — ")
    assert "!rsvp <E#> yes|no|maybe" in topic["content"]["body"]


async def test_the_bot_can_log_in_with_an_access_token_and_serves_its_health_page(
    people, make_bot: BotFactory
) -> None:
    anna: Person = await people("anna")
    bot = await make_bot(login="token")
    dm = await anna.open_dm(bot.user_id)
    reply = await anna.ask(dm, "!cops", bot.user_id)
    assert "HDEV — Heavy-duty EVs" in reply["content"]["body"]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{bot.port}/healthz") as resp:
            assert resp.status == 200
            assert (await resp.json())["status"] == "ok"


async def test_the_bot_creates_cop_rooms_and_the_management_room_with_aliases(
    people, make_bot: BotFactory
) -> None:
    sofia: Person = await people("sofia")
    bot = await make_bot(
        admins=[sofia.user_id],
        cops=[{"code": "HDEV", "name": "Heavy-duty EVs"}, {"code": "SOLAR", "name": "Solar"}],
    )
    for name in ("hdev", "solar", "secretariat"):
        room_id = await sofia.join(bot.alias(name))  # invited as an admin: the join works
        assert room_id.startswith("!")
    solar = await sofia.join(bot.alias("solar"))
    reply = await sofia.ask(solar, "!cops", bot.user_id)
    assert "SOLAR" in reply["content"]["body"] and "HDEV" in reply["content"]["body"]


def replies_by_command(history: list[dict], bot_user: str) -> dict[str, list[dict]]:
    """Command event id -> the bot's replies to it."""
    out: dict[str, list[dict]] = {}
    for event in history:
        if event.get("sender") != bot_user or event.get("type") != "m.room.message":
            continue
        target = (event["content"].get("m.relates_to") or {}).get("m.in_reply_to", {})
        if target.get("event_id"):
            out.setdefault(target["event_id"], []).append(event)
    return out


async def test_a_restart_answers_nothing_twice_and_catches_up_on_what_came_in_meanwhile(
    people, make_bot: BotFactory
) -> None:
    anna: Person = await people("anna")
    bot = await make_bot()
    dm = await anna.open_dm(bot.user_id)
    first = await anna.send(dm, "!help")
    await anna.reply_to(first, bot.user_id)

    assert await bot.stop() == 0  # SIGTERM: a clean exit
    while_down = await anna.send(dm, "!cops")
    # The restart runs on Python's own event loop (the setting operators can fall back to),
    # the first start on the default, uvloop: the same bot on either.
    await bot.start(event_loop="asyncio")
    await anna.reply_to(while_down, bot.user_id)
    after = await anna.send(dm, "!help cops")
    await anna.reply_to(after, bot.user_id)

    replies = replies_by_command(await anna.history(dm), bot.user_id)
    assert {len(replies[e]) for e in (first, while_down, after)} == {1}
    assert "HDEV" in replies[while_down][0]["content"]["body"]
    first_start, restart = bot.log_path.read_text().split("===== start 1 =====")
    assert "running on the uvloop event loop" in first_start
    assert "running on the asyncio event loop" in restart


async def test_a_backlog_with_an_unknown_command_in_it_is_answered_once_each_in_order(
    people, make_bot: BotFactory
) -> None:
    # What came in while the bot was down is handled in groups sharing a transaction; the
    # unknown command in the middle of one is refused without undoing the others' answers.
    anna: Person = await people("anna")
    bot = await make_bot()
    dm = await anna.open_dm(bot.user_id)
    await anna.reply_to(await anna.send(dm, "!help"), bot.user_id)

    assert await bot.stop() == 0
    # The first is handled alone, then two, then four: the unknown one is second of those.
    texts = ["!cops", "!help cops", "!cops", "!help", "!frobnicate", "!help rsvp", "!cops"]
    sent = [await anna.send(dm, text) for text in texts]
    await bot.start()
    for event_id in sent:
        await anna.reply_to(event_id, bot.user_id, timeout=60)

    history = await anna.history(dm)
    replies = replies_by_command(history, bot.user_id)
    assert [len(replies[event_id]) for event_id in sent] == [1] * len(texts)
    answered = [
        (e["content"].get("m.relates_to") or {}).get("m.in_reply_to", {}).get("event_id")
        for e in history
        if e.get("sender") == bot.user_id and e.get("type") == "m.room.message"
    ]
    assert [event_id for event_id in answered if event_id in sent] == sent
    assert "I don't know the command" in replies[sent[4]][0]["content"]["body"]
    assert "HDEV" in replies[sent[6]][0]["content"]["body"]


async def test_a_command_older_than_the_offline_window_is_not_carried_out(
    people, make_bot: BotFactory
) -> None:
    anna: Person = await people("anna")
    bot = await make_bot(matrix={"offline_window": "3s"})
    dm = await anna.open_dm(bot.user_id)
    await bot.stop()
    stale = await anna.send(dm, "!cops")
    await asyncio.sleep(4)  # let the command age past the window while the bot is down
    await bot.start()

    reply = await anna.reply_to(stale, bot.user_id)

    assert "too old" in reply["content"]["body"]
    assert "send it again" in reply["content"]["body"]


async def test_user_text_is_escaped_and_cannot_ping_the_room(people, make_bot: BotFactory) -> None:
    anna: Person = await people("anna")
    bot = await make_bot()
    dm = await anna.open_dm(bot.user_id)

    reply = await anna.ask(dm, "!hello<b>hi</b>@room", bot.user_id)

    html = reply["content"]["formatted_body"]
    assert "<b>" not in html
    assert "&lt;b&gt;" in html
    assert "@room" not in reply["content"]["body"]  # defused with a word joiner
    assert reply["content"]["m.mentions"] == {}


async def burst(
    senders: list[Person], room_id: str, per_person: int, text: str = "!help cops"
) -> list[str]:
    """Every person sends ``per_person`` commands, all people at once; returns event ids."""

    async def one(person: Person) -> list[str]:
        return [await person.send(room_id, f"{text} #{i}") for i in range(per_person)]

    results = await asyncio.gather(*(one(p) for p in senders))
    return [event_id for ids in results for event_id in ids]


async def wait_for_answers(
    observer: Person, bot: BotProcess, room_id: str, commands: list[str], timeout: float
) -> dict[str, list[dict]]:
    """Wait until every command has a reply (or the bot says all is handled and sent)."""
    deadline = asyncio.get_running_loop().time() + timeout
    polls = 0
    while asyncio.get_running_loop().time() < deadline:
        polls += 1
        try:
            metrics = await bot.metrics()
        except OSError:
            metrics = {}
        handled = sum(v for k, v in metrics.items() if k.startswith("bbwt_commands_total{"))
        if handled >= len(commands) and metrics.get("bbwt_outbox_depth", 1) == 0:
            break
        if polls % 5 == 0:
            replies = replies_by_command(await observer.history(room_id), bot.user_id)
            if all(c in replies for c in commands):
                break
        await asyncio.sleep(1)
    return replies_by_command(await observer.history(room_id), bot.user_id)


async def room_with_people(people, make_bot: BotFactory, count: int, **bot_kwargs):
    """A CoP room with ``count`` people in it (they are its moderators, so they are invited)."""
    crowd: list[Person] = [await people(f"p{i}") for i in range(count)]
    bot = await make_bot(
        cops=[{"code": "HDEV", "name": "Heavy-duty EVs", "moderators": [p.user_id for p in crowd]}],
        **bot_kwargs,
    )
    room = await crowd[0].join(bot.alias("hdev"))
    for person in crowd[1:]:
        await person.join(room)
        # Only the first person watches the room; the others just send, as in a real
        # burst most clients are idle, and 20 live /sync streams would slow Synapse down.
        await person.stop_syncing()
    return bot, crowd, room


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_burst_of_500_commands_from_20_people_is_answered_exactly_once(
    people, make_bot: BotFactory, backend: str
) -> None:
    # The backlog goes to the room's worker in groups of up to 32 sharing a transaction.
    bot, crowd, room = await room_with_people(people, make_bot, 20, backend=backend)
    # Hold the bot still while the burst arrives, so its next /sync is far more than
    # Synapse's 100-event timeline cap behind and the gap must be paged back.
    bot.pause()
    try:
        commands = await burst(crowd, room, 25)
    finally:
        bot.resume()

    replies = await wait_for_answers(crowd[0], bot, room, commands, timeout=240)

    assert len(commands) == 500
    assert sum(1 for c in commands if c in replies) == 500
    assert all(len(replies[c]) == 1 for c in commands)
    metrics = await bot.metrics()
    assert metrics["bbwt_sync_gaps_total"] >= 1
    assert metrics["bbwt_sync_gap_events_total"] > 100
    # Synapse served the gap forwards from the stored sync token, and each page went to
    # the room's worker as it came (the bot was in the room: nothing had to wait).
    gaps = re.findall(r"filled a gap of (\d+) events \((\d+) stored page by page\)", bot.log_text())
    assert any(int(read) > 100 and read == early for read, early in gaps)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_kill_9_in_the_middle_of_a_burst_loses_and_repeats_nothing(
    people, make_bot: BotFactory, backend: str
) -> None:
    bot, crowd, room = await room_with_people(people, make_bot, 5, backend=backend)
    sending = asyncio.create_task(burst(crowd, room, 30))
    await asyncio.sleep(1.5)  # part of the burst is in, part is being handled
    await bot.kill()
    commands = await sending
    await bot.start()

    replies = await wait_for_answers(crowd[0], bot, room, commands, timeout=180)

    assert sum(1 for c in commands if c in replies) == len(commands) == 150
    assert all(len(replies[c]) == 1 for c in commands)


async def active_and_standby(
    people, make_bot: BotFactory, tmp_path, count: int
) -> tuple[BotProcess, BotProcess, list[Person], str]:
    """A PostgreSQL bot with ``count`` people in its CoP room, and a second process of it
    waiting on standby: (active, standby, people, room)."""
    bot, crowd, room = await room_with_people(people, make_bot, count, backend="postgresql")
    standby = bot.twin(tmp_path / "second")
    await standby.start(role="standby")
    return bot, standby, crowd, room


async def test_a_standby_that_waited_through_an_upgrade_by_a_newer_version_does_not_take_over(
    people, make_bot: BotFactory, tmp_path
) -> None:
    # A newer version, started meanwhile, upgraded the schema (say, dropped a column this
    # code reads): the standby checks the schema again when it gets the lease, refuses as
    # it would at a start, and lets the lease go.
    bot, standby, _, _ = await active_and_standby(people, make_bot, tmp_path, 1)
    db = Database(bot.db_url)
    try:
        async with db.session() as s:
            await s.execute(text("INSERT INTO alembic_version (version_num) VALUES ('fffnewer')"))
    finally:
        await db.dispose()

    await bot.kill()

    assert standby.proc is not None
    code = await asyncio.wait_for(standby.proc.wait(), 60)
    assert code == 3, standby.tail()
    assert "newer version" in standby.log_text()
    assert "resumed session" not in standby.log_text()  # it never acted as the bot


async def test_a_standby_answers_nothing_while_the_active_process_lives_and_takes_over_after_kill_9(
    people, make_bot: BotFactory, tmp_path
) -> None:
    bot, standby, crowd, room = await active_and_standby(people, make_bot, tmp_path, 4)

    before = await burst(crowd, room, 5)
    answered = await wait_for_answers(crowd[0], bot, room, before, timeout=120)
    assert all(len(answered.get(c, [])) == 1 for c in before)
    assert (await standby.health())["role"] == "standby"
    assert not any(k.startswith("bbwt_commands_total{") for k in await standby.metrics())
    assert "resumed session" not in standby.log_text()  # it has not touched Matrix

    sending = asyncio.create_task(burst(crowd, room, 15))
    await asyncio.sleep(1.0)  # part of the burst is in, part is being handled
    await bot.kill()
    took = await standby.wait_role("active", timeout=60)
    commands = await sending
    print(f"standby active {took:.2f}s after kill -9 of the active process")

    replies = await wait_for_answers(crowd[0], standby, room, commands, timeout=180)
    assert sum(1 for c in commands if c in replies) == len(commands) == 60
    assert all(len(replies[c]) == 1 for c in commands)
    # The same device and identity carried on: nobody sees a new session of the bot.
    devices = [re.findall(r"on device (\w+)", b.log_text()) for b in (bot, standby)]
    assert devices[0] and devices[0][-1:] == devices[1][-1:]
    assert "loaded the crypto identity" in standby.log_text()
