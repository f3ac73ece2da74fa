"""Reminders with a controllable clock: sent once, the policy for reminders missed while
the bot was down, jobs rebuilt from the database after a restart, clock changes."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update

from commands.events import setup
from commands.events.reminders import (
    deliver_due,
    deliver_reminder,
    fire_reminder,
    rebuild_reminder_jobs,
)
from storage import events as store
from storage.models import Membership
from tests.support.cast import ANNA, BEN, CARL, GUEST, MGMT, MOD, in_days
from tests.support.world import World, dms


async def event_with_answers(world: World, days: int = 3) -> store.Event:
    """E1 at 10:00 Brussels ``days`` from now: Anna yes, Ben maybe, Carl no."""
    await world.run(
        MOD, f'!event create HDEV online-meeting {in_days(days)} 10:00 1h "Charging standards"'
    )
    for person, answer in ((ANNA, "yes"), (BEN, "maybe"), (CARL, "no")):
        await world.run(person, f"!rsvp E1 {answer}")
    async with world.db.session() as s:
        event = await store.get_event(s, 1)
    assert event is not None
    return event


async def due(world: World, at: datetime) -> tuple[dict[str, int], list]:
    before = await world.last_outbox_id()
    async with world.db.session() as s:
        counts = await deliver_due(s, at, world.settings)
    return counts, await world.deliver(after=before)


async def test_reminders_go_to_people_who_said_yes_24_hours_and_1_hour_before(
    world: World,
) -> None:
    event = await event_with_answers(world)
    start = event.starts_at

    early, nothing = await due(world, start - timedelta(hours=24, seconds=1))
    day_before, first = await due(world, start - timedelta(hours=24))
    hour_before, second = await due(world, start - timedelta(minutes=59))

    assert early == {} and nothing == []
    assert day_before == {"sent": 1} and hour_before == {"sent": 1}
    for sent, text in ((first, "starts in 24 hours"), (second, "starts in 59 minutes")):
        assert [m.recipient for m in sent] == [ANNA]
        assert text in sent[0].body and "Charging standards" in sent[0].body
        assert "Europe/Brussels" in sent[0].body


async def test_a_reminder_is_never_sent_twice(world: World) -> None:
    event = await event_with_answers(world)
    at = event.starts_at - timedelta(hours=1)

    await due(world, at)
    again, sent = await due(world, at + timedelta(minutes=5))

    assert again == {} and sent == []
    async with world.db.session() as s:
        reminders = {r.offset_minutes: r.status for r in await store.pending_reminders(s)}
    assert reminders == {}


async def test_two_processes_firing_the_same_reminder_send_it_once(world: World) -> None:
    event = await event_with_answers(world)
    at = event.starts_at - timedelta(minutes=30)
    async with world.db.session() as s:
        (reminder,) = [r for r in await store.due_reminders(s, at) if r.offset_minutes == 60]
    before = await world.last_outbox_id()

    async def fire() -> str:
        async with world.db.session() as s:
            return await deliver_reminder(s, reminder.id, at, world.settings)

    results = await asyncio.gather(fire(), fire(), fire())

    assert sorted(results) == ["sent", "skipped", "skipped"]
    assert len(dms(await world.deliver(after=before), ANNA)) == 1


async def test_a_reminder_missed_while_down_is_sent_late_if_the_event_has_not_started(
    world: World,
) -> None:
    event = await event_with_answers(world)

    # Down from two days before until 20 minutes before the start: both reminders were
    # missed; only the one closest to the start is sent, late.
    counts, sent = await due(world, event.starts_at - timedelta(minutes=20))

    assert counts == {"superseded": 1, "sent": 1}
    assert len(sent) == 1 and "starts in 20 minutes" in sent[0].body


async def test_a_reminder_missed_until_after_the_start_is_dropped_and_logged(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    event = await event_with_answers(world)
    caplog.set_level(logging.WARNING, logger="commands.events")

    counts, sent = await due(world, event.starts_at + timedelta(minutes=5))

    assert counts == {"dropped": 2} and sent == []
    assert "dropped" in caplog.text and "E1" in caplog.text


async def test_jobs_are_rebuilt_from_the_database_after_a_restart(world: World) -> None:
    event = await event_with_answers(world)
    down_until = event.starts_at - timedelta(hours=5)  # missed the 24 h reminder
    services = world.services(clock=lambda: down_until)

    assert await rebuild_reminder_jobs(services) == 2

    jobs = {job.id: job for job in services.scheduler.get_jobs()}
    async with world.db.session() as s:
        rows = {r.offset_minutes: r for r in await store.pending_reminders(s)}
    late, on_time = jobs[f"event-reminder-{rows[1440].id}"], jobs[f"event-reminder-{rows[60].id}"]
    assert late.trigger.run_date == down_until  # overdue: at once
    assert on_time.trigger.run_date == event.starts_at - timedelta(hours=1)
    assert "event-reminder-sweep" in jobs

    before = await world.last_outbox_id()
    assert await late.func(*late.args) == "sent"
    assert await late.func(*late.args) == "skipped"
    sent = await world.deliver(after=before)
    assert len(sent) == 1 and "starts in 5 hours" in sent[0].body

    # After the next restart only the 1 h reminder is left to schedule.
    restarted = world.services(clock=lambda: down_until + timedelta(minutes=1))
    await setup(restarted)
    left = [job.id for job in restarted.scheduler.get_jobs() if job.id != "event-reminder-sweep"]
    assert left == [f"event-reminder-{rows[60].id}"]


async def test_the_periodic_check_sends_what_another_process_scheduled(world: World) -> None:
    event = await event_with_answers(world)
    services = world.services(clock=lambda: event.starts_at - timedelta(minutes=50))
    await rebuild_reminder_jobs(services)
    sweep = services.scheduler.get_job("event-reminder-sweep")
    before = await world.last_outbox_id()

    assert await sweep.func(*sweep.args) == {"superseded": 1, "sent": 1}
    assert [m.recipient for m in await world.deliver(after=before)] == [ANNA]


async def test_clock_changes_do_not_shift_reminders(world: World) -> None:
    # 2026-03-29 10:00 in Brussels is after the clocks went forward (CEST, UTC+2); the
    # reminder is 24 real hours earlier, 2026-03-28 08:00 UTC, which is 09:00 CET.
    world.now = datetime(2026, 3, 20, 9, 0, tzinfo=UTC)
    await world.run(MOD, '!event create HDEV online-meeting 2026-03-29 10:00 1h "After the change"')
    async with world.db.session() as s:
        rows = {r.offset_minutes: r.due_at for r in await store.pending_reminders(s)}
    assert rows == {
        1440: datetime(2026, 3, 28, 8, 0, tzinfo=UTC),
        60: datetime(2026, 3, 29, 7, 0, tzinfo=UTC),
    }


async def test_cancelled_events_send_no_reminders_and_moved_events_are_rescheduled(
    world: World,
) -> None:
    event = await event_with_answers(world)
    # The 24 h reminder goes out; then the event moves a day later: it is due again.
    await due(world, event.starts_at - timedelta(hours=23))
    world.now = event.starts_at - timedelta(hours=23)
    await world.run(MOD, f"!event edit E1 date={in_days(4)}")
    async with world.db.session() as s:
        moved = await store.get_event(s, 1)
        rows = {r.offset_minutes: r.due_at for r in await store.pending_reminders(s)}
    assert moved is not None
    assert rows == {
        1440: moved.starts_at - timedelta(hours=24),
        60: moved.starts_at - timedelta(hours=1),
    }

    await world.run(MOD, "!event cancel E1")
    counts, sent = await due(world, moved.starts_at - timedelta(minutes=30))
    assert counts == {} and sent == []


async def test_an_event_23_hours_ahead_gets_its_1_hour_reminder_and_promises_only_that(
    world: World,
) -> None:
    start = world.now + timedelta(hours=23)
    local = start.astimezone(ZoneInfo("Europe/Brussels"))
    created = await world.reply(
        MOD,
        f'!event create HDEV online-meeting {local:%Y-%m-%d} {local:%H:%M} 1h "Last-minute call"',
    )
    answer = await world.reply(ANNA, "!rsvp E1 yes")

    assert "reminder 1 hour before" in created and "24 hours" not in created
    assert "I'll remind you 1 hour before." in answer and "24 hours" not in answer
    counts, sent = await due(world, start - timedelta(minutes=59))
    assert counts == {"sent": 1}
    assert [m.recipient for m in sent] == [ANNA]
    assert "Last-minute call" in sent[0].body


async def test_an_event_starting_in_30_minutes_promises_no_reminder(world: World) -> None:
    local = (world.now + timedelta(minutes=30)).astimezone(ZoneInfo("Europe/Brussels"))
    await world.run(
        MOD, f'!event create HDEV online-meeting {local:%Y-%m-%d} {local:%H:%M} 1h "Now-ish"'
    )

    answer = await world.reply(ANNA, "!rsvp E1 yes")

    assert "remind" not in answer


async def hour_reminder_due(world: World) -> tuple[int, datetime]:
    """E1's reminder of an hour before, and a moment it is due (50 minutes before)."""
    async with world.db.session() as s:
        event = await store.get_event(s, 1)
        assert event is not None
        at = event.starts_at - timedelta(minutes=50)
        (reminder,) = [r for r in await store.due_reminders(s, at) if r.offset_minutes == 60]
    return reminder.id, at


