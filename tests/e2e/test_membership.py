"""Joining a CoP and keeping its room members-only, through a real Synapse and bot process."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import BotFactory
from tests.e2e.harness import Person
from tests.e2e.membership_support import (
    body,
    direct_message_containing,
    kicked,
    membership_change,
    message_containing,
    react,
    room_id_of,
)

pytestmark = pytest.mark.e2e


async def test_a_newcomer_answers_the_questions_across_a_restart_and_is_approved(
    people, make_bot: BotFactory
) -> None:
    maria: Person = await people("maria")  # moderator of HDEV
    anna: Person = await people("anna")  # no profile yet
    bot = await make_bot(
        cops=[{"code": "HDEV", "name": "Heavy-duty EVs", "moderators": [maria.user_id]}],
        backend="postgresql",
    )
    management = await maria.join(bot.alias("secretariat"))
    dm = await anna.open_dm(bot.user_id)

    first = await anna.ask(dm, "!join HDEV We run 300 buses.", bot.user_id)
    assert "full name of your organisation" in body(first)
    second = await anna.ask(dm, "City of Oslo", bot.user_id)
    assert "In which country" in body(second) and "Norway (NO)" in body(second)

    await bot.stop()
    answer = await anna.send(dm, "NO")  # answered while the bot is down
    await bot.start()
    third = await anna.reply_to(answer, bot.user_id, timeout=60)
    assert "What kind of organisation" in body(third)
    done = await anna.ask(dm, "1", bot.user_id)
    assert "Your application to HDEV" in body(done)

    notice = await message_containing(maria, management, bot.user_id, "New application")
    for fact in (anna.user_id, "City of Oslo", "Norway (NO)", "local authority", "300 buses"):
        assert fact in body(notice)
    approved = await maria.ask(management, f"!approve {anna.user_id} HDEV", bot.user_id)
    assert "is now a member of HDEV" in body(approved)

    hdev = await room_id_of(anna, bot.alias("hdev"))
    await anna.wait_until(lambda: hdev in anna.invites, what="the invitation to HDEV")
    await message_containing(anna, dm, bot.user_id, "Welcome to HDEV")
    await anna.join(hdev)
    members = await anna.ask(hdev, "!members", bot.user_id)
    assert "City of Oslo" in body(members) and anna.user_id in body(members)
    # Her join was handled before the command (one room is handled in order): she stays.
    joined = await anna.client.joined_members(hdev)
    assert anna.user_id in [member.user_id for member in joined.members]


async def test_moderators_reject_approve_with_a_reaction_and_remove_and_intruders_go(
    people, make_bot: BotFactory
) -> None:
    maria: Person = await people("maria")  # moderator of HDEV
    sofia: Person = await people("sofia")  # admin
    bob: Person = await people("bob")
    carl: Person = await people("carl")
    ivan: Person = await people("ivan")  # never applied
    bot = await make_bot(
        admins=[sofia.user_id],
        cops=[{"code": "HDEV", "name": "Heavy-duty EVs", "moderators": [maria.user_id]}],
    )
    management = await maria.join(bot.alias("secretariat"))
    hdev = await sofia.join(bot.alias("hdev"))

    # Bob applies with a complete profile and is turned down: he gets the reason.
    bob_dm = await bob.open_dm(bot.user_id)
    await bob.ask(
        bob_dm, '!profile set org="Bergen kommune" country=NO type=local-authority', bot.user_id
    )
    await bob.ask(bob_dm, "!join HDEV", bot.user_id)
    reason = "Please apply through the city's procurement office."
    rejected = await maria.ask(management, f"!reject {bob.user_id} HDEV {reason}", bot.user_id)
    assert "Turned down" in body(rejected)
    told = await message_containing(bob, bob_dm, bot.user_id, "was not accepted")
    assert reason in body(told)

    # Carl is approved with ✅ on the notice, joins the room, and is then removed.
    carl_dm = await carl.open_dm(bot.user_id)
    await carl.ask(
        carl_dm, '!profile set org="Stad Gent" country=BE type=local-authority', bot.user_id
    )
    await carl.ask(carl_dm, "!join HDEV", bot.user_id)
    notice = await message_containing(maria, management, bot.user_id, carl.user_id)
    await react(maria, management, notice["event_id"], "✅")
    await message_containing(maria, management, bot.user_id, "Approved: " + carl.user_id)
    await carl.wait_until(lambda: hdev in carl.invites, what="the invitation to HDEV")
    await carl.join(hdev)
    await sofia.wait_until(
        lambda: membership_change(sofia, hdev, carl.user_id, "join"), what="carl to join"
    )
    removed = await maria.ask(
        management, f"!remove {carl.user_id} HDEV Left the organisation", bot.user_id
    )
    assert "Removed" in body(removed)
    kick = await kicked(sofia, hdev, carl.user_id, by=bot.user_id)
    assert "Left the organisation" in kick["content"].get("reason", "")
    await message_containing(carl, carl_dm, bot.user_id, "removed from HDEV")

    # Ivan is let in by hand, without being a member: the bot takes him out again.
    await sofia.client.room_invite(hdev, ivan.user_id)
    await ivan.join(hdev)
    await kicked(sofia, hdev, ivan.user_id, by=bot.user_id)
    explained = await direct_message_containing(ivan, bot.user_id, "only for its members")
    assert "!join HDEV" in body(explained)
    await message_containing(maria, management, bot.user_id, "without being a member")
