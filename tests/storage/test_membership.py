"""Membership on SQLite and PostgreSQL: profiles, applying, the join dialogue, decisions,
members-only rooms, moderators and their power levels, member lists and the audit log."""

from __future__ import annotations

import pytest

from commands import membership
from commands.membership.rooms import sync_power
from commands.membership.rules import COUNTRY_CHOICES, TYPE_CHOICES
from storage import membership as ms
from storage import repo
from tests.support.cast import (
    ADMIN,
    ANNA,
    APPLICANT,
    BOT,
    HDEV_ROOM,
    MGMT,
    MOD,
    MOD_SOLAR,
    OTHER_ROOM,
    SOFIA,
    SOLAR_ROOM,
    STRANGER,
)
from tests.support.world import World


async def apply(world: World, user: str = APPLICANT, cop: str = "HDEV") -> None:
    await world.profile(user, "City of Gdańsk", "PL", "local-authority")
    result = await world.send(user, f"join {cop} We buy electric buses.")
    assert result.outcome == "ok", result.reply


# --- profile ---------------------------------------------------------------------------------


async def test_a_profile_is_set_and_shown(world: World) -> None:
    result = await world.send(
        APPLICANT, 'profile set org="City of Athens" country=EL type=local-authority'
    )
    assert result.outcome == "ok"
    assert "City of Athens" in result.reply and "Greece (EL)" in result.reply
    assert "!join" in result.reply

    shown = await world.send(APPLICANT, "profile")
    assert "Organisation: City of Athens" in shown.reply
    assert "Type: local authority" in shown.reply


async def test_a_profile_asked_for_in_a_room_is_sent_by_direct_message(world: World) -> None:
    await world.profile(APPLICANT, "City of Athens", "GR", "local-authority")
    result = await world.send(APPLICANT, "profile", OTHER_ROOM)
    assert "direct message" in result.reply
    assert "City of Athens" not in result.reply
    assert any("City of Athens" in s.body for s in result.to(APPLICANT))


async def test_an_unknown_country_or_type_gets_the_valid_values(world: World) -> None:
    result = await world.send(APPLICANT, "profile set country=US")
    assert result.outcome == "usage"
    assert result.reply.startswith("Nothing was saved; your profile is as it was.")
    assert "US is not the code of an EU or EEA country" in result.reply
    assert "established in the EU or the EEA" in result.reply
    assert "Usage: !profile set" in result.reply

    result = await world.send(APPLICANT, "profile set type=bakery")
    assert result.outcome == "usage"
    assert "local-authority" in result.reply and "central-purchasing-body" in result.reply
    async with world.db.session() as s:
        assert await ms.get_person(s, APPLICANT) is None


async def test_profile_set_without_anything_to_set_shows_the_usage(world: World) -> None:
    result = await world.send(APPLICANT, "profile set")
    assert result.outcome == "usage"
    assert "Tell me what to set" in result.reply


# --- applying --------------------------------------------------------------------------------


async def test_a_complete_profile_files_an_application_and_tells_the_management_room(
    world: World,
) -> None:
    await world.profile(APPLICANT, "City of Gdańsk", "PL", "local-authority")
    result = await world.send(APPLICANT, "join hdev We buy electric buses.")

    assert result.outcome == "ok"
    assert "Thank you" in result.reply and "HDEV" in result.reply
    notice = result.to(MGMT)[0]
    for fact in (APPLICANT, "City of Gdańsk", "Poland (PL)", "local authority", "Flag: none"):
        assert fact in notice.body
    assert "We buy electric buses." in notice.body
    assert f"!approve {APPLICANT} HDEV" in notice.body
    assert f"!reject {APPLICANT} HDEV <reason>" in notice.body
    assert notice.tag is not None and notice.tag.startswith("application:")
    async with world.db.session() as s:
        assert (await repo.memberships_of(s, APPLICANT)) == {"HDEV": "applied"}


async def test_a_borderline_organisation_is_filed_but_flagged(world: World) -> None:
    await world.profile(APPLICANT, "Oslo Sporveier", "NO", "public-company")
    result = await world.send(APPLICANT, "join HDEV")
    assert result.outcome == "ok"
    assert "Secretariat will first check" in result.reply
    assert "Flagged for the Secretariat" in result.to(MGMT)[0].body
    async with world.db.session() as s:
        row = await ms.get_membership(s, APPLICANT, "HDEV")
        assert row is not None and row.flagged and "publicly owned" in row.flag_reason