async def test_a_reminder_job_tells_each_of_many_once_in_the_order_they_answered(
    world: World,
) -> None:
    # The job runs in a transaction of its own (services.run): on PostgreSQL its direct
    # messages are written together at the commit, one statement for all of them.
    others = [f"@buyer{n}:test" for n in range(4)]
    for n, user in enumerate(others):
        await world.add_member(user, "HDEV", f"City {n}", "BE")
    await world.run(
        MOD, f'!event create HDEV online-meeting {in_days(3)} 10:00 1h "Charging standards"'
    )
    people = [ANNA, *others, BEN]
    for person in people:
        await world.run(person, "!rsvp E1 yes")
    await world.run(CARL, "!rsvp E1 no")
    reminder_id, at = await hour_reminder_due(world)
    before = await world.last_outbox_id()

    result = await fire_reminder(world.services(clock=lambda: at), reminder_id)

    assert result == "sent"
    sent = await world.deliver(after=before)
    assert [m.recipient for m in sent] == people
    assert all("starts in 50 minutes" in m.body for m in sent)
    again = await fire_reminder(world.services(clock=lambda: at), reminder_id)
    assert again == "skipped" and await world.deliver(after=before) == sent


async def test_a_reminder_goes_to_a_guest_who_said_yes_and_not_to_one_no_longer_a_member(
    world: World,
) -> None:
    # The meeting's details are only for who may still see the event: its CoP's members
    # (moderators, the Secretariat) and the guests invited to it.
    await world.run(
        MOD, f'!event create HDEV online-meeting {in_days(3)} 10:00 1h "Charging standards"'
    )
    await world.run(MOD, f"!guest invite {GUEST} E1", MGMT)
    for person in (ANNA, BEN, GUEST, MOD):
        assert "You're going" in await world.reply(person, "!rsvp E1 yes")
    async with world.db.session() as s:
        # Ben's membership ends some way that keeps his answer (a removal drops it).
        await s.execute(update(Membership).where(Membership.user_id == BEN).values(status="left"))
    reminder_id, at = await hour_reminder_due(world)
    before = await world.last_outbox_id()

    assert await fire_reminder(world.services(clock=lambda: at), reminder_id) == "sent"

    sent = await world.deliver(after=before)
    assert sorted(m.recipient for m in sent if "Reminder" in m.body) == sorted([ANNA, GUEST, MOD])
