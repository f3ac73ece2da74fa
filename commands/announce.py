"""Announcements to CoP rooms: ``!announce <COP|all> <text>``."""

from __future__ import annotations

from commands.args import Arg, cop_or_all
from commands.context import Context
from commands.errors import CommandError
from commands.registry import Family, Place, Registry
from commands.roles import Role
from commands.scope import CopSet, Missing, cop_arg
from commands.text import Message
from config.models import CopConfig

family = Family()
SECTION = "Moderation"
MAX_TEXT = 4000
"""Longest announcement, in characters (a Matrix event must stay well under 64 KiB)."""
DETAIL_CHARS = 200
"""How much of the announcement the audit log keeps."""


def announcement(ctx: Context, code: str, text: str) -> Message:
    """What the CoP room sees; ``text`` is the sender's own words, escaped by Message."""
    source = "the Secretariat" if ctx.is_admin else f"the {code} moderators"
    return Message("📣 ").bold(f"Announcement from {source}").para().text(text)


def _rooms(codes: list[str]) -> str:
    if len(codes) == 1:
        return f"the {codes[0]} room"
    return "the rooms of " + ", ".join(codes[:-1]) + " and " + codes[-1]


@family.command(
    "announce",
    help="Post an announcement in a CoP room, as a notice from the moderators.\n"
    "Moderators announce to their own CoP; the Secretariat may use all for every CoP room. "
    "Works in the management room or a direct message with me.",
    section=SECTION,
    args=[
        Arg("cop", cop_or_all, metavar="<COP|all>"),
        Arg("text", rest=True, metavar="<text>"),
    ],
    role=Role.MODERATOR,
    cop=cop_arg(missing=Missing.REQUIRED, all_role=Role.ADMIN),
    places=Place.PRIVATE,
    examples=[
        "!announce HDEV The market dialogue moves to Thursday 10:00.",
        "!announce all The offices are closed on 1 May.",
    ],
)
async def announce(ctx: Context, cop: CopConfig | CopSet, text: str) -> None:
    codes = [cop.code] if isinstance(cop, CopConfig) else list(cop.codes)
    if len(text) > MAX_TEXT:
        raise CommandError(
            f"That announcement is {len(text)} characters long; the limit is {MAX_TEXT}. "
            "Please shorten it, or share the details as intel and announce a summary."
        )
    posted: list[str] = []
    missing: list[str] = []
    for code in codes:
        room = await ctx.cop_room(code)
        if room is None:
            missing.append(code)
            continue
        await ctx.send(room, announcement(ctx, code, text), tag="announce")
        await ctx.audit("announce", cop_code=code, target=room, detail=text[:DETAIL_CHARS])
        posted.append(code)
    if not posted:
        raise CommandError(
            f"I could not post it: {_rooms(missing)} is not set up yet. "
            "Please try again in a minute, or ask the Secretariat to check the bot."
        )
    reply = Message(f"📣 Done: I posted your announcement in {_rooms(posted)}.")
    if missing:
        reply.text(f" Not posted in {_rooms(missing)}: not set up yet.")
    await ctx.reply(reply)


def register(registry: Registry) -> None:
    registry.register(family)
