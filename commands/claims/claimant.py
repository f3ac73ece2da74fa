"""The claimant's commands: ``!claim new``, ``add``, ``attach`` (reply to a receipt),
``remove``, ``show``, ``receipt``, ``withdraw``, ``submit`` and ``!claims``.

Claims are private: declared for direct messages and the management room, and asked
anywhere else the bot says so there and answers in a direct message (see
:attr:`commands.registry.Command.private`)."""

from __future__ import annotations

from decimal import Decimal
from zoneinfo import ZoneInfo

from commands.args import Arg, ArgError, word_list
from commands.claims.access import audit, claim_command, claim_id, load, private_command, step
from commands.claims.lines import line_number, parse_add, pick_line, receipt_of
from commands.claims.rates import choose_rate, month_of, unknown_currency
from commands.claims.render import (
    assess,
    claim_message,
    days_of,
    describe_line,
    event_line,
    hours_of,
    next_steps,
)
from commands.claims.rules import (
    Action,
    EventFacts,
    MoneyError,
    convert,
    deadline_day,
    eligibility_problems,
    fmt,
    price_new_line,
)
from commands.context import Context
from commands.errors import CommandError
from commands.events.access import EVENT
from commands.events.parse import parse_event_id
from commands.files import pointing_at
from commands.registry import Family
from commands.roles import Role
from commands.scope import numbered
from commands.text import Message, plural
from storage import claims as store
from storage import events as events_store
from storage.claims import Claim
from storage.events import Event

family = Family()
ADD_DETAILS = "[amount] [currency] [note…]"


@private_command(
    family,
    "claim new",
    help="Start a travel claim for an in-person event you attended.\n"
    "You must have answered yes, been marked as attended, and be within the deadline "
    "(30 days after the event by default). Works in a direct message with me.",
    args=[Arg("event", parse_event_id, metavar="<E#>")],
    role=Role.MEMBER,
    cop=numbered("event", EVENT),
    examples=["!claim new E12"],
)
async def claim_new(ctx: Context, event: Event) -> None:
    rules = ctx.settings.claims
    found = event
    existing = await store.open_claim_for_event(ctx.session, ctx.sender, found.id)
    if existing is not None:
        raise CommandError(
            Message(f"You already have claim {existing.code} ({existing.status}) for ")
            .append(event_line(found))
            .text(". ")
            .code(f"{ctx.prefix}claim show {existing.code}")
            .text(" shows it.")
        )
    rejected = await store.rejected_claim_for_event(ctx.session, ctx.sender, found.id)
    if rejected is not None:
        raise CommandError(
            f"Your claim {rejected.code} for E{found.id} was rejected. If you think that "
            f"was a mistake, please ask a moderator of {found.cop_code} or the Secretariat."
        )
    days = days_of(found)
    facts = EventFacts(
        kind=found.kind,
        rsvp=await events_store.rsvp_of(ctx.session, found.id, ctx.sender),
        attended=await events_store.attended(ctx.session, found.id, ctx.sender),
        days=days,
        tz=ZoneInfo(found.timezone),
        cancelled=found.cancelled,
    )
    problems = eligibility_problems(facts, ctx.now, rules)
    if problems:
        raise CommandError(
            Message("You can't claim travel for ")
            .append(event_line(found))
            .text(" because:")
            .bullets(problems)
            .text(
                "If you think this is wrong, please ask a moderator of "
                f"{found.cop_code} or the Secretariat."
            )
        )
    try:
        claim = await store.create_claim(
            ctx.session,
            user_id=ctx.sender,
            event_id=found.id,
            cop_code=found.cop_code,
            days=len(days),
            now=ctx.now,
        )
    except store.DuplicateClaim:
        # Another message of the same person made one at the same moment (the database
        # keeps one open claim per person and event).
        raise CommandError(
            Message("You already have a claim for ")
            .append(event_line(found))
            .text(", opened a moment ago. ")
            .code(f"{ctx.prefix}claims")
            .text(" lists it.")
        ) from None
    await audit(ctx, claim, "new", f"for E{found.id}")
    last = deadline_day(days[-1], rules)
    p = ctx.prefix
    msg = (
        Message(f"Claim {claim.code} is open as a draft for ")
        .append(event_line(found))
        .text(".")
        .para()
        .text("Add each expense with ")
        .code(f"{p}claim add {claim.code} <category> <amount> [currency] [note]")
        .text(f". Categories: {', '.join(rules.categories)}. For example:")
        .bullets(
            [
                Message().code(f'{p}claim add {claim.code} rail 120.50 "Brussels–Oslo"'),
                Message().code(f"{p}claim add {claim.code} air 1450 SEK km=1100"),
                Message().code(f"{p}claim add {claim.code} car 350").text(" (km)"),
                Message().code(f"{p}claim add {claim.code} accommodation 290 nights=2"),
                Message().code(f"{p}claim add {claim.code} daily-allowance"),
            ]
        )
        .text(
            "Rail, air and hotel lines need a receipt: upload the photo or PDF here and "
            "reply to it with "
        )
        .code(f"{p}claim attach {claim.code} <line>")
        .text(". When all is there, ")
        .code(f"{p}claim submit {claim.code}")
        .text(f". Please submit by {last.isoformat()} ({found.timezone} time).")
    )
    await ctx.reply(msg)


