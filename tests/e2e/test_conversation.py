"""Talking to the bot as people do, through a real Synapse, in an encrypted direct chat:
a command without the ``!``, one pointer to ``help`` for chatter, and an edited command."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import BotFactory
from tests.e2e.harness import Person

pytestmark = pytest.mark.e2e

TYPO = '!profile set org="City of Oslo" country=NO type=local-athority'
FIXED = '!profile set org="City of Oslo" country=NO type=local-authority'


def body(event: dict) -> str:
    return str(event["content"]["body"])


async def test_an_encrypted_direct_chat_without_the_prefix_with_chatter_and_edits(
    people, make_bot: BotFactory
) -> None:
    anna: Person = await people("anna")
    bot = await make_bot()
    dm = await anna.open_dm(bot.user_id)
    assert anna.encrypted(dm)

    help_ = await anna.ask(dm, "help", bot.user_id)
    assert "!cops" in body(help_)

    hello = await anna.send(dm, "Hello! Who are you?")
    assert "only understand commands" in body(await anna.reply_to(hello, bot.user_id))
    chatter = await anna.send(dm, "ok, thanks")  # the pointer comes once, not again

    typo = await anna.send(dm, TYPO)
    assert "local-athority" in body(await anna.reply_to(typo, bot.user_id))

    def edit(text: str) -> dict:
        return {
            "msgtype": "m.text",
            "body": f"* {text}",
            "m.new_content": {"msgtype": "m.text", "body": text},
            "m.relates_to": {"rel_type": "m.replace", "event_id": typo},
        }

    async def answers_under_typo(count: int) -> list[dict]:
        """The bot's answers threaded under the typo (an edit's answer goes there too)."""
        found = await anna.wait_until(
            lambda: (replies := anna.replies_to(typo, bot.user_id))[count - 1 :] and replies,
            what=f"answer {count} to the edited command",
        )
        return list(found)

    await anna.send_content(dm, edit(FIXED))
    answers = await answers_under_typo(2)
    assert "Saved" in body(answers[1]) and "City of Oslo" in body(answers[1])

    await anna.send_content(dm, edit(FIXED.replace("Oslo", "Bergen")))
    answers = await answers_under_typo(3)
    assert "I acted on an earlier edit" in body(answers[2])
    assert anna.replies_to(chatter, bot.user_id) == []  # handled before the edits, unanswered

    profile = await anna.ask(dm, "profile", bot.user_id)
    assert "City of Oslo" in body(profile) and "Bergen" not in body(profile)
