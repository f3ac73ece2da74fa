"""``!digest preview`` and ``!digest send``: who may use them, where, and what they post."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from commands.digest import build_digest
from storage import events as events_store
from storage import repo
from tests.support.cast import ADMIN, ANNA, HDEV_ROOM, MGMT, MOD, ROOMS
from tests.support.world import World

WEDNESDAY = datetime(2026, 12, 2, 15, 0, tzinfo=ZoneInfo("Europe/Brussels"))  # ISO week 49


@pytest.fixture(autouse=True)
def wednesday(world: World) -> None:
    world.now = WEDNESDAY.astimezone(UTC)


async def test_a_moderator_previews_the_digest_where_they_asked_and_nothing_is_posted(
    world: World,
) -> None:
    await world.share("Oslo bus tender")

    sent = await world.run(MOD, "!digest preview HDEV", MGMT)

    assert [s.room_id for s in sent] == [MGMT]
    body = sent[0].body
    assert "Preview of the HDEV digest (not posted)" in body
    assert "Oslo bus tender" in body
    assert "It goes to the HDEV room on Mon 07 Dec at 09:00 (Europe/Brussels)" in body
    assert "!digest send HDEV" in body


async def test_in_a_cop_room_the_cop_may_be_left_out(world: World) -> None:
    reply = await world.only(MOD, "!digest preview", HDEV_ROOM)

    assert "Preview of the HDEV digest" in reply.body


async def test_send_posts_the_digest_to_the_cop_room_and_confirms(world: World) -> None:
    await world.share("Oslo bus tender")

    sent = await world.run(MOD, "!digest send hdev", MGMT)

    posted = [s for s in sent if s.room_id == ROOMS["HDEV"]]
    confirm = [s for s in sent if s.room_id == MGMT]
    assert len(posted) == 1 and posted[0].tag == "digest:HDEV:2026-W49"
    assert "Oslo bus tender" in posted[0].body
    assert "m.relates_to" not in posted[0].payload  # a post of its own, not a reply
    assert "the digest of week 49 is posted to the HDEV room" in confirm[0].body


async def test_a_week_already_posted_is_not_posted_again_unless_asked_to(world: World) -> None:
    await world.run(MOD, "!digest send HDEV", MGMT)

    refused = await world.only(MOD, "!digest send HDEV", MGMT)
    again = await world.run(MOD, "!digest send again", HDEV_ROOM)

    assert "This week's HDEV digest went out on Wed 02 Dec at 15:00" in refused.body
    assert "!digest send HDEV again" in refused.body
    assert len([s for s in again if (s.tag or "").startswith("digest:")]) == 1


async def test_a_preview_after_sending_says_when_it_went_out(world: World) -> None:
    await world.run(MOD, "!digest send HDEV", MGMT)

    reply = await world.only(MOD, "!digest preview HDEV", MGMT)

    assert "This week's digest was posted on Wed 02 Dec at 15:00 (Europe/Brussels)" in reply.body


async def test_an_empty_week_is_sent_when_a_moderator_asks(world: World) -> None:
    sent = await world.run(MOD, "!digest send HDEV", MGMT)

    posted = [s for s in sent if s.room_id == ROOMS["HDEV"]]
    assert "a quiet week" in posted[0].body


async def test_members_cannot_use_the_digest_commands(world: World) -> None:
    reply = await world.only(ANNA, "!digest send HDEV", HDEV_ROOM)

    assert "only for moderators" in reply.body


async def test_a_moderator_of_one_cop_cannot_send_anothers_digest(world: World) -> None:
    reply = await world.only(MOD, "!digest send SOLAR", MGMT)

    assert "only moderators of SOLAR" in reply.body


async def test_another_cops_digest_is_not_shown_in_a_cop_room(world: World) -> None:
    reply = await world.only(ADMIN, "!digest preview SOLAR", HDEV_ROOM)

    assert "will not show SOLAR's digest here" in reply.body


async def test_an_unknown_cop_is_named_with_the_known_ones(world: World) -> None:
    reply = await world.only(ADMIN, "!digest preview NOPE", MGMT)

    assert "There is no CoP with the code NOPE" in reply.body
    assert "HDEV, SOLAR" in reply.body


async def test_sending_is_written_to_the_audit_log(world: World) -> None:
    await world.run(ADMIN, "!digest send HDEV", MGMT)

    entries = await world.in_session(lambda s: repo.recent_audit(s, 5))
    assert [(e.actor, e.action, e.target) for e in entries] == [
        (ADMIN, "digest.send", "digest:HDEV:2026-W49")
    ]


async def test_the_digest_commands_are_in_help_for_moderators_only(world: World) -> None:
    for_mod = await world.only(MOD, "!help intel", MGMT)
    for_member = await world.only(ANNA, "!help intel", HDEV_ROOM)

    assert "!digest send" in for_mod.body
    assert "!digest" not in for_member.body
    assert "!intel share" in for_member.body


async def test_a_long_list_of_upcoming_events_is_cut_with_a_pointer_to_the_rest(
    world: World,
) -> None:
    async def add_meetings(session: AsyncSession) -> None:
        for number in range(1, 21):
            starts = world.now + timedelta(days=1, hours=number)
            await events_store.create_event(
                session,
                cop_code="HDEV",
                kind="online-meeting",
                title=f"Meeting {number}",
                starts_at=starts,
                ends_at=starts + timedelta(minutes=30),
                timezone="Europe/Brussels",
                created_by=MOD,
                now=world.now,
            )

    await world.in_session(add_meetings)
    result = await world.in_session(lambda s: build_digest(s, world.settings, "HDEV", world.now))

    body = result.message.plain
    assert body.count("Online meeting: Meeting") == 15
    assert "Meeting 15 " in body and "Meeting 16 " not in body
    assert "…and more: !events HDEV" in body
