"""Membership: profiles, applying to a CoP (with a question-and-answer dialogue in a direct
message), deciding applications, keeping CoP rooms members-only, moderators and their power
levels, member lists and the audit log."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from commands.args import Arg, ArgError, Options, cop_code, positive_int, user_id
from commands.context import Context
from commands.errors import CommandError, UsageError
from commands.membership_rules import (
    COUNTRIES,
    COUNTRY_CHOICES,
    TYPE_CHOICES,
    TYPE_LABELS,
    Verdict,
    assess,
    country_name,
    parse_choice,
    parse_country,
    parse_org,
    parse_type,
    short_type,
)
from commands.registry import Place, Registry, Role
from commands.services import Services
from commands.text import Message, strip_reply_fallback
from config.models import CopConfig, Settings
from storage import membership as ms
from storage import repo
from storage.models import AuditEntry, Membership, Person

log = logging.getLogger(__name__)

MODERATOR_LEVEL = 50
ADMIN_LEVEL = 100
QUESTIONS = ("org", "country", "type")
APPROVE_KEYS = {"✅", "✔", "☑"}
TAG_PREFIX = "application:"
MAX_MESSAGE = 1000
MAX_AUDIT = 200
REFRESH_SECONDS = 30
STATUS_WORDS = {
    "member": "member",
    "applied": "applied, waiting for a decision",
    "rejected": "not accepted",
    "left": "left",
    "removed": "removed",
}
DECISION_PLACES = Place.MANAGEMENT | Place.DM

Send = Callable[[Message], Awaitable[None]]


# --- small helpers -------------------------------------------------------------------------


def _sentence(problem: str) -> str:
    return problem[:1].upper() + problem[1:]


def join_message(token: str) -> str:
    value = token.strip()
    if len(value) > MAX_MESSAGE:
        raise ArgError(f"the message is too long ({MAX_MESSAGE} characters at most)")
    return value


def cop_title(cop: CopConfig) -> Message:
    return Message().bold(cop.code).text(f" — {cop.name}")


def describe(person: Person | None) -> str:
    """``City of Oslo · Norway (NO) · local authority``."""
    if person is None:
        return "no profile"
    return " · ".join(
        [
            person.org or "organisation not given",
            country_name(person.country),
            short_type(person.authority_type),
        ]
    )


def local_time(settings: Settings, when: datetime) -> str:
    return when.astimezone(ZoneInfo(settings.secretariat.timezone)).strftime("%Y-%m-%d %H:%M")


def missing_facts(person: Person | None) -> list[str]:
    if person is None:
        return list(QUESTIONS)
    facts = {"org": person.org, "country": person.country, "type": person.authority_type}
    return [key for key in QUESTIONS if not facts[key]]


def application_tag(row: Membership) -> str:
    """What the management-room notice is tagged with, so a ✅ on it finds the application.
    The time stamp keeps a reaction to an old notice from approving a newer application."""
    return f"{TAG_PREFIX}{row.id}:{int(row.applied_at.timestamp())}"


def is_admin(settings: Settings, user: str) -> bool:
    return user in settings.secretariat.admins


async def role_of(session: AsyncSession, settings: Settings, user: str, cop: str) -> Role:
    """The role of any user (not only the caller) in a CoP, from config and database."""
    if is_admin(settings, user):
        return Role.ADMIN
    if await ms.moderator_source(session, user, cop) is not None:
        return Role.MODERATOR
    row = await ms.get_membership(session, user, cop)
    return Role.MEMBER if row is not None and row.status == "member" else Role.ANYONE


async def cop_room(session: AsyncSession, code: str) -> str | None:
    cop = await repo.get_cop(session, code)
    return cop.room_id if cop else None


async def invite(session: AsyncSession, room_id: str, user: str, now: datetime) -> bool:
    """Invite unless the user is in the room or invited already; True when queued."""
    if await ms.room_membership(session, room_id, user) in ("join", "invite", "ban"):
        return False
    await repo.enqueue(session, room_id=room_id, kind="invite", payload={"user_id": user}, now=now)
    await ms.set_room_membership(session, room_id, user, "invite", now=now)
    return True


async def kick(session: AsyncSession, room_id: str, user: str, reason: str, now: datetime) -> bool:
    """Take a user out of a room (or take back their invitation); True when queued.

    Skipped only when the bot knows they are not there: a kick of someone who has left
    fails at the homeserver, while leaving a removed person in a members-only room is worse.
    """
    if await ms.room_membership(session, room_id, user) in ("leave", "ban"):
        return False
    await repo.enqueue(
        session, room_id=room_id, kind="kick", payload={"user_id": user, "reason": reason}, now=now
    )
    await ms.set_room_membership(session, room_id, user, "leave", now=now)
    return True


async def sync_power(
    session: AsyncSession, settings: Settings, now: datetime, codes: Iterable[str] | None = None
) -> None:
    """Queue power-level changes so every CoP room gives its moderators 50 and admins 100.

    What the bot has granted is remembered, so levels of people who lost a role are taken
    back. An admin's 100 cannot be taken back by the bot (it has 100 itself); that is left
    to a room admin.
    """
    wanted_codes = set(codes) if codes is not None else {cop.code for cop in settings.cops}
    moderators = await ms.moderators_by_cop(session)
    for cop in settings.cops:
        if cop.code not in wanted_codes:
            continue
        room_id = await cop_room(session, cop.code)
        if room_id is None:
            continue
        wanted: dict[str, int] = {user: MODERATOR_LEVEL for user in moderators.get(cop.code, {})}
        wanted.update({user: ADMIN_LEVEL for user in settings.secretariat.admins})
        granted = await ms.power_grants(session, room_id)
        changes: dict[str, int | None] = {
            user: level for user, level in wanted.items() if granted.get(user) != level
        }
        dropped = {user: None for user in granted if user not in wanted}
        if changes or dropped:
            send: dict[str, int | None] = dict(changes)
            send.update({u: None for u in dropped if granted[u] < ADMIN_LEVEL})
            if send:
                await repo.enqueue(
                    session, room_id=room_id, kind="power", payload={"set": send}, now=now
                )
            await ms.set_power_grants(session, room_id, {**changes, **dropped})


# --- messages ------------------------------------------------------------------------------


def cancel_hint(prefix: str) -> Message:
    return Message("(Send ").code(f"{prefix}cancel").text(" to stop.)")


def question(kind: str, prefix: str) -> Message:
    if kind == "org":
        msg = Message("What is the full name of your organisation? (For example: City of Oslo.)")
    elif kind == "country":
        msg = Message("In which country is your organisation established? ")
        msg.text("Answer with the number or the country code:")
        msg.bullets(f"{n} — {COUNTRIES[c]} ({c})" for n, c in enumerate(COUNTRY_CHOICES, 1))
    else:
        msg = Message("What kind of organisation is it? Answer with the number:")
        msg.bullets(f"{n} — {TYPE_LABELS[t]}" for n, t in enumerate(TYPE_CHOICES, 1))
    return msg.br().append(cancel_hint(prefix))


def parse_answer(kind: str, answer: str) -> str:
    """Validate one answer of the join dialogue; raises ArgError with what is wrong."""
    if kind == "org":
        return parse_org(answer)
    if kind == "country":
        return parse_choice(answer, COUNTRY_CHOICES) or parse_country(answer)
    chosen = parse_choice(answer, TYPE_CHOICES)
    if chosen is not None:
        return chosen
    try:
        return parse_type(answer)
    except ArgError:
        raise ArgError(
            f"please answer with a number from 1 to {len(TYPE_CHOICES)}; "
            f"{answer.strip()[:40]!r} is not one of them"
        ) from None


def profile_message(prefix: str, person: Person | None, statuses: dict[str, str]) -> Message:
    msg = Message("Your profile:")
    msg.bullets(
        [
            Message("Organisation: ").text((person.org if person else None) or "not set yet"),
            Message("Country: ").text(
                country_name(person.country) if person and person.country else "not set yet"
            ),
            Message("Type: ").text(
                short_type(person.authority_type)
                if person and person.authority_type
                else "not set yet"
            ),
        ]
    )
    if statuses:
        msg.text("Your CoPs: ")
        msg.text(", ".join(f"{code} ({STATUS_WORDS.get(s, s)})" for code, s in statuses.items()))
        msg.br()
    msg.text("Change it with ").code(f'{prefix}profile set org="..." country=XX type=<type>')
    msg.text(" (types: ").text(", ".join(TYPE_CHOICES)).text(").")
    return msg


def refusal(prefix: str, cop: CopConfig, reason: str) -> Message:
    return (
        Message("Sorry, I can't file an application to ")
        .append(cop_title(cop))
        .text(f": {reason}.")
        .para()
        .text(
            "Suppliers, consultancies, industry associations and other market actors are "
            "welcome as guests: a CoP moderator can invite you to a single event, such as a "
            "market dialogue or a pitching session."
        )
        .para()
        .text("If your profile is wrong, correct it with ")
        .code(f"{prefix}profile set")
        .text(" and send ")
        .code(f"{prefix}join {cop.code}")
        .text(" again.")
    )


def not_pending(prefix: str, cop: CopConfig, user: str, row: Membership | None) -> Message:
    msg = Message().text(user)
    if row is None:
        msg.text(" has not applied to ").bold(cop.code).text(". ")
    elif row.status == "member":
        return msg.text(" is already a member of ").bold(cop.code).text(".")
    elif row.status == "rejected":
        msg.text(" was already turned down for ").bold(cop.code)
        msg.text(f" (by {row.decided_by}). ")
    else:
        msg.text(f" is not a member of {cop.code} any more ({row.status}) and has no ")
        msg.text("application waiting. ")
    return msg.code(f"{prefix}applications {cop.code}").text(" lists the applications waiting.")


# --- applying ------------------------------------------------------------------------------


async def submit(
    ctx: Context, user: str, cop: CopConfig, message: str, person: Person
) -> tuple[Message, bool]:
    """File the application if the profile allows it; (answer for the applicant, filed)."""
    result = assess(person.org, person.country, person.authority_type)
    if result.verdict is Verdict.REFUSED:
        return refusal(ctx.prefix, cop, result.reason), False
    flagged = result.verdict is Verdict.FLAGGED
    row = await ms.file_application(
        ctx.session,
        user_id=user,
        cop_code=cop.code,
        message=message,
        flagged=flagged,
        flag_reason=result.reason,
        now=ctx.now,
    )
    await post_notice(ctx, row, person, cop)
    answer = Message("Thank you! Your application to ").append(cop_title(cop))
    answer.text(" is with its moderators. I'll tell you in our direct chat when they decide.")
    if flagged:
        answer.text(
            " The Secretariat will first check that your organisation counts as a "
            "contracting authority, so this may take a little longer."
        )
    return answer, True


async def post_notice(ctx: Context, row: Membership, person: Person, cop: CopConfig) -> None:
    """Tell the management room about a new application, with the commands to decide."""
    if not ctx.management_room:
        return
    user, prefix = row.user_id, ctx.prefix
    flag = (
        Message("⚠️ Flagged for the Secretariat: ").text(row.flag_reason)
        if row.flagged
        else Message("Flag: none (the profile meets the eligibility rules)")
    )
    note = Message("Message: ").text(f"“{row.message}”" if row.message else "none")
    msg = Message("New application to ").append(cop_title(cop))
    msg.bullets(
        [
            Message("Who: ").text(user),
            Message("Organisation: ").text(person.org or "not given"),
            Message("Country: ").text(country_name(person.country)),
            Message("Type: ").text(short_type(person.authority_type)),
            flag,
            note,
        ]
    )
    msg.text("To decide: ").code(f"{prefix}approve {user} {cop.code}").text(" or ")
    msg.code(f"{prefix}reject {user} {cop.code} <reason>")
    msg.text(". Reacting ✅ to this message approves too.")
    await ctx.send(ctx.management_room, msg, tag=application_tag(row))


async def continue_dialogue(ctx: Context, dialogue: ms.JoinDialogue, send: Send) -> None:
    """Ask the next missing fact, or finish: file (or refuse) the application."""
    user = dialogue.user_id
    cop = ctx.settings.cop(dialogue.cop_code)
    if cop is None:
        await ms.end_dialogue(ctx.session, user)
        ctx.registry.listening.discard(user)
        await send(Message(f"The CoP {dialogue.cop_code} does not exist any more, so I stopped."))
        return
    person = await ms.get_person(ctx.session, user)
    missing = missing_facts(person)
    if missing:
        await ms.set_dialogue_question(ctx.session, dialogue, missing[0], now=ctx.now)
        await send(Message("Thank you. ").append(question(missing[0], ctx.prefix)))
        return
    assert person is not None
    await ms.end_dialogue(ctx.session, user)
    ctx.registry.listening.discard(user)
    answer, _filed = await submit(ctx, user, cop, dialogue.message, person)
    await send(answer)


async def approve(ctx: Context, cop: CopConfig, user: str) -> Message:
    """Approve a pending application; returns the answer for the moderator."""
    row = await ms.get_membership(ctx.session, user, cop.code)
    if row is None or row.status != "applied":
        raise CommandError(not_pending(ctx.prefix, cop, user, row))
    await ms.decide(ctx.session, row, status="member", by=ctx.sender, reason="", now=ctx.now)
    await repo.audit(
        ctx.session, actor=ctx.sender, action="approve", cop_code=cop.code, target=user, now=ctx.now
    )
    room_id = await cop_room(ctx.session, cop.code)
    if room_id is not None:
        await invite(ctx.session, room_id, user, now=ctx.now)
    await ctx.dm(
        user,
        Message("Welcome to ")
        .append(cop_title(cop))
        .text("! The moderators approved your application. I've invited you to the CoP's ")
        .text("room: accept the invitation in your Matrix client to join the conversation. ")
        .text("In the room, ")
        .code(f"{ctx.prefix}help")
        .text(" shows what members can do."),
    )
    person = await ms.get_person(ctx.session, user)
    return (
        Message("Approved: ")
        .text(user)
        .text(f" ({describe(person)}) is now a member of ")
        .bold(cop.code)
        .text(". I've invited them to the room and told them.")
    )


# --- registration ----------------------------------------------------------------------------


def register(reg: Registry) -> None:  # noqa: PLR0915 - one declaration per command
    # --- profile ---------------------------------------------------------------------------
    @reg.command(
        "profile",
        help="Show your organisation, country and type of authority.\n"
        "These facts decide whether you can join a CoP. In a room, I send them to you in "
        "a direct message.",
        section="Membership",
        examples=["!profile"],
    )
    async def profile(ctx: Context) -> None:
        person = await ms.get_person(ctx.session, ctx.sender)
        msg = profile_message(ctx.prefix, person, await ctx.memberships())
        if ctx.place is Place.DM:
            await ctx.reply(msg)
        else:
            await ctx.dm(ctx.sender, msg)
            await ctx.reply("I've sent your profile to you in a direct message.")

    @reg.command(
        "profile set",
        help="Set your organisation, country or type of authority.\n"
        "Country: the two-letter code of an EU or EEA country (EL or GR for Greece). "
        "Type: state-authority, regional-authority, local-authority, "
        "body-governed-by-public-law, association-of-authorities or central-purchasing-body; "
        "if none fits, other-public-body or public-company (the Secretariat checks those).",
        section="Membership",
        options=Options({"org": parse_org, "country": parse_country, "type": parse_type}),
        examples=[
            '!profile set org="City of Oslo" country=NO type=local-authority',
            "!profile set country=EL",
        ],
    )
    async def profile_set(ctx: Context, options: dict[str, str]) -> None:
        if not options:
            assert ctx.command is not None
            raise UsageError(reg.usage_message(ctx.command, "tell me what to set"))
        person = await ms.save_profile(
            ctx.session,
            ctx.sender,
            org=options.get("org"),
            country=options.get("country"),
            authority_type=options.get("type"),
            now=ctx.now,
        )
        msg = Message("Saved. ").append(profile_message(ctx.prefix, person, {}))
        dialogue = await ms.get_dialogue(ctx.session, ctx.sender)
        if dialogue is None and not missing_facts(person):
            result = assess(person.org, person.country, person.authority_type)
            msg.para()
            if result.verdict is Verdict.REFUSED:
                msg.text(
                    f"Please note: with this profile you cannot join a CoP, as {result.reason}."
                )
            else:
                msg.text("You can apply to a CoP with ").code(f"{ctx.prefix}join <CODE>")
                msg.text("; ").code(f"{ctx.prefix}cops").text(" lists them.")
        await ctx.reply(msg)
        if dialogue is not None:

            async def to_dm(message: Message) -> None:
                await ctx.dm(ctx.sender, message)

            await continue_dialogue(ctx, dialogue, ctx.reply if ctx.place is Place.DM else to_dm)

    # --- joining and leaving -----------------------------------------------------------------
    @reg.command(
        "join",
        help="Apply to join a Community of Practice.\n"
        "Add a message for the moderators if you like. If I don't know your organisation "
        "yet, I ask you a few questions in a direct message first.",
        section="Membership",
        args=[
            Arg("cop", cop_code, metavar="<COP>"),
            Arg("message", join_message, optional=True, rest=True, default=""),
        ],
        examples=["!join HDEV", "!join HDEV We are buying 40 electric buses next year."],
    )
    async def join(ctx: Context, cop: str, message: str) -> None:
        target = ctx.resolve_cop(cop)
        user = ctx.sender
        if ctx.is_admin:
            raise CommandError(
                Message("You are an admin of the Secretariat, so you already have access to ")
                .text("every CoP, ")
                .bold(target.code)
                .text(" included.")
            )
        if target.code in await ctx.moderates():
            raise CommandError(
                Message("You moderate ").bold(target.code).text(", so you already have access.")
            )
        row = await ms.get_membership(ctx.session, user, target.code)
        if row is not None and row.status == "member":
            await ctx.reply(await already_member(ctx, target))
            return
        if row is not None and row.status == "applied":
            raise CommandError(
                Message("You already applied to ")
                .bold(target.code)
                .text(f" on {local_time(ctx.settings, row.applied_at)[:10]}, and the ")
                .text("moderators haven't decided yet. I'll tell you in our direct chat when ")
                .text("they do.")
            )
        person = await ms.get_person(ctx.session, user)
        missing = missing_facts(person)
        if missing:
            await ms.start_dialogue(
                ctx.session,
                user_id=user,
                cop_code=target.code,
                message=message,
                asked=missing[0],
                now=ctx.now,
            )
            ctx.registry.listening.add(user)
            count = "one question" if len(missing) == 1 else f"{len(missing)} questions"
            intro = Message("To apply to ").append(cop_title(target))
            intro.text(f", I need to know a little about your organisation: {count}. ")
            intro.text("Nothing is filed until we are done.").para()
            intro.append(question(missing[0], ctx.prefix))
            if ctx.place is Place.DM:
                await ctx.reply(intro)
            else:
                await ctx.dm(user, intro)
                await ctx.reply(
                    "I've sent you a few questions in a direct message: please answer there."
                )
            return
        assert person is not None
        answer, filed = await submit(ctx, user, target, message, person)
        if not filed:
            raise CommandError(answer)
        await ctx.reply(answer)

    async def already_member(ctx: Context, cop: CopConfig) -> Message:
        msg = Message("You are already a member of ").bold(cop.code).text(". ")
        room_id = await cop_room(ctx.session, cop.code)
        if room_id is None:
            return msg
        state = await ms.room_membership(ctx.session, room_id, ctx.sender)
        if state == "join":
            return msg.text("You're in its room, too.")
        if state == "invite":
            return msg.text("An invitation to its room is waiting in your Matrix client.")
        await invite(ctx.session, room_id, ctx.sender, now=ctx.now)
        return msg.text("I've sent you a new invitation to its room.")

    @reg.command(
        "cancel",
        help="Stop the questions I am asking you for an application.",
        section="Membership",
        examples=["!cancel"],
    )
    async def cancel(ctx: Context) -> None:
        dialogue = await ms.get_dialogue(ctx.session, ctx.sender)
        if dialogue is None:
            raise CommandError(
                Message("There is nothing to cancel: I am not asking you anything. ")
                .text("To withdraw an application, send ")
                .code(f"{ctx.prefix}leave <COP>")
                .text(".")
            )
        await stop_dialogue(ctx, dialogue)

    async def stop_dialogue(ctx: Context, dialogue: ms.JoinDialogue) -> None:
        await ms.end_dialogue(ctx.session, dialogue.user_id)
        ctx.registry.listening.discard(dialogue.user_id)
        await ctx.reply(
            Message("Stopped: nothing was filed. What you already told me is kept in your ")
            .text("profile (see ")
            .code(f"{ctx.prefix}profile")
            .text("). Send ")
            .code(f"{ctx.prefix}join {dialogue.cop_code}")
            .text(" when you want to carry on.")
        )

    @reg.on("dialogue")
    async def on_answer(ctx: Context, event: dict[str, Any]) -> None:
        if ctx.place is not Place.DM:
            return
        dialogue = await ms.get_dialogue(ctx.session, ctx.sender)
        if dialogue is None:
            ctx.registry.listening.discard(ctx.sender)
            return
        body = (event.get("content") or {}).get("body")
        answer = strip_reply_fallback(body if isinstance(body, str) else "").strip()
        if not answer:
            return
        if answer.lower().strip(".!") in ("cancel", "stop"):
            await stop_dialogue(ctx, dialogue)
            return
        try:
            value = parse_answer(dialogue.asked, answer)
        except ArgError as exc:
            await ctx.reply(
                Message(_sentence(str(exc)))
                .text(".")
                .para()
                .append(question(dialogue.asked, ctx.prefix))
            )
            return
        facts = {dialogue.asked: value}
        await ms.save_profile(
            ctx.session,
            ctx.sender,
            org=facts.get("org"),
            country=facts.get("country"),
            authority_type=facts.get("type"),
            now=ctx.now,
        )
        await continue_dialogue(ctx, dialogue, ctx.reply)

    @reg.command(
        "leave",
        help="Leave a Community of Practice, or withdraw your application to it.",
        section="Membership",
        args=[Arg("cop", cop_code, optional=True, metavar="<COP>")],
        examples=["!leave HDEV"],
    )
    async def leave(ctx: Context, cop: str | None) -> None:
        target = ctx.resolve_cop(cop)
        row = await ms.get_membership(ctx.session, ctx.sender, target.code)
        if row is None or row.status not in ("member", "applied"):
            raise CommandError(
                Message("You are not a member of ")
                .bold(target.code)
                .text(", and you have no ")
                .text("application waiting there.")
            )
        if row.status == "applied":
            await ms.decide(
                ctx.session, row, status="left", by=ctx.sender, reason="withdrawn", now=ctx.now
            )
            await ctx.notify_management(
                Message()
                .text(ctx.sender)
                .text(" withdrew their application to ")
                .bold(target.code)
                .text(".")
            )
            await ctx.reply(
                Message("I've withdrawn your application to ").bold(target.code).text(".")
            )
            return
        await ms.decide(ctx.session, row, status="left", by=ctx.sender, reason="", now=ctx.now)
        msg = Message("You have left ").append(cop_title(target)).text(". ")
        if await ctx.role_in(target.code) >= Role.MODERATOR:
            msg.text("As a moderator or admin you keep access to its room.")
        else:
            room_id = await cop_room(ctx.session, target.code)
            if room_id is not None:
                await kick(ctx.session, room_id, ctx.sender, "Left the CoP", now=ctx.now)
            msg.text("You are welcome back any time: send ").code(f"{ctx.prefix}join {target.code}")
            msg.text(".")
        await ctx.reply(msg)

    # --- moderating --------------------------------------------------------------------------
    @reg.command(
        "applications",
        help="List the applications waiting for a decision (your CoPs, or one CoP).",
        section="Moderation",
        args=[Arg("cop", cop_code, optional=True, metavar="[COP]")],
        role=Role.MODERATOR,
        places=DECISION_PLACES,
        examples=["!applications", "!applications HDEV"],
    )
    async def applications(ctx: Context, cop: str | None) -> None:
        codes: list[str] | None
        if cop is not None:
            target = ctx.resolve_cop(cop)
            await ctx.require(Role.MODERATOR, target.code)
            codes = [target.code]
            where = target.code
        elif ctx.is_admin:
            codes, where = None, "any CoP"
        else:
            codes = sorted(await ctx.moderates())
            where = "your CoPs (" + ", ".join(codes) + ")"
        entries = await ms.pending_applications(ctx.session, codes)
        if not entries:
            await ctx.reply(f"No applications are waiting for {where}.")
            return
        items = []
        for entry in entries:
            row = entry.membership
            item = Message().bold(row.cop_code).text(" · ").text(row.user_id)
            item.text(f" · {describe(entry.person)}")
            item.text(f" · applied {local_time(ctx.settings, row.applied_at)[:10]}")
            if row.flagged:
                item.text(" · ⚠️ flagged: ").text(row.flag_reason)
            if row.message:
                item.text(" · ").text(f"“{row.message}”")
            items.append(item)
        msg = Message(f"Applications waiting for {where} ({len(entries)}):").bullets(items)
        msg.text("Decide with ").code(f"{ctx.prefix}approve <@user> <COP>").text(" or ")
        msg.code(f"{ctx.prefix}reject <@user> <COP> <reason>").text(".")
        await ctx.reply(msg)

    @reg.command(
        "approve",
        help="Approve an application: the applicant becomes a member and is invited to the "
        "CoP's room.",
        section="Moderation",
        args=[Arg("user", user_id, metavar="<@user>"), Arg("cop", cop_code, metavar="<COP>")],
        role=Role.MODERATOR,
        places=DECISION_PLACES,
        examples=["!approve @anna:example.org HDEV"],
    )
    async def approve_(ctx: Context, user: str, cop: str) -> None:
        target = ctx.resolve_cop(cop)
        await ctx.require(Role.MODERATOR, target.code)
        await ctx.reply(await approve(ctx, target, user))

    @reg.command(
        "reject",
        help="Turn down an application; the applicant gets your reason in a direct message.",
        section="Moderation",
        args=[
            Arg("user", user_id, metavar="<@user>"),
            Arg("cop", cop_code, metavar="<COP>"),
            Arg("reason", rest=True),
        ],
        role=Role.MODERATOR,
        places=DECISION_PLACES,
        examples=["!reject @bob:example.org HDEV Only public buyers can join this CoP."],
    )
    async def reject(ctx: Context, user: str, cop: str, reason: str) -> None:
        target = ctx.resolve_cop(cop)
        await ctx.require(Role.MODERATOR, target.code)
        row = await ms.get_membership(ctx.session, user, target.code)
        if row is not None and row.status == "member":
            raise CommandError(
                Message()
                .text(user)
                .text(" is already a member of ")
                .bold(target.code)
                .text(". To take them out, use ")
                .code(f"{ctx.prefix}remove {user} {target.code} <reason>")
                .text(".")
            )
        if row is None or row.status != "applied":
            raise CommandError(not_pending(ctx.prefix, target, user, row))
        await ms.decide(
            ctx.session, row, status="rejected", by=ctx.sender, reason=reason, now=ctx.now
        )
        await repo.audit(
            ctx.session,
            actor=ctx.sender,
            action="reject",
            cop_code=target.code,
            target=user,
            detail=reason,
            now=ctx.now,
        )
        await ctx.dm(
            user,
            Message("Your application to ")
            .append(cop_title(target))
            .text(" was not accepted. The moderators' reason: ")
            .italic(reason)
            .para()
            .text("If something has changed, you can correct your profile with ")
            .code(f"{ctx.prefix}profile set")
            .text(" and apply again with ")
            .code(f"{ctx.prefix}join {target.code}")
            .text("."),
        )
        await ctx.reply(
            Message("Turned down the application of ")
            .text(user)
            .text(" to ")
            .bold(target.code)
            .text(". I've sent them your reason.")
        )

    @reg.command(
        "remove",
        help="Take a member out of a CoP and its room; they are told why.",
        section="Moderation",
        args=[
            Arg("user", user_id, metavar="<@user>"),
            Arg("cop", cop_code, metavar="<COP>"),
            Arg("reason", optional=True, rest=True, default=""),
        ],
        role=Role.MODERATOR,
        places=DECISION_PLACES | Place.COP_ROOM,
        examples=["!remove @carl:example.org HDEV Left the organisation."],
    )
    async def remove(ctx: Context, user: str, cop: str, reason: str) -> None:
        target = ctx.resolve_cop(cop)
        await ctx.require(Role.MODERATOR, target.code)
        if is_admin(ctx.settings, user):
            raise CommandError(
                Message()
                .text(user)
                .text(" is an admin of the Secretariat and has access to ")
                .text("every CoP; admins can't be removed.")
            )
        if await ms.moderator_source(ctx.session, user, target.code) is not None:
            raise CommandError(
                Message()
                .text(user)
                .text(" moderates ")
                .bold(target.code)
                .text(". An admin can take that role away first with ")
                .code(f"{ctx.prefix}mod remove {user} {target.code}")
                .text(".")
            )
        row = await ms.get_membership(ctx.session, user, target.code)
        if row is not None and row.status == "applied":
            raise CommandError(
                Message()
                .text(user)
                .text(" has only applied. To turn them down, use ")
                .code(f"{ctx.prefix}reject {user} {target.code} <reason>")
                .text(".")
            )
        if row is None or row.status != "member":
            raise CommandError(
                Message().text(user).text(" is not a member of ").bold(target.code).text(".")
            )
        await ms.decide(
            ctx.session, row, status="removed", by=ctx.sender, reason=reason, now=ctx.now
        )
        await repo.audit(
            ctx.session,
            actor=ctx.sender,
            action="remove",
            cop_code=target.code,
            target=user,
            detail=reason,
            now=ctx.now,
        )
        room_id = await cop_room(ctx.session, target.code)
        if room_id is not None:
            await kick(
                ctx.session,
                room_id,
                user,
                f"Removed from the CoP{': ' + reason if reason else ''}"[:250],
                now=ctx.now,
            )
        told = Message("You have been removed from ").append(cop_title(target))
        told.text(" by its moderators.")
        if reason:
            told.text(" Their reason: ").italic(reason)
        told.para().text("If you have questions, please contact the BBWT Secretariat.")
        await ctx.dm(user, told)
        await ctx.reply(
            Message("Removed ")
            .text(user)
            .text(" from ")
            .bold(target.code)
            .text(": they are out of the room and I've told them why.")
        )

    @reg.on("reaction")
    async def on_reaction(ctx: Context, event: dict[str, Any]) -> None:
        """✅ on an application notice in the management room approves it."""
        if ctx.place is not Place.MANAGEMENT:
            return
        relates = (event.get("content") or {}).get("m.relates_to") or {}
        if not isinstance(relates, dict) or relates.get("rel_type") != "m.annotation":
            return
        key = str(relates.get("key") or "").replace("\ufe0f", "").strip()
        if key not in APPROVE_KEYS or not isinstance(relates.get("event_id"), str):
            return
        tag = await repo.tag_of_sent_event(ctx.session, relates["event_id"])
        if not tag or not tag.startswith(TAG_PREFIX):
            return
        row_id, _, stamp = tag[len(TAG_PREFIX) :].partition(":")
        row = await ms.get_membership_by_id(ctx.session, int(row_id)) if row_id.isdigit() else None
        if row is None:
            return
        cop = ctx.settings.cop(row.cop_code)
        if cop is None:
            return
        await ctx.require(Role.MODERATOR, cop.code)
        if row.status != "applied" or str(int(row.applied_at.timestamp())) != stamp:
            raise CommandError(
                Message("Your ✅ in the management room came too late: that application to ")
                .bold(cop.code)
                .text(" of ")
                .text(row.user_id)
                .text(" was already dealt with. ")
                .code(f"{ctx.prefix}applications {cop.code}")
                .text(" shows what is waiting.")
            )
        assert ctx.management_room is not None
        await ctx.send(ctx.management_room, await approve(ctx, cop, row.user_id))

    # --- keeping CoP rooms members-only -------------------------------------------------------
    @reg.on("member")
    async def on_member(ctx: Context, event: dict[str, Any]) -> None:
        if ctx.place not in (Place.COP_ROOM, Place.MANAGEMENT):
            return
        target = event.get("state_key")
        membership = (event.get("content") or {}).get("membership")
        if not isinstance(target, str) or not isinstance(membership, str):
            return
        await ms.set_room_membership(ctx.session, ctx.room_id, target, membership, now=ctx.now)
        code = ctx.room_cop
        if ctx.place is not Place.COP_ROOM or code is None or membership != "join":
            return
        if target == ctx.settings.matrix.user_id:
            return
        if await role_of(ctx.session, ctx.settings, target, code) >= Role.MEMBER:
            return
        cop = ctx.settings.cop(code)
        if cop is None:
            return
        await kick(
            ctx.session, ctx.room_id, target, f"Members only: apply with !join {code}", now=ctx.now
        )
        row = await ms.get_membership(ctx.session, target, code)
        told = Message("Hello! The room of ").append(cop_title(cop))
        told.text(" is only for its members, so I've taken you out of it. ")
        if row is not None and row.status == "applied":
            told.text("Your application is still with the moderators; I'll invite you as soon ")
            told.text("as it is approved.")
        else:
            told.text("To become a member, apply with ").code(f"{ctx.prefix}join {code}")
            told.text(" (here in our direct chat is fine). The CoPs are open to public buyers ")
            told.text("in the EU and EEA; suppliers and other market actors can be invited as ")
            told.text("guests to single events.")
        await ctx.dm(target, told)
        await ctx.notify_management(
            Message()
            .text(target)
            .text(" joined the ")
            .bold(code)
            .text(" room without being a member, so I removed them and told them how to apply.")
        )

    # --- roles ---------------------------------------------------------------------------------
    @reg.command(
        "mod add",
        help="Make someone a moderator of a CoP (admins only).",
        section="Admin",
        args=[Arg("user", user_id, metavar="<@user>"), Arg("cop", cop_code, metavar="<COP>")],
        role=Role.ADMIN,
        places=DECISION_PLACES,
        examples=["!mod add @maria:example.org HDEV"],
    )
    async def mod_add(ctx: Context, user: str, cop: str) -> None:
        target = ctx.resolve_cop(cop)
        await ctx.require(Role.ADMIN, target.code)
        if is_admin(ctx.settings, user):
            raise CommandError(
                Message().text(user).text(" is an admin and can already do everything.")
            )
        if await ms.moderator_source(ctx.session, user, target.code) is not None:
            raise CommandError(
                Message().text(user).text(" already moderates ").bold(target.code).text(".")
            )
        await ms.add_moderator(ctx.session, user, target.code, now=ctx.now)
        await repo.audit(
            ctx.session,
            actor=ctx.sender,
            action="mod-add",
            cop_code=target.code,
            target=user,
            now=ctx.now,
        )
        await sync_power(ctx.session, ctx.settings, ctx.now, [target.code])
        room_id = await cop_room(ctx.session, target.code)
        if room_id is not None:
            await invite(ctx.session, room_id, user, now=ctx.now)
        if ctx.management_room:
            await invite(ctx.session, ctx.management_room, user, now=ctx.now)
        await ctx.dm(
            user,
            Message("You are now a moderator of ")
            .append(cop_title(target))
            .text(". I've invited you to its room and to the management room, where new ")
            .text("applications appear. ")
            .code(f"{ctx.prefix}help")
            .text(" shows your commands."),
        )
        await ctx.reply(
            Message()
            .text(user)
            .text(" now moderates ")
            .bold(target.code)
            .text(" (power level 50 in its room). I've invited and told them.")
        )

    @reg.command(
        "mod remove",
        help="Take away someone's moderator role in a CoP (admins only).",
        section="Admin",
        args=[Arg("user", user_id, metavar="<@user>"), Arg("cop", cop_code, metavar="<COP>")],
        role=Role.ADMIN,
        places=DECISION_PLACES,
        examples=["!mod remove @maria:example.org HDEV"],
    )
    async def mod_remove(ctx: Context, user: str, cop: str) -> None:
        target = ctx.resolve_cop(cop)
        await ctx.require(Role.ADMIN, target.code)
        source = await ms.moderator_source(ctx.session, user, target.code)
        if source is None:
            raise CommandError(
                Message().text(user).text(" is not a moderator of ").bold(target.code).text(".")
            )
        if source == "config":
            raise CommandError(
                Message()
                .text(user)
                .text(" is a moderator of ")
                .bold(target.code)
                .text(" in the configuration file; remove them there and restart the bot.")
            )
        await ms.remove_moderator(ctx.session, user, target.code)
        await repo.audit(
            ctx.session,
            actor=ctx.sender,
            action="mod-remove",
            cop_code=target.code,
            target=user,
            now=ctx.now,
        )
        await sync_power(ctx.session, ctx.settings, ctx.now, [target.code])
        notes = Message()
        room_id = await cop_room(ctx.session, target.code)
        if (
            room_id is not None
            and await role_of(ctx.session, ctx.settings, user, target.code) < Role.MEMBER
        ):
            if await kick(
                ctx.session, room_id, user, "No longer a moderator of this CoP", now=ctx.now
            ):
                notes.text(" As they are not a member, I took them out of its room.")
        if (
            ctx.management_room
            and not is_admin(ctx.settings, user)
            and not await repo.moderated_cops(ctx.session, user)
            and await kick(
                ctx.session, ctx.management_room, user, "No longer a moderator", now=ctx.now
            )
        ):
            notes.text(" They moderate no other CoP, so I took them out of this room.")
        await ctx.dm(
            user,
            Message("You are no longer a moderator of ")
            .append(cop_title(target))
            .text(". Thank you for your work! If you want to stay in the CoP as a member, ")
            .text("send ")
            .code(f"{ctx.prefix}join {target.code}")
            .text("."),
        )
        await ctx.reply(
            Message()
            .text(user)
            .text(" no longer moderates ")
            .bold(target.code)
            .text(".")
            .append(notes)
        )

    # --- listing -------------------------------------------------------------------------------
    @reg.command(
        "members",
        help="List the organisations and countries of a CoP's members.\n"
        "Members of the CoP (and its moderators) also see Matrix IDs, except in rooms "
        "where people outside the CoP could read them.",
        section="Membership",
        args=[Arg("cop", cop_code, optional=True, metavar="[COP]")],
        role=Role.MEMBER,
        examples=["!members", "!members HDEV"],
    )
    async def members(ctx: Context, cop: str | None) -> None:
        target = ctx.resolve_cop(cop)
        inside = await ctx.role_in(target.code) >= Role.MEMBER
        private_place = ctx.place in (Place.DM, Place.MANAGEMENT) or (
            ctx.place is Place.COP_ROOM and ctx.room_cop == target.code
        )
        show_ids = inside and private_place
        entries = await ms.members_of(ctx.session, target.code)
        count = f"{len(entries)} member" + ("" if len(entries) == 1 else "s")
        msg = Message().append(cop_title(target)).text(f": {count}")
        items = []
        for entry in entries:
            person = entry.person
            item = Message().text((person.org if person else None) or "organisation not given")
            item.text(" — ").text(country_name(person.country if person else None))
            if show_ids:
                item.text(" — ").text(entry.user_id)
            items.append(item)
        if items:
            msg.text(":").bullets(items)
        else:
            msg.text(".").br()
        moderators = sorted((await ms.moderators_by_cop(ctx.session)).get(target.code, {}))
        if moderators and show_ids:
            msg.text("Moderators: ").text(", ".join(moderators)).text(".")
        elif moderators:
            msg.text(f"Moderators: {len(moderators)}.")
        else:
            msg.text("Moderators: the BBWT Secretariat.")
        if not show_ids and inside:
            msg.br().text("(Matrix IDs are shown only in the CoP's room or a direct message.)")
        await ctx.reply(msg)

    # --- audit -----------------------------------------------------------------------------------
    @reg.command(
        "audit",
        help="Show the last admin actions (approvals, rejections, removals, role changes).\n"
        "Moderators see the actions in their own CoPs.",
        section="Moderation",
        args=[Arg("count", positive_int, optional=True, default=10, metavar="[N]")],
        role=Role.MODERATOR,
        places=DECISION_PLACES,
        examples=["!audit", "!audit 50"],
    )
    async def audit(ctx: Context, count: int) -> None:
        count = min(count, MAX_AUDIT)
        cops = None if ctx.is_admin else await ctx.moderates()
        entries = await repo.recent_audit(ctx.session, count, cops)
        if not entries:
            await ctx.reply(
                "The audit log has no entries yet" + ("." if cops is None else " for your CoPs.")
            )
            return
        zone = ctx.settings.secretariat.timezone
        msg = Message(f"The last {len(entries)} actions (times in {zone}):")
        msg.bullets(audit_line(ctx.settings, entry) for entry in entries)
        await ctx.reply(msg)


AUDIT_VERBS = {
    "approve": "approved",
    "reject": "turned down",
    "remove": "removed",
    "mod-add": "made a moderator:",
    "mod-remove": "took the moderator role from",
}


def audit_line(settings: Settings, entry: AuditEntry) -> Message:
    line = Message(local_time(settings, entry.at)).text(" · ").text(entry.actor).text(" ")
    line.text(AUDIT_VERBS.get(entry.action, entry.action))
    if entry.target:
        line.text(" ").text(entry.target)
    if entry.cop_code:
        line.text(" · ").bold(entry.cop_code)
    if entry.detail:
        line.text(" · ").italic(entry.detail)
    return line


# --- start-up ---------------------------------------------------------------------------------


async def setup(services: Services) -> None:
    """Listen again to the dialogues that were open, and bring power levels in step."""

    async def prepare(session: AsyncSession) -> None:
        services.registry.listening.update(await ms.dialogue_users(session))
        await sync_power(session, services.settings, services.clock())

    await services.run(prepare)

    async def refresh() -> None:
        # Another bot process may have opened a dialogue; only ever add (see Registry).
        try:
            async with services.db.read() as session:
                services.registry.listening.update(await ms.dialogue_users(session))
        except Exception:
            log.exception("could not refresh the open join dialogues")

    services.scheduler.add_job(
        refresh,
        "interval",
        seconds=REFRESH_SECONDS,
        id="membership-dialogues",
        replace_existing=True,
        coalesce=True,
        max_instances=1,
    )
