"""``!forgetme`` and ``!forgetme confirm``: erasure at once, what is kept (and until when),
and the proof — after the erasure, every table and column of the database, walked from the
schema itself (SQLite and PostgreSQL), holds the person's Matrix ID, organisation and
display name nowhere except the retained, pseudonymised claim rows."""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import inspect, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from storage import claims as claims_store
from storage import crypto, erasure, repo, rooms
from storage import membership as ms
from storage import privacy as privacy_store
from storage.events import CalendarToken, Rsvp, user_of_calendar_token
from storage.intel import FORMER_MEMBER, IntelItem
from storage.models import OutboxMessage
from tests.support.cast import (
    ADMIN,
    ANNA,
    APPLICANT,
    BEN,
    BOT,
    CARL,
    GUEST,
    HDEV_ROOM,
    MGMT,
    MOD,
    MOD_SOLAR,
    OTHER_ROOM,
    dm_room,
    in_days,
)
from tests.support.database import TestDatabase
from tests.support.world import Result, World, claimable_event

NOW = datetime(2026, 3, 20, 10, 0, tzinfo=UTC)
"""Ten days after the study visit of ``claimable_event``: claims can still be made."""
ORG = "City of Oslo"
DISPLAY_NAME = "Anna Bergström"

# Where a person's data may legitimately stay after their erasure, and why. A new table or
# column that keeps their Matrix ID, organisation or display name fails the test until it
# erases them or is added here with its reason.
#
# Their Matrix ID: nowhere (kept claims, attendance and log lines carry the pseudonym).
# Matrix infrastructure that must keep IDs (e.g. the device keys of other users' devices in
# an end-to-end encryption store) would be listed here, each with its reason.
KEPT_ID: dict[tuple[str, str], str] = {}
# Their organisation or display name: only in their own words on a kept claim.
KEPT: dict[tuple[str, str], str] = {
    ("claim_lines", "note"): "a retained claim (financial record, Financial Regulation): the "
    "claimant's own description of the expense is part of the supporting document",
    ("claim_lines", "receipt_name"): "a retained claim: the file name of the receipt, a "
    "supporting document kept for at least five years",
}


# --- the person everywhere -----------------------------------------------------------------


async def ok(world: World, sender: str, command: str, room: str | None = None, **kw: Any) -> Result:
    result = await world.send(sender, command, room, **kw)
    assert result.outcome == "ok", f"{command}: {result.text}"
    return result


async def claim(world: World, sender: str, event: int, note: str, *, submit: bool) -> str:
    opened = await ok(world, sender, f"claim new E{event}")
    code = "C" + opened.text.split("Claim C", 1)[1].split(" ", 1)[0]
    await ok(world, sender, f'claim add {code} other 12.50 "{note}"')
    if submit:
        await ok(world, sender, f"claim submit {code}")
    return code


