"""Power levels follow the room version: v12+ creators are never listed in ``users``."""

from __future__ import annotations

import pytest

from bot.matrix import RoomFacts, creators_are_privileged, power_levels_for_new_room

BOT = "@bot:example.org"
ADMIN = "@sec:example.org"
MOD = "@mod:example.org"


@pytest.mark.parametrize(
    ("version", "privileged"),
    [("1", False), ("10", False), ("11", False), ("12", True), ("13", True)],
)
def test_creators_outrank_everyone_from_room_version_12_on(version: str, privileged: bool) -> None:
    assert creators_are_privileged(version) is privileged


def test_a_new_version_12_room_lists_admins_and_moderators_but_not_the_bot() -> None:
    power = power_levels_for_new_room(BOT, "12", {ADMIN: 100, MOD: 50, BOT: 100})

    assert power["users"] == {ADMIN: 100, MOD: 50}
    assert power["invite"] == power["kick"] == power["ban"] == 50


def test_a_new_version_11_room_lists_the_bot_at_100_because_users_replaces_the_default() -> None:
    power = power_levels_for_new_room(BOT, "11", {ADMIN: 100, MOD: 50})

    assert power["users"] == {ADMIN: 100, MOD: 50, BOT: 100}


def test_with_an_unknown_version_the_server_keeps_its_default_users() -> None:
    power = power_levels_for_new_room(BOT, None, {ADMIN: 100})

    assert "users" not in power


def test_creators_of_a_version_12_room_are_never_written_into_users() -> None:
    v12 = RoomFacts(version="12", creators=frozenset({BOT, ADMIN}))
    v11 = RoomFacts(version="11", creators=frozenset({BOT}))

    assert not v12.listable(ADMIN)
    assert not v12.listable(BOT)
    assert v12.listable(MOD)
    assert v11.listable(BOT)