async def test_a_market_actor_is_refused_with_the_reason_and_a_word_on_guests(
    world: World,
) -> None:
    await world.profile(APPLICANT, "Acme Buses", "DE", "market-actor")
    result = await world.send(APPLICANT, "join HDEV")
    assert result.outcome == "refused"
    assert "open only to contracting authorities" in result.reply
    assert "guests" in result.reply
    assert result.to(MGMT) == []
    async with world.db.session() as s:
        assert await ms.get_membership(s, APPLICANT, "HDEV") is None


async def test_applying_twice_or_as_a_member_is_answered_sensibly(world: World) -> None:
    await apply(world)
    again = await world.send(APPLICANT, "join HDEV")
    assert again.outcome == "refused"
    assert "already applied" in again.reply
    assert again.to(MGMT) == []

    await world.member_event(ANNA, HDEV_ROOM)
    member = await world.send(ANNA, "join HDEV")
    assert "already a member" in member.reply and "in its room" in member.reply
    assert member.of_kind("invite") == []

    admin = await world.send(ADMIN, "join HDEV")
    assert "already have access" in admin.reply
    moderator = await world.send(MOD, "join HDEV")
    assert "You moderate" in moderator.reply


async def test_a_member_who_left_the_room_gets_a_new_invitation(world: World) -> None:
    await world.hook(
        "member",
        ANNA,
        {"type": "m.room.member", "state_key": ANNA, "content": {"membership": "leave"}},
        HDEV_ROOM,
    )
    result = await world.send(ANNA, "join HDEV")
    assert "new invitation" in result.reply
    assert [s.user for s in result.of_kind("invite")] == [ANNA]


async def test_an_unknown_cop_lists_the_known_ones(world: World) -> None:
    result = await world.send(APPLICANT, "join NOPE")
    assert result.outcome == "refused"
    assert "HDEV, SOLAR" in result.reply


# --- the join dialogue ------------------------------------------------------------------------


async def test_without_a_profile_the_bot_asks_one_question_at_a_time(world: World) -> None:
    started = await world.send(APPLICANT, "join HDEV Hello from Tallinn", OTHER_ROOM)
    assert "direct message" in started.reply
    first = started.to(APPLICANT)[0]
    assert "full name of your organisation" in first.body and "!cancel" in first.body
    assert APPLICANT in world.registry.listening

    second = await world.answer(APPLICANT, "Tallinn City Government")
    assert "In which country" in second.reply
    assert "1 — Austria (AT)" in second.reply

    wrong = await world.answer(APPLICANT, "Narnia")
    assert "I don't know “Narnia” as a country of the EU or the EEA" in wrong.reply
    assert "!cancel" in wrong.reply and "1 — Austria (AT)" not in wrong.reply

    third = await world.answer(APPLICANT, str(COUNTRY_CHOICES.index("EE") + 1))
    assert "What kind of organisation" in third.reply
    assert "1 — Local authority" in third.reply

    done = await world.answer(APPLICANT, str(TYPE_CHOICES.index("local-authority") + 1))
    assert "Thank you! Your application to HDEV" in done.reply
    notice = done.to(MGMT)[0]
    assert "Tallinn City Government" in notice.body and "Estonia (EE)" in notice.body
    assert "Hello from Tallinn" in notice.body
    assert APPLICANT not in world.registry.listening
    async with world.db.session() as s:
        assert await ms.get_dialogue(s, APPLICANT) is None
        assert (await repo.memberships_of(s, APPLICANT)) == {"HDEV": "applied"}


async def test_joining_again_during_the_dialogue_repeats_the_question(world: World) -> None:
    await world.send(APPLICANT, "join HDEV Hello from Tallinn")
    await world.answer(APPLICANT, "Tallinn City Government")
    again = await world.send(APPLICANT, "join HDEV")
    assert "In which country" in again.reply
    await world.answer(APPLICANT, "EE")
    done = await world.answer(APPLICANT, "1")
    assert "Hello from Tallinn" in done.to(MGMT)[0].body


