"""Where a command's CoP comes from, declared with the command and resolved by the registry.

A command about one CoP says where that CoP comes from:

- :func:`cop_arg` — an argument (``!members HDEV``); when it is left out, the room's CoP,
  or (with ``missing=MINE``) every CoP in which the caller has the command's role;
- :func:`room_cop` — the CoP room the command was sent in (``!intel share``);
- :func:`numbered` — a numbered thing (event ``E12``, intel item ``I3``, claim ``C7``) that
  is loaded by its number: its CoP decides. Someone who may not see the thing gets the
  same answer as for a number that does not exist.

Before the handler runs, the registry resolves the CoP, hands the handler the resolved
value (a :class:`~config.models.CopConfig`, a :class:`CopSet` or the loaded thing) in place
of the raw argument, and checks the caller's role in that CoP and the room (a CoP room
only ever shows its own CoP). The handler finds the outcome in ``ctx.scope``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from commands.args import ALL
from commands.errors import CommandError
from commands.roles import Role, Roles
from commands.text import Message
from config.models import CopConfig

if TYPE_CHECKING:
    from commands.context import Context

T = TypeVar("T")


class Missing(Enum):
    """What a left-out CoP argument means."""

    REQUIRED = "required"
    """It must be given (``!join HDEV``)."""
    ROOM = "room"
    """The CoP of the room it was sent in; elsewhere the caller is asked which CoP."""
    ROOM_OR_MINE = "room or mine"
    """The room's CoP in a CoP room; elsewhere every CoP the caller has the role in."""
    MINE = "mine"
    """Every CoP in which the caller has the command's role (admins: every CoP)."""


@dataclass(frozen=True)
class CopSet:
    """Several CoPs at once: the ones a listing covers."""

    codes: tuple[str, ...]
    every: bool = False
    """Every configured CoP (an admin who named none, or ``all``)."""

    def label(self, *, every: str = "all CoPs", none: str = "your CoPs") -> str:
        if self.every:
            return every
        return ", ".join(self.codes) if self.codes else none


@dataclass
class Scope:
    """What the registry found out about a command before its handler runs."""

    role: Role
    """The caller's role in ``cop`` (their highest role when the command has no one CoP)."""
    cop: CopConfig | None = None
    cops: CopSet | None = None
    thing: Any = None
    owner: bool = False
    """The caller owns ``thing`` (their claim, the intel item they shared)."""
    number: int | None = None
    """The number of ``thing`` (12 for E12)."""
    guest: bool = False
    """The caller sees ``thing`` as a guest invited to it."""
    all: bool = False
    """The caller typed ``all`` for the CoP."""

    @property
    def codes(self) -> tuple[str, ...]:
        if self.cop is not None:
            return (self.cop.code,)
        return self.cops.codes if self.cops is not None else ()


@dataclass(frozen=True)
class Kind(Generic[T]):
    """A kind of numbered thing and how to find out who may see it."""

    letter: str
    noun: str
    """``event``, ``intel item``, ``claim``."""
    load: Callable[[AsyncSession, int, bool], Awaitable[T | None]]
    """``await load(session, number, lock)``."""
    cop_of: Callable[[T], str]
    not_found: Callable[[str, int], Message]
    """``not_found(prefix, number)``: the one answer for missing and hidden things."""
    seen_from: Role = Role.MEMBER
    """Who sees it: this role in its CoP (and its owner, when it has one)."""
    owner_of: Callable[[T], str] | None = None
    owned: str = "made"
    """``Only @anna, who shared I3, or …`` (the verb for the owner)."""
    also_sees: Callable[[AsyncSession, T, str], Awaitable[bool]] | None = None
    """Someone else who may see it (a guest invited to an event)."""
    topic: str = "things"
    """What a room refuses to show of another CoP (``events``, ``items``)."""


