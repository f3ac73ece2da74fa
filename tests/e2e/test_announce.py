"""An announcement through a real Synapse and the real bot process."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import BotFactory
from tests.e2e.harness import Person
from tests.e2e.intel_support import body
from tests.e2e.membership_support import message_containing, seed_member

pytestmark = pytest.mark.e2e


async def test_a_moderator_announces_from_the_management_room_and_members_see_it(
    people, make_bot: BotFactory
) -> None:
    maria: Person = await people("maria")  # moderator of HDEV
    anna: Person = await people("anna")
    bot = await make_bot(
        cops=[{"code": "HDEV", "name": "Heavy-duty EVs", "moderators": [maria.user_id]}]
    )
    await seed_member(bot.db_url, anna, "HDEV")
    hdev = await anna.join(bot.alias("hdev"))
    management = await maria.join(bot.alias("secretariat"))

    done = await maria.ask(
        management, "!announce HDEV Dialogue moved to <Thursday> @room", bot.user_id
    )
    assert "posted your announcement in the HDEV room" in body(done)

    notice = await message_containing(anna, hdev, bot.user_id, "Dialogue moved to <Thursday>")
    assert notice["content"]["msgtype"] == "m.notice"
    assert "Announcement from the HDEV moderators" in body(notice)
    assert "&lt;Thursday&gt;" in notice["content"]["formatted_body"]
    assert "@room" not in body(notice)
