"""``!mydata`` and ``!privacy``: the export holds every kind of data about the caller and
nothing about anyone else, nothing private ever lands in a shared room, and the notice says
what the configuration says. (``!forgetme``: ``test_erasure.py``.)"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

from storage import claims as claims_store
from storage import events as events_store
from storage import intel as intel_store
from storage import membership as ms
from storage import repo
from tests.support.cast import ADMIN, ANNA, HDEV_ROOM, MGMT, MOD, MOD_SOLAR, SOFIA
from tests.support.database import TestDatabase
from tests.support.world import Result, World


async def seed_everything(world: World) -> None:
    """The same kinds of data for the caller (ANNA) and for someone else (SOFIA)."""
    async with world.db.session() as s:
        for user, cop, mod, words in [
            (ANNA, "HDEV", MOD, "oslo"),
            (SOFIA, "SOLAR", MOD_SOLAR, "paris"),
        ]:
            other_cop = "SOLAR" if cop == "HDEV" else "HDEV"
            await ms.file_application(
                s,
                user_id=user,
                cop_code=other_cop,
                message=f"application-{words}",
                flagged=False,
                flag_reason="",
                now=world.now,
            )
            await ms.add_moderator(s, user, cop, now=world.now)
            await ms.start_dialogue(
                s,
                user_id=user,
                cop_code=other_cop,
                message=f"dialogue-{words}",
                asked="org",
                now=world.now,
            )
            event = await events_store.create_event(
                s,
                cop_code=cop,
                kind="in-person-meeting",
                title=f"event-{words}",
                starts_at=world.now + timedelta(days=1),
                ends_at=world.now + timedelta(days=1, hours=2),
                timezone="Europe/Brussels",
                created_by=mod,
                now=world.now,
            )
            locked = await events_store.lock_event(s, event.id)
            assert locked is not None
            await events_store.set_rsvp(s, locked, user, "yes", world.now)
            await events_store.mark_attended(s, event.id, user, mod, world.now)
            guest_event = await events_store.create_event(
                s,
                cop_code=other_cop,
                kind="webinar",
                title=f"guest-event-{words}",
                starts_at=world.now + timedelta(days=2),
                ends_at=world.now + timedelta(days=2, hours=1),
                timezone="Europe/Brussels",
                created_by=ADMIN,
                now=world.now,
            )
            await events_store.add_guest(s, guest_event.id, user, ADMIN, now=world.now)
            await events_store.calendar_token(s, user, now=world.now)
            await intel_store.add_item(
                s,
                cop_code=cop,
                author=user,
                title=f"intel-{words}",
                note="a note",
                tags=["bus"],
                created_at=world.now,
            )
            claim = await claims_store.create_claim(
                s, user_id=user, event_id=event.id, cop_code=cop, days=1, now=world.now
            )
            await claims_store.add_line(
                s,
                claim,
                category="rail",
                amount=Decimal("120.50"),
                currency="EUR",
                rate=Decimal("1"),
                eur=Decimal("120.50"),
                quantity=None,
                distance_km=None,
                note=f"train-{words}",
                now=world.now,
            )
            await repo.audit(
                s, actor=mod, action="approve", cop_code=cop, target=user, now=world.now
            )
            await repo.audit(
                s,
                actor=mod,
                action="claim.approve",
                cop_code=cop,
                target=f"{claim.code} {user}",
                now=world.now,
            )
            await repo.audit(
                s, actor=user, action="intel.remove", cop_code=cop, target="I99", now=world.now
            )
        await s.commit()


def exported(result: Result) -> dict[str, Any]:
    (file,) = result.of_kind("file")
    assert file.payload["mimetype"] == "application/json"
    data: dict[str, Any] = json.loads(base64.b64decode(file.payload["data_b64"]))
    return data


async def test_the_export_holds_every_kind_of_data_about_the_caller(world: World) -> None:
    await seed_everything(world)

    result = await world.send(ANNA, "mydata")

    assert result.outcome == "ok"
    data = exported(result)
    assert data["user_id"] == ANNA
    assert data["profile"]["organisation"] == "City of Oslo"
    assert data["profile"]["country"] == "NO"
    assert {(m["cop"], m["status"]) for m in data["memberships"]} == {
        ("HDEV", "member"),
        ("SOLAR", "applied"),
    }
    assert [(r["cop"], r["role"]) for r in data["roles"]] == [("HDEV", "moderator")]
    assert data["join_dialogue"]["message"] == "dialogue-oslo"
    events = data["events"]
    assert [(a["title"], a["answer"]) for a in events["answers"]] == [("event-oslo", "yes")]
    assert [a["title"] for a in events["attended"]] == ["event-oslo"]
    assert [g["title"] for g in events["guest_invitations"]] == ["guest-event-oslo"]
    assert events["calendar_link"]["exists"] is True
    assert [i["title"] for i in data["intel_items"]] == ["intel-oslo"]
    assert data["claims"][0]["lines"][0]["note"] == "train-oslo"
    assert data["claims"][0]["lines"][0]["amount"] == "120.50"
    assert {e["action"] for e in data["audit_log"]} == {"approve", "claim.approve", "intel.remove"}
    # The summary comes with the file, in the same direct chat.
    assert "everything I store about you" in result.reply
    assert "City of Oslo" in result.reply


async def test_the_export_holds_nothing_about_anyone_else_nor_the_calendar_secret(
    world: World,
) -> None:
    await seed_everything(world)
    async with world.db.session() as s:
        token = await events_store.calendar_token(s, ANNA, now=world.now)

    text = json.dumps(exported(await world.send(ANNA, "mydata")))

    for foreign in [
        SOFIA,
        "Île-de-France",
        "paris",  # every title, note and message of the other person contains it
    ]:
        assert foreign not in text
    assert token not in text


async def test_someone_the_bot_knows_nothing_about_gets_an_empty_export(world: World) -> None:

    result = await world.send("@stranger:test", "mydata")

    data = exported(result)
    assert data["profile"] is None
    assert data["memberships"] == data["claims"] == data["audit_log"] == []
    assert data["events"]["calendar_link"]["exists"] is False
    assert "Profile: none" in result.reply


async def test_asked_in_a_cop_room_the_data_goes_to_the_direct_chat_only(world: World) -> None:
    await seed_everything(world)

    result = await world.send(ANNA, "mydata", HDEV_ROOM)

    assert result.reply == "I have sent it to you in a direct message."
    in_room = result.to(HDEV_ROOM)
    assert [s.kind for s in in_room] == ["message"]
    assert "City of Oslo" not in str(in_room[0].payload)
    private = [s for s in result.sent if s.room_id != HDEV_ROOM]
    assert {s.kind for s in private} == {"file", "message"}
    assert all(s.to_user == ANNA for s in private)
    assert exported(result)["profile"]["organisation"] == "City of Oslo"


async def test_the_export_lists_their_stored_commands_and_the_messages_sent_to_them(
    world: World,
) -> None:
    await world.send(ANNA, "profile")
    await world.send(ANNA, "cops")

    data = exported(await world.send(ANNA, "mydata"))

    assert [e["text"] for e in data["stored_events"]] == ["!profile", "!cops", "!mydata"]
    assert [m["kind"] for m in data["messages_to_you"]] == ["message", "message"]
    assert all(m["copy_kept"] for m in data["messages_to_you"])
    assert data["set_aside_events"] == []


async def test_the_privacy_notice_names_the_controller_and_the_configured_periods(
    db: TestDatabase,
) -> None:
    world = await World(
        db,
        privacy={
            "controller": "The BBWT Secretariat, dpo@bbwt.example",
            "audit_retention": "3y",
        },
    ).seed()

    for room in (HDEV_ROOM, MGMT, None):
        result = await world.send("@stranger:test", "privacy", room)
        assert result.outcome == "ok"
    text = result.reply
    assert "Who is responsible: The BBWT Secretariat, dpo@bbwt.example" in text
    assert "The text of your commands: 30 days after I have handled them." in text
    assert "The log: 3 years." in text
    assert "Travel claims: 5 years after payment, rejection or withdrawal" in text
    assert "!mydata sends you a copy" in text and "!forgetme erases your data" in text


async def test_the_join_questions_point_to_the_privacy_notice(world: World) -> None:
    result = await world.send("@applicant:test", "join HDEV")

    assert "How I handle your data: !privacy." in result.text
