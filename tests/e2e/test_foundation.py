"""The foundation, driven through a real Synapse with the bot as a real process."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import BotFactory
from tests.e2e.harness import Person

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
