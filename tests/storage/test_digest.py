"""The weekly digest on both databases: its content at a given moment, and "once per week"."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text

from commands import digest
from commands.digest.sections import _PROVIDERS
from config.claims import ClaimsConfig
from storage import Database
from storage import digest as store
from storage import events as events_store
from storage import intel as intel_store
from storage.models import Membership, OutboxMessage
from tests.support.cast import ANNA, BEN, ROOMS
from tests.support.database import TestDatabase
from tests.support.world import World

BRUSSELS = ZoneInfo("Europe/Brussels")
MONDAY_9 = datetime(2026, 11, 30, 9, 0, tzinfo=BRUSSELS)  # ISO week 49 of 2026
NEWCOMER = "@nora:example.org"
APPLICANT = "@paul:example.org"


@pytest.fixture
async def world(db: TestDatabase) -> World:
    """The world on Monday 09:00 in Brussels, when HDEV's digest is due."""
    world = await World(db).seed()
    world.now = MONDAY_9.astimezone(UTC)
    return world


async def add_membership(
    world: World, user: str, status: str, *, decided: datetime | None, applied: datetime
) -> None:
    async with world.db.session() as s:
        s.add(
            Membership(
                cop_code="HDEV",
                user_id=user,
                status=status,
                message="PRIVATE application text",
                decided_at=decided,
                applied_at=applied,
            )
        )


async def add_item(world: World, title: str, *, days_ago: float, cop: str = "HDEV", **kw):  # type: ignore[no-untyped-def]
    async with world.db.session() as s:
        return await intel_store.add_item(
            s,
            cop_code=cop,
            author=ANNA,
            title=title,
            created_at=world.now - timedelta(days=days_ago),
            **kw,
        )


async def build(world: World) -> digest.Digest:
    async with world.db.session() as s:
        return await digest.build_digest(s, world.settings, "HDEV", world.now)


async def digests_sent(world: World, cop: str = "HDEV") -> list[OutboxMessage]:
    return [
        row for row in await world.outbox_to(ROOMS[cop]) if (row.tag or "").startswith("digest:")
    ]


# --- content -----------------------------------------------------------------------------------


async def test_the_digest_shows_the_weeks_new_members_and_intel_and_nothing_older(
    world: World,
) -> None:
    week_ago = world.now - timedelta(days=7)
    await add_membership(
        world, NEWCOMER, "member", decided=world.now - timedelta(days=2), applied=week_ago
    )
    await add_membership(
        world, "@old:example.org", "member", decided=world.now - timedelta(days=9), applied=week_ago
    )
    await add_membership(world, APPLICANT, "applied", decided=None, applied=world.now)
    await add_item(
        world, "Oslo bus tender", days_ago=3, urls=["https://example.org/t"], tags=["ebus"]
    )
    await add_item(world, "Old news", days_ago=8)
    removed = await add_item(world, "Taken back", days_ago=1)
    await add_item(world, "Solar matters", days_ago=1, cop="SOLAR")
    async with world.db.session() as s:
        await intel_store.remove_item(s, removed.id, ANNA, now=world.now)

    result = await build(world)

    body = result.message.plain
    assert "Weekly digest · Heavy-duty electric vehicles (HDEV) — week 49" in body
    assert "since Monday 23 November" in body
    assert NEWCOMER in body
    assert "@old:example.org" not in body
    assert "Oslo bus tender" in body and "#ebus" in body
    assert '<a href="https://example.org/t">Oslo bus tender</a>' in result.message.html
    for absent in ("Old news", "Taken back", "Solar matters"):
        assert absent not in body
    assert not result.empty
    assert result.tag == "digest:HDEV:2026-W49"


async def test_nothing_private_appears_in_the_digest(world: World) -> None:
    await add_membership(world, APPLICANT, "applied", decided=None, applied=world.now)
    await add_membership(
        world, "@rita:example.org", "rejected", decided=world.now, applied=world.now
    )
    await add_item(world, "Something shared", days_ago=1)

    body = (await build(world)).message.plain

    assert APPLICANT not in body and "@rita:example.org" not in body
    assert "PRIVATE" not in body