async def test_the_dialogue_only_asks_for_missing_facts(world: World) -> None:
    await world.send(APPLICANT, 'profile set org="Comune di Milano" country=IT')
    started = await world.send(APPLICANT, "join HDEV")
    assert "one question" in started.reply and "What kind of organisation" in started.reply


async def test_the_dialogue_is_kept_in_the_database_for_a_restart(world: World) -> None:
    await world.send(APPLICANT, "join HDEV")
    await world.answer(APPLICANT, "Tallinn City Government")

    restarted = World(world.db)  # a new process: empty registry, state from the database
    async with world.db.session() as s:
        restarted.registry.listening.update(await ms.dialogue_users(s))
    assert APPLICANT in restarted.registry.listening
    result = await restarted.answer(APPLICANT, "EE")
    assert "What kind of organisation" in result.reply


async def test_cancel_stops_the_dialogue_and_files_nothing(world: World) -> None:
    await world.send(APPLICANT, "join HDEV")
    result = await world.send(APPLICANT, "cancel")
    assert "Stopped: nothing was filed" in result.reply
    assert APPLICANT not in world.registry.listening
    nothing = await world.send(APPLICANT, "cancel")
    assert nothing.outcome == "refused" and "nothing to cancel" in nothing.reply

    await world.send(APPLICANT, "join HDEV")
    typed = await world.answer(APPLICANT, "cancel")
    assert "Stopped" in typed.reply
    async with world.db.session() as s:
        assert await ms.get_membership(s, APPLICANT, "HDEV") is None


async def test_a_market_actor_in_the_dialogue_is_refused_at_the_end(world: World) -> None:
    await world.send(APPLICANT, "join HDEV")
    await world.answer(APPLICANT, "Acme Consulting")
    await world.answer(APPLICANT, "BE")
    result = await world.answer(APPLICANT, str(TYPE_CHOICES.index("market-actor") + 1))
    assert "can't file an application" in result.reply and "guests" in result.reply
    assert result.to(MGMT) == []


async def test_answers_outside_the_direct_chat_or_without_a_dialogue_are_ignored(
    world: World,
) -> None:
    await world.send(APPLICANT, "join HDEV")
    event = {"type": "m.room.message", "content": {"msgtype": "m.text", "body": "Some City"}}
    elsewhere = await world.hook("dialogue", APPLICANT, event, OTHER_ROOM)
    assert elsewhere.sent == []
    stray = await world.answer(STRANGER, "hello bot")  # no dialogue: the pointer to help
    assert stray.outcome == "pointer" and "help" in stray.reply


async def test_profile_set_during_the_dialogue_carries_it_on(world: World) -> None:
    await world.send(APPLICANT, "join HDEV")
    result = await world.send(
        APPLICANT, 'profile set org="Gemeente Utrecht" country=NL type=local-authority'
    )
    assert any("Your application to HDEV" in s.body for s in result.sent)
    assert result.to(MGMT)


# --- deciding --------------------------------------------------------------------------------


async def test_approving_makes_a_member_invites_them_and_writes_the_audit_log(
    world: World,
) -> None:
    await apply(world)
    result = await world.send(MOD, f"approve {APPLICANT} HDEV", MGMT)
    assert result.outcome == "ok"
    assert "is now a member of HDEV" in result.reply
    invite = result.of_kind("invite")
    assert [(s.room_id, s.user) for s in invite] == [(HDEV_ROOM, APPLICANT)]
    assert any("Welcome to HDEV" in s.body for s in result.to(APPLICANT))
    async with world.db.session() as s:
        assert (await repo.memberships_of(s, APPLICANT)) == {"HDEV": "member"}
        entry = (await repo.recent_audit(s, 1))[0]
        assert (entry.actor, entry.action, entry.target) == (MOD, "approve", APPLICANT)

    twice = await world.send(MOD, f"approve {APPLICANT} HDEV", MGMT)
    assert twice.outcome == "refused" and "already a member" in twice.reply


async def test_approving_someone_who_never_applied_is_refused(world: World) -> None:
    result = await world.send(MOD, f"approve {STRANGER} HDEV")
    assert result.outcome == "refused" and "has not applied" in result.reply


