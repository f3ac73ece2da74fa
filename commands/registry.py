"""The command registry: every command is declared once, and help, usage lines, who may use
it, where, which CoP it is about and "did you mean" are all derived from that declaration.

The registry runs every check before a handler does: the caller's role, the place, the
arguments, the CoP (resolved from an argument, the room or a numbered thing, see
:mod:`commands.scope`), the caller's role in that CoP and "a CoP room shows only its own
CoP". A handler holds only its behaviour.
"""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import Flag, auto
from typing import TYPE_CHECKING, Any

from commands.args import Arg, ArgError, Options, parse_arguments
from commands.errors import CommandError, PermissionDenied, UsageError
from commands.roles import Role
from commands.scope import Scope, Source
from commands.text import Message, excerpt

if TYPE_CHECKING:
    from commands.context import Context

__all__ = ["Command", "EventHook", "Family", "Handler", "Place", "Registry", "Role"]

PRIVACY_LINE = "Let's do this privately: I have sent you a direct message."


class Place(Flag):
    """Where a command was sent, and (in a declaration) where it may be answered.

    In a declaration ``COP_ROOM`` means the room of the command's own CoP (any CoP room
    for a command about no CoP); another CoP's room is ``OTHER_COP_ROOM``, which a command
    about a CoP must name to be answered there.
    """

    COP_ROOM = auto()
    DM = auto()
    MANAGEMENT = auto()
    OTHER = auto()
    OTHER_COP_ROOM = auto()
    PRIVATE = DM | MANAGEMENT
    ANYWHERE = COP_ROOM | DM | MANAGEMENT | OTHER
    EVERYWHERE = ANYWHERE | OTHER_COP_ROOM

    def describe(self, *, own: bool = False) -> str:
        """``a CoP room or the management room``; with ``own``, for a command about a CoP."""
        if Place.EVERYWHERE in self or (not own and Place.ANYWHERE in self):
            return "any room or a direct message with me"
        if Place.ANYWHERE in self:
            return "any room but another CoP's, or a direct message with me"
        names = {
            Place.COP_ROOM: "the CoP's own room" if own else "a CoP room",
            Place.OTHER_COP_ROOM: "another CoP's room",
            Place.OTHER: "another room",
            Place.DM: "a direct message with me",
            Place.MANAGEMENT: "the management room",
        }
        return " or ".join(text for place, text in names.items() if place in self)


Handler = Callable[..., Awaitable[None]]
EventHook = Callable[["Context", dict[str, Any]], Awaitable[bool | None]]
"""A hook returns True when the event was its business (a ``dialogue`` hook that took the
text as an answer: the processor then does not read it as a command)."""


@dataclass
class Command:
    name: str
    handler: Handler
    help: str
    section: str = "General"
    args: Sequence[Arg] = ()
    options: Options | None = None
    role: Role = Role.ANYONE
    """The role needed: in the command's CoP, or anywhere for a command about no CoP."""
    places: Place = Place.ANYWHERE
    cop: Source | None = None
    """Where the command's CoP comes from (None: it is about no one CoP)."""
    any_cop: bool = False
    """``role`` in any CoP is enough, whichever CoP the command is about (``!members``)."""
    owner: bool = False
    """The owner of the numbered thing may use it too (their claim, the item they shared)."""
    guests: bool = False
    """Guests invited to an event may use it for that event (they need no role)."""
    private: str | None = None
    """Asked outside ``places``, say so there and carry on in a direct message, starting with
    this note (claims). Without it, such a command is refused."""
    aliases: Sequence[str] = ()
    examples: Sequence[str] = ()
    listed: bool = True
    """Shown in the ``!help`` list (``!help <name>`` explains it either way)."""
    reads_replied_event: bool = False
    """The command works on the message it replies to (an uploaded file): the processor
    reads that message before the command's transaction (``Context.fetch_event``)."""

    def usage(self, prefix: str) -> str:
        parts = [f"{prefix}{self.name}"]
        parts += [arg.usage() for arg in self.args]
        if self.options is not None:
            parts.append(self.options.usage())
        return " ".join(part for part in parts if part)

    def example_lines(self, prefix: str) -> list[str]:
        """The examples, written with ``!``, in the configured prefix."""
        return [prefix + e[1:] if e.startswith("!") else e for e in self.examples]

    @property
    def summary(self) -> str:
        return self.help.strip().splitlines()[0]

    @property
    def gate(self) -> Role:
        """The role needed in some CoP before anything else is looked at."""
        if self.guests:
            return Role.ANYONE
        return min(self.role, Role.MEMBER) if self.owner else self.role

    def rule(self) -> str:
        """Who may use it and where, for ``!help``: ``For moderators of the CoP, in …``."""
        who = self.role.label
        if self.cop is not None and Role.ANYONE < self.role < Role.ADMIN:
            who += " of any CoP" if self.any_cop else f" of {self.cop.whose}"
        if self.owner and self.cop is not None and self.cop.kind is not None:
            who = f"the person who {self.cop.kind.owned} it and {who}"
        if self.guests:
            who += " and invited guests"
        where = self.places.describe(own=self.cop is not None)
        text = f"For {who}, in {where}."
        if self.private:
            text += " Asked elsewhere, I answer in a direct message."
        return text


