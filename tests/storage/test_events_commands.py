"""The event commands as people use them, run the way the processor runs them, on both
databases: what is answered, announced and told to whom."""

from __future__ import annotations

import base64
import csv
import io
from datetime import timedelta

from storage import events as store
from tests.support.cast import (
    ADMIN,
    ANNA,
    BEN,
    CARL,
    GUEST,
    HDEV_ROOM,
    MGMT,
    MOD,
    MOD_SOLAR,
    SOFIA,
    SOLAR_ROOM,
    STRANGER,
    in_days,
)
from tests.support.world import World, dms

CREATE = '!event create HDEV market-dialogue {day} 10:00 90m "Electric buses" capacity={cap}'


async def create(world: World, cap: int = 2, days: int = 7) -> int:
    sent = await world.run(MOD, CREATE.format(day=in_days(days), cap=cap), HDEV_ROOM)
    tags = [m.tag for m in sent if m.tag]
    assert tags, sent
    return int(str(tags[0]).split(":")[1])


async def test_a_moderator_creates_an_event_and_it_is_announced_with_reactions(
    world: World,
) -> None:
    sent = await world.run(
        MOD,
        f'!event create HDEV market-dialogue {in_days(7)} 10:00 90m "Electric buses" '
        "url=https://meet.example.org/bus capacity=30",
        MGMT,
    )

    reply = next(m for m in sent if m.room_id == MGMT)
    assert "Created E1 “Electric buses”" in reply.body
    assert "Mon 09 Mar 2026, 10:00–11:30 CET (Europe/Brussels)" in reply.body
    assert "announced it in the HDEV room" in reply.body
    announcement = next(m for m in sent if m.room_id == HDEV_ROOM and m.kind == "message")
    assert announcement.tag == "event:1"
    assert "New event in Heavy-duty electric vehicles" in announcement.body
    assert "Market dialogue" in announcement.body and "Seats: 30\n" in announcement.body
    assert "https://meet.example.org/bus" in announcement.body
    assert "!rsvp E1 yes" in announcement.body
    reactions = [m for m in sent if m.kind == "reaction"]
    assert [r.payload for r in reactions] == [
        {"relates_to_tag": "event:1", "key": key} for key in ("✅", "❌", "❔")
    ]
    assert all(r.room_id == HDEV_ROOM and r.id > announcement.id for r in reactions)


async def test_only_moderators_of_that_cop_may_create_its_events(world: World) -> None:
    command = CREATE.format(day=in_days(7), cap=5)
    assert "only for moderators" in await world.reply(ANNA, command)
    assert "only moderators of HDEV" in await world.reply(MOD_SOLAR, command)
    assert "Created E1" in await world.reply(ADMIN, command)


async def test_the_cop_can_be_left_out_in_its_room_and_uses_the_cop_time_zone(
    world: World,
) -> None:
    reply = await world.reply(
        MOD_SOLAR, f'!event create online-meeting {in_days(3)} 10:00 1h "Panels"', SOLAR_ROOM
    )
    assert "Created E1" in reply and "WET (Europe/Lisbon)" in reply
    async with world.db.session() as s:
        event = await store.get_event(s, 1)
    assert event is not None and event.cop_code == "SOLAR" and event.timezone == "Europe/Lisbon"


async def test_bad_dates_get_the_usage_line_and_what_was_wrong(world: World) -> None:
    past = await world.reply(MOD, CREATE.format(day="2026-03-01", cap=5))
    assert "is in the past" in past and "Usage: !event create" in past
    impossible = await world.reply(MOD, CREATE.format(day="2026-02-30", cap=5))
    assert "2026-02-30 is not a real date" in impossible
    gap = await world.reply(
        MOD, '!event create HDEV online-meeting 2026-03-29 02:30 1h "Night owls"'
    )
    assert "does not exist in Europe/Brussels" in gap and "Did you mean 03:30? Usage:" in gap
    zone = await world.reply(MOD, CREATE.format(day=in_days(5), cap=5) + " tz=Moon/Base")
    assert "not a time zone I know" in zone


async def test_an_ambiguous_time_on_the_night_the_clocks_go_back_is_explained(
    world: World,
) -> None:
    reply = await world.reply(
        MOD, '!event create HDEV online-meeting 2026-10-25 02:30 1h "Night owls"'
    )
    assert "happens twice" in reply and "I used the first one (02:30 CEST" in reply
    # One hour from 02:30 CEST ends at 02:30 CET: each time is shown with its own zone.
    assert "Sun 25 Oct 2026, 02:30 CEST – 02:30 CET (Europe/Brussels)" in reply
    assert "Seats: no limit" in reply


