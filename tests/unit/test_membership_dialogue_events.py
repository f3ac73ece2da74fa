"""Plain answers in the join dialogue reach the bot; other plain messages still do not."""

from __future__ import annotations

from bot.sync import Classifier
from commands import build_registry

BOT = "@bot:example.org"
ANNA = "@anna:example.org"


def message(body: str, sender: str = ANNA, **content: object) -> dict[str, object]:
    return {
        "type": "m.room.message",
        "event_id": f"${abs(hash((body, sender)))}",
        "sender": sender,
        "content": {"msgtype": "m.text", "body": body, **content},
    }


def test_plain_text_from_someone_in_a_dialogue_is_kept_as_a_dialogue_event() -> None:
    registry = build_registry("!")
    classifier = Classifier(BOT, "!", registry.hooks, listening=registry.listening)
    assert classifier.kind(message("City of Oslo")) is None

    registry.listening.add(ANNA)  # the membership family opened a dialogue
    assert classifier.kind(message("City of Oslo")) == "dialogue"
    assert classifier.kind(message("!cancel")) == "command"
    assert classifier.kind(message("hello", sender="@ben:example.org")) is None
    assert classifier.kind(message("NO", msgtype="m.notice")) is None
    edit = message("NO", **{"m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}})
    assert classifier.kind(edit) is None

    registry.listening.discard(ANNA)
    assert classifier.kind(message("City of Oslo")) is None


def test_without_a_dialogue_hook_plain_text_is_never_kept() -> None:
    classifier = Classifier(BOT, "!", ["reaction"], listening={ANNA})
    assert classifier.kind(message("City of Oslo")) is None