async def test_rejecting_sends_the_reason_to_the_applicant(world: World) -> None:
    await apply(world)
    result = await world.send(MOD, f"reject {APPLICANT} HDEV Please apply with your city.")
    assert result.outcome == "ok"
    told = result.to(APPLICANT)[0].body
    assert "was not accepted" in told and "Please apply with your city." in told
    async with world.db.session() as s:
        row = await ms.get_membership(s, APPLICANT, "HDEV")
        assert row is not None and row.status == "rejected"
        assert (await repo.recent_audit(s, 1))[0].detail == "Please apply with your city."
    again = await world.send(APPLICANT, "join HDEV")
    assert again.outcome == "ok"  # a rejected applicant may try again


async def test_reject_needs_a_reason(world: World) -> None:
    await apply(world)
    result = await world.send(MOD, f"reject {APPLICANT} HDEV")
    assert result.outcome == "usage" and "<reason…> is missing" in result.reply


async def test_removing_a_member_kicks_and_tells_them_why(world: World) -> None:
    result = await world.send(MOD, f"remove {ANNA} HDEV Spamming the room")
    assert result.outcome == "ok"
    kick = result.of_kind("kick")
    assert [(s.room_id, s.user) for s in kick] == [(HDEV_ROOM, ANNA)]
    assert "Spamming the room" in kick[0].payload["reason"]
    assert "Spamming the room" in result.to(ANNA)[0].body
    async with world.db.session() as s:
        assert (await repo.memberships_of(s, ANNA)) == {"HDEV": "removed"}
        assert (await repo.recent_audit(s, 1))[0].action == "remove"


async def test_moderators_and_admins_cannot_be_removed_as_members(world: World) -> None:
    assert "admins can't be removed" in (await world.send(MOD, f"remove {ADMIN} HDEV")).reply
    assert "mod remove" in (await world.send(ADMIN, f"remove {MOD} HDEV")).reply


async def test_leaving_ends_the_membership_and_takes_the_member_out_of_the_room(
    world: World,
) -> None:
    result = await world.send(ANNA, "leave HDEV")
    assert "You have left HDEV" in result.reply
    assert [s.user for s in result.of_kind("kick")] == [ANNA]
    async with world.db.session() as s:
        assert (await repo.memberships_of(s, ANNA)) == {"HDEV": "left"}
    again = await world.send(ANNA, "leave HDEV")
    assert again.outcome == "refused"


async def test_leaving_after_the_member_left_the_room_does_not_kick(world: World) -> None:
    await world.hook(
        "member",
        ANNA,
        {"type": "m.room.member", "state_key": ANNA, "content": {"membership": "leave"}},
        HDEV_ROOM,
    )
    result = await world.send(ANNA, "leave HDEV")
    assert result.of_kind("kick") == []


async def test_leave_withdraws_a_pending_application(world: World) -> None:
    await apply(world)
    result = await world.send(APPLICANT, "leave HDEV")
    assert "withdrawn your application" in result.reply
    assert "withdrew" in result.to(MGMT)[0].body


async def test_applications_lists_what_is_waiting_for_the_moderators_cops(world: World) -> None:
    await apply(world, cop="HDEV")
    await apply(world, user=STRANGER, cop="SOLAR")
    mine = await world.send(MOD, "applications")
    assert APPLICANT in mine.reply and STRANGER not in mine.reply
    everything = await world.send(ADMIN, "applications")
    assert APPLICANT in everything.reply and STRANGER in everything.reply
    empty = await world.send(MOD_SOLAR, "applications SOLAR")
    assert STRANGER in empty.reply
    await world.send(MOD_SOLAR, f"approve {STRANGER} SOLAR")
    empty = await world.send(MOD_SOLAR, "applications")
    assert "No applications are waiting" in empty.reply


async def test_applications_are_never_shown_in_a_cop_room(world: World) -> None:
    result = await world.send(MOD, "applications", HDEV_ROOM)
    assert result.outcome == "denied" and "management room" in result.reply


# --- reacting ✅ ---------------------------------------------------------------------------