async def test_rsvp_by_command_fills_seats_then_the_waiting_list(world: World) -> None:
    event_id = await create(world, cap=1)

    yes = await world.reply(ANNA, f"!rsvp E{event_id} yes")
    waiting = await world.reply(BEN, f"!rsvp e{event_id} yes")
    again = await world.reply(ANNA, f"!rsvp {event_id} yes")

    assert "You're going to E1 “Electric buses”" in yes and "remind you 24 hours and 1 hour" in yes
    assert "is full (1 seat)" in waiting and "number 1 on the waiting list" in waiting
    assert "You already have a seat" in again


async def test_a_freed_seat_goes_to_the_first_waiting_who_is_told_in_a_dm(world: World) -> None:
    event_id = await create(world, cap=1)
    await world.run(ANNA, f"!rsvp E{event_id} yes")
    await world.run(BEN, f"!rsvp E{event_id} yes")
    await world.run(CARL, f"!rsvp E{event_id} yes")

    sent = await world.run(ANNA, f"!rsvp E{event_id} no")

    told = dms(sent, BEN)
    assert len(told) == 1 and "a seat freed up at E1" in told[0].body
    assert not dms(sent, CARL)
    details = await world.reply(CARL, f"!event E{event_id}")
    assert "waiting list, number 1" in details and "Seats: 1 of 1 taken" in details


async def test_people_outside_the_cop_cannot_see_or_answer(world: World) -> None:
    event_id = await create(world)
    for person in (STRANGER, SOFIA, MOD_SOLAR):
        reply = await world.reply(person, f"!rsvp E{event_id} yes")
        assert f"can't find event E{event_id}" in reply
        assert f"can't find event E{event_id}" in await world.reply(person, f"!event E{event_id}")
    assert "can't find event E99" in await world.reply(ANNA, "!rsvp E99 yes")


async def test_a_guest_gets_the_event_in_a_dm_and_may_answer_that_event_only(
    world: World,
) -> None:
    first = await create(world)
    second = await create(world, days=8)

    sent = await world.run(MOD, f"!guest invite {GUEST} E{first}", MGMT)

    invitation = dms(sent, GUEST)
    assert len(invitation) == 1 and "invited as a guest to E1" in invitation[0].body
    assert "!rsvp E1 yes" in invitation[0].body
    assert "You're going" in await world.reply(GUEST, f"!rsvp E{first} yes")
    assert "can't find event E2" in await world.reply(GUEST, f"!rsvp E{second} yes")
    listing = await world.reply(GUEST, "!events")
    assert "E1" in listing and "E2" not in listing
    assert "already a member" in await world.reply(MOD, f"!guest invite {ANNA} E{first}")
    assert "only for moderators" in await world.reply(ANNA, f"!guest invite {GUEST} E{first}")


async def test_reacting_to_the_announcement_answers_and_removing_it_withdraws(
    world: World,
) -> None:
    event_id = await create(world, cap=1)
    announcement = await world.sent_event(f"event:{event_id}")
    await world.run(ANNA, f"!rsvp E{event_id} yes")

    waiting = (await world.react(BEN, announcement, "✅️", event_id="$r1")).sent
    assert "number 1 on the waiting list" in dms(waiting, BEN)[0].body
    maybe = (await world.react(CARL, announcement, "❔", event_id="$r2")).sent
    assert "maybe" in dms(maybe, CARL)[0].body

    freed = (await world.react(ANNA, announcement, "❌", event_id="$r3")).sent
    assert "a seat freed up" in dms(freed, BEN)[0].body
    withdrawn = (await world.unreact(BEN, "$r1")).sent
    assert dms(withdrawn, BEN)[0].body.startswith(
        "You removed your reaction. Your answer to E1 “Electric buses” is withdrawn."
    )
    async with world.db.session() as s:
        assert await store.rsvp_of(s, event_id, BEN) is None
        assert await store.rsvp_of(s, event_id, ANNA) == "no"
    # Reactions to other messages, and other emoji, are not answers.
    assert (await world.react(CARL, "$somethingelse", "✅", event_id="$r4")).sent == []
    assert (await world.react(CARL, announcement, "🎉", event_id="$r5")).sent == []


