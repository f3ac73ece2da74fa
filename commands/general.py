"""Commands for everyone: ``!help`` and ``!cops``."""

from __future__ import annotations

from commands.args import Arg
from commands.context import Context
from commands.errors import UsageError
from commands.registry import Family, Registry, Role
from commands.text import Message
from storage import repo

family = Family()
SECTION_ORDER = ["General", "Membership", "Events", "Intel", "Claims", "Moderation", "Admin"]


@family.command(
    "help",
    help="Show the commands you can use, or explain one command.\n"
    "Without a command name it lists everything available to you; "
    "with one (e.g. `help cops`) it shows how to use it.",
    args=[Arg("command", optional=True, rest=True)],
    aliases=["h", "?"],
    examples=["!help", "!help cops"],
)
async def help_(ctx: Context, command: str | None) -> None:
    role = await ctx.highest_role()
    prefix, reg = ctx.prefix, ctx.registry
    if command:
        found = reg.get(command)
        if found is None or found.gate > role:
            family = [
                c for c in reg.visible_to(role) if c.name.split()[0] == command.lower().strip()
            ]
            if family:
                msg = Message("Commands of ").code(f"{prefix}{command.strip()}").text(":")
                msg.bullets(Message().code(c.usage(prefix)).text(f" — {c.summary}") for c in family)
                await ctx.reply(msg)
                return
            suggestions = reg.suggest(command, lambda c: c.gate <= role)
            msg = Message("There is no command ").code(f"{prefix}{command.strip()}")
            msg.text(" that you can use.")
            if suggestions:
                msg.text(" Did you mean ").code(f"{prefix}{suggestions[0]}").text("?")
            raise UsageError(msg.text(" Send ").code(f"{prefix}help").text(" for the list."))
        msg = Message().bold(f"{prefix}{found.name}").text(" — ").text(found.help.strip())
        msg.para().text("Usage: ").code(found.usage(prefix))
        if found.aliases:
            msg.br().text("Also: ").text(", ".join(f"{prefix}{a}" for a in found.aliases))
        msg.br().text(found.rule())
        for example in found.example_lines(prefix):
            msg.br().text("Example: ").code(example)
        await ctx.reply(msg)
        return

    await ctx.reply(Message().append(command_list(reg, role, prefix)))


def command_list(reg: Registry, role: Role, prefix: str) -> Message:
    """The ``!help`` list for ``role``: the same for everyone with that role, so it is
    built once per registry, role and prefix (the registry does not change once built)."""
    key = ("help", role, prefix)
    cached = reg.memo.get(key)
    if isinstance(cached, Message):
        return cached
    msg = Message("Hello! I am the assistant of the ").bold("Big Buyers Working Together")
    msg.text(" Communities of Practice. Here is what you can ask me:")
    sections = reg.sections(role)
    for section in sorted(
        sections, key=lambda s: SECTION_ORDER.index(s) if s in SECTION_ORDER else 99
    ):
        msg.para().bold(section)
        msg.bullets(
            Message().code(c.usage(prefix)).text(f" — {c.summary}") for c in sections[section]
        )
    msg.para().text("Send ").code(f"{prefix}help <command>").text(" to learn more about one.")
    reg.memo[key] = msg
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
