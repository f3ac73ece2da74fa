"""Announcements and the member and intel exports, run the way the processor runs them, on
both databases: who may announce where, what the room sees, the audit trail, the CSV files."""

from __future__ import annotations

import base64
import csv
import io
from datetime import UTC, datetime

from sqlalchemy import select

from commands import announce
from commands.membership.lists import MEMBER_COLUMNS
from storage import intel as intel_store
from storage import membership as membership_store
from storage.models import AuditEntry
from tests.support.cast import (
    ADMIN,
    ANNA,
    HDEV_ROOM,
    MGMT,
    MOD,
    MOD_SOLAR,
    SOFIA,
    SOLAR_ROOM,
    STRANGER,
)
from tests.support.world import Sent, World


def posted_in(sent: list[Sent], room: str) -> list[Sent]:
    """Messages the bot posted in ``room`` that are not replies to a command."""
    return [
        m
        for m in sent
        if m.room_id == room and m.kind == "message" and "m.relates_to" not in m.payload
    ]


async def audit_entries(world: World) -> list[AuditEntry]:
    async with world.db.session() as s:
        rows = await s.scalars(
            select(AuditEntry).where(AuditEntry.action == "announce").order_by(AuditEntry.id)
        )
        return list(rows.all())


def csv_rows(sent: list[Sent]) -> list[dict[str, str]]:
    file = next(m for m in sent if m.kind == "file")
    text = base64.b64decode(file.payload["data_b64"]).decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text)))


async def test_a_moderator_announces_to_their_cop_room_and_is_told_where_it_went(
    world: World,
) -> None:
    sent = await world.run(MOD, "!announce HDEV The dialogue moves to Thursday 10:00.", MGMT)

    (notice,) = posted_in(sent, HDEV_ROOM)
    assert notice.payload["msgtype"] == "m.notice"
    assert "Announcement from the HDEV moderators" in notice.body
    assert "The dialogue moves to Thursday 10:00." in notice.body
    assert not posted_in(sent, SOLAR_ROOM)
    reply = next(m for m in sent if m.room_id == MGMT)
    assert "posted your announcement in the HDEV room" in reply.body
    (entry,) = await audit_entries(world)
    assert (entry.actor, entry.cop_code, entry.target) == (MOD, "HDEV", HDEV_ROOM)
    assert entry.detail == "The dialogue moves to Thursday 10:00."


async def test_an_announcement_works_from_a_direct_message_but_not_from_a_cop_room(
    world: World,
) -> None:
    assert "posted your announcement" in await world.reply(MOD, "!announce HDEV Hello")
    assert "works only in" in await world.reply(MOD, "!announce HDEV Hello", HDEV_ROOM)


async def test_members_and_moderators_of_another_cop_may_not_announce(world: World) -> None:
    assert "only for moderators" in await world.reply(ANNA, "!announce HDEV Hello")
    assert "only for moderators" in await world.reply(STRANGER, "!announce HDEV Hello")
    sent = await world.run(MOD_SOLAR, "!announce HDEV Hello", MGMT)
    assert "only moderators of HDEV" in next(m for m in sent if m.room_id == MGMT).body
    assert not posted_in(sent, HDEV_ROOM)
    assert await audit_entries(world) == []


async def test_only_the_secretariat_may_announce_to_every_cop(world: World) -> None:
    refused = await world.run(MOD, "!announce all Hello everyone", MGMT)
    assert "only the Secretariat can announce to every CoP" in refused[-1].body
    assert not posted_in(refused, HDEV_ROOM) and not posted_in(refused, SOLAR_ROOM)

    sent = await world.run(ADMIN, "!announce ALL Offices closed on 1 May", MGMT)
    for room in (HDEV_ROOM, SOLAR_ROOM):
        (notice,) = posted_in(sent, room)
        assert "Announcement from the Secretariat" in notice.body
        assert "Offices closed on 1 May" in notice.body
    assert "in the rooms of HDEV and SOLAR" in sent[-1].body
    assert [e.cop_code for e in await audit_entries(world)] == ["HDEV", "SOLAR"]