@claim_command(
    family,
    "claim add",
    owner=True,
    lock=True,
    help="Add an expense to your draft claim.\n"
    "Categories: rail, air, car (give the km driven), accommodation (the hotel bill; "
    "add nights=N), daily-allowance (leave the amount out to get the allowance for the "
    "event's days), other. Give another currency after the amount (e.g. 1450 SEK): it is "
    "converted at the Commission's InforEuro rate of the event's month. Add km=N for the "
    "one-way distance of a rail or air trip. Taxis are not reimbursed.",
    args=[
        Arg("claim", claim_id, metavar="<C#>"),
        Arg("category", str, metavar="<category>"),
        Arg("details", word_list, optional=True, rest=True, default=[], metavar=ADD_DETAILS),
    ],
    examples=[
        '!claim add C7 rail 120.50 "Brussels–Oslo"',
        "!claim add C7 car 350",
        "!claim add C7 accommodation 2210 SEK nights=2",
        "!claim add C7 daily-allowance",
    ],
)
async def claim_add(ctx: Context, claim: Claim, category: str, details: list[str]) -> None:
    rules = ctx.settings.claims
    category = category.lower()
    loaded = await load(ctx, claim)
    step(loaded, Action.EDIT)
    try:
        request = parse_add(details, rules, category)
        line = price_new_line(
            category=category,
            amount=request.amount,
            currency=request.currency,
            rules=rules,
            days=max(len(days_of(loaded.event)), 1),
            quantity=Decimal(request.nights) if request.nights is not None else None,
            distance_km=request.distance_km,
            note=request.note,
            hours=hours_of(loaded.event),
        )
        month = month_of(days_of(loaded.event)[0])
        choice = await choose_rate(ctx.session, rules, line.currency, month)
        if choice is None:
            raise MoneyError(await unknown_currency(ctx.session, rules, line.currency))
    except ArgError as exc:
        raise ctx.usage_error(str(exc)) from None
    except MoneyError as exc:
        text = str(exc)
        raise CommandError(
            text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")
        ) from None
    conversion = convert(line.amount, line.currency, rules, choice.rate)
    added = await store.add_line(
        ctx.session,
        loaded.claim,
        category=line.category,
        amount=conversion.amount,
        currency=conversion.currency,
        rate=conversion.rate,
        rate_month=choice.month,
        eur=conversion.eur,
        quantity=line.quantity,
        distance_km=line.distance_km,
        note=line.note,
        now=ctx.now,
    )
    loaded.lines.append(added)
    check = assess(ctx, loaded)
    await store.save_claim(ctx.session, loaded.claim, ctx.now)
    msg = Message(f"Added line {added.position} to {loaded.claim.code}:")
    msg.bullets([describe_line(added, rules)])
    msg.text(f"{loaded.claim.code} now totals {fmt(loaded.claim.claimed)}")
    if loaded.claim.allowed != loaded.claim.claimed:
        msg.text(f" ({fmt(loaded.claim.allowed)} after the caps)")
    msg.text(".").para()
    if choice.fallback:
        msg.text(choice.fallback_note()).para()
    if check.lines[-1].needs_receipt:
        msg.text("This line needs a receipt: upload the photo or PDF here, then reply to ")
        msg.text("it with ").code(f"{ctx.prefix}claim attach {loaded.claim.code} ")
        msg.code(str(added.position)).text(". ")
        msg.text("Then add more, or ").code(f"{ctx.prefix}claim submit {loaded.claim.code}")
        msg.text(".")
    else:
        msg.append(next_steps(ctx, loaded, check))
    await ctx.reply(msg)