def _reaction(event_id: str, key: str = "✅") -> dict[str, object]:
    relates = {"rel_type": "m.annotation", "event_id": event_id, "key": key}
    return {"type": "m.reaction", "content": {"m.relates_to": relates}}


async def test_a_check_mark_on_the_notice_approves(world: World) -> None:
    await world.profile(APPLICANT, "City of Gdańsk", "PL", "local-authority")
    filed = await world.send(APPLICANT, "join HDEV")
    tag = filed.to(MGMT)[0].tag
    assert tag is not None
    notice = await world.sent_event(tag)

    outsider = await world.hook("reaction", MOD_SOLAR, _reaction(notice), MGMT)
    assert "only moderators of HDEV" in outsider.to(MOD_SOLAR)[0].body
    other_emoji = await world.hook("reaction", MOD, _reaction(notice, "👀"), MGMT)
    assert other_emoji.sent == []

    result = await world.hook("reaction", MOD, _reaction(notice, "✅\ufe0f"), MGMT)
    assert "is now a member of HDEV" in result.to(MGMT)[0].body
    assert [s.user for s in result.of_kind("invite")] == [APPLICANT]

    late = await world.hook("reaction", ADMIN, _reaction(notice), MGMT)
    assert "came too late" in late.to(ADMIN)[0].body
    assert late.of_kind("invite") == []


# --- members-only rooms ---------------------------------------------------------------------


async def test_an_intruder_who_joins_a_cop_room_is_removed_and_told_how_to_apply(
    world: World,
) -> None:
    result = await world.member_event(STRANGER, HDEV_ROOM)
    assert [(s.room_id, s.user) for s in result.of_kind("kick")] == [(HDEV_ROOM, STRANGER)]
    assert "!join HDEV" in result.to(STRANGER)[0].body
    assert "without being a member" in result.to(MGMT)[0].body


@pytest.mark.parametrize("user", [ANNA, MOD, ADMIN, BOT])
async def test_members_moderators_admins_and_the_bot_may_be_in_the_room(
    world: World, user: str
) -> None:
    result = await world.member_event(user, HDEV_ROOM)
    assert result.sent == []


async def test_a_member_of_another_cop_is_removed_from_this_one(world: World) -> None:
    result = await world.member_event(SOFIA, HDEV_ROOM)
    assert [s.user for s in result.of_kind("kick")] == [SOFIA]


async def test_joins_in_the_management_room_are_only_recorded(world: World) -> None:
    result = await world.member_event(STRANGER, MGMT)
    assert result.sent == []
    async with world.db.session() as s:
        assert await ms.room_membership(s, MGMT, STRANGER) == "join"


# --- roles and power levels -------------------------------------------------------------------


async def test_adding_a_moderator_gives_power_and_invites_them(world: World) -> None:
    async with world.db.session() as s:
        await sync_power(s, world.settings, world.now)  # as on start
    await world.member_event(ANNA, HDEV_ROOM)
    result = await world.send(ADMIN, f"mod add {ANNA} HDEV", MGMT)
    assert result.outcome == "ok"
    power = result.of_kind("power")
    assert [(s.room_id, s.payload) for s in power] == [(HDEV_ROOM, {"set": {ANNA: 50}})]
    assert [(s.room_id, s.user) for s in result.of_kind("invite")] == [(MGMT, ANNA)]
    assert "You are now a moderator of HDEV" in result.to(ANNA)[0].body
    member_ctx = await world.send(ANNA, "applications HDEV")
    assert member_ctx.outcome == "ok"

    removed = await world.send(ADMIN, f"mod remove {ANNA} HDEV", MGMT)
    assert [s.payload for s in removed.of_kind("power")] == [{"set": {ANNA: None}}]
    # Still a member of HDEV, so they stay in its room, but leave the management room.
    assert [(s.room_id, s.user) for s in removed.of_kind("kick")] == [(MGMT, ANNA)]
    denied = await world.send(ANNA, "applications HDEV")
    assert denied.outcome == "denied"
    async with world.db.session() as s:
        actions = [e.action for e in await repo.recent_audit(s, 2)]
    assert actions == ["mod-remove", "mod-add"]