async def test_members_added_without_a_decision_count_from_when_they_were_added(
    world: World,
) -> None:
    await add_membership(
        world, NEWCOMER, "member", decided=None, applied=world.now - timedelta(days=1)
    )

    body = (await build(world)).message.plain

    assert NEWCOMER in body


async def test_new_members_are_shown_with_their_organisation_and_country(world: World) -> None:
    await world.add_member(
        NEWCOMER, "HDEV", "City of Turku", "FI", since=world.now - timedelta(hours=1)
    )
    await world.deliver()

    body = (await build(world)).message.plain

    assert f"City of Turku (FI) · {NEWCOMER}" in body


async def test_an_empty_week_says_so_in_one_line(world: World) -> None:
    await add_item(world, "Old news", days_ago=10)

    result = await build(world)

    assert result.empty
    assert "\n" not in result.message.plain
    assert "a quiet week" in result.message.plain
    assert "!intel share" in result.message.plain


async def test_a_long_week_is_cut_with_a_pointer_to_the_rest(world: World) -> None:
    for number in range(20):
        await add_item(world, f"Item {number}", days_ago=1)

    body = (await build(world)).message.plain

    assert body.count("• I") == 15
    assert "…and 5 more: !intel list" in body


async def add_event(
    world: World,
    title: str,
    *,
    starts: datetime,
    hours: float = 2,
    kind: str = "study-visit",
    tz: str = "Europe/Brussels",
    cop: str = "HDEV",
    capacity: int | None = None,
    answers: dict[str, str] | None = None,
    cancelled: bool = False,
) -> int:
    async with world.db.session() as s:
        event = await events_store.create_event(
            s,
            cop_code=cop,
            kind=kind,
            title=title,
            starts_at=starts.astimezone(UTC),
            ends_at=(starts + timedelta(hours=hours)).astimezone(UTC),
            timezone=tz,
            created_by=ANNA,
            capacity=capacity,
            now=world.now,
        )
        for user, answer in (answers or {}).items():
            await events_store.set_rsvp(s, event, user, answer, world.now)
        if cancelled:
            await events_store.cancel_event(s, event, "moved", world.now)
        return event.id


def claims_settings(world: World, **claims: Any) -> None:
    world.settings = world.settings.model_copy(update={"claims": ClaimsConfig(**claims)})


async def test_the_digest_shows_upcoming_events_with_their_answers_and_closing_claims(
    world: World,
) -> None:
    dialogue = await add_event(
        world,
        "Market dialogue on e-trucks",
        kind="market-dialogue",
        starts=datetime(2026, 12, 3, 10, 0, tzinfo=BRUSSELS),
        capacity=40,
        answers={ANNA: "yes", BEN: "yes", "@carl:example.org": "maybe", "@dan:example.org": "no"},
    )
    await add_event(
        world, "Called off", starts=datetime(2026, 12, 4, 10, 0, tzinfo=BRUSSELS), cancelled=True
    )
    await add_event(world, "Too far ahead", starts=datetime(2027, 1, 5, 10, 0, tzinfo=BRUSSELS))
    await add_event(
        world, "Solar fair", cop="SOLAR", starts=datetime(2026, 12, 3, 10, 0, tzinfo=BRUSSELS)
    )
    oslo = await add_event(
        world, "Study visit Oslo", starts=datetime(2026, 11, 3, 9, 0, tzinfo=BRUSSELS), hours=8
    )
    await add_event(
        world,
        "Online kick-off",
        kind="online-meeting",
        starts=datetime(2026, 11, 3, 9, 0, tzinfo=BRUSSELS),
    )
    await add_event(world, "Closed already", starts=datetime(2026, 10, 26, 9, 0, tzinfo=BRUSSELS))

    result = await build(world)

    body = result.message.plain
    assert (
        f"E{dialogue} Market dialogue: Market dialogue on e-trucks — Thu 03 Dec, 10:00–12:00"
        in body
    )
    assert "2 going, 1 maybe, 38 of 40 seats left" in body
    assert f"E{oslo} Study visit Oslo — claims until Thu 03 Dec, 23:59" in body
    for absent in ("Called off", "Too far ahead", "Solar fair", "Online kick-off", "Closed"):
        assert absent not in body
    assert "…and more" not in body
    assert "Times are in Europe/Brussels" in body
    assert not result.empty


