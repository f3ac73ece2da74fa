"""``!digest preview`` and ``!digest send`` for the moderators of a CoP."""

from __future__ import annotations

from datetime import datetime, timedelta

from commands.args import Arg, ArgError, cop_code
from commands.context import Context
from commands.digest.post import build_digest, cop_zone, due_moment, post_digest
from commands.errors import CommandError
from commands.registry import Family, Place
from commands.roles import Role
from commands.scope import cop_arg
from commands.text import Message
from config.models import CopConfig, Settings
from storage import digest as store

family = Family()


def _again(token: str) -> str:
    if token.lower() != "again":
        raise ArgError(f"{token!r} is not understood here; only 'again' may follow the CoP")
    return "again"


def digest_cop(token: str) -> str:
    """A CoP code, but not the word ``again`` (``!digest send again`` in a CoP room)."""
    if token.strip().lower() == "again":
        raise ArgError("'again' is not a CoP")
    return cop_code(token)


def _local_text(settings: Settings, code: str, when: datetime) -> str:
    tz = cop_zone(settings, code)
    return f"{when.astimezone(tz):%a %d %b at %H:%M} ({tz.key})"


@family.command(
    "digest preview",
    help="Show what this week's digest of a CoP would say, without posting it.",
    section="Intel",
    args=[Arg("cop", parser=cop_code, optional=True, metavar="[COP]")],
    role=Role.MODERATOR,
    cop=cop_arg(topic="digest"),
    places=Place.COP_ROOM | Place.PRIVATE,
    examples=["!digest preview HDEV"],
)
async def preview(ctx: Context, cop: CopConfig) -> None:
    code = cop.code
    digest = await build_digest(ctx.session, ctx.settings, code, ctx.now)
    msg = Message("Preview of the ").bold(f"{code} digest").text(" (not posted):")
    msg.para().append(digest.message).para()
    earlier = await store.week_post(ctx.session, code, digest.iso_year, digest.iso_week)
    schedule = ctx.settings.digest.schedule_for(code)
    if earlier is not None:
        what = "skipped as empty" if earlier.skipped else "posted"
        msg.text(f"This week's digest was {what} on ")
        msg.text(_local_text(ctx.settings, code, earlier.claimed_at) + ".")
    elif schedule.enabled:
        due = due_moment(schedule, cop_zone(ctx.settings, code), ctx.now)
        if due < ctx.now:
            due += timedelta(days=7)
        msg.text(f"It goes to the {code} room on {_local_text(ctx.settings, code, due)}.")
    else:
        msg.text(f"Weekly digests are switched off for {code}.")
    if digest.empty and ctx.settings.digest.empty_week == "skip":
        msg.text(" An empty week is not posted.")
    msg.text(" To post it now send ").code(f"{ctx.prefix}digest send {code}").text(".")
    await ctx.reply(msg)


@family.command(
    "digest send",
    help="Post this week's digest to a CoP room now.\n"
    "Each week's digest is posted once; add `again` to post an updated one anyway.",
    section="Intel",
    args=[
        Arg("cop", parser=digest_cop, optional=True, metavar="[COP]"),
        Arg("again", parser=_again, optional=True, metavar="[again]"),
    ],
    role=Role.MODERATOR,
    cop=cop_arg(topic="digest"),
    places=Place.COP_ROOM | Place.PRIVATE,
    examples=["!digest send HDEV", "!digest send HDEV again"],
)
async def send(ctx: Context, cop: CopConfig, again: str | None) -> None:
    code = cop.code
    outcome = await post_digest(
        ctx.session,
        ctx.settings,
        code,
        ctx.now,
        kind="manual",
        requested_by=ctx.sender,
        again=again is not None,
    )
    if outcome.status == "no-room":
        raise CommandError(f"I do not know the room of {code} yet, so I cannot post there.")
    if outcome.status == "claimed":
        earlier = outcome.earlier
        when = _local_text(ctx.settings, code, earlier.claimed_at) if earlier else "earlier"
        what = "was skipped as an empty week" if earlier and earlier.skipped else "went out"
        raise CommandError(
            Message(f"This week's {code} digest {what} on {when}. To post an updated one ")
            .text("anyway, send ")
            .code(f"{ctx.prefix}digest send {code} again")
            .text(".")
        )
    assert outcome.digest is not None
    await ctx.audit(
        "digest.send", cop_code=code, target=outcome.digest.tag, detail="again" if again else ""
    )
    where = "here" if ctx.place is Place.COP_ROOM else f"to the {code} room"
    await ctx.reply(
        Message(f"Done: the digest of week {outcome.digest.iso_week} is posted {where}.")
    )
