"""Moderators decide claims: ``!claims pending``, ``!claim approve`` (for the amount after
the caps, or another amount with a reason), ``!claim reject`` and ``!claim paid``. Nobody
decides on their own claim; the claimant is told every decision in a direct message."""

from __future__ import annotations

from decimal import Decimal

from commands.args import Arg, ArgError, cop_code, sentence, word_list
from commands.claims.access import audit, claim_command, claim_id, load, private_command, step
from commands.claims.lines import MAX_NOTE, NUMBERISH, amount_arg
from commands.claims.render import event_line
from commands.claims.rules import Action, allocate, fmt
from commands.context import Context
from commands.errors import CommandError
from commands.registry import Family
from commands.roles import Role
from commands.scope import CopSet, Missing, cop_arg
from commands.text import Message
from config.models import CopConfig
from storage import claims as store
from storage import events as events_store
from storage.claims import Claim, Status

family = Family()
APPROVE_DETAILS = "[amount] [reason…]"


@private_command(
    family,
    "claims pending",
    help="Claims waiting for a decision or for payment (moderators and the Secretariat).",
    args=[Arg("cop", cop_code, optional=True, metavar="COP")],
    role=Role.MODERATOR,
    cop=cop_arg(missing=Missing.MINE),
    examples=["!claims pending", "!claims pending HDEV"],
)
async def claims_pending(ctx: Context, cop: CopConfig | CopSet) -> None:
    cops = {cop.code} if isinstance(cop, CopConfig) else None if cop.every else set(cop.codes)
    waiting = await store.claims_with_status(ctx.session, [Status.SUBMITTED, Status.APPROVED], cops)
    scope = ", ".join(sorted(cops)) if cops is not None else "all CoPs"
    if not waiting:
        await ctx.reply(Message(f"No claims are waiting ({scope})."))
        return
    msg = Message(f"Claims waiting ({scope}):")
    for status, title in ((Status.SUBMITTED, "To decide"), (Status.APPROVED, "To pay")):
        group = [claim for claim in waiting if claim.status == status]
        if not group:
            continue
        items = []
        for claim in group:
            event = await events_store.get_event(ctx.session, claim.event_id)
            item = Message().bold(claim.code).text(f" · {claim.user_id} · ")
            if event is not None:
                item.append(event_line(event)).text(" · ")
            if status == Status.SUBMITTED:
                item.text(f"{fmt(claim.claimed)} claimed")
                if claim.allowed != claim.claimed:
                    item.text(f", {fmt(claim.allowed)} after the caps")
            else:
                item.text(f"{fmt(claim.approved or Decimal(0))} approved")
            items.append(item)
        msg.para().bold(title).bullets(items)
    msg.code(f"{ctx.prefix}claim show <C#>").text(" shows one.")
    await ctx.reply(msg)


