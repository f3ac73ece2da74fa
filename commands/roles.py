"""Who someone is in each CoP, read once from the configuration and the database.

:class:`Roles` is the one answer to "which CoPs may this person see" (:meth:`Roles.cops`)
and "what may they do in this CoP" (:meth:`Roles.in_cop`); the registry, the calendar
feed and the members-only rooms all ask it. Roles never come from display names or power
levels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from sqlalchemy.ext.asyncio import AsyncSession

from config.models import Settings
from storage import repo


class Role(IntEnum):
    ANYONE = 0
    GUEST = 1
    MEMBER = 2
    MODERATOR = 3
    ADMIN = 4

    @property
    def label(self) -> str:
        return {
            Role.ANYONE: "anyone",
            Role.GUEST: "guests",
            Role.MEMBER: "members",
            Role.MODERATOR: "moderators",
            Role.ADMIN: "admins",
        }[self]


@dataclass(frozen=True)
class Roles:
    """One person's roles: admin everywhere, moderator of some CoPs, member of others."""

    user: str
    codes: tuple[str, ...]
    """Every configured CoP."""
    admin: bool = False
    moderates: frozenset[str] = frozenset()
    memberships: dict[str, str] = field(default_factory=dict)
    """CoP code -> status (``member``, ``applied``, ``rejected``, ``left``, ``removed``)."""

    @classmethod
    async def load(cls, session: AsyncSession, settings: Settings, user: str) -> Roles:
        return cls.of(settings, user, await repo.roles_of(session, user))

    @classmethod
    def of(cls, settings: Settings, user: str, stored: repo.Roles) -> Roles:
        """From what :func:`storage.repo.roles_of` read."""
        moderates, memberships = stored
        return cls(
            user=user,
            codes=tuple(cop.code for cop in settings.cops),
            admin=user in settings.secretariat.admins,
            moderates=frozenset(moderates),
            memberships=dict(memberships),  # its own: a group's commands share what was read
        )

    def in_cop(self, cop: str) -> Role:
        if self.admin:
            return Role.ADMIN
        if cop in self.moderates:
            return Role.MODERATOR
        if self.memberships.get(cop) == "member":
            return Role.MEMBER
        return Role.ANYONE

    def highest(self) -> Role:
        if self.admin:
            return Role.ADMIN
        if self.moderates:
            return Role.MODERATOR
        if "member" in self.memberships.values():
            return Role.MEMBER
        return Role.ANYONE

    def cops(self, role: Role = Role.MEMBER) -> list[str]:
        """The configured CoPs in which this person has ``role`` or more, in config order:
        the CoPs whose members-only content they may see (``role=MEMBER``)."""
        return [code for code in self.codes if self.in_cop(code) >= role]


async def role_of(session: AsyncSession, settings: Settings, user: str, cop: str) -> Role:
    """The role of any user (not only the caller) in one CoP."""
    return (await Roles.load(session, settings, user)).in_cop(cop)
