"""Every registered command, asked by every kind of person in every kind of place, is
refused exactly when its declaration says so, before its handler runs.

The handlers are replaced by spies, so nothing happens but the registry's checks; the
expected answer is worked out here from the declaration alone (role, places, where the CoP
comes from). A new command is walked too, and must be given sample arguments below.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from commands.errors import CommandError, PermissionDenied
from commands.registry import Command, Place
from commands.roles import Role, Roles
from storage import claims as claims_store
from storage.models import OutboxMessage
from tests.support.cast import (
    ADMIN,
    ANNA,
    APPLICANT,
    CALLERS,
    GUEST,
    HDEV_ROOM,
    MGMT,
    OTHER_ROOM,
    SOLAR_ROOM,
    dm_room,
    in_days,
)
from tests.support.world import World, claimable_event

PLACES = {
    "its CoP's room": HDEV_ROOM,
    "another CoP's room": SOLAR_ROOM,
    "a direct message": "dm",
    "the management room": MGMT,
    "another room": OTHER_ROOM,
}
# E1 is an upcoming HDEV event, E2 a past one Anna attended; I1 is Anna's HDEV item and
# C1 her claim for E2. Every command is asked about HDEV.
SAMPLES = {
    "help": "",
    "cops": "",
    "profile": "",
    "profile set": "country=NO",
    "join": "HDEV",
    "cancel": "",
    "leave": "HDEV",
    "applications": "HDEV",
    "approve": f"{APPLICANT} HDEV",
    "reject": f"{APPLICANT} HDEV Not a public buyer.",
    "remove": f"{ANNA} HDEV",
    "mod add": f"{APPLICANT} HDEV",
    "mod remove": f"{APPLICANT} HDEV",
    "members": "HDEV",
    "audit": "",
    "event create": f'HDEV online-meeting {in_days(9)} 10:00 1h "Buses"',
    "event edit": "E1 title=Trucks",
    "event cancel": "E1",
    "event": "E1",
    "events": "HDEV",
    "rsvp": "E1 yes",
    "attendees": "E1",
    "attended": f"E1 {ANNA}",
    "guest invite": f"{GUEST} E1",
    "calendar": "HDEV",
    "calendar reset": "",
    "intel share": "Bus tender",
    "intel list": "cop=HDEV",
    "intel search": "bus cop=HDEV",
    "intel show": "I1",
    "intel remove": "I1",
    "digest preview": "HDEV",
    "digest send": "HDEV",
    "claim new": "E2",
    "claim add": "C1 other 5",
    "claim attach": "C1",
    "claim remove": "C1 1",
    "claim receipt": "C1",
    "claim show": "C1",
    "claims": "",
    "claim withdraw": "C1",
    "claim submit": "C1",
    "claims pending": "HDEV",
    "claim approve": "C1",
    "claim reject": "C1 no",
    "claim paid": "C1",
    "announce": "HDEV Hello",
    "export": "members HDEV",
    "mydata": "",
    "forgetme": "",
    "forgetme confirm": "",
    "privacy": "",
}
THINGS_OWNED_BY_ANNA = {"I", "C"}


def expected(command: Command, roles: Roles, room: str) -> str:
    """What the declaration says: ``run``, or why not (``role``, ``place``, ``hidden``)."""
    if roles.highest() < command.gate:
        return "role"
    source = command.cop
    cop_room = room in (HDEV_ROOM, SOLAR_ROOM)
    if cop_room:
        own = source is None or source.room or room == HDEV_ROOM
        here = Place.COP_ROOM if own else Place.OTHER_COP_ROOM
        allowed_here = bool(command.places & (Place.COP_ROOM | Place.OTHER_COP_ROOM))
    else:
        here = {MGMT: Place.MANAGEMENT, OTHER_ROOM: Place.OTHER}.get(room, Place.DM)
        allowed_here = here in command.places
    if not allowed_here and not command.private:
        return "place"
    if source is None:
        return "run"
    cop = "SOLAR" if source.room and room == SOLAR_ROOM else "HDEV"
    role = roles.in_cop(cop)
    owner = roles.user == ANNA and source.kind is not None
    owner = owner and source.kind.letter in THINGS_OWNED_BY_ANNA if source.kind else False
    if source.kind is not None and role < source.kind.seen_from and not owner:
        return "hidden"
    enough = role >= command.role or (command.any_cop and roles.highest() >= command.role)
    if not enough and not (command.owner and owner):
        return "role"
    redirected = command.private and not allowed_here
    if here is Place.OTHER_COP_ROOM and not redirected:
        return "run" if Place.OTHER_COP_ROOM in command.places else "place"
    return "run"


@pytest.fixture
async def prepared(world: World) -> World:
    await world.event(kind="online-meeting", start=world.now + timedelta(days=7), hours=1)
    past = await claimable_event(world, start=world.now - timedelta(days=3))
    async with world.db.session() as s:
        await claims_store.create_claim(
            s, user_id=ANNA, event_id=past, cop_code="HDEV", days=2, now=world.now
        )
    await world.share("Bus tender")
    for user in CALLERS.values():
        await world.direct_chat(user)
    return world


async def test_every_command_has_sample_arguments(world: World) -> None:
    assert sorted(world.registry.commands) == sorted(SAMPLES)


async def test_each_command_is_refused_exactly_where_and_to_whom_its_declaration_says(
    prepared: World,
) -> None:
    world, registry = prepared, prepared.registry
    reached: list[str] = []

    def spy(name: str) -> Any:
        async def handler(ctx: Any, **values: Any) -> None:
            reached.append(name)

        return handler

    for name, command in list(registry.commands.items()):
        registry.commands[name] = replace(command, handler=spy(name))
    wrong: list[str] = []
    async with world.db.session() as session:
        roles = {
            label: await Roles.load(session, world.settings, user)
            for label, user in CALLERS.items()
        }
        for name, command in registry.commands.items():
            for label, user in CALLERS.items():
                for where, room in PLACES.items():
                    room_id = dm_room(user) if room == "dm" else room
                    ctx = world.context(session, user, room_id)
                    reached.clear()
                    refusal: CommandError | None = None
                    try:
                        async with session.begin_nested():
                            await registry.dispatch(ctx, f"{name} {SAMPLES[name]}")
                    except CommandError as exc:
                        refusal = exc
                    if ctx.redirected and not reached:  # the refusal went to a DM
                        refusal = await _refusal_sent(session)
                    want = expected(command, roles[label], room_id)
                    got = "run" if reached == [name] else _why(refusal)
                    if got != want:
                        wrong.append(f"!{name} by {label} in {where}: {got}, not {want}")
    assert wrong == [], "\n".join(wrong)


async def _refusal_sent(session: Any) -> CommandError:
    """The last message queued, as the refusal it was (private commands answer in a DM)."""
    row = await session.scalar(select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(1))
    text = str(row.payload.get("body", "")) if row is not None else ""
    denied = "only" in text and "find" not in text
    return PermissionDenied(text) if denied else CommandError(text)


def _why(refusal: CommandError | None) -> str:
    if refusal is None:
        return "nothing"
    text = refusal.message.plain
    if isinstance(refusal, PermissionDenied):
        return "place" if "works only in" in text or "I will not show" in text else "role"
    return "hidden" if "find" in text else f"refused: {text[:80]}"


async def test_attendees_refuses_in_another_cops_room_like_members(world: World) -> None:
    event = await world.event(kind="online-meeting", start=world.now + timedelta(days=7))
    attendees = await world.send(ADMIN, f"attendees E{event}", SOLAR_ROOM)
    members = await world.send(ADMIN, "members HDEV", SOLAR_ROOM)
    for result in (attendees, members):
        assert result.outcome == "denied"
        assert "This is the SOLAR room: I will not show HDEV's" in result.reply
    own_room = await world.send(ADMIN, f"attendees E{event}", HDEV_ROOM)
    assert own_room.outcome == "ok" and "Answers to" in own_room.reply


async def test_help_says_who_and_where_from_the_declaration(world: World) -> None:
    attendees = world.registry.get("attendees")
    assert attendees is not None
    assert attendees.rule() == (
        "For moderators of the event's CoP, in any room but another CoP's, "
        "or a direct message with me."
    )
    assert Role.MODERATOR is attendees.role
