"""What a command handler gets: who asked, where, a database transaction and ways to reply.

Also the two "where does it go" helpers every family uses: :func:`queue_dm` (the one way
to write to someone's direct chat, opened by the sender if there is none yet) and
:func:`cop_room` (the room of a CoP).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from commands.errors import UsageError
from commands.registry import Place, Registry
from commands.roles import Role, Roles
from commands.scope import Scope
from commands.text import Message
from config.models import Settings
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


async def queue_dm(
    session: AsyncSession,
    user: str,
    payload: dict[str, Any],
    *,
    now: datetime,
    kind: str = "message",
    tag: str | None = None,
) -> None:
    """Queue a message (or a ``file``) for ``user``'s direct chat; when the bot has none
    with them yet, the sender opens one first. It is for ``user`` only: the sender checks,
    when it goes out, that the room still holds just the bot and them.

    Someone whose data was erased is known only by a pseudonym (no ``@``): nothing can be
    sent to them, and nothing is queued (a claim of theirs paid later, for instance)."""
    if not user.startswith("@"):
        return
    await repo.enqueue_dm(session, user, kind=kind, payload=payload, tag=tag, now=now)


async def cop_room(session: AsyncSession, code: str) -> str | None:
    """The room of CoP ``code``, once the bot has set it up."""
    cop = await repo.get_cop(session, code)
    return cop.room_id if cop else None


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
    scope: Scope | None = None
    """What the registry resolved before the handler: the CoP, the thing, the caller's role."""
    redirected: bool = False
    """Answers go to the caller's direct chat (a private command asked in a shared room)."""
    failed: str | None = None
    """The outcome of a command refused after it had answered already (a private command
    moved to a direct chat and refused there): the event's outcome, not ``ok``."""
    replied_event: dict[str, Any] | None = None
    """The message this command replies to, read from the homeserver before the command's
    transaction began (only for commands declared with ``reads_replied_event``)."""
    _roles: Roles | None = field(default=None, repr=False)
    _redirect_note: str | None = field(default=None, repr=False)

    @property
    def prefix(self) -> str:
        return self.settings.matrix.command_prefix

    # --- roles -----------------------------------------------------------------------------
    async def roles(self) -> Roles:
        if self._roles is None:
            self._roles = await Roles.load(self.session, self.settings, self.sender)
        return self._roles

    @property
    def is_admin(self) -> bool:
        return self.sender in self.settings.secretariat.admins

    async def moderates(self) -> set[str]:
        return set((await self.roles()).moderates)

    async def memberships(self) -> dict[str, str]:
        return dict((await self.roles()).memberships)

    async def role_in(self, cop: str) -> Role:
        return (await self.roles()).in_cop(cop)

    async def highest_role(self) -> Role:
        return (await self.roles()).highest()

    def usage_error(self, problem: str) -> UsageError:
        """A usage error of the command being run: what was wrong and its usage line."""
        assert self.command is not None, "set by the registry before the handler runs"
        return UsageError(self.registry.usage_message(self.command, problem))

    # --- replying ------------------------------------------------------------------------------
    @property
    def private_to(self) -> str | None:
        """In a direct chat every answer is for the caller only: if the room has gained
        other people by the time it goes out, it goes to a direct chat instead."""
        return self.sender if self.place is Place.DM else None

    def redirect(self, note: str) -> None:
        """From now on answer in the caller's direct chat; the first answer starts with
        ``note`` (why the answer is there)."""
        self.redirected = True
        self._redirect_note = note

    def answer_where(self, other: Context) -> None:
        """Answer where ``other`` would have (a failed command answered in a new transaction:
        still in the direct chat, with the note not yet given)."""
        self.redirected = other.redirected
        self._redirect_note = other._redirect_note

    async def reply(self, message: Message | str, *, tag: str | None = None) -> None:
        """Answer in the room the command came from, as a reply to it (or, redirected, in
        the caller's direct chat). ``tag``: what the answer is about (see the outbox)."""
        msg = message if isinstance(message, Message) else Message(message)
        if self.redirected:
            if self._redirect_note is not None:
                msg = Message(self._redirect_note).para().append(msg)
                self._redirect_note = None
            await self.dm(self.sender, msg, tag=tag)
            return
        for content in msg.contents(reply_to=self.event_id):
            await repo.queue(
                self.session,
                room_id=self.room_id,
                payload=content,
                private_to=self.private_to,
                tag=tag,
                now=self.now,
            )

    async def reply_content(self, content: dict[str, Any]) -> None:
        """Post a ready-made message (a file already on the homeserver) where the answers go."""
        if self.redirected:
            await queue_dm(self.session, self.sender, content, now=self.now)
            return
        await repo.queue(
            self.session,
            room_id=self.room_id,
            payload=content,
            private_to=self.private_to,
            now=self.now,
        )

    async def reply_file(self, filename: str, mimetype: str, data: bytes) -> None:
        """Upload a file (an .ics, a CSV) and post it in this room as a reply."""
        if self.redirected:
            await self.dm_file(self.sender, filename, mimetype, data)
            return
        await repo.queue(
            self.session,
            room_id=self.room_id,
            kind="file",
            payload=file_payload(filename, mimetype, data, reply_to=self.event_id),
            private_to=self.private_to,
            now=self.now,
        )

    async def dm_file(self, user_id: str, filename: str, mimetype: str, data: bytes) -> None:
        """Upload a file to a person's direct chat (opened first if there is none)."""
        payload = file_payload(filename, mimetype, data)
        await queue_dm(self.session, user_id, payload, now=self.now, kind="file")

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
        for index, content in enumerate(msg.contents()):
            part_tag = tag if index == 0 else None  # reactions go to the first part
            await repo.queue(
                self.session, room_id=room_id, payload=content, tag=part_tag, now=self.now
            )

    async def dm(self, user_id: str, message: Message | str, *, tag: str | None = None) -> None:
        """A direct message; the sender opens the DM room first if there is none yet."""
        msg = message if isinstance(message, Message) else Message(message)
        for content in msg.contents():
            await queue_dm(self.session, user_id, content, now=self.now, tag=tag)

    async def audit(
        self,
        action: str,
        *,
        cop_code: str | None = None,
        target: str | None = None,
        detail: str = "",
    ) -> None:
        """Record in the audit log that the sender did ``action`` now."""
        await repo.audit(
            self.session,
            actor=self.sender,
            action=action,
            cop_code=cop_code,
            target=target,
            detail=detail,
            now=self.now,
        )

    async def notify_management(self, message: Message | str) -> None:
        if self.management_room:
            await self.send(self.management_room, message)

    async def cop_room(self, code: str) -> str | None:
        return await cop_room(self.session, code)

    # --- the message a command replies to ----------------------------------------------------
    def replied_event_id(self) -> str | None:
        """The event the command's message replies to (an uploaded file), if any."""
        content = (self.event or {}).get("content") or {}
        relates = content.get("m.relates_to") or {}
        reply = relates.get("m.in_reply_to") if isinstance(relates, dict) else None
        target = reply.get("event_id") if isinstance(reply, dict) else None
        return target if isinstance(target, str) and target else None

    async def fetch_event(self, event_id: str) -> dict[str, Any] | None:
        """The message this command replies to (None when it could not be read).

        It was read before the command's transaction began: a handler never waits for the
        homeserver while holding the database (and every other room's work) up.
        """
        event = self.replied_event
        return event if event is not None and event_id == self.replied_event_id() else None