async def test_config_moderators_are_not_removed_by_command(world: World) -> None:
    result = await world.send(ADMIN, f"mod remove {MOD} HDEV")
    assert result.outcome == "refused" and "configuration file" in result.reply
    again = await world.send(ADMIN, f"mod add {MOD} HDEV")
    assert again.outcome == "refused" and "already moderates" in again.reply


async def test_power_levels_are_kept_in_step_with_the_roles(world: World) -> None:
    async with world.db.session() as s:
        await sync_power(s, world.settings, world.now)
    async with world.db.session() as s:
        assert await ms.power_grants(s, HDEV_ROOM) == {MOD: 50, ADMIN: 100}
        assert await ms.power_grants(s, SOLAR_ROOM) == {MOD_SOLAR: 50, ADMIN: 100}
        before = await repo.outbox_depth(s)
        await sync_power(s, world.settings, world.now)  # nothing changed: nothing queued
        assert await repo.outbox_depth(s) == before

    fewer = world.settings.model_copy(update={"secretariat": world.settings.secretariat})
    async with world.db.session() as s:
        await repo.sync_config_moderators(s, {"HDEV": [], "SOLAR": [MOD_SOLAR]}, now=world.now)
        rows_before = await repo.outbox_depth(s)
        await sync_power(s, fewer, world.now, ["HDEV"])
        assert await repo.outbox_depth(s) == rows_before + 1
        assert await ms.power_grants(s, HDEV_ROOM) == {ADMIN: 100}


# --- listing ------------------------------------------------------------------------------------


async def test_members_shows_matrix_ids_only_inside_the_cop(world: World) -> None:
    inside = await world.send(ANNA, "members HDEV")
    assert "City of Oslo — Norway (NO) — " + ANNA in inside.reply
    assert MOD in inside.reply

    outside = await world.send(SOFIA, "members HDEV")
    assert outside.outcome == "ok"
    assert "City of Oslo — Norway (NO)" in outside.reply
    assert ANNA not in outside.reply and MOD not in outside.reply

    in_other_room = await world.send(ANNA, "members HDEV", SOLAR_ROOM)
    assert ANNA not in in_other_room.reply

    in_own_room = await world.send(ANNA, "members", HDEV_ROOM)
    assert ANNA in in_own_room.reply

    nobody = await world.send(STRANGER, "members HDEV")
    assert nobody.outcome == "denied"


async def test_cops_still_shows_the_callers_status(world: World) -> None:
    await apply(world)
    result = await world.send(APPLICANT, "cops")
    assert "HDEV — Heavy-duty electric vehicles · 3 members · you: applied" in result.reply


async def test_audit_shows_admins_everything_and_moderators_their_cops(world: World) -> None:
    await apply(world, cop="HDEV")
    await world.send(MOD, f"approve {APPLICANT} HDEV")
    await world.send(MOD_SOLAR, f"remove {SOFIA} SOLAR")

    admin = await world.send(ADMIN, "audit")
    assert "approved " + APPLICANT in admin.reply and "removed " + SOFIA in admin.reply
    assert "Europe/Brussels" in admin.reply
    hdev = await world.send(MOD, "audit 5")
    assert APPLICANT in hdev.reply and SOFIA not in hdev.reply
    one = await world.send(ADMIN, "audit 1")
    assert "The last action (times in" in one.reply and APPLICANT not in one.reply
    bad = await world.send(ADMIN, "audit zero")
    assert bad.outcome == "usage"


# --- start-up -----------------------------------------------------------------------------------


async def test_on_start_open_dialogues_are_listened_to_and_power_levels_are_set(
    world: World,
) -> None:
    await world.send(APPLICANT, "join HDEV")
    fresh = World(world.db)  # what a restarted process has: nothing in memory
    services = fresh.services()
    await membership.setup(services)

    assert fresh.registry.listening == {APPLICANT}
    async with world.db.session() as s:
        assert await ms.power_grants(s, HDEV_ROOM) == {MOD: 50, ADMIN: 100}

    # Another process opens a dialogue; the periodic refresh picks it up.
    await world.send(STRANGER, "join SOLAR")
    job = services.scheduler.get_job("membership-dialogues")
    assert job is not None
    await job.func()
    assert fresh.registry.listening == {APPLICANT, STRANGER}
