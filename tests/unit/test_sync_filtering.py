"""Which events become commands, and which are ignored before any command code runs."""

from __future__ import annotations

from bot.sync import Classifier, after_own_join
from commands.text import strip_reply_fallback

BOT = "@bot:example.org"


def message(body: str, sender: str = "@anna:example.org", **content: object) -> dict:
    return {
        "type": "m.room.message",
        "event_id": f"${abs(hash((body, sender)))}",
        "sender": sender,
        "content": {"msgtype": "m.text", "body": body, **content},
    }


def member(user: str, membership: str, prev: str | None = None) -> dict:
    event = {
        "type": "m.room.member",
        "event_id": f"${user}{membership}",
        "sender": user,
        "state_key": user,
        "content": {"membership": membership},
    }
    if prev:
        event["unsigned"] = {"prev_content": {"membership": prev}}
    return event


classifier = Classifier(BOT, "!", hook_kinds=["reaction"])


def test_a_prefixed_text_message_is_a_command() -> None:
    assert classifier.kind(message("!help")) == "command"
    assert classifier.command_text(message("  !help cops")["content"]) == "help cops"


def test_plain_text_notices_edits_and_the_bots_own_messages_are_ignored() -> None:
    assert classifier.kind(message("hello")) is None
    assert classifier.kind(message("!help", msgtype="m.notice")) is None
    assert classifier.kind(message("!help", sender=BOT)) is None
    edit = message("!help", **{"m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}})
    assert classifier.kind(edit) is None
    assert classifier.kind(message("!!!")) is None
    assert classifier.kind(message("! help")) is None


def test_non_text_events_only_pass_when_a_hook_wants_them() -> None:
    reaction = {"type": "m.reaction", "event_id": "$r", "sender": "@a:x", "content": {}}
    assert classifier.kind(reaction) == "reaction"
    assert classifier.kind(member("@a:x", "join")) is None


def test_a_reply_fallback_is_removed_before_looking_for_the_prefix() -> None:
    body = "> <@anna:example.org> the file\n> more\n\n!intel share Report"
    assert strip_reply_fallback(body) == "!intel share Report"
    assert classifier.kind(message(body)) == "command"


def test_events_from_before_the_bot_joined_are_dropped() -> None:
    old = message("!help", sender="@old:x")
    new = message("!cops", sender="@new:x")
    batch = [old, member(BOT, "join"), new]
    assert after_own_join(batch, BOT) == [new]


def test_messages_between_the_invite_and_the_join_are_kept() -> None:
    before = message("!help", sender="@old:x")
    invite = {**member(BOT, "invite"), "sender": "@anna:x"}
    early = message("!cops")
    join = member(BOT, "join", prev="invite")
    batch = [before, invite, early, join]
    assert after_own_join(batch, BOT) == [early, join]


def test_a_profile_change_of_the_bot_is_not_mistaken_for_a_join() -> None:
    events = [message("!help"), member(BOT, "join", prev="join")]
    assert after_own_join(events, BOT) == events