@dataclass(frozen=True)
class Source:
    """Where a command's CoP comes from; see the module docstring."""

    arg: str | None = None
    missing: Missing = Missing.REQUIRED
    kind: Kind[Any] | None = None
    lock: bool = False
    all_word: bool = False
    """``all`` is accepted for every CoP the caller may use the command in."""
    all_role: Role = Role.ANYONE
    """The role ``all`` needs (``!announce all``: the Secretariat)."""
    topic: str = "things"
    whose: str = "the CoP"
    """How help names the CoP: ``the CoP``, ``the event's CoP``."""
    room: bool = False
    read: Callable[[dict[str, Any]], str | None] | None = None
    """Reads the CoP code from the parsed values when it is not an argument of its own
    (an option ``cop=HDEV``); the values are then left as they are."""

    async def resolve(self, ctx: Context, values: dict[str, Any], role: Role) -> Scope:
        """The scope of this call; replaces the raw argument in ``values``."""
        roles = await ctx.roles()
        if self.kind is not None:
            return await self._thing(ctx, values, roles)
        if self.room:
            cop = ctx.settings.cop(ctx.room_cop or "")
            assert cop is not None, "a command of the room's CoP works only in CoP rooms"
            return Scope(roles.in_cop(cop.code), cop=cop)
        code: str | None = self.read(values) if self.read else values.get(self.arg or "")
        if code == ALL and not self.all_word:
            raise CommandError(
                Message("Name one CoP here, not all. ").append(known_cops_hint(ctx.prefix, ctx))
            )
        missing = self.missing
        if code is None and missing is Missing.ROOM_OR_MINE:
            missing = Missing.ROOM if ctx.room_cop is not None else Missing.MINE
        if code is None and missing is Missing.ROOM:
            code = ctx.room_cop
        if code == ALL or (code is None and missing is Missing.MINE):
            cops = CopSet(tuple(roles.cops(max(role, Role.MEMBER))), every=roles.admin)
            self._put(values, cops)
            return Scope(roles.highest(), cops=cops, all=code == ALL)
        if code is None:
            raise CommandError(
                Message("Which CoP? Add its code, e.g. ")
                .code(f"{ctx.prefix}{ctx.command.name if ctx.command else 'cops'} HDEV")
                .text(". ")
                .append(known_cops_hint(ctx.prefix, ctx))
            )
        cop = ctx.settings.cop(code)
        if cop is None:
            raise CommandError(
                Message("There is no CoP with the code ")
                .code(code)
                .text(". ")
                .append(known_cops_hint(ctx.prefix, ctx))
            )
        self._put(values, cop)
        return Scope(roles.in_cop(cop.code), cop=cop)

    def _put(self, values: dict[str, Any], resolved: CopConfig | CopSet) -> None:
        if self.read is None and self.arg is not None:
            values[self.arg] = resolved

    async def _thing(self, ctx: Context, values: dict[str, Any], roles: Roles) -> Scope:
        kind, number = self.kind, values[self.arg or ""]
        assert kind is not None
        thing = await kind.load(ctx.session, number, self.lock)
        if thing is None:
            raise CommandError(kind.not_found(ctx.prefix, number))
        code = kind.cop_of(thing)
        role = roles.in_cop(code)
        owner = kind.owner_of is not None and kind.owner_of(thing) == ctx.sender
        guest = False
        if role < kind.seen_from and not owner and kind.also_sees is not None:
            guest = await kind.also_sees(ctx.session, thing, ctx.sender)
        if role < kind.seen_from and not owner and not guest:
            raise CommandError(kind.not_found(ctx.prefix, number))
        values[self.arg or ""] = thing
        cop = ctx.settings.cop(code) or CopConfig(code=code, name=code)
        return Scope(role, cop=cop, thing=thing, owner=owner, number=number, guest=guest)


def known_cops_hint(prefix: str, ctx: Context) -> Message:
    codes = ", ".join(cop.code for cop in ctx.settings.cops)
    return Message(f"The CoPs are: {codes}. ").code(f"{prefix}cops").text(" lists them.")


def cop_arg(
    arg: str = "cop",
    *,
    missing: Missing = Missing.ROOM,
    all_word: bool = False,
    topic: str = "things",
    read: Callable[[dict[str, Any]], str | None] | None = None,
    all_role: Role = Role.ANYONE,
) -> Source:
    """The CoP named by argument ``arg`` (or found by ``read`` in the parsed values); see
    :class:`Missing` for a left-out one. ``all_word``: ``all`` means every CoP the caller
    has the role in (``all_role``: only someone with that role may say ``all``)."""
    return Source(
        arg=arg,
        missing=missing,
        all_word=all_word or all_role > Role.ANYONE,
        topic=topic,
        read=read,
        all_role=all_role,
    )


def room_cop(topic: str = "things") -> Source:
    """The CoP of the room the command was sent in (declare ``places=Place.COP_ROOM``)."""
    return Source(room=True, topic=topic, whose="the room's CoP")


def numbered(arg: str, kind: Kind[Any], *, lock: bool = False) -> Source:
    """The CoP of the thing whose number is in argument ``arg``; ``lock`` loads it locked
    (the handler changes it)."""
    return Source(arg=arg, kind=kind, lock=lock, topic=kind.topic, whose=f"the {kind.noun}'s CoP")