@claim_command(
    family,
    "claim approve",
    lock=True,
    help="Approve a submitted claim, for the amount after the caps or another amount.\n"
    "Another amount needs a reason, which the claimant is told.",
    args=[
        Arg("claim", claim_id, metavar="<C#>"),
        Arg("details", word_list, optional=True, rest=True, default=[], metavar=APPROVE_DETAILS),
    ],
    examples=["!claim approve C7", '!claim approve C7 300 "hotel above the cap"'],
)
async def claim_approve(ctx: Context, claim: Claim, details: list[str]) -> None:
    words = list(details)
    amount: Decimal | None = None
    if words and NUMBERISH.match(words[0]):
        try:
            amount = amount_arg(words.pop(0))
        except ArgError as exc:
            raise ctx.usage_error(str(exc)) from None
    reason = " ".join(words).strip()
    loaded = await load(ctx, claim)
    new_status = step(loaded, Action.APPROVE)
    claim = loaded.claim
    total = claim.allowed if amount is None else amount
    if total != claim.allowed and not reason:
        raise CommandError(
            Message(f"{fmt(total)} is not the {fmt(claim.allowed)} the rules allow, so ")
            .text("please give a reason; the claimant will see it. For example: ")
            .code(f'{ctx.prefix}claim approve {claim.code} {total} "why"')
        )
    if total > claim.claimed:
        raise CommandError(
            f"{fmt(total)} is more than the {fmt(claim.claimed)} claimed in {claim.code}."
        )
    if len(reason) > MAX_NOTE:
        raise CommandError(f"Please keep the reason under {MAX_NOTE} characters.")
    shares = allocate(total, [line.allowed for line in loaded.lines])
    store.record_approval(claim, loaded.lines, shares, total)
    claim.status = new_status
    claim.reason = reason
    claim.decided_at = ctx.now
    claim.decided_by = ctx.sender
    await store.save_claim(ctx.session, claim, ctx.now)
    detail = f"{fmt(total)} (claimed {fmt(claim.claimed)}, after caps {fmt(claim.allowed)})"
    await audit(ctx, claim, "approve", detail + (f"; reason: {reason}" if reason else ""))
    notice = Message(f"Good news: your travel claim {claim.code} for ")
    notice.append(event_line(loaded.event)).text(" was approved for ").bold(fmt(total))
    notice.text(".")
    if total != claim.claimed:
        notice.text(f" You claimed {fmt(claim.claimed)}")
        if claim.allowed != claim.claimed:
            notice.text(f"; the caps allow {fmt(claim.allowed)}")
        notice.text(".")
    if reason:
        notice.br().text("Reason: ").text(reason)
    notice.br().text("I'll tell you when it has been paid.")
    await ctx.dm(claim.user_id, notice)
    msg = Message(f"{claim.code} approved for {fmt(total)}")
    if reason:
        msg.text(" (reason: ").text(reason).text(")")
    msg.text(f". {claim.user_id} has been told. Mark it paid with ")
    msg.code(f"{ctx.prefix}claim paid {claim.code}").text(" once the transfer is made.")
    await ctx.reply(msg)


@claim_command(
    family,
    "claim reject",
    lock=True,
    help="Reject a submitted claim, with the reason the claimant is told.",
    args=[
        Arg("claim", claim_id, metavar="<C#>"),
        Arg("reason", sentence, rest=True, metavar="<reason…>"),
    ],
    examples=['!claim reject C7 "the event was online"'],
)
async def claim_reject(ctx: Context, claim: Claim, reason: str) -> None:
    if len(reason) > MAX_NOTE:
        raise CommandError(f"Please keep the reason under {MAX_NOTE} characters.")
    loaded = await load(ctx, claim)
    claim = loaded.claim
    claim.status = step(loaded, Action.REJECT)
    claim.reason = reason
    claim.decided_at = ctx.now
    claim.decided_by = ctx.sender
    await store.save_claim(ctx.session, claim, ctx.now)
    await audit(ctx, claim, "reject", f"reason: {reason}")
    notice = Message(f"Your travel claim {claim.code} for ")
    notice.append(event_line(loaded.event)).text(" was not approved.")
    notice.br().text("Reason: ").text(reason)
    notice.br().text(
        f"If you have questions, please ask a moderator of {claim.cop_code} or the Secretariat."
    )
    await ctx.dm(claim.user_id, notice)
    await ctx.reply(Message(f"{claim.code} rejected. {claim.user_id} has been told the reason."))


@claim_command(
    family,
    "claim paid",
    lock=True,
    help="Record that an approved claim has been paid; the claimant is told.",
    args=[Arg("claim", claim_id, metavar="<C#>")],
    examples=["!claim paid C7"],
)
async def claim_paid(ctx: Context, claim: Claim) -> None:
    loaded = await load(ctx, claim)
    item = loaded.claim
    item.status = step(loaded, Action.PAY)
    item.paid_at = ctx.now
    item.paid_by = ctx.sender
    await store.save_claim(ctx.session, item, ctx.now)
    amount = item.approved if item.approved is not None else item.allowed
    await audit(ctx, item, "paid", fmt(amount))
    notice = Message(f"Your travel claim {item.code} for ").append(event_line(loaded.event))
    notice.text(" has been paid: ").bold(fmt(amount)).text(". Thank you for taking part!")
    await ctx.dm(item.user_id, notice)
    await ctx.reply(
        Message(f"{item.code} marked paid ({fmt(amount)}). {item.user_id} has been told.")
    )
