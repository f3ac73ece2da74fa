"""The registry: help, usage lines, refusals and "did you mean", all from one declaration."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from commands import general
from commands.args import Arg, positive_int
from commands.context import Context
from commands.errors import PermissionDenied, UsageError
from commands.registry import Place, Registry, Role
from commands.text import Message
from config.models import CopConfig, SecretariatConfig, Settings
from storage import Database, repo
from storage.models import OutboxMessage

ADMIN = "@sec:example.org"
MOD = "@mod:example.org"
MEMBER = "@member:example.org"
STRANGER = "@someone:example.org"

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'unit.db'}")
    await db.upgrade()
    async with db.session() as s:
        await repo.sync_cops(s, [("HDEV", "Heavy-duty EVs"), ("SOLAR", "Solar")], now=T0)
        await repo.sync_config_moderators(s, {"HDEV": [MOD]}, now=T0)
        await repo.seed_member(
            s,
            user_id=MEMBER,
            org="City of Oslo",
            country="NO",
            authority_type="local-authority",
            cop_code="HDEV",
            now=T0,
        )
    yield db
    await db.dispose()


SETTINGS = Settings(
    secretariat=SecretariatConfig(admins=[ADMIN]),
    cops=[
        CopConfig(code="HDEV", name="Heavy-duty EVs", moderators=[MOD]),
        CopConfig(code="SOLAR", name="Solar"),
    ],
)


def sample_registry() -> Registry:
    reg = Registry(prefix="!")
    general.register(reg)

    @reg.command(
        "vote",
        help="Answer an invitation.",
        args=[Arg("event", positive_int), Arg("answer")],
        role=Role.MEMBER,
        section="Events",
    )
    async def vote(ctx: Context, event: int, answer: str) -> None:
        await ctx.reply(f"{event} {answer}")

    @reg.command(
        "bless",
        help="Bless something.",
        role=Role.MODERATOR,
        places=Place.MANAGEMENT | Place.COP_ROOM,
        section="Moderation",
    )
    async def bless(ctx: Context) -> None:
        await ctx.reply("blessd")

    return reg


async def run(db: Database, sender: str, text: str, place: Place = Place.DM) -> str:
    """Dispatch ``text`` as ``sender``; return the reply or the refusal shown to them."""
    reg = sample_registry()
    async with db.session() as s:
        ctx = Context(
            session=s,
            settings=SETTINGS,
            registry=reg,
            sender=sender,
            room_id="!r:x",
            event_id="$e",
            place=place,
            now=datetime.now(UTC),
        )
        try:
            async with s.begin_nested():
                await reg.dispatch(ctx, text)
        except (UsageError, PermissionDenied) as exc:
            return exc.message.plain
        rows = (await s.execute(OutboxMessage.__table__.select())).mappings().all()
        return str(rows[-1]["payload"]["body"])


async def test_help_lists_only_what_the_caller_may_use(sqlite_db: Database) -> None:
    stranger = await run(sqlite_db, STRANGER, "help")
    member = await run(sqlite_db, MEMBER, "help")
    moderator = await run(sqlite_db, MOD, "help")
    assert "!cops" in stranger
    assert "!vote" not in stranger
    assert "!vote" in member
    assert "!bless" not in member
    assert "!bless" in moderator
    assert "!vote <event> <answer>" in await run(sqlite_db, MEMBER, "help events")


async def test_help_for_one_command_shows_usage_role_and_places(sqlite_db: Database) -> None:
    text = await run(sqlite_db, MOD, "help bless")
    assert "Usage: !bless" in text
    assert "For moderators, in a CoP room or the management room." in text


async def test_help_for_an_unknown_or_forbidden_command_suggests_another(
    sqlite_db: Database,
) -> None:
    assert "Did you mean !cops?" in await run(sqlite_db, STRANGER, "help cpos")
    assert "no topic or command bless that you can use" in await run(
        sqlite_db, MEMBER, "help bless"
    )


async def test_an_unknown_command_gets_the_nearest_known_one(sqlite_db: Database) -> None:
    text = await run(sqlite_db, MEMBER, "vot 12 yes")
    assert "I don't know the command !vot" in text
    assert "Did you mean !vote?" in text


async def test_a_command_above_the_callers_role_is_refused_with_the_reason(
    sqlite_db: Database,
) -> None:
    text = await run(sqlite_db, STRANGER, "vote 12 yes")
    assert "only for members" in text
    assert "only for moderators" in await run(sqlite_db, MEMBER, "bless", Place.COP_ROOM)


async def test_a_command_in_the_wrong_place_says_where_it_works(sqlite_db: Database) -> None:
    text = await run(sqlite_db, MOD, "bless", Place.DM)
    assert text == "!bless works only in a CoP room or the management room."


async def test_bad_arguments_get_the_usage_line_and_what_was_wrong(sqlite_db: Database) -> None:
    text = await run(sqlite_db, MEMBER, "vote twelve yes")
    assert "'twelve' should be a whole number above zero" in text
    assert "Usage: !vote <event> <answer>" in text
    assert "<answer> is missing" in await run(sqlite_db, MEMBER, "vote 12")


async def test_admins_may_use_everything(sqlite_db: Database) -> None:
    assert await run(sqlite_db, ADMIN, "bless", Place.MANAGEMENT) == "blessd"
    assert await run(sqlite_db, ADMIN, "vote 3 yes") == "3 yes"


async def test_cops_shows_counts_and_the_callers_status(sqlite_db: Database) -> None:
    text = await run(sqlite_db, MEMBER, "cops")
    assert "HDEV — Heavy-duty EVs · 1 member · you: member" in text
    assert "SOLAR — Solar · 0 members · you: —" in text
    assert "you: moderator" in await run(sqlite_db, MOD, "cops")


def test_a_command_cannot_be_declared_twice() -> None:
    reg = Registry()

    async def handler(ctx: Context) -> None:
        return None

    reg.command("cops", help="x")(handler)
    with pytest.raises(ValueError, match="declared twice"):
        reg.command("cops", help="y")(handler)


def test_usage_lines_come_from_the_declaration() -> None:
    reg = sample_registry()
    command = reg.get("VOTE")
    assert command is not None
    assert command.usage("!") == "!vote <event> <answer>"
    assert reg.usage_message(command, "bad").plain == "Bad. Usage: !vote <event> <answer>"
    assert isinstance(reg.usage_message(command, ""), Message)