class Family:
    """The commands and hooks of one module, declared at module level with the decorators
    below and added to a registry by calling the family: ``family(registry)``."""

    def __init__(self) -> None:
        self.commands: list[Command] = []
        self.hooks: list[tuple[str, EventHook]] = []

    def command(self, name: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        def wrap(handler: Handler) -> Handler:
            self.commands.append(Command(name=name, handler=handler, **kwargs))
            return handler

        return wrap

    def on(self, kind: str) -> Callable[[EventHook], EventHook]:
        def wrap(hook: EventHook) -> EventHook:
            self.hooks.append((kind, hook))
            return hook

        return wrap

    def __call__(self, registry: Registry) -> None:
        for command in self.commands:
            registry.add(replace(command))
        for kind, hook in self.hooks:
            registry.on(kind)(hook)


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
    and remove users; a ``dialogue`` hook must check the room and its own state. Plain text
    in a direct chat is offered to the ``dialogue`` hooks whoever sent it, before it is
    read as a command without prefix: a hook returns True when it took it as an answer."""
    memo: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)
    """What is derived from the declarations alone (the ``!help`` list per role), built
    once; cleared whenever a command is added."""

    def add(self, command: Command) -> Command:
        for name in (command.name, *command.aliases):
            if name in self.commands or name in self.aliases:
                raise ValueError(f"command {name!r} declared twice")
        source = command.cop
        argument = source.arg if source is not None and source.read is None else None
        if argument is not None and argument not in {a.name for a in command.args}:
            raise ValueError(f"{command.name!r}: its CoP comes from an unknown {argument!r}")
        self.commands[command.name] = command
        self.memo.clear()
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

    def register(self, *families: Callable[[Registry], None]) -> Registry:
        """Add the commands and hooks of each family (a :class:`Family`, or a module's
        ``register`` function)."""
        for family in families:
            family(self)
        return self

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
        return [c for c in self.commands.values() if c.gate <= role]

    def sections(self, role: Role) -> dict[str, list[Command]]:
        out: dict[str, list[Command]] = {}
        for command in self.visible_to(role):
            if command.listed:
                out.setdefault(command.section, []).append(command)
        return out

    # --- running -------------------------------------------------------------------------
    async def dispatch(self, ctx: Context, text: str) -> Command | None:
        """Run the command in ``text`` (prefix already removed). Returns the command run."""
        command, rest = self.find(text)
        if command is None:
            role = (await ctx.roles()).highest()
            raise UsageError(self.unknown_message(text, role))
        ctx.command = command
        await self._gate(ctx, command)
        if command.private and not self._may_be_here(ctx, command):
            # Nothing about it is said here, not even a usage line: it goes to a DM.
            await ctx.reply(PRIVACY_LINE)
            ctx.redirect(command.private)
            try:
                async with ctx.session.begin_nested():
                    await self._run(ctx, command, rest)
            except CommandError as exc:
                await ctx.reply(exc.message)
                ctx.failed = exc.outcome
            return command
        await self._run(ctx, command, rest)
        return command

    async def _run(self, ctx: Context, command: Command, rest: str) -> None:
        self._check_place(ctx, command)
        try:
            values = parse_arguments(rest, command.args, command.options)
        except ArgError as exc:
            raise UsageError(self.usage_message(command, str(exc))) from None
        ctx.scope = await self._scope(ctx, command, values)
        await command.handler(ctx, **values)

    async def authorize(self, ctx: Context, name: str, **values: Any) -> Scope:
        """The checks of command ``name`` for an action that is not typed as a command
        (a ✅ reaction approving an application): the same refusals, the same scope.
        ``values`` are parsed arguments; the CoP's argument is replaced by what it names."""
        command = self.commands[name]
        await self._gate(ctx, command)
        self._check_place(ctx, command)
        return await self._scope(ctx, command, values)

    async def _gate(self, ctx: Context, command: Command) -> None:
        if (await ctx.roles()).highest() < command.gate:
            raise PermissionDenied(
                Message("Sorry, ")
                .code(f"{self.prefix}{command.name}")
                .text(f" is only for {command.gate.label}.")
                .text(" Send ")
                .code(f"{self.prefix}help")
                .text(" to see the commands you can use.")
            )

    @staticmethod
    def _may_be_here(ctx: Context, command: Command) -> bool:
        if ctx.redirected:
            return True
        if ctx.place is Place.COP_ROOM:
            return bool(command.places & (Place.COP_ROOM | Place.OTHER_COP_ROOM))
        return ctx.place in command.places

    def _check_place(self, ctx: Context, command: Command) -> None:
        if not self._may_be_here(ctx, command):
            raise PermissionDenied(
                Message()
                .code(f"{self.prefix}{command.name}")
                .text(f" works only in {command.places.describe()}.")
            )

    async def _scope(self, ctx: Context, command: Command, values: dict[str, Any]) -> Scope:
        source = command.cop
        if source is None:
            return Scope((await ctx.roles()).highest())
        scope = await source.resolve(ctx, values, command.role)
        if scope.all and scope.role < source.all_role:
            usage = command.usage(self.prefix).replace("<COP|all>", ctx.settings.cops[0].code)
            raise PermissionDenied(
                Message(f"Sorry, only the Secretariat can {command.name} to every CoP at once. ")
                .text("Name your CoP instead, e.g. ")
                .code(usage)
                .text(".")
            )
        cop = scope.cop
        guest = command.guests and scope.guest
        if cop is not None and not command.any_cop and not guest and scope.role < command.role:
            if command.owner and source.kind is not None and source.kind.owner_of is not None:
                if not scope.owner:
                    owner = source.kind.owner_of(scope.thing)
                    number = f"{source.kind.letter}{scope.number}"
                    verb = command.name.split()[-1]
                    raise PermissionDenied(
                        f"Only {owner}, who {source.kind.owned} {number}, or a "
                        f"{command.role.label[:-1]} of {cop.code} can {verb} it."
                    )
            else:
                refusal = Message(f"Sorry, only {command.role.label} of {cop.code} can do that")
                refusal.text(" (or the Secretariat)." if command.role < Role.ADMIN else ".")
                if command.role is Role.MEMBER:
                    refusal.text(" To apply, send ").code(f"{self.prefix}join {cop.code}")
                    refusal.text(".")
                raise PermissionDenied(refusal)
        others = [code for code in scope.codes if code != ctx.room_cop]
        here_cop_room = ctx.place is Place.COP_ROOM and not ctx.redirected
        if here_cop_room and others and Place.OTHER_COP_ROOM not in command.places:
            raise PermissionDenied(self.other_room_message(ctx, command, others))
        return scope

    def other_room_message(self, ctx: Context, command: Command, others: list[str]) -> Message:
        room, topic = ctx.room_cop, command.cop.topic if command.cop else "things"
        whose = f"{others[0]}'s" if len(others) == 1 else "other CoPs'"
        elsewhere = command.places & ~(Place.COP_ROOM | Place.OTHER | Place.OTHER_COP_ROOM)
        ask = f"Ask in the {others[0]} room" if len(others) == 1 else "Ask"
        if elsewhere:
            ask += (" or in " if len(others) == 1 else " in ") + elsewhere.describe()
        return Message(
            f"This is the {room} room: I will not show {whose} {topic} here "
            f"(in this room I only show {room}'s {topic}). {ask}."
        )

    def unknown_message(self, text: str, role: Role) -> Message:
        typed = text.split(maxsplit=1)[0] if text.split() else ""
        suggestions = self.suggest(text, lambda c: c.gate <= role)
        msg = Message("I don't know the command ").code(excerpt(f"{self.prefix}{typed}")).text(".")
        if suggestions:
            msg.text(" Did you mean ")
            for index, name in enumerate(suggestions):
                if index:
                    msg.text(" or ")
                msg.code(f"{self.prefix}{name}")
            msg.text("?")
        return msg.text(" Send ").code(f"{self.prefix}help").text(" to see what I can do.")

    def usage_message(self, command: Command, problem: str) -> Message:
        msg = Message()
        if problem:
            problem = excerpt(problem, 400)  # a parser may quote a very long word back
            problem = problem[0].upper() + problem[1:]
            msg.text(problem if problem.endswith((".", "?", "!", "…")) else problem + ".")
            msg.text(" ")
        msg.text("Usage: ").code(command.usage(self.prefix))
        if command.examples:
            msg.br().text("Example: ").code(command.example_lines(self.prefix)[0])
        return msg
