"""What a command handler gets: who asked, where, a database transaction and ways to reply."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from commands.errors import CommandError, PermissionDenied
from commands.registry import Place, Registry, Role
from commands.text import Message
from config.models import CopConfig, Settings
from storage import repo

if TYPE_CHECKING:
    from commands.registry import Command
    from commands.services import Services


def file_payload(
    filename: str, mimetype: str, data: bytes, *, reply_to: str | None = None
) -> dict[str, Any]:
    """An outbox payload for a file; the sender uploads it, then posts an ``m.file``."""
    return {
        "filename": filename,
        "mimetype": mimetype,
        "data_b64": base64.b64encode(data).decode("ascii"),
        "reply_to": reply_to,
    }


@dataclass
class Context:
    session: AsyncSession
    settings: Settings
    registry: Registry
    sender: str
    room_id: str
    event_id: str
    place: Place
    now: datetime
    room_cop: str | None = None
    """The CoP whose room this is, if any."""
    management_room: str | None = None
    event: dict[str, Any] = field(default_factory=dict)
    """The raw event: ``type``, ``content`` (and ``state_key``, ``redacts``)."""
    event_ts: datetime | None = None
    command: Command | None = None
    services: Services | None = None
    _moderates: set[str] | None = field(default=None, repr=False)
    _memberships: dict[str, str] | None = field(default=None, repr=False)

    @property
    def prefix(self) -> str:
        return self.settings.matrix.command_prefix

    # --- roles -----------------------------------------------------------------------------
    @property
    def is_admin(self) -> bool:
        return self.sender in self.settings.secretariat.admins

    async def moderates(self) -> set[str]:
        if self._moderates is None:
            self._moderates = await repo.moderated_cops(self.session, self.sender)
        return self._moderates

    async def memberships(self) -> dict[str, str]:
        if self._memberships is None:
            self._memberships = await repo.memberships_of(self.session, self.sender)
        return self._memberships

    async def role_in(self, cop: str) -> Role:
        if self.is_admin:
            return Role.ADMIN
        if cop in await self.moderates():
            return Role.MODERATOR
        if (await self.memberships()).get(cop) == "member":
            return Role.MEMBER
        return Role.ANYONE

    async def highest_role(self) -> Role:
        if self.is_admin:
            return Role.ADMIN
        if await self.moderates():
            return Role.MODERATOR
        if "member" in (await self.memberships()).values():
            return Role.MEMBER
        return Role.ANYONE

    async def require(self, role: Role, cop: str) -> None:
        """Refuse unless the caller has ``role`` (or higher) in ``cop``."""
        if await self.role_in(cop) < role:
            raise PermissionDenied(
                f"Sorry, only {role.label} of {cop} can do that"
                + (" (or the Secretariat)." if role < Role.ADMIN else ".")
            )

    # --- CoPs --------------------------------------------------------------------------------
    def resolve_cop(self, code: str | None) -> CopConfig:
        """The CoP named by ``code``, or the CoP of the current room when ``code`` is None."""
        if code is None:
            code = self.room_cop
        if code is None:
            raise CommandError(
                Message("Which CoP? Add its code, e.g. ")
                .code(f"{self.prefix}{self.command.name if self.command else 'cops'} HDEV")
                .text(". ")
                .append(self.known_cops_hint())
            )
        cop = self.settings.cop(code)
        if cop is None:
            raise CommandError(
                Message("There is no CoP with the code ")
                .code(code)
                .text(". ")
                .append(self.known_cops_hint())
            )
        return cop

    def known_cops_hint(self) -> Message:
        codes = ", ".join(cop.code for cop in self.settings.cops)
        return Message(f"The CoPs are: {codes}. ").code(f"{self.prefix}cops").text(" lists them.")

    # --- replying ------------------------------------------------------------------------------
    async def reply(self, message: Message | str) -> None:
        """Answer in the room the command came from, as a reply to it."""
        msg = message if isinstance(message, Message) else Message(message)
        await repo.enqueue(
            self.session,
            room_id=self.room_id,
            payload=msg.content(reply_to=self.event_id),
            now=self.now,
        )

    async def reply_file(self, filename: str, mimetype: str, data: bytes) -> None:
        """Upload a file (an .ics, a CSV) and post it in this room as a reply."""
        await repo.enqueue(
            self.session,
            room_id=self.room_id,
            kind="file",
            payload=file_payload(filename, mimetype, data, reply_to=self.event_id),
            now=self.now,
        )

    async def dm_file(self, user_id: str, filename: str, mimetype: str, data: bytes) -> None:
        """Upload a file to a person's direct chat (opened first if there is none)."""
        payload = file_payload(filename, mimetype, data)
        room_id = await repo.get_direct_room(self.session, user_id)
        if room_id is not None:
            await repo.enqueue(
                self.session, room_id=room_id, kind="file", payload=payload, now=self.now
            )
        else:
            await repo.enqueue(
                self.session, to_user=user_id, kind="file", payload=payload, now=self.now
            )

    async def private_file(
        self,
        filename: str,
        mimetype: str,
        data: bytes,
        message: Message,
        *,
        room_note: str,
    ) -> None:
        """A personal file with a message: here when this is the caller's direct chat,
        otherwise in their direct chat, with only ``room_note`` said where they asked."""
        if self.place is Place.DM:
            await self.reply_file(filename, mimetype, data)
            await self.reply(message)
            return
        await self.dm_file(self.sender, filename, mimetype, data)
        await self.dm(self.sender, message)
        await self.reply(room_note)

    async def send(self, room_id: str, message: Message | str, *, tag: str | None = None) -> None:
        msg = message if isinstance(message, Message) else Message(message)
        await repo.enqueue(
            self.session, room_id=room_id, payload=msg.content(), tag=tag, now=self.now
        )

    async def dm(self, user_id: str, message: Message | str) -> None:
        """A direct message; the sender opens the DM room first if there is none yet."""
        msg = message if isinstance(message, Message) else Message(message)
        room_id = await repo.get_direct_room(self.session, user_id)
        if room_id is not None:
            await repo.enqueue(self.session, room_id=room_id, payload=msg.content(), now=self.now)
        else:
            await repo.enqueue(self.session, to_user=user_id, payload=msg.content(), now=self.now)

    async def notify_management(self, message: Message | str) -> None:
        if self.management_room:
            await self.send(self.management_room, message)
