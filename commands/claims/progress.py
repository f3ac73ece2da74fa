"""Where a claim stands and moving it on: ``!claim show``, ``!claims``, ``!claim withdraw``
and ``!claim submit`` (checked against the rules and the deadline, then told to the
management room)."""

from __future__ import annotations

from commands.args import Arg
from commands.claims.access import audit, claim_command, claim_id, load, private_command, step
from commands.claims.render import assess, claim_message, days_of, event_line, next_steps
from commands.claims.rules import Action, deadline_day, fmt, within_deadline
from commands.context import Context
from commands.errors import CommandError
from commands.registry import Family
from commands.roles import Role
from commands.text import Message, plural
from storage import claims as store
from storage import events as events_store
from storage.claims import Claim, Status

family = Family()


@claim_command(
    family,
    "claim show",
    owner=True,
    help="Show a claim: its lines, caps, receipts, totals and status.",
    args=[Arg("claim", claim_id, metavar="<C#>")],
    examples=["!claim show C7"],
)
async def claim_show(ctx: Context, claim: Claim) -> None:
    loaded = await load(ctx, claim)
    check = None
    if loaded.claim.status == Status.DRAFT:
        check = assess(ctx, loaded)
    msg = await claim_message(ctx, loaded)
    steps = next_steps(ctx, loaded, check)
    if steps.plain:
        msg.para().append(steps)
    if not loaded.actor.is_owner and loaded.claim.status == Status.SUBMITTED:
        p, code = ctx.prefix, loaded.claim.code
        msg.para().text("Decide with ").code(f"{p}claim approve {code} [amount] [reason]")
        msg.text(" or ").code(f"{p}claim reject {code} <reason>").text(".")
    await ctx.reply(msg)


@private_command(
    family,
    "claims",
    help="List your travel claims and their status.",
    role=Role.MEMBER,
    examples=["!claims"],
)
async def claims_mine(ctx: Context) -> None:
    mine = await store.claims_of(ctx.session, ctx.sender)
    if not mine:
        await ctx.reply(
            Message("You have no travel claims. Start one with ")
            .code(f"{ctx.prefix}claim new <E#>")
            .text(" for an in-person event you attended.")
        )
        return
    items = []
    for claim in mine:
        event = await events_store.get_event(ctx.session, claim.event_id)
        line = Message().bold(claim.code).text(f" · {claim.status} · ")
        if event is not None:
            line.append(event_line(event)).text(" · ")
        amount = claim.approved if claim.approved is not None else claim.claimed
        line.text(fmt(amount))
        items.append(line)
    msg = Message("Your travel claims:").bullets(items)
    msg.code(f"{ctx.prefix}claim show <C#>").text(" shows one.")
    await ctx.reply(msg)


@claim_command(
    family,
    "claim withdraw",
    owner=True,
    lock=True,
    help="Withdraw your claim (a draft, or a submitted claim not yet decided).",
    args=[Arg("claim", claim_id, metavar="<C#>")],
    examples=["!claim withdraw C7"],
)
async def claim_withdraw(ctx: Context, claim: Claim) -> None:
    loaded = await load(ctx, claim)
    was = loaded.claim.status
    loaded.claim.status = step(loaded, Action.WITHDRAW)
    loaded.claim.withdrawn_at = ctx.now
    await store.save_claim(ctx.session, loaded.claim, ctx.now)
    await audit(ctx, loaded.claim, "withdraw", f"was {was}")
    if was == Status.SUBMITTED:
        await ctx.notify_management(
            Message(f"Claim {loaded.claim.code} by {loaded.claim.user_id} for ")
            .append(event_line(loaded.event))
            .text(" was withdrawn by its owner; nothing to decide.")
        )
    await ctx.reply(
        Message(f"{loaded.claim.code} is withdrawn. You can start a new claim for ")
        .text(f"E{loaded.event.id} with ")
        .code(f"{ctx.prefix}claim new E{loaded.event.id}")
        .text(" while the deadline allows.")
    )


@claim_command(
    family,
    "claim submit",
    owner=True,
    lock=True,
    help="Check your claim and send it to the moderators; it can't be changed afterwards.",
    args=[Arg("claim", claim_id, metavar="<C#>")],
    examples=["!claim submit C7"],
)
async def claim_submit(ctx: Context, claim: Claim) -> None:
    rules = ctx.settings.claims
    loaded = await load(ctx, claim)
    new_status = step(loaded, Action.SUBMIT)
    check = assess(ctx, loaded)
    days = days_of(loaded.event)
    problems = list(check.blocking)
    if not within_deadline(ctx.now, days[-1], loaded.tz, rules):
        last = deadline_day(days[-1], rules)
        problems.append(
            f"the deadline has passed: claims for E{loaded.event.id} were due by "
            f"{last.isoformat()} ({loaded.event.timezone} time)"
        )
    if problems:
        msg = Message(f"{loaded.claim.code} can't be submitted yet:").bullets(problems)
        missing = [item for item in check.lines if item.needs_receipt]
        if missing:
            msg.text("Upload each receipt (photo or PDF) here and reply to it with ")
            msg.code(f"{ctx.prefix}claim attach {loaded.claim.code} {missing[0].number}")
            msg.text(" (the last number is the line).")
        raise CommandError(msg)
    loaded.claim.status = new_status
    loaded.claim.submitted_at = ctx.now
    await store.save_claim(ctx.session, loaded.claim, ctx.now)
    await audit(
        ctx,
        loaded.claim,
        "submit",
        f"{fmt(check.claimed)} claimed, {fmt(check.allowed)} after caps",
    )
    msg = await claim_message(ctx, loaded, heading=f"Submitted {loaded.claim.code}.")
    msg.para().text(
        f"The moderators of {loaded.claim.cop_code} will look at it; I'll tell you here "
        "when it is decided. It can no longer be changed (you can still withdraw it)."
    )
    await ctx.reply(msg)
    flagged = len(check.flagged)
    note = Message(f"New travel claim {loaded.claim.code} from {loaded.claim.user_id} for ")
    note.append(event_line(loaded.event)).text(f": {fmt(check.claimed)} claimed")
    if check.allowed != check.claimed:
        note.text(f", {fmt(check.allowed)} after the caps")
    note.text(".")
    if flagged:
        note.text(f" {plural(flagged, 'line')} flagged.")
    note.text(" See it with ").code(f"{ctx.prefix}claim show {loaded.claim.code}")
    note.text("; decide with ").code(f"{ctx.prefix}claim approve {loaded.claim.code}")
    note.text(" or ").code(f"{ctx.prefix}claim reject {loaded.claim.code} <reason>").text(".")
    await ctx.notify_management(note)


# --- moderators ----------------------------------------------------------------------
