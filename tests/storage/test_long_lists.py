"""No reply is too big to send: the longest realistic lists go out in parts, in order.

Matrix events are at most 64 KiB (an encrypted one a third larger than its text), so a long
answer is cut at line ends into several messages, none over the limit, and nothing is left
out. Both databases.
"""

from __future__ import annotations

import json
from datetime import timedelta

from commands.text import MAX_MESSAGE_BYTES, Message
from storage import membership as ms
from storage import repo
from tests.support.cast import ADMIN, MGMT, MOD, NOW
from tests.support.world import Sent, World

EVENT_LIMIT = 65_536


def assert_fits(parts: list[Sent]) -> None:
    for part in parts:
        text = len(part.body.encode()) + len(part.html.encode())
        assert text <= MAX_MESSAGE_BYTES
        # Even encrypted (base64 of the whole content) it stays inside one Matrix event.
        assert len(json.dumps(part.payload).encode()) * 4 / 3 < EVENT_LIMIT
        assert part.html.count("<ul>") == part.html.count("</ul>")


def in_order(parts: list[Sent], names: list[str]) -> bool:
    text = "\n".join(part.body for part in parts)
    positions = [text.find(name) for name in names]
    return -1 not in positions and positions == sorted(positions)


async def test_500_attendees_are_listed_in_parts_none_too_big(world: World) -> None:
    people = [f"@person{n:03d}:test" for n in range(500)]
    async with world.session() as s:
        for n, user in enumerate(people):
            org = f"Ayuntamiento de Villanueva de la Cañada {n}, Dirección de Contratación"
            await ms.save_profile(
                s, user, org=org, country="ES", authority_type="local-authority", now=NOW
            )
    event = await world.event(start=NOW + timedelta(days=10), rsvp=dict.fromkeys(people, "yes"))

    parts = (await world.send(MOD, f"!attendees E{event}", MGMT)).replies

    assert len(parts) > 1
    assert_fits(parts)
    assert in_order(parts, people)
    assert parts[0].is_reply and not any(part.is_reply for part in parts[1:])


async def test_300_applications_with_long_messages_all_reach_the_moderator(world: World) -> None:
    applicants = [f"@applicant{n:03d}:test" for n in range(300)]
    async with world.session() as s:
        for user in applicants:
            await ms.file_application(
                s,
                user_id=user,
                cop_code="HDEV",
                message="We buy electric buses for the whole region. " * 8,
                flagged=False,
                flag_reason="",
                now=NOW,
            )

    parts = (await world.send(MOD, "!applications HDEV", MGMT)).replies

    assert len(parts) > 1
    assert_fits(parts)
    assert in_order(parts, applicants)


async def test_200_audit_lines_with_long_reasons_fit(world: World) -> None:
    async with world.session() as s:
        for n in range(200):
            await repo.audit(
                s,
                actor=MOD,
                action="reject",
                cop_code="HDEV",
                target=f"@someone{n:03d}:test",
                detail=f"reason {n:03d}: "
                + "not a contracting authority under the directive " * 10,
                now=NOW,
            )

    parts = (await world.send(ADMIN, "!audit 200", MGMT)).replies

    assert_fits(parts)
    assert in_order(parts, [f"@someone{n:03d}:test" for n in range(199, -1, -1)])


def test_a_short_message_stays_one_message() -> None:
    message = Message("Hello ").bold("Anna").bullets(["one", "two"])

    assert message.split() == [message]


def test_letters_of_several_bytes_count_by_their_bytes() -> None:
    # Under the limit in characters, three times over it in bytes: cut by bytes.
    message = Message("Prices:").bullets(["€" * 40 for _ in range(20)])
    assert len(message.plain) + len(message.html) < 2000 < message.size()

    parts = message.split(limit=2000)

    assert len(parts) > 1 and all(part.size() <= 2000 for part in parts)
    assert "".join(p.plain + "\n" for p in parts).count("€" * 40) == 20


def test_a_long_list_is_cut_between_items_and_the_list_goes_on() -> None:
    message = Message("Everyone:").bullets([f"item {n}" for n in range(3000)]).text("The end.")

    parts = message.split(limit=2000)

    assert len(parts) > 5
    assert "".join(p.plain + "\n" for p in parts).count("• item") == 3000
    assert all(p.html.count("<ul>") == p.html.count("</ul>") for p in parts)
    assert parts[-1].plain.endswith("The end.")