async def anna_everywhere(world: World) -> dict[str, Any]:
    """Anna (member of HDEV, City of Oslo) does everything a person can do with the bot, as
    a member and as a moderator, and others act on her; returns what the checks need."""
    world.now = NOW
    await world.direct_chat(ANNA)
    member = {"membership": "join", "displayname": DISPLAY_NAME}
    event = {"type": "m.room.member", "state_key": ANNA, "content": member}
    await world.hook("member", ANNA, event, HDEV_ROOM)
    await ok(world, ADMIN, f"mod add {ANNA} HDEV", MGMT)
    await ok(world, ANNA, "join SOLAR We buy 40 electric buses.")

    # Events: a full study visit (Anna has the seat, Ben waits), a guest invitation to a
    # SOLAR event, one she created, attendance she marked.
    upcoming = await world.event(start=NOW + timedelta(days=20), capacity=1, title="Depot")
    await ok(world, ANNA, f"rsvp E{upcoming} yes")
    await ok(world, BEN, f"rsvp E{upcoming} yes")
    solar = await world.event(cop="SOLAR", start=NOW + timedelta(days=25), title="Parks")
    await ok(world, MOD_SOLAR, f"guest invite {ANNA} E{solar}", MGMT)
    day = in_days(30, NOW)
    await ok(world, ANNA, f'event create HDEV market-dialogue {day} 10:00 2h "Buses"', MGMT)
    await ok(world, ANNA, f"guest invite {GUEST} E{upcoming}", MGMT)
    await ok(world, ANNA, "calendar")

    # Claims: one paid, one waiting for a decision, one draft; Ben's, decided by Anna.
    paid_event = await claimable_event(world, title="Paid visit", rsvp={ANNA: "yes", BEN: "yes"})
    await ok(world, ANNA, f"attended E{paid_event} {BEN}", MGMT)
    paid = await claim(world, ANNA, paid_event, f"{ORG} delegation", submit=True)
    await ok(world, MOD, f"claim approve {paid}", MGMT)
    await ok(world, MOD, f"claim paid {paid}", MGMT)
    bens = await claim(world, BEN, paid_event, "Lyon train", submit=True)
    await ok(world, ANNA, f"claim approve {bens}", MGMT)
    await ok(world, ANNA, f"claim paid {bens}", MGMT)
    pending = await claim(
        world, ANNA, await claimable_event(world, title="Pending"), "Taxi?", submit=True
    )
    draft = await claim(
        world, ANNA, await claimable_event(world, title="Draft"), "Draft", submit=False
    )

    # Intel: shared and kept, shared and removed; Carl's item removed by her.
    kept_item = await world.share("Oslo tenders 40 electric buses #ebus")
    gone_item = await world.share("An old note")
    await ok(world, ANNA, f"intel remove I{gone_item}", HDEV_ROOM)
    carls = await world.share("Carl's note", sender=CARL)
    await ok(world, ANNA, f"intel remove I{carls}", HDEV_ROOM)

    # As a moderator: an approval, a digest, an export naming her; others export her too.
    await world.profile(APPLICANT, "Comune di Roma", "IT", "local-authority")
    await ok(world, APPLICANT, "join HDEV")
    await ok(world, ANNA, f"approve {APPLICANT} HDEV", MGMT)
    await ok(world, ANNA, "digest send HDEV", MGMT)
    await ok(world, ANNA, "export members HDEV", MGMT)
    await ok(world, MOD, "export members HDEV", MGMT)
    await ok(world, MOD, f"attendees E{upcoming}", MGMT)
    await ok(world, ANNA, "mydata")
    async with world.db.session() as s:
        await ms.start_dialogue(
            s, user_id=ANNA, cop_code="SOLAR", message="hi", asked="org", now=world.now
        )
        await rooms.quarantine(
            s, event_id="$bad", room_id=HDEV_ROOM, sender=ANNA, reason="broken", now=world.now
        )
        # The bot's encryption store knows her phone; a message it could not decrypt waits.
        device = {"keys": {"ed25519": "k"}, "display_name": f"{DISPLAY_NAME}'s phone"}
        await crypto.write_crypto_rows(
            s, f"{BOT}/BOTDEVICE", [("device", f"{ANNA}|PHONE", json.dumps(device))], world.now
        )
        await crypto.park(
            s,
            crypto.Parked("$utd", dm_room(ANNA), ANNA, "sess", {"sender": ANNA}, world.now),
            world.now,
        )
        await crypto.note_notice(s, ANNA, world.now)
    return {
        "upcoming": upcoming,
        "paid": paid,
        "pending": pending,
        "draft": draft,
        "bens": bens,
        "kept_item": kept_item,
    }


async def forget(world: World, *extra: str) -> Result:
    await ok(world, ANNA, "forgetme")
    return await ok(world, ANNA, " ".join(["forgetme confirm", *extra]))


# --- reading the whole database --------------------------------------------------------------


