"""Which events become commands, and which are ignored before any command code runs."""

from __future__ import annotations

import pytest

from bot.sync import Classifier, Unstorable, after_own_join, check_event
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


# --- plain text and edits ------------------------------------------------------------------

COP_ROOM, MGMT, DM = "!cop:x", "!mgmt:x", "!dm:x"
rooms_known = Classifier(BOT, "!", hook_kinds=["reaction"], shared_rooms={COP_ROOM, MGMT})


def edit_of(target: object, new_body: str, **new: object) -> dict:
    """An ``m.replace`` edit as clients send it: a ``*`` fallback and the new version."""
    event = message(
        f"* {new_body}",
        **{
            "m.new_content": {"msgtype": "m.text", "body": new_body, **new},
            "m.relates_to": {"rel_type": "m.replace", "event_id": target},
        },
    )
    event["origin_server_ts"] = 1_700_000_000_000
    return event


def test_plain_text_is_kept_only_outside_the_cop_and_management_rooms() -> None:
    assert rooms_known.kind(message("help"), DM) == "text"
    assert rooms_known.kind(message("rsvp E1 yes"), DM) == "text"
    assert rooms_known.kind(message("help"), COP_ROOM) is None
    assert rooms_known.kind(message("help"), MGMT) is None
    assert rooms_known.kind(message("!help"), COP_ROOM) == "command"
    assert rooms_known.kind(message("!help"), DM) == "command"
    # Notices (other bots), the bot's own messages and files are never text to answer.
    assert rooms_known.kind(message("help", msgtype="m.notice"), DM) is None
    assert rooms_known.kind(message("help", sender=BOT), DM) is None
    assert rooms_known.kind({**message("x"), "content": {"msgtype": "m.file"}}, DM) is None
    # Without knowing the shared rooms, plain text is kept nowhere (as before).
    assert classifier.kind(message("help"), DM) is None


def test_an_edit_is_kept_when_its_new_version_may_be_a_command() -> None:
    assert rooms_known.kind(edit_of("$a", "!rsvp E1 yes"), COP_ROOM) == "edit"
    assert rooms_known.kind(edit_of("$a", "rsvp E1 yes"), COP_ROOM) is None
    assert rooms_known.kind(edit_of("$a", "rsvp E1 yes"), DM) == "edit"
    assert rooms_known.kind(edit_of("$a", "!help", msgtype="m.notice"), COP_ROOM) is None
    # An edit is never read as a command of its own (its body is the "* …" fallback).
    star = edit_of("$a", "!help")
    star["content"]["body"] = "!help"
    assert rooms_known.kind(star, COP_ROOM) == "edit"
    broken = edit_of("$a", "!help")
    del broken["content"]["m.new_content"]
    assert rooms_known.kind(broken, COP_ROOM) is None


def test_an_edit_is_stored_with_the_message_it_replaces() -> None:
    stored = check_event(COP_ROOM, "edit", edit_of("$first", "!help"))
    assert stored.replaces == "$first" and stored.kind == "edit"
    assert check_event(COP_ROOM, "command", edit_of("$first", "!help")).replaces is None
    with pytest.raises(Unstorable):
        check_event(COP_ROOM, "edit", edit_of("$" + "x" * 300, "!help"))
    assert rooms_known.kind(edit_of(12, "!help"), COP_ROOM) is None  # no event id
