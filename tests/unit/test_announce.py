"""The target of ``!announce`` and the look of an announcement, without a database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from commands.announce import announcement
from commands.args import ALL, ArgError
from commands.args import cop_or_all as announce_target
from commands.context import Context
from commands.registry import Place, Registry
from config.models import Settings


def context(sender: str) -> Context:
    settings = Settings(
        matrix={"user_id": "@bot:test"},
        secretariat={"admins": ["@sec:test"]},
        cops=[{"code": "HDEV", "name": "Heavy-duty EVs"}],
    )
    session: Any = None
    return Context(
        session=session,
        settings=settings,
        registry=Registry(),
        sender=sender,
        room_id="!mgmt:test",
        event_id="$1",
        place=Place.MANAGEMENT,
        now=datetime(2026, 3, 2, tzinfo=UTC),
    )


def test_all_in_any_case_means_every_cop_and_codes_are_upper_cased() -> None:
    assert announce_target("all") == ALL and announce_target("All") == ALL
    assert announce_target("hdev") == "HDEV"


def test_a_target_that_is_neither_a_code_nor_all_is_explained() -> None:
    with pytest.raises(ArgError, match="not a CoP code such as HDEV, or all"):
        announce_target("#!")


def test_an_announcement_says_who_it_is_from_and_escapes_the_text() -> None:
    by_moderator = announcement(context("@mod:test"), "HDEV", "<i>Hi</i> @room")
    assert by_moderator.plain.startswith("📣 Announcement from the HDEV moderators")
    assert "&lt;i&gt;Hi&lt;/i&gt;" in by_moderator.html and "<i>" not in by_moderator.html
    assert "@room" not in by_moderator.plain
    by_admin = announcement(context("@sec:test"), "HDEV", "Hi")
    assert "Announcement from the Secretariat" in by_admin.plain