async def test_announcement_text_is_escaped_and_cannot_ping_the_room(world: World) -> None:
    sent = await world.run(MOD, '!announce HDEV @room <b>read</b> "this" & <a href=x>y</a>')

    (notice,) = posted_in(sent, HDEV_ROOM)
    html = notice.payload["formatted_body"]
    assert "<b>read</b>" not in html and "<a href" not in html
    assert "&lt;b&gt;read&lt;/b&gt; &quot;this&quot; &amp;" in html
    assert "@room" not in notice.body and "@room" not in html
    assert notice.payload["m.mentions"] == {}


async def test_bad_announcements_get_a_plain_answer(world: World) -> None:
    assert "Usage: !announce <COP|all> <text>" in await world.reply(MOD, "!announce HDEV")
    assert "no CoP with the code NOPE" in await world.reply(MOD, "!announce NOPE Hi")
    assert "not a CoP code such as HDEV, or all" in await world.reply(MOD, "!announce 1 Hi")
    too_long = "x" * (announce.MAX_TEXT + 1)
    assert "the limit is 4000" in await world.reply(MOD, f"!announce HDEV {too_long}")


async def test_moderators_export_members_with_profiles_and_statuses(world: World) -> None:
    async with world.db.session() as s:
        await membership_store.file_application(
            s,
            user_id=STRANGER,
            cop_code="HDEV",
            message="",
            flagged=False,
            flag_reason="",
            now=datetime(2026, 3, 1, 8, 0, tzinfo=UTC),
        )

    sent = await world.run(MOD, "!export members HDEV", MGMT)

    rows = csv_rows(sent)
    assert list(rows[0]) == MEMBER_COLUMNS
    by_user = {r["user"]: r for r in rows}
    assert set(by_user) == {"@anna:test", "@ben:test", "@carl:test", STRANGER}
    anna = by_user[ANNA]
    assert (anna["cop"], anna["organisation"], anna["country"], anna["type"]) == (
        "HDEV",
        "City of Oslo",
        "NO",
        "local-authority",
    )
    assert anna["status"] == "member" and anna["applied_at_utc"].endswith("Z")
    stranger = by_user[STRANGER]
    assert stranger["status"] == "applied" and stranger["organisation"] == ""
    assert stranger["applied_at_utc"] == "2026-03-01T08:00:00Z"
    assert stranger["decided_at_utc"] == ""
    assert SOFIA not in by_user


async def test_member_export_is_refused_to_members_and_to_moderators_of_another_cop(
    world: World,
) -> None:
    assert "only for moderators" in await world.reply(ANNA, "!export members HDEV")
    sent = await world.run(MOD_SOLAR, "!export members HDEV", MGMT)
    assert not [m for m in sent if m.kind == "file"]
    assert "only moderators of HDEV" in sent[-1].body
    own = csv_rows(await world.run(MOD_SOLAR, "!export members", MGMT))
    assert [r["user"] for r in own] == [SOFIA]


async def test_intel_export_lists_live_items_with_tags_and_links(world: World) -> None:
    async with world.db.session() as s:
        kept = await intel_store.add_item(
            s,
            cop_code="HDEV",
            author=ANNA,
            title="=Oslo tenders 40 e-buses",
            tags=["ebus", "tenders"],
            urls=["https://example.org/a", "https://example.org/b"],
            created_at=datetime(2026, 3, 1, 12, 30, tzinfo=UTC),
        )
        gone = await intel_store.add_item(
            s, cop_code="HDEV", author=ANNA, title="Old", created_at=world.now
        )
        await intel_store.add_item(
            s, cop_code="SOLAR", author=SOFIA, title="Panels", created_at=world.now
        )
        await intel_store.remove_item(s, gone.id, by=MOD, now=world.now)

    rows = csv_rows(await world.run(MOD, "!export intel HDEV"))

    assert [list(r.values()) for r in rows] == [
        [
            f"I{kept.id}",
            "HDEV",
            "'=Oslo tenders 40 e-buses",  # a spreadsheet would run it as a formula
            "#ebus #tenders",
            "https://example.org/a https://example.org/b",
            ANNA,
            "2026-03-01T12:30:00Z",
        ]
    ]
    assert len(csv_rows(await world.run(ADMIN, "!export intel", MGMT))) == 2
    assert "only for moderators" in await world.reply(ANNA, "!export intel HDEV")