@pytest.mark.parametrize(
    ("deadline_days", "listed", "not_listed"),
    [
        (30, "Study visit Oslo — claims until Thu 03 Dec, 23:59", "Pitching Lisbon"),
        (10, "Pitching Lisbon — claims until Fri 04 Dec, 23:59", "Study visit Oslo"),
    ],
)
async def test_claims_closing_follow_the_configured_deadline(
    world: World, deadline_days: int, listed: str, not_listed: str
) -> None:
    claims_settings(world, deadline_days=deadline_days)
    await add_event(world, "Study visit Oslo", starts=datetime(2026, 11, 3, 9, 0, tzinfo=BRUSSELS))
    await add_event(
        world,
        "Pitching Lisbon",
        kind="pitching-session",
        starts=datetime(2026, 11, 24, 14, 0, tzinfo=BRUSSELS),
    )

    body = (await build(world)).message.plain

    assert listed in body
    assert not_listed not in body


async def test_claims_closing_are_listed_only_for_kinds_that_can_be_claimed(
    world: World,
) -> None:
    claims_settings(world, eligible_kinds=["in-person-meeting"])
    await add_event(world, "Study visit Oslo", starts=datetime(2026, 11, 3, 9, 0, tzinfo=BRUSSELS))
    await add_event(
        world,
        "Plenary in Brussels",
        kind="in-person-meeting",
        starts=datetime(2026, 11, 3, 9, 0, tzinfo=BRUSSELS),
    )

    body = (await build(world)).message.plain

    assert "Plenary in Brussels — claims until" in body
    assert "Study visit Oslo" not in body


async def test_claim_deadlines_end_with_the_last_local_day_and_respect_the_limit(
    world: World,
) -> None:
    start, end = world.now, world.now + timedelta(days=7)  # Mon 30 Nov - Mon 7 Dec, 08:00 UTC
    # Many events whose deadline passed just before the week: they come first by end time.
    for number in range(25):
        await add_event(
            world, f"Passed {number}", starts=datetime(2026, 10, 30, 9, number, tzinfo=BRUSSELS)
        )
    # Ends 30 Oct 10:30 UTC, almost a day before start - 30 days, yet its last local day
    # is 31 Oct: claims close at the end of 30 Nov there (09:59 UTC).
    kiritimati = await add_event(
        world,
        "Pacific visit",
        tz="Pacific/Kiritimati",
        starts=datetime(2026, 10, 31, 0, 0, tzinfo=ZoneInfo("Pacific/Kiritimati")),
        hours=0.5,
    )
    first = await add_event(world, "First", starts=datetime(2026, 10, 31, 9, 0, tzinfo=BRUSSELS))
    last = await add_event(world, "Last", starts=datetime(2026, 11, 6, 9, 0, tzinfo=BRUSSELS))
    await add_event(world, "Next week", starts=datetime(2026, 11, 7, 9, 0, tzinfo=BRUSSELS))

    async with world.db.session() as s:
        everything = await events_store.digest_claim_deadlines(s, "HDEV", start, end)
        two = await events_store.digest_claim_deadlines(s, "HDEV", start, end, limit=2)
        shorter = await events_store.digest_claim_deadlines(
            s, "HDEV", start, end, deadline_days=10, limit=5
        )

    assert [e.id for e in everything] == [kiritimati, first, last]
    assert [e.id for e in two] == [kiritimati, first]
    assert everything[0].claim_deadline == datetime(2026, 11, 30, 9, 59, 59, 999999, tzinfo=UTC)
    assert everything[2].claim_deadline == datetime(2026, 12, 6, 22, 59, 59, 999999, tzinfo=UTC)
    assert shorter == []


async def test_upcoming_events_stop_at_the_limit_with_answers_counted(world: World) -> None:
    monday = datetime(2026, 12, 7, 10, 0, tzinfo=BRUSSELS)
    for day in (3, 1, 2, 0):
        await add_event(
            world,
            f"Meeting {day}",
            kind="online-meeting",
            starts=monday + timedelta(days=day),
            answers={ANNA: "yes", BEN: "maybe"} if day == 1 else None,
        )

    async with world.db.session() as s:
        found = await events_store.digest_upcoming_events(
            s, "HDEV", world.now, world.now + timedelta(days=28), limit=2
        )

    assert [e.title for e in found] == ["Meeting 0", "Meeting 1"]
    assert [(e.yes, e.maybe) for e in found] == [(0, 0), (1, 1)]


