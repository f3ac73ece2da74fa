"""Privacy: ``!mydata`` (a copy of everything stored about you) and ``!forgetme`` (an
erasure request, handed to the Secretariat for now)."""

from __future__ import annotations

import json
from typing import Any

from commands.context import Context
from commands.registry import Family, Place, Registry
from commands.text import Message
from storage import privacy as store
from storage import repo

family = Family()
CONTENTS = (
    "your profile, CoP memberships and applications, roles, event answers, attendance and "
    "guest invitations, the intel you shared, your travel claims, and the log entries about you"
)


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def summary(data: dict[str, Any], prefix: str) -> Message:
    """A short, plain overview of the export (sent to the person's direct chat only)."""
    profile = data["profile"]
    events = data["events"]
    items = [
        Message("Profile: ").text(
            ", ".join(
                str(profile[key])
                for key in ("organisation", "country", "authority_type")
                if profile[key]
            )
            or "nothing filled in"
        )
        if profile
        else Message("Profile: none"),
        Message(
            _count(
                len(data["memberships"]),
                "CoP membership or application",
                "CoP memberships or applications",
            )
        ),
        Message(
            f"{_count(len(events['answers']), 'event answer')}, "
            f"{_count(len(events['attended']), 'attendance')}, "
            f"{_count(len(events['guest_invitations']), 'guest invitation')}"
        ),
        Message(_count(len(data["intel_items"]), "intel item")),
        Message(_count(len(data["claims"]), "travel claim")),
        Message(_count(len(data["audit_log"]), "log entry", "log entries")),
    ]
    msg = Message("🔒 Here is everything I store about you, in the JSON file above:")
    msg.bullets(items)
    msg.text("To change your profile, use ").code(f"{prefix}profile set").text(". ")
    msg.text("To ask for your data to be erased, send ").code(f"{prefix}forgetme").text(".")
    return msg


def where(ctx: Context) -> str:
    if ctx.place is Place.DM:
        return "a direct message"
    if ctx.place is Place.COP_ROOM and ctx.room_cop:
        return f"the {ctx.room_cop} room"
    if ctx.place is Place.MANAGEMENT:
        return "the management room"
    return "another room"


@family.command(
    "mydata",
    help="Get a copy of everything I store about you, as a file in a direct message.\n"
    f"It holds {CONTENTS}. Asked in a room, I still answer only in our direct chat.",
    places=Place.ANYWHERE,
    examples=["!mydata"],
)
async def mydata(ctx: Context) -> None:
    data = await store.export(ctx.session, ctx.sender, ctx.now)
    blob = json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8")
    filename = f"bbwt-my-data-{ctx.now:%Y-%m-%d}.json"
    msg = summary(data, ctx.prefix)
    await ctx.private_file(
        filename,
        "application/json",
        blob,
        msg,
        room_note="I have sent it to you in a direct message.",
    )


@family.command(
    "forgetme",
    help="Ask for your personal data to be erased.\n"
    "For now the Secretariat handles erasure requests personally (some records, like "
    "travel claims, must be kept for accounting); I pass your request on to them.",
    places=Place.ANYWHERE,
    examples=["!forgetme"],
)
async def forgetme(ctx: Context) -> None:
    await repo.audit(
        ctx.session,
        actor=ctx.sender,
        action="privacy.erasure-request",
        target=ctx.sender,
        detail=f"asked in {where(ctx)}",
        now=ctx.now,
    )
    await ctx.notify_management(
        Message("🔒 ")
        .text(ctx.sender)
        .text(" asked for their personal data to be erased (")
        .code(f"{ctx.prefix}forgetme")
        .text("). Please get in touch with them and handle the request; they can get a copy ")
        .text("of their data with ")
        .code(f"{ctx.prefix}mydata")
        .text(".")
    )
    await ctx.reply(
        Message("Thank you, I have passed your request on. I can't erase data myself yet: ")
        .text("some records, such as travel claims, must be kept for accounting, so the ")
        .text("Secretariat handles erasure requests personally and will contact you. ")
        .text("Meanwhile, ")
        .code(f"{ctx.prefix}mydata")
        .text(f" sends you a copy of everything I store about you: {CONTENTS}.")
    )


def register(registry: Registry) -> None:
    registry.register(family)
