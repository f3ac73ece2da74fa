"""``!help``: a short overview by topic (only the topics the asker may use), the commands of
one topic, one command explained, and a clear answer to a word that is neither."""

from __future__ import annotations

import re

from commands.general import SECTIONS
from tests.support.cast import ADMIN, ANNA, HDEV_ROOM, MGMT, MOD, STRANGER
from tests.support.world import World


async def test_help_for_an_admin_is_one_line_per_topic(world: World) -> None:
    reply = await world.only(ADMIN, "!help", MGMT)

    lines = reply.body.splitlines()
    assert len(lines) <= 12
    topics = [line for line in lines if line.startswith("• ")]
    assert [line.split(" — ")[0] for line in topics] == [
        "• General",
        "• Membership",
        "• Events",
        "• Intel",
        "• Claims",
        "• Moderation",
        "• Admin",
        "• Privacy",
    ]
    assert "• Events — meetings and visits, RSVPs and your calendar: !event" in reply.body
    assert "!help events" in reply.body
    assert "!help <topic>" in reply.body and "!help <command>" in reply.body


async def test_help_shows_only_the_topics_the_asker_may_use(world: World) -> None:
    stranger = (await world.only(STRANGER, "!help")).body
    member = (await world.only(ANNA, "!help", HDEV_ROOM)).body
    moderator = (await world.only(MOD, "!help", MGMT)).body

    assert "• General" in stranger and "!cops" in stranger
    assert "• Intel" not in stranger and "• Claims" not in stranger
    assert "• Intel" in member and "• Claims" in member
    assert "• Moderation" not in member and "!digest" not in member
    assert "• Moderation" in moderator and "!digest" in moderator
    assert "• Admin" not in moderator


async def test_help_with_a_topic_lists_its_commands(world: World) -> None:
    member = (await world.only(ANNA, "!help events", HDEV_ROOM)).body
    moderator = (await world.only(MOD, "!help EVENTS", MGMT)).body

    assert member.startswith("Events — meetings and visits")
    assert "• !rsvp <E#> yes|no|maybe — " in member
    assert "!event create" not in member
    assert "!event create" in moderator
    # `events` is a command too: the topic answers, and says how to reach the command.
    assert "For the command !events itself, send !help !events." in member
    command = (await world.only(ANNA, "!help !events", HDEV_ROOM)).body
    assert command.startswith("!events — ") and "Usage: !events" in command


async def test_help_with_a_command_explains_it(world: World) -> None:
    reply = (await world.only(ANNA, "!help rsvp", HDEV_ROOM)).body

    assert "Usage: !rsvp <E#> yes|no|maybe" in reply
    assert "Example: " in reply


async def test_help_for_the_moderators_digest_is_under_intel(world: World) -> None:
    reply = (await world.only(MOD, "!help digest", MGMT)).body

    assert reply.startswith("Intel — ")
    assert "!digest send" in reply and "!intel share" in reply


async def test_an_unknown_topic_gets_the_list_of_topics(world: World) -> None:
    result = await world.send(ANNA, "!help evnts", HDEV_ROOM)
    reply = result.reply

    assert "There is no topic or command evnts that you can use. Did you mean !help events?" in (
        reply
    )
    assert "Your topics: general, membership, events, intel, claims, privacy." in reply
    assert "moderation" not in reply


async def test_a_topic_the_asker_may_not_use_is_not_offered(world: World) -> None:
    reply = (await world.send(STRANGER, "!help moderation")).reply

    assert "There is no topic or command moderation that you can use." in reply
    assert "Your topics: general, membership, events, privacy." in reply


SLIPS = {
    "doubled brackets": re.compile(r"\[\[|\]\]"),
    "doubled punctuation": re.compile(r"[?!,;:]\.|\.[,;:]|(?<![.…])\.\.(?!\.)"),
    "a space before punctuation": re.compile(r"\w [.,;:](\s|$)"),
    "a capital after so": re.compile(r"\bso (?!I\b)[A-Z][a-z]"),
    "one thing as many": re.compile(r"\b1 [a-z]+s\b(?! of)"),
}


def slips(text: str) -> list[str]:
    return [name for name, pattern in SLIPS.items() if pattern.search(text)]


async def test_every_help_text_is_free_of_small_slips(world: World) -> None:
    asked = ["!help"] + [f"!help {section.key}" for section in SECTIONS]
    asked += [f"!help {name}" for name in world.registry.commands]
    for text in asked:
        result = await world.send(ADMIN, text, MGMT)
        assert result.reply, text
        assert slips(result.reply) == [], (text, result.reply)
