"""The weekly digest through a real Synapse: posted on request, once per week, across restarts."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from config.digest import WEEKDAYS
from tests.e2e.conftest import BotFactory
from tests.e2e.harness import Person
from tests.e2e.intel_support import backdate_cops, body, digests_in

pytestmark = pytest.mark.e2e


async def test_digest_send_posts_once_and_a_restart_in_the_same_week_does_not_post_again(
    people, make_bot: BotFactory
) -> None:
    mia: Person = await people("mia")
    cops = [
        {"code": "HDEV", "name": "Heavy-duty EVs", "moderators": [mia.user_id]},
        {"code": "SOLAR", "name": "Solar panels", "moderators": [mia.user_id]},
    ]
    bot = await make_bot(cops=cops, start=False)
    # This week's digest is due since midnight today, so a restart must decide about it.
    today = datetime.now(ZoneInfo("Europe/Brussels"))
    with bot.config_path.open("a", encoding="utf-8") as config:
        config.write(f'\n[digest]\nweekday = "{WEEKDAYS[today.weekday()]}"\ntime = "00:00"\n')
    await bot.start()
    hdev = await mia.join(bot.alias("hdev"))
    solar = await mia.join(bot.alias("solar"))

    await mia.ask(hdev, "!intel share Oslo bus tender #ebus", bot.user_id)
    confirm = await mia.ask(hdev, "!digest send", bot.user_id)
    assert "is posted here" in body(confirm)
    posted = await mia.wait_until(lambda: digests_in(mia, hdev, bot.user_id), what="the digest")
    assert "Oslo bus tender" in body(posted[0])
    assert "m.relates_to" not in posted[0]["content"]
    assert digests_in(mia, solar, bot.user_id) == []  # the bot was new when it was due

    await bot.stop()
    await backdate_cops(bot, today.replace(year=today.year - 1))
    await bot.start()

    # SOLAR's digest of this week was missed while the bot was down: it comes on start.
    await mia.wait_until(lambda: digests_in(mia, solar, bot.user_id), what="SOLAR's digest")
    # HDEV's was posted already: after the restart the bot answers, and posts nothing new.
    refused = await mia.ask(hdev, "!digest send", bot.user_id)
    assert "This week's HDEV digest went out" in body(refused)
    assert len(digests_in(mia, hdev, bot.user_id)) == 1
