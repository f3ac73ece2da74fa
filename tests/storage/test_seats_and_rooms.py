"""Seats go with the CoP: a member removed by its moderators, leaving it, or leaving (or
taken out of) its room gives up their answers to its upcoming events; the waiting list
moves up and the person who gets the seat is told; nobody without a seat is reminded.
Members of another CoP keep their seats there. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from commands.events.reminders import deliver_due
from storage import events as store
from storage import membership as ms
from storage import repo
from storage.events import WAITING, YES
from tests.support.cast import (
    ADMIN,
    ANNA,
    BEN,
    CARL,
    HDEV_ROOM,
    MGMT,
    MOD,
    SOFIA,
    SOLAR_ROOM,
    STRANGER,
)
from tests.support.world import World


async def full_event(world: World, cop: str = "HDEV", **answers: str) -> int:
    """A one-seat online meeting in a week: Anna has the seat, Ben waits."""
    rsvp = {ANNA: YES, BEN: YES, **answers}
    return await world.event(
        kind="online-meeting",
        cop=cop,
        title="Charging standards",
        start=world.now + timedelta(days=7),
        hours=1,
        capacity=1,
        rsvp=rsvp,
    )


async def answers(world: World, event_id: int) -> dict[str, str]:
    async with world.db.read() as s:
        return {r.user_id: r.answer for r in await store.rsvps_of_event(s, event_id)}


async def test_a_removed_member_gives_up_the_seat_and_the_first_waiting_gets_it(
    world: World,
) -> None:
    event_id = await full_event(world)
    assert await answers(world, event_id) == {ANNA: YES, BEN: WAITING}

    result = await world.send(MOD, f"remove {ANNA} HDEV Left the city council.")

    assert result.outcome == "ok", result.reply
    assert await answers(world, event_id) == {BEN: YES}
    assert "a seat freed up at E1" in result.dms_to(BEN)
    told = result.dms_to(ANNA)
    assert "removed from HDEV" in told and "E1 “Charging standards” (you had a seat)" in told
    assert "1 person from the waiting list got a seat and was told" in result.reply


async def test_a_removed_member_is_not_reminded_and_the_promoted_one_is(world: World) -> None:
    event_id = await full_event(world)
    await world.send(MOD, f"remove {ANNA} HDEV")
    async with world.db.session() as s:
        event = await store.get_event(s, event_id)
        assert event is not None
        await store.plan_reminders(s, event, [timedelta(hours=1)], world.now)
    before = await world.last_outbox_id()

    async with world.db.session() as s:
        counts = await deliver_due(s, world.now + timedelta(days=7, minutes=-30), world.settings)

    sent = await world.deliver(after=before)
    assert counts == {"sent": 1}
    assert [m.recipient for m in sent] == [BEN]


async def test_reminders_skip_anyone_who_lost_the_cop_whatever_their_old_answer_says(
    world: World,
) -> None:
    """An answer left from before seats were given up (or by any other path) reminds no
    one who can no longer see the event."""
    event_id = await full_event(world)
    async with world.db.session() as s:
        row = await ms.get_membership(s, ANNA, "HDEV")
        assert row is not None
        await ms.decide(s, row, status="removed", by=MOD, reason="", now=world.now)
        event = await store.get_event(s, event_id)
        assert event is not None
        await store.plan_reminders(s, event, [timedelta(hours=1)], world.now)
    before = await world.last_outbox_id()

    async with world.db.session() as s:
        await deliver_due(s, world.now + timedelta(days=7, minutes=-30), world.settings)

    assert [m.recipient for m in await world.deliver(after=before)] == []


async def test_leaving_the_cop_gives_up_the_seat(world: World) -> None:
    event_id = await full_event(world)

    result = await world.send(ANNA, "leave HDEV")

    assert "You have left HDEV" in result.reply
    assert "E1 “Charging standards” (you had a seat)" in result.reply
    assert await answers(world, event_id) == {BEN: YES}
    assert "a seat freed up at E1" in result.dms_to(BEN)


async def test_leaving_the_room_gives_up_the_seat_and_says_how_to_come_back(
    world: World,
) -> None:
    event_id = await full_event(world)
    await world.member_event(ANNA, HDEV_ROOM, "join")

    result = await world.member_event(ANNA, HDEV_ROOM, "leave")

    assert await answers(world, event_id) == {BEN: YES}
    assert "a seat freed up at E1" in result.dms_to(BEN)
    told = result.dms_to(ANNA)
    assert "You left the room of HDEV" in told and "(you had a seat)" in told
    assert "still a member of HDEV" in told and "!join HDEV" in told
    assert "The first person on the waiting list has your seat" in told
    async with world.db.read() as s:
        assert await repo.memberships_of(s, ANNA) == {"HDEV": "member"}


async def test_taken_out_of_the_room_by_a_room_admin_gives_up_the_seat(world: World) -> None:
    event_id = await full_event(world)
    kick = {"type": "m.room.member", "state_key": ANNA, "content": {"membership": "ban"}}

    result = await world.hook("member", MOD, kick, HDEV_ROOM)

    assert await answers(world, event_id) == {BEN: YES}
    assert "You were taken out of the room of HDEV" in result.dms_to(ANNA)


async def test_leaving_one_room_keeps_the_seats_of_the_other_cop(world: World) -> None:
    await world.add_member(CARL, "SOLAR", "Comune di Milano", "IT")
    hdev = await full_event(world, **{CARL: YES})
    solar = await full_event(world, cop="SOLAR", **{CARL: YES, ANNA: "no", BEN: "no"})
    solar_before = await answers(world, solar)
    assert solar_before[CARL] == YES

    result = await world.member_event(CARL, SOLAR_ROOM, "leave")

    assert CARL not in await answers(world, solar)
    assert (await answers(world, hdev))[CARL] == WAITING
    assert "SOLAR" in result.dms_to(CARL)


async def test_leaving_a_room_without_answers_says_nothing(world: World) -> None:
    await full_event(world)

    result = await world.member_event(CARL, HDEV_ROOM, "leave")

    assert result.sent == []


async def test_a_moderator_leaving_the_room_keeps_their_seat(world: World) -> None:
    event_id = await full_event(world, **{MOD: YES})

    await world.member_event(MOD, HDEV_ROOM, "leave")

    assert MOD in await answers(world, event_id)


async def test_a_moderator_who_loses_the_role_and_is_no_member_gives_up_the_seat(
    world: World,
) -> None:
    await world.send(ADMIN, f"mod add {STRANGER} HDEV", MGMT)
    event_id = await full_event(world, **{STRANGER: YES})
    assert (await answers(world, event_id))[STRANGER] == WAITING

    result = await world.send(ADMIN, f"mod remove {STRANGER} HDEV", MGMT)

    assert "Their answers to its upcoming events are withdrawn" in result.reply
    assert STRANGER not in await answers(world, event_id)


async def test_an_answer_to_an_event_that_has_started_is_kept(world: World) -> None:
    started = await world.event(
        kind="online-meeting",
        start=world.now - timedelta(minutes=10),
        hours=2,
        rsvp={ANNA: YES},
    )

    await world.send(MOD, f"remove {ANNA} HDEV")

    assert await answers(world, started) == {ANNA: YES}


# --- !attendees and !members follow the same room rule -------------------------------------


async def test_attendees_and_members_are_refused_in_another_cops_room(world: World) -> None:
    await full_event(world)
    await world.add_member(MOD, "SOLAR", "Secretariat", "BE", "state-authority")
    attendees = await world.send(MOD, "attendees E1", SOLAR_ROOM)
    members = await world.send(MOD, "members HDEV", SOLAR_ROOM)

    for result in (attendees, members):
        assert result.outcome == "denied", result.reply
        assert "This is the SOLAR room" in result.reply
    assert "Charging standards" not in attendees.reply and ANNA not in attendees.reply
    here = await world.send(MOD, "attendees E1", HDEV_ROOM)
    assert here.outcome == "ok" and ANNA in here.reply
    assert SOFIA not in here.reply
