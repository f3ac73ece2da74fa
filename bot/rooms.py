"""Who is in a room right now: the bot's member cache, loaded from the homeserver once.

The sync loop keeps ``room_members`` current from every member event it sees; a room the
bot knows nothing about yet (joined before this cache existed, or an invite accepted a
moment ago) is loaded with ``/members`` the first time it matters. A room is private to a
person — a direct chat — exactly when its joined and invited members are the bot and that
person, whatever the room was called or created as.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from urllib.parse import quote

from nio import AsyncClient

from bot.matrix import MatrixError, client_json
from storage import Database, rooms

log = logging.getLogger(__name__)


class MemberCache:
    def __init__(self, client: AsyncClient, db: Database, clock: Callable[[], datetime]) -> None:
        self.client = client
        self.db = db
        self.clock = clock

    async def present(self, room_id: str) -> set[str]:
        """Joined and invited users of the room (loaded from the homeserver if unknown)."""
        async with self.db.read() as s:
            known = await rooms.present_members(s, room_id)
        if known is not None:
            return known
        members = await self.load(room_id)
        return {user for user, membership in members.items() if membership in rooms.PRESENT}

    async def load(self, room_id: str) -> dict[str, str]:
        """Read the room's member list from the homeserver and keep it."""
        path = f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/members?not_membership=leave"
        status, body = await client_json(self.client, "GET", path)
        if status != 200:
            raise MatrixError(f"could not read the members of {room_id} (HTTP {status})")
        members: dict[str, str] = {}
        for event in body.get("chunk") or []:
            if not isinstance(event, dict):
                continue
            user = event.get("state_key")
            content = event.get("content")
            membership = content.get("membership") if isinstance(content, dict) else None
            if isinstance(user, str) and isinstance(membership, str):
                members[user] = membership
        async with self.db.session() as s:
            await rooms.load_member_list(s, room_id, members, self.clock())
        log.info("loaded the %d members of %s", len(members), room_id)
        return members

    async def is_private(self, room_id: str, user_id: str) -> bool:
        """Is this room the bot and ``user_id``, and nobody else (joined or invited)?"""
        return await self.present(room_id) == {self.client.user_id, user_id}

    async def note_created(self, room_id: str, user_id: str) -> None:
        """A direct chat the bot just created: the bot in it, the person invited."""
        async with self.db.session() as s:
            await rooms.load_member_list(
                s, room_id, {self.client.user_id: "join", user_id: "invite"}, self.clock()
            )
