"""Talking to the bot as people do, on both databases: commands without the ``!`` in a
direct chat, one pointer to ``help`` for plain text, the join dialogue's answers, and
edited commands (acted on once: the first version that worked counts)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select

from storage import events as events_store
from storage import membership as ms
from storage import repo
from storage.models import InboundEvent
from tests.support.cast import ANNA, APPLICANT, BEN, HDEV_ROOM, MGMT, OTHER_ROOM
from tests.support.world import Result, World


async def upcoming(world: World) -> int:
    return await world.event(kind="online-meeting", start=world.now + timedelta(days=7), hours=2)


async def answer_of(world: World, event: int, user: str = ANNA) -> str | None:
    async with world.db.read() as s:
        return await events_store.rsvp_of(s, event, user)


def threaded_to(result: Result, event_id: str) -> bool:
    """Is the (first) answer a reply to the message with this event id?"""
    relates = result.replies[0].payload.get("m.relates_to") or {}
    return bool(relates.get("m.in_reply_to", {}).get("event_id") == event_id)


# --- commands without the prefix ----------------------------------------------------------


async def test_in_a_direct_chat_a_command_works_without_the_prefix(world: World) -> None:
    event = await upcoming(world)

    help_ = await world.say(ANNA, "help")
    assert help_.outcome == "ok" and "!cops" in help_.reply

    rsvp = await world.say(ANNA, f"Rsvp E{event} yes")  # as a phone capitalises it
    assert rsvp.outcome == "ok" and "You're going" in rsvp.reply
    assert await answer_of(world, event) == "yes"

    shown = await world.say(ANNA, "claim show C1")
    assert shown.outcome != "ok" and "C1" in shown.reply  # a real answer, not the pointer
    assert "only understand commands" not in shown.reply

    wrong = await world.say(ANNA, "rsvp E99 yes")
    assert "can't find event E99" in wrong.reply


async def test_in_cop_rooms_and_group_chats_plain_text_stays_ignored(world: World) -> None:
    for room in (HDEV_ROOM, MGMT, OTHER_ROOM):
        result = await world.say(ANNA, "help", room)
        assert result.outcome == "ignored" and result.sent == [], room
    async with world.db.read() as s:
        rows = (await s.scalars(select(InboundEvent).where(InboundEvent.kind == "text"))).all()
    # What was said among people is not kept, not even for the retention period.
    assert rows and all(r.content == {} and r.sender == "" for r in rows)


async def test_plain_text_gets_one_pointer_to_help_a_day(world: World) -> None:
    first = await world.say(ANNA, "Hello, can I ask you something?")
    assert first.outcome == "pointer"
    assert "only understand commands" in first.reply and "help" in first.reply
    assert threaded_to(first, first.event_id)

    again = await world.say(ANNA, "hello??")
    assert again.outcome == "quiet" and again.sent == []

    restarted = World(world.db)  # another process, or after a restart: same answer
    assert (await restarted.say(ANNA, "thanks")).sent == []
    assert (await world.say(BEN, "hi")).outcome == "pointer"  # per person

    world.now += timedelta(hours=25)
    assert (await world.say(ANNA, "good morning")).outcome == "pointer"


async def test_a_command_still_answers_after_the_pointer(world: World) -> None:
    await world.say(ANNA, "hi")
    assert "!cops" in (await world.say(ANNA, "help")).reply


async def test_old_chatter_from_while_the_bot_was_away_gets_no_pointer(world: World) -> None:
    late = await world.say(ANNA, "are you there?", age=timedelta(days=2))
    assert late.outcome == "ignored" and late.sent == []


# --- the join dialogue ---------------------------------------------------------------------


async def test_dialogue_answers_are_answers_not_commands_nor_chatter(world: World) -> None:
    await world.say(APPLICANT, "join HDEV")  # started without the prefix, too
    # An organisation whose name starts with a command's name is still an answer.
    org = await world.say(APPLICANT, "Events Bureau of Tallinn")
    assert org.outcome == "answer" and "In which country" in org.reply
    country = await world.say(APPLICANT, "EE")
    assert country.outcome == "answer" and "What kind of organisation" in country.reply
    done = await world.say(APPLICANT, "1")
    assert "Thank you! Your application to HDEV" in done.reply
    async with world.db.read() as s:
        person = await ms.get_person(s, APPLICANT)
        assert person is not None and person.org == "Events Bureau of Tallinn"

    after = await world.say(APPLICANT, "thank you")  # no question open: the pointer
    assert after.outcome == "pointer"


async def test_an_invalid_dialogue_answer_is_asked_again_without_a_pointer(world: World) -> None:
    await world.send(APPLICANT, "join HDEV")
    await world.say(APPLICANT, "Tallinn City Government")
    wrong = await world.say(APPLICANT, "Narnia")
    assert wrong.outcome == "answer" and "as a country of the EU or the EEA" in wrong.reply
    assert "only understand commands" not in wrong.text


async def test_help_without_the_prefix_in_the_dialogue_is_no_organisation_name(
    world: World,
) -> None:
    await world.send(APPLICANT, "join HDEV")
    asked = await world.say(APPLICANT, "help")
    assert asked.outcome == "answer"
    assert "middle of your application to HDEV" in asked.reply
    assert "full name of your organisation" in asked.reply and "!help" in asked.reply
    async with world.db.read() as s:
        person = await ms.get_person(s, APPLICANT)
        assert person is None or person.org is None
    carried_on = await world.say(APPLICANT, "Tallinn City Government")
    assert "In which country" in carried_on.reply


# --- edited commands -------------------------------------------------------------------------


async def test_an_edit_of_a_command_that_failed_is_carried_out(world: World) -> None:
    event = await upcoming(world)
    typo = await world.send(ANNA, f"!rsvp E{event} yse", HDEV_ROOM)
    assert typo.outcome == "usage"

    fixed = await world.edit(ANNA, typo, f"!rsvp E{event} yes")

    assert fixed.outcome == "ok" and "You're going" in fixed.text
    assert await answer_of(world, event) == "yes"


async def test_an_edit_of_a_command_that_worked_is_not_carried_out(world: World) -> None:
    event = await upcoming(world)
    said = await world.send(ANNA, f"!rsvp E{event} yes")
    assert said.outcome == "ok"

    changed = await world.edit(ANNA, said, f"!rsvp E{event} no")

    assert changed.outcome == "acted-before"
    assert "I acted on the first version" in changed.reply
    assert f"!rsvp E{event} no" in changed.reply  # what to send instead
    assert threaded_to(changed, said.event_id)  # under the message they edited
    assert await answer_of(world, event) == "yes"


async def test_a_command_is_acted_on_once_however_often_it_is_edited(world: World) -> None:
    event = await upcoming(world)
    typo = await world.send(ANNA, f"!rsvp E{event} yse")
    still = await world.edit(ANNA, typo, f"!rsvp E{event} yess")
    assert still.outcome == "usage"  # a failed edit: a later one may still work
    fixed = await world.edit(ANNA, typo, f"!rsvp E{event} maybe")
    assert fixed.outcome == "ok" and await answer_of(world, event) == "maybe"

    third = await world.edit(ANNA, typo, f"!rsvp E{event} no")
    assert third.outcome == "acted-before"
    assert "I acted on an earlier edit" in third.reply
    assert await answer_of(world, event) == "maybe"

    # The same edit event delivered again (a replayed sync) is not handled again.
    async with world.db.session() as s:
        assert None is await repo.add_inbound(
            s,
            event_id=fixed.event_id,
            room_id=fixed.room,
            sender=ANNA,
            origin_ts=world.now,
            content={},
            kind="edit",
            now=world.now,
        )
        row = await repo.find_inbound(s, fixed.event_id)
    assert row is not None and row.status == "done"
    before = await world.last_outbox_id()
    await world.processor.handle(row)
    assert await world.deliver(after=before) == []


async def test_edits_in_a_direct_chat_need_no_prefix_either(world: World) -> None:
    event = await upcoming(world)
    typo = await world.say(ANNA, "hepl")
    assert typo.outcome == "pointer"
    assert "!cops" in (await world.edit(ANNA, typo, "help")).reply

    wrong = await world.say(ANNA, f"rsvp E{event} yse")
    assert wrong.outcome == "usage"
    fixed = await world.edit(ANNA, wrong, f"rsvp E{event} yes")
    assert fixed.outcome == "ok" and await answer_of(world, event) == "yes"

    chatter = await world.edit(ANNA, typo, "never mind")  # an edit of an edit's message
    assert chatter.outcome == "acted-before"  # "help" was carried out


async def test_a_private_command_refused_in_its_direct_chat_counts_as_failed(
    world: World,
) -> None:
    """Asked in a CoP room, a claim command answers in a direct chat; refused there, it was
    not acted on, so its edit is."""
    typo = await world.send(ANNA, "!claims x", HDEV_ROOM)
    assert typo.outcome == "usage" and "Let's do this privately" in typo.here
    fixed = await world.edit(ANNA, typo, "!claims")
    assert fixed.outcome == "ok"


async def test_an_edit_of_someone_elses_message_or_an_answer_elsewhere_is_ignored(
    world: World,
) -> None:
    event = await upcoming(world)
    typo = await world.send(ANNA, f"!rsvp E{event} yse", HDEV_ROOM)
    forged = await world.edit(BEN, typo, f"!rsvp E{event} yes", HDEV_ROOM)
    assert forged.outcome == "ignored" and forged.sent == []
    assert await answer_of(world, event, BEN) is None

    talk = await world.edit(ANNA, typo, "sorry, wrong room", HDEV_ROOM)
    assert talk.outcome == "ignored" and talk.sent == []


async def test_an_edit_that_makes_a_message_a_command_is_carried_out(world: World) -> None:
    # "rsvp E1 yes" typed in a CoP room without the "!" was never stored; the edit adds it.
    event = await upcoming(world)
    fixed = await world.edit(ANNA, "$never-stored", f"!rsvp E{event} yes", HDEV_ROOM)
    assert fixed.outcome == "ok" and await answer_of(world, event) == "yes"
    again = await world.edit(ANNA, "$never-stored", f"!rsvp E{event} no", HDEV_ROOM)
    assert again.outcome == "acted-before"


async def store_late(
    world: World, event_id: str, room: str, body: str, kind: str = "command"
) -> InboundEvent:
    """A message whose room key came late: stored only now, under its own event id."""
    row = await world.store_message(event_id, ANNA, room, body, kind)
    assert row is not None
    return row


async def test_a_message_is_not_carried_out_after_its_edit_was(world: World) -> None:
    """The first version waited for its room key while the edit could be read: the edit
    takes its place, and the first version is not acted on when it comes."""
    event = await upcoming(world)
    room = await world.direct_chat(ANNA)
    waiting = await store_late(world, "$waiting", room, f"!rsvp E{event} no")
    fixed = await world.edit(ANNA, "$waiting", f"!rsvp E{event} yes", room)
    assert fixed.outcome == "ok"
    async with world.db.read() as s:
        row = await repo.find_inbound(s, waiting.event_id)
    assert row is not None and row.status == "done" and row.outcome == "superseded"

    # Edited before the message itself could be read, with and without the prefix: when
    # the message comes, it is passed over in silence.
    for event_id, edited, late, kind in [
        ("$late", f"!rsvp E{event} maybe", f"!rsvp E{event} no", "command"),
        ("$late-text", f"rsvp E{event} yes", f"rsvp E{event} no", "text"),
    ]:
        await world.edit(ANNA, event_id, edited, room)  # the message is not stored yet
        row = await store_late(world, event_id, room, late, kind)
        before = await world.last_outbox_id()
        await world.processor.handle(row)
        assert await world.deliver(after=before) == []
        async with world.db.read() as s:
            found = await repo.find_inbound(s, event_id)
        assert found is not None and found.outcome == "superseded"
        assert await answer_of(world, event) == edited.split()[-1]


async def test_an_edited_reply_command_keeps_the_message_it_replies_to(world: World) -> None:
    """``!intel share`` replying to an uploaded file, first sent with a typo."""
    file_id = world.upload("$report", ANNA)
    typo = await world.send(ANNA, "!intel shar Bus prices 2026", HDEV_ROOM, reply_to=file_id)
    assert typo.outcome == "usage"
    fixed = await world.edit(ANNA, typo, "!intel share Bus prices 2026")
    assert fixed.outcome == "ok" and "ticket.pdf" in fixed.reply


async def test_two_edits_handled_at_once_by_two_processes_act_once(world: World) -> None:
    """Two processes (say, the moment a standby takes over) each pick up one edit of the same
    failed command: the message's row is locked while an edit is decided, so one edit is
    carried out and the other is told so."""
    event = await upcoming(world)
    typo = await world.send(ANNA, f"!rsvp E{event} yse", HDEV_ROOM)
    rows = []
    async with world.db.session() as s:
        for index, answer in enumerate(("yes", "maybe")):
            text = f"!rsvp E{event} {answer}"
            await repo.add_inbound(
                s,
                event_id=f"$edit{index}",
                room_id=HDEV_ROOM,
                sender=ANNA,
                origin_ts=world.now,
                content={
                    "type": "m.room.message",
                    "content": {
                        "msgtype": "m.text",
                        "body": f"* {text}",
                        "m.new_content": {"msgtype": "m.text", "body": text},
                        "m.relates_to": {"rel_type": "m.replace", "event_id": typo.event_id},
                    },
                },
                kind="edit",
                replaces=typo.event_id,
                now=world.now,
            )
            rows.append(await repo.find_inbound(s, f"$edit{index}"))
    other = World(world.db)
    await asyncio.gather(
        world.processor.handle(rows[0]),  # type: ignore[arg-type]
        other.processor.handle(rows[1]),  # type: ignore[arg-type]
    )
    for _ in range(3):  # SQLite may have turned one away as busy: it stays pending, tried again
        async with world.db.read() as s:
            pending = await repo.pending_inbound(s, room_id=HDEV_ROOM)
        for row in pending:
            await world.processor.handle(row)
    async with world.db.read() as s:
        outcomes = sorted(
            [(await repo.find_inbound(s, f"$edit{i}")).outcome for i in (0, 1)]  # type: ignore[union-attr]
        )
    assert outcomes == ["acted-before", "ok"]
    assert await answer_of(world, event) in ("yes", "maybe")
