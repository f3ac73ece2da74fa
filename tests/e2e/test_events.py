"""Events through a real Synapse with the bot as a real process: create, announce, answer
by command and by reaction, waiting list, promotion, calendar file and feed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import aiohttp
import icalendar
import pytest
from nio import RoomRedactResponse

from tests.e2e.conftest import BotFactory
from tests.e2e.harness import BotProcess, Event, Person
from tests.e2e.membership_support import seed_member

pytestmark = pytest.mark.e2e


async def seed_members(bot_db_url: str, *people: Person) -> None:
    """Make people members of HDEV, each from their own city (the bot then invites them)."""
    for person in people:
        city = person.user_id[1:].split("-")[0].title()
        await seed_member(bot_db_url, person, org=f"City of {city}")


class Stage(NamedTuple):
    mod: Person
    ben: Person
    carl: Person
    bot: BotProcess
    room: str
    ben_dm: str
    carl_dm: str
    day: datetime
    """Ten days from now, in Brussels."""


async def hdev_with_ben_and_carl(people: Any, make_bot: BotFactory) -> Stage:
    """HDEV with its moderator in the room and Ben and Carl as members in it, each with a
    direct chat with the bot."""
    mod: Person = await people("mod")
    ben: Person = await people("ben")
    carl: Person = await people("carl")
    bot = await make_bot(
        cops=[{"code": "HDEV", "name": "Heavy-duty EVs", "moderators": [mod.user_id]}]
    )
    await seed_members(bot.db_url, ben, carl)
    room = await mod.join(bot.alias("hdev"))
    await ben.join(room)
    await carl.join(room)
    ben_dm = await ben.open_dm(bot.user_id)
    carl_dm = await carl.open_dm(bot.user_id)
    day = (datetime.now(UTC) + timedelta(days=10)).astimezone(ZoneInfo("Europe/Brussels"))
    return Stage(mod, ben, carl, bot, room, ben_dm, carl_dm, day)


def bot_messages(person: Person, room: str, bot: str, text: str) -> list[Event]:
    return [e for e in person.messages_from(bot, room) if text in e["content"].get("body", "")]


async def wait_for_message(person: Person, room: str, bot: str, text: str) -> Event:
    found = await person.wait_until(
        lambda: bot_messages(person, room, bot, text), what=f"a message with {text!r}"
    )
    return dict(found[-1])


async def react(person: Person, room: str, target: str, key: str) -> str:
    content: dict[str, Any] = {
        "m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}
    }
    return await person.send_content(room, content, "m.reaction")


async def test_an_event_from_announcement_to_waiting_list_promotion_and_calendar_feed(
    people, make_bot: BotFactory
) -> None:
    mod, ben, carl, bot, room, ben_dm, carl_dm, day = await hdev_with_ben_and_carl(people, make_bot)

    # A moderator creates a one-seat event in the CoP room; it is announced with reactions.
    created = await mod.ask(
        room,
        f'!event create in-person-meeting {day:%Y-%m-%d} 10:00 2h "Depot visit" '
        'where="Oslo bus depot" capacity=1',
        bot.user_id,
    )
    assert "Created E1 “Depot visit”" in created["content"]["body"]
    assert "(Europe/Brussels)" in created["content"]["body"]
    announcement = await wait_for_message(mod, room, bot.user_id, "New event in Heavy-duty EVs")
    assert "Oslo bus depot" in announcement["content"]["body"]

    def bot_reactions() -> set[str]:
        return {
            e["content"]["m.relates_to"]["key"]
            for e in mod.events.get(room, [])
            if e.get("type") == "m.reaction"
            and e.get("sender") == bot.user_id
            and e["content"]["m.relates_to"].get("event_id") == announcement["event_id"]
        }

    await mod.wait_until(lambda: bot_reactions() == {"✅", "❌", "❔"}, what="the bot's reactions")

    # Ben takes the only seat by command; Carl reacts ✅ and is put on the waiting list.
    going = await ben.ask(room, "!rsvp E1 yes", bot.user_id)
    assert "You're going to E1" in going["content"]["body"]
    reaction = await react(carl, room, announcement["event_id"], "✅")
    await wait_for_message(carl, carl_dm, bot.user_id, "number 1 on the waiting list")

    # Ben cancels: Carl gets the seat and is told in a direct message.
    await ben.ask(ben_dm, "!rsvp E1 no", bot.user_id)
    await wait_for_message(carl, carl_dm, bot.user_id, "a seat freed up at E1")
    details = await carl.ask(carl_dm, "!event E1", bot.user_id)
    assert "Your answer: going" in details["content"]["body"]

    # The calendar arrives as a file, with a personal feed link that answers over HTTP.
    file_reply = await carl.ask(carl_dm, "!calendar", bot.user_id)
    assert file_reply["content"]["msgtype"] == "m.file"
    assert file_reply["content"]["info"]["mimetype"] == "text/calendar"
    assert b"BEGIN:VCALENDAR" in await carl.download(file_reply["content"])
    link_message = await wait_for_message(carl, carl_dm, bot.user_id, "/calendar/")
    url = next(word for word in link_message["content"]["body"].split() if "/calendar/" in word)
    assert url.startswith(f"http://127.0.0.1:{bot.port}/calendar/")
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/calendar"
        feed = icalendar.Calendar.from_ical(await resp.read())
    (item,) = feed.walk("VEVENT")
    assert str(item["summary"]) == "Depot visit"
    start = item.decoded("dtstart").astimezone(ZoneInfo("Europe/Brussels"))
    assert (start.date(), start.hour, start.minute) == (day.date(), 10, 0)
    assert "Your answer: going" in str(item["description"])

    # Removing the reaction withdraws Carl's answer.
    resp = await carl.client.room_redact(room, reaction)
    assert isinstance(resp, RoomRedactResponse), resp
    await wait_for_message(carl, carl_dm, bot.user_id, "is withdrawn")


async def test_a_member_who_leaves_the_room_gives_the_seat_to_the_first_waiting(
    people, make_bot: BotFactory
) -> None:
    mod, ben, carl, bot, room, ben_dm, carl_dm, day = await hdev_with_ben_and_carl(people, make_bot)
    created = await mod.ask(
        room,
        f'!event create online-meeting {day:%Y-%m-%d} 10:00 1h "Charging standards" '
        "url=https://meet.example.org/hdev capacity=1",
        bot.user_id,
    )
    assert "Created E1" in created["content"]["body"]
    going = await ben.ask(ben_dm, "!rsvp E1 yes", bot.user_id)
    assert "You're going to E1" in going["content"]["body"]
    waiting = await carl.ask(carl_dm, "!rsvp E1 yes", bot.user_id)
    assert "number 1 on the waiting list" in waiting["content"]["body"]

    # Ben leaves the CoP's room in his client: the seat goes to Carl, and both are told.
    await ben.client.room_leave(room)
    await wait_for_message(carl, carl_dm, bot.user_id, "a seat freed up at E1")
    told = await wait_for_message(ben, ben_dm, bot.user_id, "You left the room of HDEV")
    assert "(you had a seat)" in told["content"]["body"]
    assert "!join HDEV" in told["content"]["body"]
    details = await carl.ask(carl_dm, "!event E1", bot.user_id)
    assert "Your answer: going" in details["content"]["body"]
    mine = await ben.ask(ben_dm, "!event E1", bot.user_id)
    assert "Your answer: none yet" in mine["content"]["body"]


async def test_a_backlog_of_answers_to_a_full_event_on_postgresql_keeps_seats_and_order(
    people, make_bot: BotFactory
) -> None:
    # Answers that pile up while the bot is held still are handled as a backlog, in groups
    # sharing a transaction that lock the event once (PostgreSQL): every answer, and the
    # moderator's edit among them, still sees what the ones before it did. A group's
    # commands are claimed, and their senders' roles read, in one statement before the
    # first of them: a member removed by a command in the group is no member for the
    # commands after it.
    from tests.e2e.test_foundation import room_with_people, wait_for_answers

    # Groups not cut short by their time budget (20 ms by default: a slow machine would
    # end a group between the removal and the command after it, and the second half of
    # this test would prove nothing); the default budget is what the burst tests run with.
    bot, crowd, room = await room_with_people(
        people, make_bot, 5, backend="postgresql", process={"group_seconds": 10}
    )
    mod = crowd[0]
    member: Person = await people("member")
    await seed_members(bot.db_url, member)
    await member.join(room)
    await member.stop_syncing()
    day = (datetime.now(UTC) + timedelta(days=10)).astimezone(ZoneInfo("Europe/Brussels"))
    created = await mod.ask(
        room,
        f'!event create online-meeting {day:%Y-%m-%d} 10:00 1h "Charging" capacity=2',
        bot.user_id,
    )
    assert "Created E1" in created["content"]["body"]

    bot.pause()
    try:
        sent = [await person.send(room, "!rsvp E1 yes") for person in crowd[1:]]
        sent.append(await mod.send(room, "!event edit E1 capacity=3"))
        sent.append(await crowd[1].send(room, "!rsvp E1 no"))
        sent.append(await mod.send(room, "!event E1"))
        sent.append(await member.send(room, "!event E1"))
        sent.append(await mod.send(room, f"!remove {member.user_id} HDEV Left the organisation."))
        sent.append(await member.send(room, "!event E1"))
    finally:
        bot.resume()

    replies = await wait_for_answers(mod, bot, room, sent, timeout=120)
    assert all(len(replies.get(c, [])) == 1 for c in sent)
    bodies = [replies[c][0]["content"]["body"] for c in sent]
    assert [b.startswith("You're going") for b in bodies[:4]] == [True, True, False, False]
    assert all("waiting list" in b for b in bodies[2:4])
    # The edit gives the third seat to the first one waiting, the "no" frees a seat for the
    # last one waiting: three going, one not, nobody waiting.
    assert "Seats: 3 of 3 taken, 0 free\n" in bodies[6]
    assert "Answers: 3 yes, 0 maybe, 1 no" in bodies[6]
    assert "Seats: 3 of 3 taken" in bodies[7] and "Removed" in bodies[8]
    assert bodies[9].startswith("I can't find event E1 among the events you can see.")

    # The two promoted (by the edit, then by the "no") are told in a direct chat the bot
    # opens for each, once: their messages were queued with the group's answers and
    # written with them in one statement.
    from tests.e2e.test_trust import dm_invites

    for person in (crowd[3], crowd[4]):
        invites: list[str] = []
        for _ in range(120):
            if invites := await dm_invites(person, bot.user_id):
                break
            await asyncio.sleep(0.5)
        assert len(invites) == 1, f"{person.user_id}: {invites}"
        private = await person.join(invites[0])
        told: list[Event] = []
        for _ in range(60):
            await person.catch_up()  # the room key came while they did not sync
            told = [
                e
                for e in await person.history(private)
                if e.get("sender") == bot.user_id
                and "a seat freed up at E1" in (e.get("content") or {}).get("body", "")
            ]
            if told:
                break
            await asyncio.sleep(0.5)
        assert len(told) == 1, f"{person.user_id}: {told}"


async def test_a_reminder_reaches_each_who_said_yes_once_on_postgresql(
    people, make_bot: BotFactory
) -> None:
    # A reminder is a scheduled job with a transaction of its own: on PostgreSQL its direct
    # messages are written together, in one statement, when it commits. The reminder is
    # set to come 100 seconds after the test begins (events.reminders, changed for that:
    # the default ones are 24 hours and 1 hour before the start).
    mod: Person = await people("mod")
    ann: Person = await people("ann")
    ben: Person = await people("ben")
    carl: Person = await people("carl")
    now = datetime.now(UTC)
    due = now + timedelta(seconds=100)
    start = (now + timedelta(minutes=5)).replace(second=0, microsecond=0)
    offset = int((start - due).total_seconds())
    bot = await make_bot(
        # The CoP's time is UTC: the start is typed as a wall-clock time, and in the hour a
        # zone's clocks go back that time would be ambiguous.
        cops=[
            {
                "code": "HDEV",
                "name": "Heavy-duty EVs",
                "moderators": [mod.user_id],
                "timezone": "UTC",
            }
        ],
        backend="postgresql",
        events={"reminders": [f"{offset}s"]},
    )
    await seed_members(bot.db_url, ann, ben, carl)
    room = await mod.join(bot.alias("hdev"))
    dms = {}
    for person in (ann, ben, carl):
        await person.join(room)
        dms[person.user_id] = await person.open_dm(bot.user_id)
    created = await mod.ask(
        room,
        f'!event create online-meeting {start:%Y-%m-%d} {start:%H:%M} 1h "Charging"',
        bot.user_id,
    )
    assert "Created E1" in created["content"]["body"]
    for person, answer in ((ann, "yes"), (ben, "yes"), (carl, "no")):
        answered = await person.ask(dms[person.user_id], f"!rsvp E1 {answer}", bot.user_id)
        assert "E1" in answered["content"]["body"]
    assert datetime.now(UTC) < due, "the set-up took longer than the reminder's offset allows"

    for person in (ann, ben):
        await person.wait_until(
            lambda p=person: bot_messages(p, dms[p.user_id], bot.user_id, "Reminder"),
            timeout=150,
            what=f"the reminder in {person.user_id}'s direct chat",
        )
    await asyncio.sleep(2)  # a second copy, or one for Carl, would have come by now
    for person in (ann, ben, carl):
        await person.catch_up()
    reminders = {
        p.user_id: bot_messages(p, dms[p.user_id], bot.user_id, "Reminder")
        for p in (ann, ben, carl)
    }
    assert [len(reminders[p.user_id]) for p in (ann, ben, carl)] == [1, 1, 0]
    assert "Charging" in reminders[ann.user_id][0]["content"]["body"]
