"""The rooms the bot creates, on the room version the homeserver gives new rooms.

From room version 12 on (Synapse's default since 1.163) a room's creator holds unlimited
power and must not be listed in the power levels; before, the creator is listed at 100.
The same test runs against a version-11 server in ``test_room_version_11.py``.
"""

from __future__ import annotations

import asyncio

from tests.e2e.conftest import BotFactory
from tests.e2e.harness import Person
from tests.e2e.membership_support import body


async def test_cop_rooms_give_moderators_50_and_admins_100_on_the_servers_room_version(
    people, make_bot: BotFactory
) -> None:
    sofia: Person = await people("sofia")  # admin
    maria: Person = await people("maria")  # moderator from the configuration
    nina: Person = await people("nina")  # moderator added with !mod add
    bot = await make_bot(
        admins=[sofia.user_id],
        cops=[{"code": "HDEV", "name": "Heavy-duty EVs", "moderators": [maria.user_id]}],
    )
    hdev = await sofia.join(bot.alias("hdev"))
    management = await sofia.join(bot.alias("secretariat"))

    added = await sofia.ask(management, f"!mod add {nina.user_id} HDEV", bot.user_id)
    assert "now moderates HDEV" in body(added)

    capabilities = await sofia.api("GET", "/_matrix/client/v3/capabilities")
    server_default = capabilities["capabilities"]["m.room_versions"]["default"]
    create = await sofia.state(hdev, "m.room.create", event=True)
    version = str(create["content"].get("room_version", "1"))
    assert version == server_default
    assert create["sender"] == bot.user_id

    users: dict[str, int] = {}
    for _ in range(150):  # the power change goes out through the outbox
        users = dict((await sofia.state(hdev, "m.room.power_levels")).get("users", {}))
        if users.get(nina.user_id) == 50:
            break
        await asyncio.sleep(0.2)
    assert users.get(maria.user_id) == 50
    assert users.get(nina.user_id) == 50
    assert users.get(sofia.user_id) == 100
    if int(version) >= 12:
        assert bot.user_id not in users  # the creator: ranked above every level
    else:
        assert users.get(bot.user_id) == 100
