"""Applying: profiles, ``!join`` with its question-and-answer dialogue in a direct message,
``!cancel`` and ``!leave``. A new application is posted to the management room with the
commands to decide it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from commands.args import Arg, ArgError, Options, cop_code
from commands.context import Context
from commands.errors import CommandError, UsageError
from commands.events.seats import release_seats, seat_note, withdrawn_answers
from commands.membership.render import (
    cop_title,
    country_retry,
    local_time,
    profile_message,
    question,
    refusal,
    sentence,
)
from commands.membership.rooms import invite, kick
from commands.membership.rules import (
    COUNTRY_CHOICES,
    TYPE_CHOICES,
    Verdict,
    assess,
    country_name,
    parse_choice,
    parse_country,
    parse_org,
    parse_type,
    short_type,
)
from commands.registry import Family, Place
from commands.roles import Role
from commands.scope import Missing, cop_arg
from commands.text import Message, match_key, strip_reply_fallback
from config.models import CopConfig
from storage import membership as ms
from storage.models import Membership, Person

family = Family()
QUESTIONS = ("org", "country", "type")
TAG_PREFIX = "application:"
MAX_MESSAGE = 1000
Send = Callable[[Message], Awaitable[None]]


def join_message(token: str) -> str:
    value = token.strip()
    if len(value) > MAX_MESSAGE:
        raise ArgError(f"the message is too long ({MAX_MESSAGE} characters at most)")
    return value


async def save_facts(ctx: Context, facts: dict[str, str]) -> Person:
    """Save the sender's profile facts given (``org``, ``country``, ``type``); the others
    stay as they were."""
    return await ms.save_profile(
        ctx.session,
        ctx.sender,
        org=facts.get("org"),
        country=facts.get("country"),
        authority_type=facts.get("type"),
        now=ctx.now,
    )


def missing_facts(person: Person | None) -> list[str]:
    if person is None:
        return list(QUESTIONS)
    facts = {"org": person.org, "country": person.country, "type": person.authority_type}
    return [key for key in QUESTIONS if not facts[key]]


def application_tag(row: Membership) -> str:
    """What the management-room notice is tagged with, so a ✅ on it finds the application.
    The time stamp keeps a reaction to an old notice from approving a newer application."""
    return f"{TAG_PREFIX}{row.id}:{int(row.applied_at.timestamp())}"


def parse_answer(kind: str, answer: str) -> str:
    """Validate one answer of the join dialogue; raises ArgError with what is wrong."""
    if kind == "org":
        return parse_org(answer)
    if kind == "country":
        chosen = parse_choice(answer, COUNTRY_CHOICES)
        if chosen is None and answer.strip().rstrip(".)").isdigit():
            raise ArgError(
                f"please answer with a number from 1 to {len(COUNTRY_CHOICES)}, or the "
                f"country's name or code; {answer.strip()[:8]} is not one of the numbers"
            )
        return chosen or parse_country(answer)
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


def check_profile(options: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The profile facts given to ``!profile set``, checked: (valid facts, problems)."""
    parsers = {"org": parse_org, "country": parse_country, "type": parse_type}
    facts: dict[str, str] = {}
    problems: list[str] = []
    for key, raw in options.items():
        try:
            facts[key] = parsers[key](raw)
        except ArgError as exc:
            label = {"org": "organisation", "type": "type"}.get(key)
            problems.append(f"{label}: {exc}" if label else str(exc))
    return facts, problems


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


