"""Announcements to CoP rooms (``!announce``) and the member and intel exports
(``!export members`` and ``!export intel``, plugged into the events family's ``!export``)."""

from __future__ import annotations

from datetime import UTC, datetime

from commands.args import Arg, ArgError, cop_code
from commands.context import Context
from commands.errors import CommandError, PermissionDenied
from commands.events import add_exporter, csv_bytes
from commands.registry import Place, Registry, Role
from commands.text import Message
from storage import announce as store
from storage import repo

SECTION = "Moderation"
ALL = "ALL"
MAX_TEXT = 4000
"""Longest announcement, in characters (a Matrix event must stay well under 64 KiB)."""
DETAIL_CHARS = 200
"""How much of the announcement the audit log keeps."""


def announce_target(token: str) -> str:
    """A CoP code, or ``all`` for every CoP."""
    if token.strip().lower() == "all":
        return ALL
    try:
        return cop_code(token)
    except ArgError:
        raise ArgError(f"{token!r} is not a CoP code such as HDEV, or all") from None


def announcement(ctx: Context, code: str, text: str) -> Message:
    """What the CoP room sees; ``text`` is the sender's own words, escaped by Message."""
    source = "the Secretariat" if ctx.is_admin else f"the {code} moderators"
    return Message("📣 ").bold(f"Announcement from {source}").para().text(text)


async def room_of(ctx: Context, code: str) -> str | None:
    if ctx.services is not None:
        room = ctx.services.room_of(code)
        if room:
            return room
    cop = await repo.get_cop(ctx.session, code)
    return cop.room_id if cop is not None else None


def _rooms(codes: list[str]) -> str:
    if len(codes) == 1:
        return f"the {codes[0]} room"
    return "the rooms of " + ", ".join(codes[:-1]) + " and " + codes[-1]


async def announce(ctx: Context, cop: str, text: str) -> None:
    p = ctx.prefix
    if cop == ALL:
        if not ctx.is_admin:
            raise PermissionDenied(
                Message("Sorry, only the Secretariat can announce to every CoP at once. ")
                .text("Name your CoP instead, e.g. ")
                .code(f"{p}announce HDEV <text>")
                .text(".")
            )
        codes = [c.code for c in ctx.settings.cops]
    else:
        code = ctx.resolve_cop(cop).code
        await ctx.require(Role.MODERATOR, code)
        codes = [code]
    if len(text) > MAX_TEXT:
        raise CommandError(
            f"That announcement is {len(text)} characters long; the limit is {MAX_TEXT}. "
            "Please shorten it, or share the details as intel and announce a summary."
        )
    posted: list[str] = []
    missing: list[str] = []
    for code in codes:
        room = await room_of(ctx, code)
        if room is None:
            missing.append(code)
            continue
        await ctx.send(room, announcement(ctx, code, text), tag="announce")
        await repo.audit(
            ctx.session,
            actor=ctx.sender,
            action="announce",
            cop_code=code,
            target=room,
            detail=text[:DETAIL_CHARS],
            now=ctx.now,
        )
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


# --- exports -------------------------------------------------------------------------------


def _utc(dt: datetime | None) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if dt else ""


MEMBER_COLUMNS = [
    "cop", "user", "organisation", "country", "type", "status", "applied_at_utc",
    "decided_at_utc",
]  # fmt: skip

INTEL_COLUMNS = ["item", "cop", "title", "tags", "urls", "author", "created_at_utc"]


async def export_members(ctx: Context, cops: list[str]) -> tuple[str, bytes]:
    """Members and applications (any status) with their profiles; ``!export`` has already
    checked that the caller moderates these CoPs and that this is a private place."""
    rows = [
        [
            membership.cop_code,
            membership.user_id,
            person.org if person else "",
            person.country if person else "",
            person.authority_type if person else "",
            membership.status,
            _utc(membership.applied_at),
            _utc(membership.decided_at),
        ]
        for membership, person in await store.memberships_of_cops(ctx.session, cops)
    ]
    return "members", csv_bytes(MEMBER_COLUMNS, rows)


async def export_intel(ctx: Context, cops: list[str]) -> tuple[str, bytes]:
    """Live intel items; removed items are left out."""
    rows = [
        [
            f"I{item.id}",
            item.cop_code,
            item.title,
            " ".join(f"#{tag}" for tag in item.tag_list),
            " ".join(item.urls or []),
            item.author,
            _utc(item.created_at),
        ]
        for item in await store.live_intel_of_cops(ctx.session, cops)
    ]
    return "intel", csv_bytes(INTEL_COLUMNS, rows)


def register(reg: Registry) -> None:
    p = reg.prefix
    add_exporter("members", "members and applications with their profiles", export_members)
    add_exporter("intel", "intel items (removed ones left out)", export_intel)
    reg.command(
        "announce",
        help="Post an announcement in a CoP room, as a notice from the moderators.\n"
        "Moderators announce to their own CoP; the Secretariat may use all for every CoP room. "
        "Works in the management room or a direct message with me.",
        section=SECTION,
        args=[
            Arg("cop", announce_target, metavar="<COP|all>"),
            Arg("text", rest=True, metavar="<text>"),
        ],
        role=Role.MODERATOR,
        places=Place.DM | Place.MANAGEMENT,
        examples=[
            f"{p}announce HDEV The market dialogue moves to Thursday 10:00.",
            f"{p}announce all The offices are closed on 1 May.",
        ],
    )(announce)