async def test_another_family_can_add_a_section(world: World) -> None:
    from commands.text import Message

    async def polls(session, scope):  # type: ignore[no-untyped-def]
        return digest.DigestSection("Open polls", [Message("Which charger standard?")])

    digest.add_section("polls-test", polls, order=25)
    try:
        body = (await build(world)).message.plain
    finally:
        _PROVIDERS.pop("polls-test")

    assert "Open polls" in body and "Which charger standard?" in body


# --- once per week -----------------------------------------------------------------------------


async def test_a_week_is_posted_once_and_the_next_week_again(world: World) -> None:
    services = world.services()

    first = await digest.run_scheduled(services, "HDEV")
    second = await digest.run_scheduled(services, "HDEV")
    world.now += timedelta(days=7)
    next_week = await digest.run_scheduled(services, "HDEV")

    assert (first, second, next_week) == ("posted", "claimed", "posted")
    sent = await digests_sent(world)
    assert [row.tag for row in sent] == ["digest:HDEV:2026-W49", "digest:HDEV:2026-W50"]


async def test_a_digest_missed_while_down_is_posted_on_start_in_the_same_week(
    world: World,
) -> None:
    world.now = (MONDAY_9 + timedelta(days=2)).astimezone(UTC)  # Wednesday

    first_start = await digest.catch_up(world.services())
    restart = await digest.catch_up(world.services())

    assert first_start == {"HDEV": "posted", "SOLAR": "posted"}
    assert restart == {"HDEV": "claimed", "SOLAR": "claimed"}
    assert len(await digests_sent(world)) == 1


async def test_nothing_is_posted_before_the_due_moment(world: World) -> None:
    world.now = (MONDAY_9 - timedelta(minutes=65)).astimezone(UTC)  # 07:55 in Brussels

    assert await digest.catch_up(world.services()) == {"HDEV": "not-due", "SOLAR": "not-due"}
    assert await digests_sent(world) == []


async def test_a_new_installation_waits_for_the_next_regular_digest(world: World) -> None:
    from sqlalchemy import update

    from storage.models import Cop

    async with world.db.session() as s:
        await s.execute(update(Cop).values(created_at=world.now + timedelta(hours=1)))
    world.now += timedelta(hours=2)

    assert (await digest.catch_up(world.services()))["HDEV"] == "new-cop"
    assert await digests_sent(world) == []


async def test_an_empty_week_can_be_skipped_and_still_counts_as_done(db: TestDatabase) -> None:
    world = await World(db, digest=dict(empty_week="skip")).seed()
    world.now = MONDAY_9.astimezone(UTC)

    first = await digest.run_scheduled(world.services(), "HDEV")
    again = await digest.run_scheduled(world.services(), "HDEV")

    assert (first, again) == ("skipped", "claimed")
    assert await digests_sent(world) == []


async def test_a_cop_with_digests_switched_off_gets_none(db: TestDatabase) -> None:
    world = await World(db, digest=dict(cops={"HDEV": {"enabled": False}})).seed()
    world.now = MONDAY_9.astimezone(UTC)

    assert await digest.run_scheduled(world.services(), "HDEV") == "disabled"
    world.now += timedelta(hours=1)  # 09:00 in Lisbon
    assert await digest.run_scheduled(world.services(), "SOLAR") == "posted"


async def test_the_schedule_is_rebuilt_from_the_configuration(db: TestDatabase) -> None:
    world = await World(
        db, digest=dict(weekday="friday", time="14:30", cops={"SOLAR": {"enabled": False}})
    ).seed()
    services = world.services()

    ids = digest.schedule_jobs(services)
    again = digest.schedule_jobs(services)  # a second start replaces, never duplicates

    assert ids == again == ["digest:HDEV"]
    job = services.scheduler.get_job("digest:HDEV")
    trigger = str(job.trigger)
    assert "day_of_week='fri'" in trigger and "hour='14'" in trigger and "minute='30'" in trigger
    assert str(job.trigger.timezone) == "Europe/Brussels"
    assert len(services.scheduler.get_jobs()) == 1


