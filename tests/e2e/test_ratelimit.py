"""The bot under Synapse's default message rate limit (0.2/s, burst 10) still answers all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.devserver import LocalSynapse
from tests.e2e.conftest import unique
from tests.e2e.harness import BotProcess, Person
from tests.e2e.test_foundation import replies_by_command

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def limited_synapse(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalSynapse]:
    server = LocalSynapse(tmp_path_factory.mktemp("limited"), default_message_limit=True)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_a_burst_of_30_commands_is_answered_completely_and_in_order(
    limited_synapse: LocalSynapse, tmp_path: Path
) -> None:
    admin = await limited_synapse.register(unique("admin"), admin=True)
    account = await limited_synapse.register(unique("anna"))
    # Only the bot keeps Synapse's default limit; the person sending the burst is exempt.
    await limited_synapse.set_ratelimit(admin, account.user_id, 0, 0)
    anna = Person(limited_synapse, account, tmp_path / "anna")
    await anna.start()
    bot = BotProcess(
        limited_synapse,
        tmp_path,
        account=await limited_synapse.register(unique("bot")),
        db_url=f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
        admins=[],
        cops=[{"code": "HDEV", "name": "Heavy-duty EVs"}],
    )
    try:
        await bot.start()
        dm = await anna.open_dm(bot.user_id)
        commands = [await anna.send(dm, f"!help cops {i}") for i in range(30)]

        def answered() -> bool:
            replies = replies_by_command(anna.events.get(dm, []), bot.user_id)
            return all(c in replies for c in commands)

        await anna.wait_until(answered, timeout=400, what="30 answers")
        history = await anna.history(dm)
        replies = replies_by_command(history, bot.user_id)
        assert all(len(replies[c]) == 1 for c in commands)
        order = [
            (event.get("content", {}).get("m.relates_to") or {})
            .get("m.in_reply_to", {})
            .get("event_id")
            for event in history
            if event.get("sender") == bot.user_id and event.get("type") == "m.room.message"
        ]
        assert [e for e in order if e in commands] == commands
        metrics = await bot.metrics()
        assert metrics["bbwt_rate_limited_total"] >= 1  # the limit was really hit
    finally:
        if bot.proc is not None:
            await bot.stop()
        await anna.close()