async def test_an_answer_given_by_command_is_not_withdrawn_by_removing_an_old_reaction(
    world: World,
) -> None:
    event_id = await create(world)
    announcement = await world.sent_event(f"event:{event_id}")
    await world.react(ANNA, announcement, "✅", event_id="$r1")
    await world.run(ANNA, f"!rsvp E{event_id} maybe")
    assert (await world.unreact(ANNA, "$r1")).sent == []
    async with world.db.session() as s:
        assert await store.rsvp_of(s, event_id, ANNA) == "maybe"


async def test_answers_are_closed_once_the_event_has_started(world: World) -> None:
    event_id = await create(world, days=1)
    await world.run(ANNA, f"!rsvp E{event_id} yes")
    world.now += timedelta(days=1, hours=1)
    assert "already started" in await world.reply(ANNA, f"!rsvp E{event_id} no")


async def test_editing_an_event_tells_yes_maybe_and_waiting_but_not_no(world: World) -> None:
    event_id = await create(world, cap=1)
    await world.run(ANNA, f"!rsvp E{event_id} yes")
    await world.run(BEN, f"!rsvp E{event_id} yes")  # waiting
    await world.run(CARL, f"!rsvp E{event_id} no")
    await world.run(SOFIA, f"!rsvp E{event_id} no")  # refused: not a member

    sent = await world.run(MOD, f'!event edit E{event_id} time=14:30 where="Room 2"', MGMT)

    reply = next(m for m in sent if m.room_id == MGMT).body
    assert "When: Mon 09 Mar 2026, 10:00–11:30 CET (Europe/Brussels) → " in reply
    assert "14:30–16:00" in reply and "Where: — → Room 2" in reply
    assert "I told 2 people" in reply
    assert {m.recipient for m in sent if m.recipient} == {ANNA, BEN}
    assert "has changed" in dms(sent, ANNA)[0].body
    assert any(m.room_id == HDEV_ROOM and "has changed" in m.body for m in sent)
    async with world.db.session() as s:
        event = await store.get_event(s, event_id)
        reminders = await store.pending_reminders(s)
    assert event is not None and event.sequence == 1
    assert sorted(r.due_at for r in reminders) == [
        event.starts_at - timedelta(hours=24),
        event.starts_at - timedelta(hours=1),
    ]


async def test_more_seats_by_edit_promote_the_waiting_list(world: World) -> None:
    event_id = await create(world, cap=1)
    for person in (ANNA, BEN, CARL):
        await world.run(person, f"!rsvp E{event_id} yes")
    sent = await world.run(MOD, f"!event edit E{event_id} capacity=none")
    assert "a seat freed up" in dms(sent, BEN)[0].body
    assert any("a seat freed up" in m.body for m in dms(sent, CARL))
    nothing = await world.reply(MOD, f"!event edit E{event_id} capacity=none")
    assert "Nothing changed" in nothing


async def test_cancelling_tells_everyone_and_closes_answers(world: World) -> None:
    event_id = await create(world, cap=1)
    await world.run(ANNA, f"!rsvp E{event_id} yes")
    await world.run(BEN, f"!rsvp E{event_id} maybe")

    sent = await world.run(MOD, f"!event cancel E{event_id} The venue is closed")

    for person in (ANNA, BEN):
        message = dms(sent, person)[0].body
        assert "is cancelled" in message and "Reason: The venue is closed" in message
    assert "was cancelled" in await world.reply(CARL, f"!rsvp E{event_id} yes")
    assert "CANCELLED" in await world.reply(ANNA, f"!event E{event_id}")
    assert "already cancelled" in await world.reply(MOD, f"!event cancel E{event_id}")
    async with world.db.session() as s:
        assert await store.pending_reminders(s) == []


async def test_events_lists_counts_and_the_callers_own_answer(world: World) -> None:
    event_id = await create(world, cap=1)
    await world.run(ANNA, f"!rsvp E{event_id} yes")
    await world.run(BEN, f"!rsvp E{event_id} yes")
    await world.run(MOD_SOLAR, f'!event create SOLAR online-meeting {in_days(2)} 09:00 1h "Panels"')

    mine = await world.reply(BEN, "!events")
    assert "E1" in mine and "1 of 1 yes, 0 maybe, 1 waiting" in mine
    assert "you: on the waiting list" in mine and "Europe/Brussels" in mine
    assert "E2" not in mine
    everything = await world.reply(ADMIN, "!events all")
    assert "E1" in everything and "E2" in everything and "Europe/Lisbon" in everything
    assert "only members of SOLAR" in await world.reply(BEN, "!events SOLAR")
    assert "not a member of any CoP" in await world.reply(STRANGER, "!events")