@claim_command(
    family,
    "claim attach",
    owner=True,
    lock=True,
    help="Attach a receipt: reply to the uploaded photo or PDF with this command.\n"
    "Without a line number the receipt goes to the newest line that still needs one.",
    args=[
        Arg("claim", claim_id, metavar="<C#>"),
        Arg("line", line_number, optional=True, metavar="line"),
    ],
    reads_replied_event=True,
    examples=["!claim attach C7 2"],
)
async def claim_attach(ctx: Context, claim: Claim, line: int | None) -> None:
    rules = ctx.settings.claims
    loaded = await load(ctx, claim)
    step(loaded, Action.EDIT)
    if not loaded.lines:
        raise CommandError(
            Message(f"{loaded.claim.code} has no expenses yet; add one first with ")
            .code(f"{ctx.prefix}claim add {loaded.claim.code} <category> <amount>")
            .text(".")
        )
    target = pick_line(loaded.lines, line, rules)
    replied = ctx.replied_event_id()
    if replied is None:
        raise CommandError(
            Message("Please upload the receipt (a photo or a PDF) in this chat, then ")
            .text("reply to that file with ")
            .code(f"{ctx.prefix}claim attach {loaded.claim.code} {target.position}")
            .text(".")
        )
    event = await ctx.fetch_event(replied)
    receipt = receipt_of(event, ctx.sender)
    await store.attach_receipt(
        ctx.session,
        target,
        url=receipt.url,
        name=receipt.name,
        mimetype=receipt.mimetype,
        size=receipt.size,
        event_id=replied,
        file=receipt.file,
    )
    check = assess(ctx, loaded)
    await store.save_claim(ctx.session, loaded.claim, ctx.now)
    msg = Message(f"Receipt {receipt.name!s} attached to line {target.position} of ")
    msg.text(f"{loaded.claim.code}:").bullets([describe_line(target, rules)])
    msg.append(next_steps(ctx, loaded, check))
    await ctx.reply(msg)


@claim_command(
    family,
    "claim remove",
    owner=True,
    lock=True,
    help="Remove a line from your draft claim.",
    args=[Arg("claim", claim_id, metavar="<C#>"), Arg("line", line_number, metavar="<line>")],
    examples=["!claim remove C7 2"],
)
async def claim_remove(ctx: Context, claim: Claim, line: int) -> None:
    loaded = await load(ctx, claim)
    step(loaded, Action.EDIT)
    if not await store.remove_line(ctx.session, loaded.claim, line):
        raise CommandError(
            f"{loaded.claim.code} has no line {line}; it has {plural(len(loaded.lines), 'line')}."
        )
    loaded.lines = await store.lines_of(ctx.session, loaded.claim.id)
    check = assess(ctx, loaded)
    await store.save_claim(ctx.session, loaded.claim, ctx.now)
    msg = await claim_message(ctx, loaded, heading=f"Line {line} removed.")
    await ctx.reply(msg.para().append(next_steps(ctx, loaded, check)))


@claim_command(
    family,
    "claim receipt",
    owner=True,
    help="Show the receipt files of a claim (all lines, or one).",
    args=[
        Arg("claim", claim_id, metavar="<C#>"),
        Arg("line", line_number, optional=True, metavar="line"),
    ],
    examples=["!claim receipt C7", "!claim receipt C7 2"],
)
async def claim_receipt(ctx: Context, claim: Claim, line: int | None) -> None:
    loaded = await load(ctx, claim)
    chosen = [item for item in loaded.lines if item.has_receipt]
    if line is not None:
        chosen = [item for item in chosen if item.position == line]
    if not chosen:
        what = f"line {line} of {loaded.claim.code}" if line else loaded.claim.code
        raise CommandError(f"There is no receipt on {what}.")
    await ctx.reply(Message(f"Receipts of {loaded.claim.code}:"))
    for item in chosen:
        content = {
            "msgtype": "m.image" if item.receipt_mimetype.startswith("image/") else "m.file",
            "body": item.receipt_name or "receipt",
            "filename": item.receipt_name or "receipt",
            **pointing_at(item.receipt_url, item.receipt_file),
            "info": {"mimetype": item.receipt_mimetype}
            | ({"size": item.receipt_size} if item.receipt_size else {}),
            "m.mentions": {},
        }
        await ctx.reply_content(content)
