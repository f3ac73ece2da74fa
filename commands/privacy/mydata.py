"""``!mydata``: a copy of everything the bot stores about the person who asks, as a JSON
file in their direct chat, with a short summary."""

from __future__ import annotations

import json
from typing import Any

from commands.context import Context
from commands.registry import Family, Place
from commands.text import Message, plural
from storage import privacy as store

family = Family()
CONTENTS = (
    "your profile, CoP memberships and applications, roles, event answers, attendance and "
    "guest invitations, the intel you shared, your travel claims, the log entries about you, "
    "the commands you sent me and the messages I sent you"
)


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
            plural(
                len(data["memberships"]),
                "CoP membership or application",
                "CoP memberships or applications",
            )
        ),
        Message(
            f"{plural(len(events['answers']), 'event answer')}, "
            f"{plural(len(events['attended']), 'attendance')}, "
            f"{plural(len(events['guest_invitations']), 'guest invitation')}"
        ),
        Message(plural(len(data["intel_items"]), "intel item")),
        Message(plural(len(data["claims"]), "travel claim")),
        Message(plural(len(data["audit_log"]), "log entry", "log entries")),
        Message(
            f"{plural(len(data['stored_events']), 'command or event', 'commands and events')} "
            f"you sent me, {plural(len(data['messages_to_you']), 'message')} I sent you"
        ),
    ]
    msg = Message("🔒 Here is everything I store about you, in the JSON file above:")
    msg.bullets(items)
    msg.text("To change your profile, use ").code(f"{prefix}profile set").text(". ")
    msg.text("How long I keep what: ").code(f"{prefix}privacy").text(". ")
    msg.text("To have your data erased, send ").code(f"{prefix}forgetme").text(".")
    return msg


@family.command(
    "mydata",
    section="Privacy",
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
