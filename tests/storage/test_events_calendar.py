"""Calendar files and feeds: they parse back with icalendar, hold the right times, only the
events the person may see, and keep cancelled events as cancelled."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import icalendar
from aiohttp.test_utils import TestClient, TestServer

from commands.events import setup
from storage import events as store
from tests.support.cast import ANNA, GUEST, MOD, MOD_SOLAR, STRANGER, in_days
from tests.support.world import World


def parse(data: bytes) -> dict[str, icalendar.Event]:
    calendar = icalendar.Calendar.from_ical(data)
    return {str(item["summary"]): item for item in calendar.walk("VEVENT")}


async def test_the_ics_file_parses_back_with_the_right_times_and_answers(world: World) -> None:
    await world.run(
        MOD,
        f'!event create HDEV study-visit {in_days(10)} 09:00 2d "Depot tour" where="Oslo"',
    )
    await world.run(MOD, '!event create HDEV online-meeting 2026-03-29 10:00 90m "After DST"')
    await world.run(ANNA, "!rsvp E1 yes")

    sent = await world.run(ANNA, "!calendar")

    data = base64.b64decode(next(m for m in sent if m.kind == "file").payload["data_b64"])
    items = parse(data)
    tour, after = items["Depot tour"], items["After DST"]
    assert tour.decoded("dtstart") == datetime(2026, 3, 12, 8, 0, tzinfo=UTC)  # 09:00 CET
    assert tour.decoded("dtend") == datetime(2026, 3, 14, 8, 0, tzinfo=UTC)
    assert after.decoded("dtstart") == datetime(2026, 3, 29, 8, 0, tzinfo=UTC)  # 10:00 CEST
    assert after.decoded("dtend") - after.decoded("dtstart") == timedelta(minutes=90)
    assert str(tour["location"]) == "Oslo"
    assert str(tour["status"]) == "CONFIRMED"
    assert "Your answer: going" in str(tour["description"])
    assert "Your answer: none yet" in str(after["description"])
    assert str(tour["uid"]) == "bbwt-event-1@test"


async def test_the_feed_url_serves_only_what_the_person_may_see(world: World) -> None:
    await world.run(MOD, f'!event create HDEV online-meeting {in_days(3)} 10:00 1h "Buses"')
    await world.run(MOD, f'!event create HDEV online-meeting {in_days(4)} 10:00 1h "Trucks"')
    await world.run(MOD_SOLAR, f'!event create SOLAR online-meeting {in_days(5)} 10:00 1h "Panels"')
    await world.run(MOD, f"!guest invite {GUEST} E2")
    await world.run(MOD, "!event cancel E1 Moved online")
    async with world.db.session() as s:
        anna = await store.calendar_token(s, ANNA, now=world.now)
        guest = await store.calendar_token(s, GUEST, now=world.now)
        stranger = await store.calendar_token(s, STRANGER, now=world.now)
    services = world.services()
    await setup(services)

    async with TestClient(TestServer(services.http)) as client:
        resp = await client.get(f"/calendar/{anna}.ics")
        assert resp.status == 200
        assert resp.content_type == "text/calendar"
        items = parse(await resp.read())
        assert sorted(items) == ["Buses", "Trucks"]
        assert str(items["Buses"]["status"]) == "CANCELLED"
        assert "Moved online" in str(items["Buses"]["description"])

        as_guest = parse(await (await client.get(f"/calendar/{guest}.ics")).read())
        assert sorted(as_guest) == ["Trucks"]
        assert parse(await (await client.get(f"/calendar/{stranger}.ics")).read()) == {}
        only_solar = await client.get(f"/calendar/{anna}.ics?cop=SOLAR")
        assert parse(await only_solar.read()) == {}

        assert (await client.get("/calendar/not-a-token-at-all-0000.ics")).status == 404
        assert (await client.get("/calendar/x.ics")).status == 404


async def test_a_reset_link_stops_answering(world: World) -> None:
    async with world.db.session() as s:
        old = await store.calendar_token(s, ANNA, now=world.now)
        new = await store.reset_calendar_token(s, ANNA, now=world.now)
    services = world.services()
    await setup(services)
    async with TestClient(TestServer(services.http)) as client:
        assert (await client.get(f"/calendar/{old}.ics")).status == 404
        assert (await client.get(f"/calendar/{new}.ics")).status == 200