@pytest.fixture
async def second_process(db: Database) -> AsyncIterator[Database]:
    """Another connection pool on the same database: a second bot process."""
    other = Database(db.url)
    yield other
    await other.dispose()


async def test_two_bot_processes_racing_for_a_week_post_it_exactly_once(
    world: World, second_process: Database
) -> None:
    one = world.services()
    two = world.services(db=second_process)

    results = await asyncio.gather(
        *(digest.run_scheduled(services, "HDEV") for services in [one, two] * 5)
    )

    assert sorted(results) == ["claimed"] * 9 + ["posted"]
    assert len(await digests_sent(world)) == 1
    async with world.db.session() as s:
        assert await store.count_posts(s, "HDEV") == 1


async def test_on_postgresql_a_second_claim_waits_for_the_first_and_then_gives_way(
    world: World, second_process: Database
) -> None:
    if world.db.is_sqlite:
        pytest.skip("row locks are a PostgreSQL matter; SQLite runs one writer at a time")

    async def other_claim() -> bool:
        async with second_process.session() as s:
            return (
                await store.claim_week(s, "HDEV", 2026, 49, kind="scheduled", at=world.now)
                is not None
            )

    async with world.db.session() as s:
        assert (
            await store.claim_week(s, "HDEV", 2026, 49, kind="scheduled", at=world.now) is not None
        )
        racing = asyncio.create_task(other_claim())
        # Wait until the second process is really blocked on our uncommitted row.
        for _ in range(500):
            await s.execute(text("SELECT pg_stat_clear_snapshot()"))
            waiting = await s.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
            if waiting:
                break
            await asyncio.sleep(0.01)
        assert waiting == 1
    assert await racing is False  # our transaction committed first: theirs found the row

    async with world.db.session() as s:
        rows = await s.scalar(select(func.count()).select_from(store.DigestPost))
    assert rows == 1


async def test_a_claim_that_rolls_back_leaves_the_week_free(world: World) -> None:
    class Boom(Exception):
        pass

    async def claim_then_fail() -> None:
        async with world.db.session() as s:
            await store.claim_week(s, "HDEV", 2026, 49, kind="scheduled", at=world.now)
            raise Boom

    with pytest.raises(Boom):
        await claim_then_fail()

    assert await digest.run_scheduled(world.services(), "HDEV") == "posted"


async def test_digest_posts_go_to_the_cops_own_room(world: World) -> None:
    world.now += timedelta(hours=1)  # 09:00 in Lisbon
    await digest.run_scheduled(world.services(), "SOLAR")

    assert len(await digests_sent(world, "SOLAR")) == 1
    assert await digests_sent(world, "HDEV") == []


async def test_a_scheduled_digest_that_failed_is_posted_by_the_periodic_retry(
    world: World,
) -> None:
    world.now = MONDAY_9.astimezone(UTC)
    services = world.services()
    await digest.setup(services)  # on start: the jobs and a first catch-up (which posts)
    retry = services.scheduler.get_job("digest-catch-up")
    assert retry is not None
    assert retry.trigger.interval == world.settings.digest.retry_every
    world.now += timedelta(days=7)  # next Monday, 09:00: the cron job fires ...
    real_run = services.run

    async def failing_run(work):  # type: ignore[no-untyped-def]
        raise ConnectionError("the database went away for a moment")

    services.run = failing_run  # type: ignore[method-assign]
    await digest.post._job(services, "HDEV")  # ... and fails, logged, nothing posted
    services.run = real_run  # type: ignore[method-assign]
    assert len(await digests_sent(world)) == 1
    world.now += timedelta(minutes=10)

    results = await retry.func(*retry.args)  # the retry job runs, ten minutes on

    assert results["HDEV"] == "posted"
    assert [row.tag for row in await digests_sent(world)][-1] == "digest:HDEV:2026-W50"
    assert (await retry.func(*retry.args))["HDEV"] == "claimed"  # once per week
