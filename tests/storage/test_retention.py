"""The daily retention run: with the clock moved past each period it removes exactly what
it should — once a day, even with two bot processes on one database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from commands.privacy.retention import run_retention
from storage import claims as claims_store
from storage import membership as ms
from storage import repo, rooms
from storage.models import AuditEntry, InboundEvent, OutboxMessage, QuarantinedEvent
from tests.support.cast import ANNA, BEN, CARL, GUEST, HDEV_ROOM, MGMT, MOD, STRANGER
from tests.support.database import TestDatabase
from tests.support.world import World, claimable_event

T0 = datetime(2026, 3, 20, 10, 0, tzinfo=UTC)
YEAR = 366
EMPTY = {
    "leftovers": 0,
    "inbound": 0,
    "quarantined": 0,
    "outbox": 0,
    "claims": 0,
    "audit": 0,
    "people": 0,
}


async def after(world: World, days: float) -> dict[str, int] | None:
    world.now = T0 + timedelta(days=days)
    return await run_retention(world.services())


async def count(world: World, model: type, *where: object) -> int:
    async with world.db.read() as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def paid_claim(world: World) -> str:
    event = await claimable_event(world)
    opened = await world.send(ANNA, f"claim new E{event}")
    code = "C" + opened.text.split("Claim C", 1)[1].split(" ", 1)[0]
    for command in (f"claim add {code} other 10", f"claim submit {code}"):
        assert (await world.send(ANNA, command)).outcome == "ok"
    for command in (f"claim approve {code}", f"claim paid {code}"):
        assert (await world.send(MOD, command, MGMT)).outcome == "ok"
    return code


async def test_each_kind_goes_exactly_when_its_period_has_passed(world: World) -> None:
    world.now = T0
    code = await paid_claim(world)
    assert (await world.send(CARL, "leave HDEV", HDEV_ROOM)).outcome == "ok"
    async with world.db.session() as s:
        await rooms.quarantine(
            s, event_id="$x", room_id=HDEV_ROOM, sender=BEN, reason="broken", now=T0
        )
    commands = await count(world, InboundEvent)
    sent = await count(world, OutboxMessage)
    logged = await count(world, AuditEntry)

    assert await after(world, 6) == EMPTY
    assert await after(world, 8) == {**EMPTY, "outbox": sent}
    assert await count(world, OutboxMessage, OutboxMessage.scrubbed_at.is_(None)) == 0
    assert await after(world, 31) == {**EMPTY, "inbound": commands, "quarantined": 1}
    assert await count(world, InboundEvent, InboundEvent.sender != "") == 0
    assert await count(world, QuarantinedEvent) == 0
    assert await after(world, YEAR - 1) == EMPTY
    assert await after(world, YEAR + 1) == {**EMPTY, "people": 1}
    async with world.db.read() as s:
        assert await ms.get_person(s, CARL) is None
        assert await ms.get_person(s, ANNA) is not None  # still a member
    assert (await after(world, 2 * YEAR + 1)) == {**EMPTY, "audit": logged}
    assert (await after(world, 5 * YEAR - 1))["claims"] == 0  # type: ignore[index]
    assert (await after(world, 5 * YEAR + 1))["claims"] == 1  # type: ignore[index]
    async with world.db.read() as s:
        assert await claims_store.get_claim(s, int(code[1:])) is None


async def test_a_day_is_run_once_even_by_two_processes_at_the_same_moment(
    world: World,
) -> None:
    world.now = T0
    assert (await world.send(ANNA, "profile")).outcome == "ok"
    world.now = T0 + timedelta(days=10)
    second = TestDatabase(world.db.url)
    try:
        results = await asyncio.gather(
            run_retention(world.services()), run_retention(world.services(db=second))
        )
    finally:
        await second.dispose()

    assert sorted(results, key=lambda r: r is None) == [{**EMPTY, "outbox": 1}, None]
    assert await run_retention(world.services()) is None  # the same day again
    world.now += timedelta(days=1)
    assert await run_retention(world.services()) == EMPTY
    async with world.db.read() as s:
        runs = await s.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == "privacy.retention")
        )
    assert runs == 1


async def test_only_people_who_have_been_gone_for_the_whole_period_are_erased(
    world: World,
) -> None:
    world.now = T0
    await world.direct_chat(STRANGER)
    assert (await world.send(STRANGER, "help")).outcome == "ok"  # only ever asked for help
    await world.profile(GUEST, "Bus Maker AS", "NO", "market-actor")
    later = await world.event(start=T0 + timedelta(days=YEAR + 30))
    assert (await world.send(MOD, f"guest invite {GUEST} E{later}", MGMT)).outcome == "ok"
    assert (await world.send(CARL, "leave HDEV", HDEV_ROOM)).outcome == "ok"
    world.now = T0 + timedelta(days=100)
    assert (await world.send(CARL, "profile set country=IT")).outcome == "ok"  # active again

    counts = await after(world, YEAR + 1)

    assert counts is not None and counts["people"] == 1
    async with world.db.read() as s:
        assert await repo.get_direct_room(s, STRANGER) is None
        assert await ms.get_person(s, GUEST) is not None  # invited to an event to come
        assert await ms.get_person(s, CARL) is not None  # changed his profile since
    # A year after Carl's last change, and after the guest's event is over: both go.
    assert (await after(world, YEAR + 101))["people"] == 2  # type: ignore[index]
    async with world.db.read() as s:
        assert await ms.get_person(s, GUEST) is None
        assert await ms.get_person(s, CARL) is None


async def test_what_arrives_about_an_erased_person_after_the_erasure_goes_next_day(
    world: World,
) -> None:
    world.now = T0
    await world.direct_chat(ANNA)
    assert (await world.send(ANNA, "forgetme")).outcome == "ok"
    assert (await world.send(ANNA, "forgetme confirm")).outcome == "ok"
    # The sync then sees the kick (the bot's own event: only the room's member list notes
    # it) and a reaction of hers that was on its way.
    async with world.db.session() as s:
        await rooms.note_members(s, HDEV_ROOM, {ANNA: "leave"}, world.now)
    late = {"type": "m.reaction", "content": {"m.relates_to": {"key": "👍"}}}
    await world.hook("reaction", ANNA, late, HDEV_ROOM)

    counts = await after(world, 1)

    assert counts is not None and counts["leftovers"] == 2
    async with world.db.read() as s:
        assert await ms.room_membership(s, HDEV_ROOM, ANNA) is None
        assert await s.scalar(select(InboundEvent.id).where(InboundEvent.sender == ANNA)) is None
