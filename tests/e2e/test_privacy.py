"""``!mydata`` through a real Synapse with the bot as a real process."""

from __future__ import annotations

import json

import pytest

from tests.e2e.claims_support import download
from tests.e2e.conftest import BotFactory
from tests.e2e.harness import Person

pytestmark = pytest.mark.e2e


async def test_mydata_in_a_direct_chat_delivers_a_json_file_with_the_profile(
    people, make_bot: BotFactory
) -> None:
    anna: Person = await people("anna")
    bot = await make_bot()
    dm = await anna.open_dm(bot.user_id)
    saved = await anna.ask(
        dm, '!profile set org="City of Oslo" country=NO type=local-authority', bot.user_id
    )
    assert "City of Oslo" in saved["content"]["body"]

    file_reply = await anna.ask(dm, "!mydata", bot.user_id)

    assert file_reply["content"]["msgtype"] == "m.file"
    assert file_reply["content"]["info"]["mimetype"] == "application/json"
    data = json.loads(await download(anna, file_reply["content"]["url"]))
    assert data["user_id"] == anna.user_id
    assert data["profile"]["organisation"] == "City of Oslo"
    assert data["profile"]["country"] == "NO"
