"""What people type about themselves: countries by name in their own language, a plain
answer for a country outside the EU and the EEA, a rejected profile that says nothing was
saved, and invisible characters that neither dodge the company check nor turn the bot's own
lines around. On SQLite and PostgreSQL."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy import text as sql

import storage
from storage import membership as ms
from tests.support.cast import APPLICANT, MGMT, MOD
from tests.support.world import World


def unclosed_bidi(text: str) -> list[str]:
    """Lines of ``text`` where a bidi override, embedding or isolate is left open (so the
    rest of the line would be displayed in another direction)."""
    bad = []
    for line in text.split("\n"):
        depth = 0
        for ch in line:
            if ch in "\u202a\u202b\u202d\u202e\u2066\u2067\u2068":
                depth += 1
            elif ch in "\u202c\u2069":
                depth -= 1
            if depth < 0:
                break
        if depth != 0:
            bad.append(line)
    return bad


# --- countries in the join dialogue --------------------------------------------------------


async def test_a_country_outside_the_eu_gets_a_plain_answer_not_the_list_again(
    world: World,
) -> None:
    await world.send(APPLICANT, "join HDEV")
    asked = await world.answer(APPLICANT, "Chicago Transit Authority")
    assert "1 — Austria (AT)" in asked.reply  # the question itself offers the list once

    for answer in ("US", "United States"):
        wrong = await world.answer(APPLICANT, answer)
        assert wrong.outcome == "answer"
        assert "established in the EU or the EEA can join" in wrong.reply
        assert "27 EU countries, Iceland, Liechtenstein and Norway" in wrong.reply
        assert "!cancel" in wrong.reply and "guests" in wrong.reply
        assert "Austria (AT)" not in wrong.reply and wrong.reply.count("\n") < 5

    stopped = await world.send(APPLICANT, "cancel")
    assert "Stopped: nothing was filed" in stopped.reply
    async with world.db.read() as s:
        person = await ms.get_person(s, APPLICANT)
        assert person is not None and person.country is None


async def test_a_country_in_its_own_language_carries_the_dialogue_on(world: World) -> None:
    await world.send(APPLICANT, "join HDEV")
    await world.answer(APPLICANT, "Δήμος Αθηναίων")

    typed = await world.answer(APPLICANT, "ελλάδα")
    assert "What kind of organisation" in typed.reply
    done = await world.answer(APPLICANT, "local authority")

    notice = done.to(MGMT)[0].body
    assert "Country: Greece (EL)" in notice
    async with world.db.read() as s:
        person = await ms.get_person(s, APPLICANT)
        assert person is not None and person.country == "EL"


async def test_countries_by_name_and_code_in_profile_set(world: World) -> None:
    for typed, shown in (
        ("Deutschland", "Germany (DE)"),
        ('"España"', "Spain (ES)"),
        ("POLSKA", "Poland (PL)"),
        ("österreich", "Austria (AT)"),
        ('"Belgique"', "Belgium (BE)"),
        ("GR", "Greece (EL)"),
        ("el", "Greece (EL)"),
    ):
        result = await world.send(APPLICANT, f"profile set country={typed}")
        assert result.outcome == "ok", result.reply
        assert f"Country: {shown}" in result.reply


async def test_a_rejected_profile_set_says_that_nothing_was_saved(world: World) -> None:
    await world.send(APPLICANT, "profile set country=IT")

    result = await world.send(
        APPLICANT, 'profile set org="Chicago Transit Authority" country=US type=local-authority'
    )

    assert result.outcome == "usage"
    assert result.reply.startswith("Nothing was saved; your profile is as it was.")
    assert "US is not the code of an EU or EEA country" in result.reply
    async with world.db.read() as s:
        person = await ms.get_person(s, APPLICANT)
        assert person is not None
        assert (person.org, person.country, person.authority_type) == (None, "IT", None)


async def test_every_problem_of_a_profile_set_is_named_at_once(world: World) -> None:
    result = await world.send(APPLICANT, "profile set country=Narnia type=bakery")

    assert result.outcome == "usage"
    assert "“Narnia”" in result.reply and "Type: 'bakery' is not a type I know" in result.reply
    async with world.db.read() as s:
        assert await ms.get_person(s, APPLICANT) is None


# --- invisible characters -----------------------------------------------------------------------


async def test_a_zero_width_space_does_not_dodge_the_company_check(world: World) -> None:
    typed = "Acme Logistik G\u200bmbH"
    await world.profile(APPLICANT, typed, "DE", "local-authority")

    result = await world.send(APPLICANT, "join HDEV")

    notice = result.to(MGMT)[0].body
    assert "Flagged for the Secretariat" in notice and "“GmbH”" in notice
    assert "Flag: none" not in notice
    async with world.db.read() as s:
        person = await ms.get_person(s, APPLICANT)
        assert person is not None and person.org == typed  # stored as typed


async def test_a_right_to_left_override_in_a_name_cannot_reverse_the_bots_lines(
    world: World,
) -> None:
    await world.profile(APPLICANT, "Comune di Roma\u202eATI\u2066", "IT", "local-authority")

    applied = await world.send(APPLICANT, "join HDEV")
    approved = await world.send(MOD, f"approve {APPLICANT} HDEV")
    listed = await world.send(MOD, "members HDEV")
    profile = await world.send(APPLICANT, "profile")

    notice = applied.to(MGMT)[0]
    for text in (notice.body, notice.html, approved.reply, listed.reply, profile.reply):
        assert "Comune di RomaATI" in text
        assert unclosed_bidi(text) == [], text
        assert "\u202e" not in text  # the override was never closed: it is dropped
    assert "Country: Italy (IT)" in notice.body


async def test_right_to_left_text_is_shown_isolated_in_its_own_direction(world: World) -> None:
    name = "بلدية ليماسول"
    await world.profile(APPLICANT, name, "CY", "local-authority")

    applied = await world.send(APPLICANT, "join HDEV")

    approved = await world.send(MOD, f"approve {APPLICANT} HDEV")

    notice = applied.to(MGMT)[0]
    for text in (notice.body, notice.html, approved.reply):
        assert f"\u2068{name}\u2069" in text  # the name alone, not the bot's words
        assert unclosed_bidi(text) == []
    assert "Country: Cyprus (CY)" in notice.body
    assert f"(\u2068{name}\u2069 · Cyprus (CY) · local authority) is now" in approved.reply


async def test_profiles_saved_with_gr_are_moved_to_el_by_the_migration(world: World) -> None:
    async with world.db.session() as s:
        await ms.save_profile(s, APPLICANT, country="GR", now=world.now)
    path = Path(storage.__file__).parent / "migrations" / "versions" / "0008p_greece_el.py"
    spec = importlib.util.spec_from_file_location("migration_0008p", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)

    def upgrade(sync: Connection) -> None:
        with Operations.context(MigrationContext.configure(sync)):
            migration.upgrade()

    async with world.db.engine.connect() as conn:
        await conn.run_sync(upgrade)
        await conn.commit()

    async with world.db.read() as s:
        stored = await s.scalar(
            sql("SELECT country FROM people WHERE user_id = :u"), {"u": APPLICANT}
        )
    assert stored == "EL"
    shown = await world.send(APPLICANT, "profile")
    assert "Country: Greece (EL)" in shown.reply
