"""Commands for everyone: ``!help`` and ``!cops``."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from commands.args import Arg
from commands.context import Context
from commands.errors import UsageError
from commands.registry import Command, Family, Registry
from commands.roles import Role
from commands.text import Message, excerpt
from storage import repo

family = Family()


@dataclass(frozen=True)
class Section:
    """A topic of ``!help``: the commands declared with ``section=name``."""

    name: str
    about: str
    aliases: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return self.name.lower()


SECTIONS = [
    Section("General", "this help and the list of CoPs", ("start",)),
    Section("Membership", "your profile, joining and leaving a CoP, who its members are"),
    Section("Events", "meetings and visits, RSVPs and your calendar"),
    Section("Intel", "market intelligence: share, list and search; the weekly digest", ("digest",)),
    Section("Claims", "travel claims for in-person events", ("travel",)),
    Section("Moderation", "applications, members, announcements, exports and the audit log"),
    Section("Admin", "the moderators of each CoP", ("admins",)),
    Section("Privacy", "what I keep about you, a copy of it, and erasure", ("data",)),
]
SECTION_ORDER = [section.name for section in SECTIONS]


def _sections(registry: Registry, role: Role) -> list[tuple[Section, list[Command]]]:
    """The sections with commands this person may use, in help order."""
    found = registry.sections(role)
    known = {section.name: section for section in SECTIONS}
    ordered = sorted(found, key=lambda n: SECTION_ORDER.index(n) if n in known else 99)
    return [(known.get(name) or Section(name, ""), found[name]) for name in ordered]


def _section_named(
    word: str, shown: list[tuple[Section, list[Command]]]
) -> tuple[Section, list[Command]] | None:
    word = word.lower().strip()
    for section, commands in shown:
        if word == section.key or word in section.aliases:
            return section, commands
    return None


def _first_words(commands: list[Command], prefix: str) -> list[str]:
    """``!event``, ``!events``, ``!rsvp`` …: each command family once, in declaration order."""
    names: list[str] = []
    for command in commands:
        name = prefix + command.name.split()[0]
        if name not in names:
            names.append(name)
    return names


@family.command(
    "help",
    help="Show what I can do, by topic; or the commands of one topic; or explain one command.\n"
    "Without a word it lists the topics you can use, one line each; with a topic "
    "(e.g. `help events`) it lists that topic's commands; with a command name "
    "(e.g. `help rsvp`) it shows how to use it.",
    args=[Arg("topic", optional=True, rest=True, metavar="<topic or command>")],
    aliases=["h", "?"],
    examples=["!help", "!help events", "!help rsvp"],
)
async def help_(ctx: Context, topic: str | None) -> None:
    role = await ctx.highest_role()
    prefix, reg = ctx.prefix, ctx.registry
    if not topic:
        await ctx.reply(Message().append(_cached_overview(reg, role, prefix)))
        return
    shown = _sections(reg, role)
    word = " ".join(topic.split())
    as_command = word.startswith(prefix)  # `!help !events`: the command, not the topic
    section = None if as_command else _section_named(word, shown)
    if section is not None:
        await ctx.reply(_section_help(*section, reg, prefix))
        return
    found = reg.get(word)
    if found is not None and found.gate <= role:
        await ctx.reply(_command_help(found, prefix))
        return
    first = word.removeprefix(prefix).split()[0].lower() if word.removeprefix(prefix) else ""
    family_ = [c for c in reg.visible_to(role) if c.name.split()[0] == first and " " in c.name]
    if family_ and len(word.split()) == 1:
        msg = Message("Commands of ").code(f"{prefix}{first}").text(":")
        msg.bullets(Message().code(c.usage(prefix)).text(f" — {c.summary}") for c in family_)
        msg.text("Send ").code(f"{prefix}help <command>").text(" to learn more about one, e.g. ")
        msg.code(f"{prefix}help {family_[0].name}").text(".")
        await ctx.reply(msg)
        return
    raise UsageError(_unknown(word, shown, reg, role, prefix))


def _cached_overview(reg: Registry, role: Role, prefix: str) -> Message:
    """The ``!help`` overview is the same for everyone with a role: built once per registry,
    role and prefix (the registry does not change once built)."""
    key = ("help", role, prefix)
    cached = reg.memo.get(key)
    if not isinstance(cached, Message):
        cached = reg.memo[key] = _overview(_sections(reg, role), prefix)
    return cached


def _overview(shown: list[tuple[Section, list[Command]]], prefix: str) -> Message:
    msg = Message("Hello! I am the assistant of the ").bold("Big Buyers Working Together")
    msg.text(" Communities of Practice. Here is what I can do for you, by topic:")
    lines = []
    for section, commands in shown:
        line = Message().bold(section.name).text(" — ")
        if section.about:
            line.text(section.about).text(": ")
        for index, name in enumerate(_first_words(commands, prefix)):
            line.text(", " if index else "").code(name)
        lines.append(line.text(" · ").code(f"{prefix}help {section.key}"))
    msg.bullets(lines)
    example = next((s.key for s, _ in shown if s.key == "events"), shown[0][0].key)
    msg.text("Send ").code(f"{prefix}help <topic>").text(" for the commands of a topic (e.g. ")
    msg.code(f"{prefix}help {example}").text("), or ").code(f"{prefix}help <command>")
    msg.text(" to learn about one command (e.g. ").code(f"{prefix}help cops").text(").")
    return msg


def _section_help(
    section: Section, commands: list[Command], registry: Registry, prefix: str
) -> Message:
    msg = Message().bold(section.name)
    if section.about:
        msg.text(" — ").text(section.about)
    msg.text(":")
    msg.bullets(Message().code(c.usage(prefix)).text(f" — {c.summary}") for c in commands)
    msg.text("Send ").code(f"{prefix}help <command>").text(" for how to use one, e.g. ")
    msg.code(f"{prefix}help {commands[0].name}").text(".")
    if registry.get(section.key) is not None:
        msg.text(" For the command ").code(f"{prefix}{section.key}").text(" itself, send ")
        msg.code(f"{prefix}help {prefix}{section.key}").text(".")
    msg.text(" All topics: ").code(f"{prefix}help").text(".")
    return msg


def _command_help(found: Command, prefix: str) -> Message:
    msg = Message().bold(f"{prefix}{found.name}").text(" — ").text(found.help.strip())
    msg.para().text("Usage: ").code(found.usage(prefix))
    if found.aliases:
        msg.br().text("Also: ").text(", ".join(f"{prefix}{a}" for a in found.aliases))
    msg.br().text(found.rule())
    for example in found.example_lines(prefix):
        msg.br().text("Example: ").code(example)
    return msg


def _unknown(
    word: str,
    shown: list[tuple[Section, list[Command]]],
    registry: Registry,
    role: Role,
    prefix: str,
) -> Message:
    bare = word.removeprefix(prefix)
    msg = Message("There is no topic or command ").code(excerpt(bare or word))
    msg.text(" that you can use.")
    keys = [section.key for section, _ in shown]
    close = difflib.get_close_matches(bare.lower(), keys, n=1, cutoff=0.6)
    commands = registry.suggest(bare, lambda c: c.gate <= role)
    if close:
        msg.text(" Did you mean ").code(f"{prefix}help {close[0]}").text("?")
    elif commands:
        msg.text(" Did you mean ").code(f"{prefix}{commands[0]}").text("?")
    msg.para().text("Your topics: ")
    for index, key in enumerate(keys):
        msg.text(", " if index else "").code(key)
    msg.text(". Send ").code(f"{prefix}help <topic>").text(" for one, or ")
    msg.code(f"{prefix}help").text(" for what each is about.")
    return msg


@family.command(
    "cops",
    help="List the Communities of Practice, their member counts and your status in each.",
    examples=["!cops"],
)
async def cops(ctx: Context) -> None:
    counts = await repo.member_counts(ctx.session)
    mine = await ctx.memberships()
    moderates = await ctx.moderates()
    status_text = {
        "member": "member",
        "applied": "applied",
        "rejected": "not accepted",
    }
    items = []
    for cop in ctx.settings.cops:
        count = counts.get(cop.code, 0)
        line = Message().bold(cop.code).text(f" — {cop.name} · {count} ")
        line.text("member" if count == 1 else "members")
        if ctx.is_admin:
            status = "admin"
        elif cop.code in moderates:
            status = "moderator"
        else:
            status = status_text.get(mine.get(cop.code, ""), "—")
        line.text(f" · you: {status}")
        items.append(line)
    msg = Message("The BBWT Communities of Practice:").bullets(items)
    msg.text("To apply, send ").code(f"{ctx.prefix}join <CODE>").text(" (e.g. ")
    msg.code(f"{ctx.prefix}join HDEV").text(").")
    await ctx.reply(msg)


def register(registry: Registry) -> None:
    registry.register(family)