async def every_value(session: AsyncSession) -> list[tuple[str, str, str]]:
    """(table, column, text) for every value of every table the database has — read from
    the database's own catalogue, so tables without a model (search indexes) count too."""

    def tables(sync: Any) -> list[tuple[str, list[str]]]:
        inspector = inspect(sync)
        return [
            (t, [c["name"] for c in inspector.get_columns(t)]) for t in inspector.get_table_names()
        ]

    connection = await session.connection()
    out: list[tuple[str, str, str]] = []
    for table, columns in await connection.run_sync(tables):
        quoted = ", ".join(f'"{c}"' for c in columns)
        for row in (await session.execute(text(f'SELECT {quoted} FROM "{table}"'))).all():
            for column, value in zip(columns, row, strict=True):
                if value is not None:
                    out.append((table, column, readable(value)))
    return out


B64 = re.compile(r"[A-Za-z0-9+/=]{16,}")


def readable(value: Any) -> str:
    """A stored value as text, with any base64 inside (files queued in the outbox) decoded."""
    if isinstance(value, bytes | memoryview):
        shown = bytes(value).decode("utf-8", errors="replace")
    elif isinstance(value, str):
        shown = value
    else:
        shown = json.dumps(value, default=str, ensure_ascii=False)
    try:
        shown += " " + json.dumps(json.loads(shown), ensure_ascii=False)
    except (ValueError, TypeError):
        pass
    for chunk in B64.findall(shown):
        try:
            shown += " " + base64.b64decode(chunk, validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            pass
    return shown.replace(dm_room(ANNA), "!dm-room-of-anna")  # test ids only: real ones are random


def traces(values: list[tuple[str, str, str]], needles: tuple[str, ...]) -> set[tuple[str, str]]:
    return {(table, column) for table, column, shown in values if any(n in shown for n in needles)}


# --- the proof ---------------------------------------------------------------------------------


async def test_after_the_erasure_the_person_is_nowhere_but_in_the_kept_claims(
    world: World,
) -> None:
    await anna_everywhere(world)
    async with world.db.read() as s:
        before = traces(await every_value(s), (ANNA, ORG, DISPLAY_NAME))
    assert {("people", "org"), ("inbound_events", "content"), ("outbox", "payload")} <= before

    await forget(world)

    async with world.db.read() as s:
        values = await every_value(s)
    assert traces(values, (ANNA,)) <= set(KEPT_ID)
    assert traces(values, (ORG, DISPLAY_NAME)) <= set(KEPT)


async def test_every_table_that_holds_someone_is_in_their_copy_of_their_data(
    world: World,
) -> None:
    await anna_everywhere(world)
    async with world.db.read() as s:
        holding = {table for table, _ in traces(await every_value(s), (ANNA,))}
        data = await privacy_store.export(s, ANNA, world.now)

    missing = holding - set(privacy_store.SECTIONS)
    assert missing == set(), f"tables holding a person that !mydata does not cover: {missing}"
    for table in holding:
        section: Any = data
        for key in privacy_store.SECTIONS[table].split("."):
            section = section[key]
        assert section, f"{table}: its section {privacy_store.SECTIONS[table]} is empty"


# --- asking, confirming --------------------------------------------------------------------


async def test_forgetme_shows_what_would_go_and_what_stays_and_erases_nothing(
    world: World,
) -> None:
    await claimable_event(world, start=datetime(2026, 2, 20, 9, 0, tzinfo=UTC))
    world.now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    result = await world.send(ANNA, "forgetme", HDEV_ROOM)

    assert result.outcome == "ok"
    assert result.reply == "Let's do this privately: I have sent you a direct message."
    assert "Nothing is erased yet" in result.dm
    assert "your profile and your CoP memberships and applications (HDEV: member)" in result.dm
    assert "send !forgetme confirm before 09:10 UTC" in result.dm
    assert ORG not in result.here
    async with world.db.read() as s:
        assert (await ms.get_person(s, ANNA)) is not None
        data = await privacy_store.export(s, ANNA, world.now)
    assert [e["action"] for e in data["audit_log"]] == ["privacy.erasure-request"]


async def test_confirming_needs_a_request_of_the_last_ten_minutes(world: World) -> None:
    unasked = await world.send(ANNA, "forgetme confirm")
    assert unasked.outcome == "refused"
    assert "send !forgetme first" in unasked.text

    await ok(world, ANNA, "forgetme")
    world.now += timedelta(minutes=11)
    late = await world.send(ANNA, "forgetme confirm")
    assert late.outcome == "refused"

    await ok(world, ANNA, "forgetme")
    world.now += timedelta(minutes=9)
    done = await world.send(ANNA, "forgetme confirm")
    assert done.outcome == "ok"
    assert "Done: your personal data is erased." in done.text
    async with world.db.read() as s:
        assert (await ms.get_person(s, ANNA)) is None


async def test_a_bad_choice_gets_the_usage_line(world: World) -> None:
    await ok(world, ANNA, "forgetme")

    result = await world.send(ANNA, "forgetme confirm everything")

    assert result.outcome == "usage"
    assert "Usage: !forgetme confirm [remove-items]" in result.text


async def test_admins_and_configured_moderators_are_sent_to_the_secretariat(
    world: World,
) -> None:
    for person, role in ((ADMIN, "an admin"), (MOD, "a moderator of HDEV")):
        result = await world.send(person, "forgetme")
        assert result.outcome == "refused"
        assert f"You are named in my configuration as {role}" in result.text
    async with world.db.read() as s:
        assert (await ms.moderator_source(s, MOD, "HDEV")) == "config"


# --- what the erasure does -----------------------------------------------------------------


async def test_the_freed_seat_goes_to_the_first_person_waiting_who_is_told(
    world: World,
) -> None:
    event = await world.event(start=world.now + timedelta(days=9), capacity=1)
    await ok(world, ANNA, f"rsvp E{event} yes")
    await ok(world, BEN, f"rsvp E{event} yes")

    done = await forget(world)

    async with world.db.read() as s:
        answers = (await s.scalars(select(Rsvp).where(Rsvp.event_id == event))).all()
    assert [(row.user_id, row.answer) for row in answers] == [(BEN, "yes")]
    assert "a seat freed up" in done.dms_to(BEN)
    assert f"your seat at E{event} goes to the next person waiting" in done.text


async def test_the_bots_messages_about_them_are_redacted_and_it_leaves_the_rooms(
    world: World,
) -> None:
    await world.direct_chat(ANNA)
    await world.member_event(ANNA, HDEV_ROOM)
    await ok(world, ADMIN, f"mod add {ANNA} HDEV", MGMT)
    await ok(world, ANNA, "join SOLAR We buy buses.")
    await world.profile(APPLICANT, "Comune di Roma", "IT", "local-authority")
    await ok(world, APPLICANT, "join HDEV")
    notices = await application_notices(world)
    dm_messages = {row.id for row in await world.outbox_to(dm_room(ANNA)) if row.kind == "message"}

    done = await forget(world)

    redacted = {s_.payload["event_id"]: s_.room_id for s_ in done.of_kind("redact")}
    assert redacted[notices[ANNA]] == MGMT
    assert notices[APPLICANT] not in redacted
    assert {f"$out{row}" for row in dm_messages} <= set(redacted)
    kicked = {(s_.room_id, s_.user) for s_ in done.of_kind("kick")}
    assert kicked == {(HDEV_ROOM, ANNA), (MGMT, ANNA)}
    assert {s_.room_id for s_ in done.of_kind("power")} == {HDEV_ROOM}
    *_, last, leave = [s_ for s_ in done.sent if s_.room_id == dm_room(ANNA)]
    assert "Done: your personal data is erased." in last.body
    assert leave.kind == "leave"
    told = "\n".join(s_.body for s_ in done.to(MGMT) if s_.kind == "message")
    assert "they no longer moderate HDEV; HDEV's moderators now: @mod:test" in told
    assert "their application to SOLAR is withdrawn" in told
    assert ANNA not in told
    async with world.db.read() as s:
        rows = (await s.scalars(select(OutboxMessage).where(OutboxMessage.tag == "erasure"))).all()
    assert rows and all(row.payload == {} and row.private_to is None for row in rows)


async def application_notices(world: World) -> dict[str, str]:
    """Applicant -> the Matrix event id of their application's notice in the management room."""
    notices: dict[str, str] = {}
    for row in await world.outbox_to(MGMT):
        if (row.tag or "").startswith("application:") and row.result:
            who = next(user for user in (ANNA, APPLICANT) if user in row.payload["body"])
            notices[who] = row.result
    return notices


async def test_claims_are_kept_under_one_pseudonym_until_their_retention_ends(
    world: World,
) -> None:
    made = await anna_everywhere(world)
    asked = await ok(world, ANNA, "forgetme")

    done = await ok(world, ANNA, "forgetme confirm")

    async with world.db.read() as s:
        key = await erasure.pseudonym_key(s, None, world.now)
        kept = {c.code: c for c in await claims_store.claims_of(s, erasure.pseudonym(key, ANNA))}
        bens = await claims_store.get_claim(s, int(made["bens"][1:]))
        lines = await claims_store.lines_of(s, int(made["paid"][1:]))
        log = await world.audit()
    alias = erasure.pseudonym(key, ANNA)
    assert alias.startswith("erased-") and alias in asked.text and alias in done.text
    assert {code: c.status for code, c in kept.items()} == {
        made["paid"]: "paid",
        made["pending"]: "withdrawn",
    }
    assert made["draft"] not in kept
    assert bens is not None and bens.decided_by == bens.paid_by == alias
    assert [line.note for line in lines] == [f"{ORG} delegation"]
    assert f"{made['paid']} (paid); kept until 2031-03-24." in done.text
    assert f"{made['pending']} was waiting for a decision: it is withdrawn" in done.text
    assert "today's until 2028-03-21" in done.text
    assert {e.actor for e in log if e.action.startswith("privacy.")} == {alias}


async def test_the_secretariat_can_still_pay_an_approved_claim_and_nobody_is_messaged(
    world: World,
) -> None:
    world.now = NOW
    code = await claim(world, ANNA, await claimable_event(world), "Bus", submit=True)
    await ok(world, MOD, f"claim approve {code}", MGMT)
    await forget(world)

    paid = await world.send(MOD, f"claim paid {code}", MGMT)

    assert paid.outcome == "ok"
    assert [s_.room_id for s_ in paid.sent] == [MGMT]


async def test_shared_intel_stays_as_a_former_members_unless_they_ask_to_remove_it(
    world: World,
) -> None:
    first = await world.share("Oslo tenders #ebus")
    await forget(world)
    async with world.db.read() as s:
        item = await s.get(IntelItem, first)
    assert item is not None and item.author == FORMER_MEMBER
    shown = await world.reply(BEN, f"intel show I{first}", HDEV_ROOM)
    assert "Shared by a former member in HDEV" in shown

    second = await world.share("Lyon tenders #ebus", sender=BEN)
    await ok(world, BEN, "forgetme")
    removed = await ok(world, BEN, "forgetme confirm remove-items")
    async with world.db.read() as s:
        assert await s.get(IntelItem, second) is None
    assert "1 intel item of yours is deleted." in removed.text


async def test_the_calendar_link_stops_working(world: World) -> None:
    await ok(world, ANNA, "calendar")
    async with world.db.read() as s:
        token = await s.scalar(select(CalendarToken.token).where(CalendarToken.user_id == ANNA))
    assert token

    await forget(world)

    async with world.db.read() as s:
        assert await user_of_calendar_token(s, token) is None


async def test_pseudonyms_are_stable_and_need_the_key() -> None:
    one = erasure.pseudonym(b"k" * 32, ANNA)

    assert one == erasure.pseudonym(b"k" * 32, ANNA)
    assert one != erasure.pseudonym(b"other" * 8, ANNA)
    assert one != erasure.pseudonym(b"k" * 32, BEN)
    assert re.fullmatch(r"erased-[0-9a-f]{16}", one)


async def test_a_configured_key_is_used_and_none_is_stored(db: TestDatabase) -> None:
    async with db.session() as s:
        key = await erasure.pseudonym_key(s, "x" * 40, NOW)
        assert key == b"x" * 40
        assert await repo.get_state(s, erasure.KEY_STATE) is None
        made = await erasure.pseudonym_key(s, None, NOW)
        assert made == await erasure.pseudonym_key(s, None, NOW + timedelta(days=1))


async def test_an_erasure_row_keeps_nothing_once_it_is_given_up(db: TestDatabase) -> None:
    async with db.session() as s:
        row_id = await repo.enqueue(
            s,
            room_id=HDEV_ROOM,
            kind="kick",
            payload={"user_id": ANNA},
            tag="erasure",
            now=NOW,
        )
        await repo.mark_attempt(s, row_id, error=f"{ANNA} is not here", not_before=None)
        kept = await s.get(OutboxMessage, row_id, populate_existing=True)
        assert kept is not None and kept.payload == {"user_id": ANNA}
        await repo.mark_attempt(
            s, row_id, error=f"{ANNA} is not here", not_before=None, failed=True, now=NOW
        )
        gone = await s.get(OutboxMessage, row_id, populate_existing=True)
    assert gone is not None and gone.payload == {} and gone.last_error is None


async def test_a_shared_room_they_are_in_never_looks_like_a_direct_chat_afterwards(
    world: World,
) -> None:
    async with world.db.session() as s:
        members = {BOT: "join", ANNA: "join", BEN: "join"}
        await rooms.load_member_list(s, OTHER_ROOM, members, world.now)
        await rooms.load_member_list(s, HDEV_ROOM, members, world.now)

    done = await forget(world)

    async with world.db.read() as s:
        assert await rooms.present_members(s, OTHER_ROOM) is None  # read again when needed
        assert await rooms.present_members(s, HDEV_ROOM) == {BOT, BEN}  # she is taken out
    assert (HDEV_ROOM, ANNA) in {(s_.room_id, s_.user) for s_ in done.of_kind("kick")}


def test_a_name_is_found_inside_a_queued_file_wherever_it_stands() -> None:
    for before in ("", "x", "xy", "xyz"):
        data = f"user,org\n{before}{ANNA},{ORG}\n".encode()
        payload = {"filename": "members.csv", "data_b64": base64.b64encode(data).decode()}
        assert erasure.names_any(payload, [ANNA]) and erasure.names_any(payload, [ORG])
        assert not erasure.names_any(payload, [BEN])


async def test_a_stored_copy_naming_them_in_letters_beyond_ascii_is_erased(world: World) -> None:
    """A message to others that names only their display name, with letters beyond ASCII:
    its stored copy is found on both databases (PostgreSQL shows such letters as they are
    in a JSON value's text, not escaped) and erased."""
    world.now = NOW
    member = {"membership": "join", "displayname": DISPLAY_NAME}
    event = {"type": "m.room.member", "state_key": ANNA, "content": member}
    await world.hook("member", ANNA, event, HDEV_ROOM)
    async with world.db.session() as s:
        row_id = await repo.enqueue(
            s,
            room_id=HDEV_ROOM,
            payload={"msgtype": "m.notice", "body": f"Thanks to {DISPLAY_NAME} for the notes"},
            now=world.now,
        )
        await repo.mark_sent_many(s, [(row_id, "$thanks", world.now)])

    await forget(world)

    async with world.db.read() as s:
        copy = await s.get(OutboxMessage, row_id)
    assert copy is not None and DISPLAY_NAME not in json.dumps(copy.payload, ensure_ascii=False)