async def test_attendance_is_marked_by_moderators_after_the_start(world: World) -> None:
    event_id = await create(world, days=1)
    await world.run(ANNA, f"!rsvp E{event_id} yes")
    early = await world.reply(MOD, f"!attended E{event_id} {ANNA}")
    assert "once E1 “Electric buses” has started" in early

    world.now += timedelta(days=1, hours=1)
    reply = await world.reply(MOD, f"!attended E{event_id} {ANNA}, {BEN}")

    assert (
        f"Marked: {ANNA}, {BEN}" in reply
        and f"had not answered yes (marked anyway): {BEN}" in reply.replace("Had", "had")
    )
    listing = await world.reply(MOD, f"!attendees E{event_id}")
    assert (
        "Going (1 of 2)" in listing
        and "attended ✓" in listing
        and "Attended without a yes" in listing
    )
    # A moderator of another CoP does not even see the event (the not-found answer).
    assert f"can't find event E{event_id}" in await world.reply(
        MOD_SOLAR, f"!attendees E{event_id}"
    )
    async with world.db.session() as s:
        assert await store.attended(s, event_id, ANNA)


async def test_the_calendar_command_sends_a_file_and_a_personal_link(world: World) -> None:
    event_id = await create(world)
    await world.run(ANNA, f"!rsvp E{event_id} yes")

    sent = await world.run(ANNA, "!calendar")

    file = next(m for m in sent if m.kind == "file")
    assert file.payload["filename"] == "bbwt-events.ics"
    assert b"Electric buses" in base64.b64decode(file.payload["data_b64"])
    text = next(m for m in sent if m.kind == "message").body
    assert "calendar. 1 upcoming event with your answer is in the file above." in text
    async with world.db.session() as s:
        token = await store.calendar_token(s, ANNA, now=world.now)
    assert f"https://bot.example.org/calendar/{token}.ics" in text

    in_room = await world.run(ANNA, "!calendar", HDEV_ROOM)
    room_reply = next(m for m in in_room if m.room_id == HDEV_ROOM)
    assert "direct message" in room_reply.body and token not in room_reply.body
    assert {m.kind for m in dms(in_room, ANNA)} == {"file", "message"}

    reset = await world.run(ANNA, "!calendar reset")
    async with world.db.session() as s:
        new_token = await store.calendar_token(s, ANNA, now=world.now)
        assert await store.user_of_calendar_token(s, token) is None
    assert new_token != token and any(new_token in m.body for m in reset)


async def test_exports_are_csv_files_for_moderators_in_private(world: World) -> None:
    event_id = await create(world)
    await world.run(ANNA, f"!rsvp E{event_id} yes")
    await world.run(BEN, f"!rsvp E{event_id} maybe")

    sent = await world.run(MOD, "!export rsvps")
    file = next(m for m in sent if m.kind == "file")
    rows = list(
        csv.DictReader(io.StringIO(base64.b64decode(file.payload["data_b64"]).decode("utf-8-sig")))
    )
    assert [(r["user"], r["answer"], r["organisation"]) for r in rows] == [
        (ANNA, "yes", "City of Oslo"),
        (BEN, "maybe", "Ville de Lyon"),
    ]
    assert file.payload["filename"].startswith("bbwt-rsvps-hdev-")

    events_csv = await world.run(ADMIN, "!export events HDEV", MGMT)
    data = next(m for m in events_csv if m.kind == "file").payload["data_b64"]
    (row,) = csv.DictReader(io.StringIO(base64.b64decode(data).decode("utf-8-sig")))
    assert row["event"] == "E1" and row["yes"] == "1" and row["maybe"] == "1"
    assert row["start_local"] == f"{in_days(7)} 10:00" and row["timezone"] == "Europe/Brussels"

    assert "works only in" in await world.reply(MOD, "!export events", HDEV_ROOM)
    assert "only for moderators" in await world.reply(ANNA, "!export events")
    assert "not something I can export" in await world.reply(MOD, "!export bananas")