@family.command(
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


@family.command(
    "profile set",
    help="Set your organisation, country or type of authority.\n"
    "Country: an EU or EEA country, by its name (in English or its own language) or its "
    "two-letter code (EL or GR for Greece). "
    "Type: state-authority, regional-authority, local-authority, "
    "body-governed-by-public-law, association-of-authorities or central-purchasing-body; "
    "if none fits, other-public-body or public-company (the Secretariat checks those). "
    "If a value is wrong, nothing is saved.",
    section="Membership",
    options=Options({"org": str, "country": str, "type": str}),
    examples=[
        '!profile set org="City of Oslo" country=NO type=local-authority',
        "!profile set country=EL",
    ],
)
async def profile_set(ctx: Context, options: dict[str, str]) -> None:
    if not options:
        raise ctx.usage_error("tell me what to set")
    facts, problems = check_profile(options)
    if problems:
        # All or nothing: a profile half changed would be harder to follow than none.
        refusal = Message("Nothing was saved; your profile is as it was.")
        for problem in problems:
            refusal.para().text(sentence(problem)).text(".")
        refusal.para().text("Usage: ").code(ctx.command.usage(ctx.prefix) if ctx.command else "")
        refusal.br().text("Example: ").code(f"{ctx.prefix}profile set country=DE")
        raise UsageError(refusal)
    person = await save_facts(ctx, facts)
    msg = Message("Saved. ").append(profile_message(ctx.prefix, person, {}))
    dialogue = await ms.get_dialogue(ctx.session, ctx.sender)
    if dialogue is None and not missing_facts(person):
        result = assess(person.org, person.country, person.authority_type)
        msg.para()
        if result.verdict is Verdict.REFUSED:
            msg.text(f"Please note: with this profile you cannot join a CoP, as {result.reason}.")
        else:
            msg.text("You can apply to a CoP with ").code(f"{ctx.prefix}join <CODE>")
            msg.text("; ").code(f"{ctx.prefix}cops").text(" lists them.")
    await ctx.reply(msg)
    if dialogue is not None:

        async def to_dm(message: Message) -> None:
            await ctx.dm(ctx.sender, message)

        await continue_dialogue(ctx, dialogue, ctx.reply if ctx.place is Place.DM else to_dm)


# --- joining and leaving -----------------------------------------------------------------
@family.command(
    "join",
    help="Apply to join a Community of Practice.\n"
    "Add a message for the moderators if you like. If I don't know your organisation "
    "yet, I ask you a few questions in a direct message first.",
    section="Membership",
    args=[
        Arg("cop", cop_code, metavar="<COP>"),
        Arg("message", join_message, optional=True, rest=True, default=""),
    ],
    cop=cop_arg(missing=Missing.REQUIRED),
    places=Place.EVERYWHERE,
    examples=["!join HDEV", "!join HDEV We are buying 40 electric buses next year."],
)
async def join(ctx: Context, cop: CopConfig, message: str) -> None:
    target = cop
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
        intro.text("Nothing is filed until we are done. How I handle your data: ")
        intro.code(f"{ctx.prefix}privacy").text(".").para()
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
    room_id = await ctx.cop_room(cop.code)
    if room_id is None:
        return msg
    state = await ms.room_membership(ctx.session, room_id, ctx.sender)
    if state == "join":
        return msg.text("You're in its room, too.")
    if state == "invite":
        return msg.text("An invitation to its room is waiting in your Matrix client.")
    await invite(ctx.session, room_id, ctx.sender, now=ctx.now)
    return msg.text("I've sent you a new invitation to its room.")


@family.command(
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


@family.on("dialogue")
async def on_answer(ctx: Context, event: dict[str, Any]) -> bool:
    """An answer to the question the bot asked; True when the text was taken as one."""
    if ctx.place is not Place.DM:
        return False
    dialogue = await ms.get_dialogue(ctx.session, ctx.sender)
    if dialogue is None:
        ctx.registry.listening.discard(ctx.sender)
        return False
    body = (event.get("content") or {}).get("body")
    answer = strip_reply_fallback(body if isinstance(body, str) else "").strip()
    if not answer:
        return False
    if match_key(answer).strip(".!") in ("cancel", "stop"):
        await stop_dialogue(ctx, dialogue)
        return True
    if match_key(answer).strip(".!?") in ("help", ""):
        # "help" (or "?") typed without the prefix is a question, never an organisation's name.
        await ctx.reply(
            Message(f"We are in the middle of your application to {dialogue.cop_code}; ")
            .text("for the list of everything I can do, send ")
            .code(f"{ctx.prefix}help")
            .text(". My question was:")
            .para()
            .append(question(dialogue.asked, ctx.prefix))
        )
        return True
    try:
        value = parse_answer(dialogue.asked, answer)
    except ArgError as exc:
        retry = Message(sentence(str(exc))).text(".").para()
        if dialogue.asked == "country":  # the list was in the question: say who may join
            retry.append(country_retry(ctx.prefix))
        else:
            retry.append(question(dialogue.asked, ctx.prefix))
        await ctx.reply(retry)
        return True
    facts = {dialogue.asked: value}
    await save_facts(ctx, facts)
    await continue_dialogue(ctx, dialogue, ctx.reply)
    return True


@family.command(
    "leave",
    help="Leave a Community of Practice, or withdraw your application to it.",
    section="Membership",
    args=[Arg("cop", cop_code, optional=True, metavar="<COP>")],
    cop=cop_arg(),
    places=Place.EVERYWHERE,
    examples=["!leave HDEV"],
)
async def leave(ctx: Context, cop: CopConfig) -> None:
    target = cop
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
        await ctx.reply(Message("I've withdrawn your application to ").bold(target.code).text("."))
        return
    await ms.decide(ctx.session, row, status="left", by=ctx.sender, reason="", now=ctx.now)
    msg = Message("You have left ").append(cop_title(target)).text(". ")
    if await ctx.role_in(target.code) >= Role.MODERATOR:
        msg.text("As a moderator or admin you keep access to its room and its events.")
    else:
        room_id = await ctx.cop_room(target.code)
        if room_id is not None:
            await kick(ctx.session, room_id, ctx.sender, "Left the CoP", now=ctx.now)
        freed = await release_seats(ctx, ctx.sender, [target.code])
        answers = withdrawn_answers(freed)
        if answers is not None:
            msg.text("Your answers to its upcoming events are withdrawn: ").append(answers)
            msg.text(".").append(seat_note(freed)).para()
        msg.text("You are welcome back any time: send ").code(f"{ctx.prefix}join {target.code}")
        msg.text(".")
    await ctx.reply(msg)
