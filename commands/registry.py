"""The command registry: every command is declared once, and help, usage lines, permission
checks, "where may this be used" and "did you mean" are all derived from that declaration."""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import Flag, IntEnum, auto
from typing import TYPE_CHECKING, Any

from commands.args import Arg, ArgError, Options, parse_arguments
from commands.errors import PermissionDenied, UsageError
from commands.text import Message

if TYPE_CHECKING:
    from commands.context import Context


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


class Place(Flag):
    COP_ROOM = auto()
    DM = auto()
    MANAGEMENT = auto()
    OTHER = auto()
    ANYWHERE = COP_ROOM | DM | MANAGEMENT | OTHER

    def describe(self) -> str:
        names = {
            Place.COP_ROOM: "a CoP room",
            Place.DM: "a direct message with me",
            Place.MANAGEMENT: "the management room",
        }
        return " or ".join(text for place, text in names.items() if place in self)


Handler = Callable[..., Awaitable[None]]
EventHook = Callable[["Context", dict[str, Any]], Awaitable[None]]


@dataclass
class Command:
    name: str
    handler: Handler
    help: str
    section: str = "General"
    args: Sequence[Arg] = ()
    options: Options | None = None
    role: Role = Role.ANYONE
    places: Place = Place.ANYWHERE
    aliases: Sequence[str] = ()
    examples: Sequence[str] = ()

    def usage(self, prefix: str) -> str:
        parts = [f"{prefix}{self.name}"]
        parts += [arg.usage() for arg in self.args]
        if self.options is not None:
            parts.append(self.options.usage())
        return " ".join(part for part in parts if part)

    @property
    def summary(self) -> str:
        return self.help.strip().splitlines()[0]


@dataclass
class Registry:
    prefix: str = "!"
    commands: dict[str, Command] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    hooks: dict[str, list[EventHook]] = field(default_factory=dict)
    """Handlers for non-command events by kind: ``reaction``, ``redaction``, ``member``,
    ``dialogue``. Every hook of a kind sees every such event and ignores what is not its
    business."""
    listening: set[str] = field(default_factory=set)
    """Users in a question-and-answer dialogue with the bot: their plain (non-command) text
    messages are stored as ``dialogue`` events (see ``bot.sync.Classifier``). Families add
    and remove users; a ``dialogue`` hook must check the room and its own state."""

    def add(self, command: Command) -> Command:
        for name in (command.name, *command.aliases):
            if name in self.commands or name in self.aliases:
                raise ValueError(f"command {name!r} declared twice")
        self.commands[command.name] = command
        for alias in command.aliases:
            self.aliases[alias] = command.name
        return command

    def command(self, name: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`add`."""

        def wrap(handler: Handler) -> Handler:
            self.add(Command(name=name, handler=handler, **kwargs))
            return handler

        return wrap

    def on(self, kind: str) -> Callable[[EventHook], EventHook]:
        if kind not in ("reaction", "redaction", "member", "dialogue"):
            raise ValueError(f"unknown event kind {kind!r}")

        def wrap(hook: EventHook) -> EventHook:
            self.hooks.setdefault(kind, []).append(hook)
            return hook

        return wrap

    # --- lookup --------------------------------------------------------------------------
    def get(self, name: str) -> Command | None:
        name = name.lower().strip()
        if name.startswith(self.prefix):
            name = name[len(self.prefix) :]
        name = " ".join(name.split())
        return self.commands.get(self.aliases.get(name, name))

    def find(self, text: str) -> tuple[Command | None, str]:
        """Split ``text`` (without prefix) into the longest matching command name and the rest."""
        words = text.split(None, 3)
        for count in (3, 2, 1):
            if len(words) < count:
                continue
            name = " ".join(words[:count]).lower()
            command = self.get(name)
            if command is not None:
                rest = text.strip()
                for word in words[:count]:
                    rest = rest[rest.index(word) + len(word) :]
                return command, rest.strip()
        return None, text

    def suggest(self, text: str, visible: Callable[[Command], bool]) -> list[str]:
        words = text.lower().split()
        if not words:
            return []
        names = [c.name for c in self.commands.values() if visible(c)]
        # "!intel frobnicate": offer the commands of that family first.
        family = [name for name in names if name.split()[0] == words[0] and " " in name]
        if family:
            two = " ".join(words[:2])
            close = difflib.get_close_matches(two, family, n=3, cutoff=0.5)
            return close or sorted(family)
        single = {name.split()[0] for name in names}
        single |= {a for a, target in self.aliases.items() if target in names}
        return difflib.get_close_matches(words[0], sorted(single), n=3, cutoff=0.6)

    def visible_to(self, role: Role) -> list[Command]:
        return [c for c in self.commands.values() if c.role <= role]

    def sections(self, role: Role) -> dict[str, list[Command]]:
        out: dict[str, list[Command]] = {}
        for command in self.visible_to(role):
            out.setdefault(command.section, []).append(command)
        return out

    # --- running -------------------------------------------------------------------------
    async def dispatch(self, ctx: Context, text: str) -> Command | None:
        """Run the command in ``text`` (prefix already removed). Returns the command run."""
        command, rest = self.find(text)
        role = await ctx.highest_role()
        if command is None:
            typed = text.split(maxsplit=1)[0] if text.split() else ""
            suggestions = self.suggest(text, lambda c: c.role <= role)
            msg = Message("I don't know the command ").code(f"{self.prefix}{typed}").text(".")
            if suggestions:
                msg.text(" Did you mean ")
                for index, name in enumerate(suggestions):
                    if index:
                        msg.text(" or ")
                    msg.code(f"{self.prefix}{name}")
                msg.text("?")
            msg.text(" Send ").code(f"{self.prefix}help").text(" to see what I can do.")
            raise UsageError(msg)
        ctx.command = command
        if command.role > role:
            raise PermissionDenied(
                Message("Sorry, ")
                .code(f"{self.prefix}{command.name}")
                .text(f" is only for {command.role.label}.")
                .text(" Send ")
                .code(f"{self.prefix}help")
                .text(" to see the commands you can use.")
            )
        if ctx.place not in command.places:
            raise PermissionDenied(
                Message()
                .code(f"{self.prefix}{command.name}")
                .text(f" works only in {command.places.describe()}.")
            )
        try:
            values = parse_arguments(rest, command.args, command.options)
        except ArgError as exc:
            raise UsageError(self.usage_message(command, str(exc))) from None
        await command.handler(ctx, **values)
        return command

    def usage_message(self, command: Command, problem: str) -> Message:
        msg = Message()
        if problem:
            msg.text(problem[0].upper() + problem[1:]).text(". ")
        msg.text("Usage: ").code(command.usage(self.prefix))
        if command.examples:
            msg.br().text("Example: ").code(command.examples[0])
        return msg
