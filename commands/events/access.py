"""Who may see which events: the members of an event's CoP (and its moderators and the
Secretariat), and guests invited to that one event.

:data:`EVENT` tells the registry how to load an event named in a command (``E12``) and who
may see it; :func:`sight` is what one person may see, for lists and calendar feeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from commands.roles import Role, Roles
from commands.scope import Kind
from commands.text import Message
from config.models import Settings
from storage import events as store
from storage import repo
from storage.events import Event


async def _load(session: AsyncSession, number: int, lock: bool) -> Event | None:
    return await (store.lock_event if lock else store.get_event)(session, number)


async def _is_guest(session: AsyncSession, event: Event, user: str) -> bool:
    return await store.is_guest(session, event.id, user)


def not_found(prefix: str, number: int) -> Message:
    return (
        Message(f"I can't find event E{number} among the events you can see. ")
        .code(f"{prefix}events")
        .text(" lists them.")
    )


EVENT: Kind[Event] = Kind(
    letter="E",
    noun="event",
    load=_load,
    cop_of=lambda event: event.cop_code,
    not_found=not_found,
    seen_from=Role.MEMBER,
    also_sees=_is_guest,
    topic="events",
)


@dataclass
class Sight:
    """What one person may see: whole CoPs, and single events they were invited to."""

    cops: set[str]
    guest_events: set[int] = field(default_factory=set)

    def sees(self, event: Event) -> bool:
        return event.cop_code in self.cops or event.id in self.guest_events


async def sight(session: AsyncSession, settings: Settings, user: str) -> Sight:
    roles = await Roles.load(session, settings, user)
    return Sight(set(roles.cops(Role.MEMBER)), await store.guest_event_ids(session, user))


async def sights(
    session: AsyncSession, settings: Settings, users: Sequence[str]
) -> dict[str, Sight]:
    """:func:`sight` for each of ``users``, in two queries (a reminder's recipients)."""
    stored = await repo.roles_of_people(session, users)
    guests = await store.guest_event_ids_of(session, users)
    return {
        user: Sight(set(Roles.of(settings, user, stored[user]).cops(Role.MEMBER)), guests[user])
        for user in users
    }
