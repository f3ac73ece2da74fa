"""Travel-expense claims: claiming, checking, deciding, paying and exporting, privately.

Claims are private. Every claim command works in a direct message with the bot (and in
the management room, where only the Secretariat and moderators are). Used anywhere else,
the bot says there only "let's do this privately" and carries on in a direct message:
no amount, receipt or status is ever written to a shared room.

To keep even usage errors out of shared rooms, each command is declared with one catch-all
argument whose usage line shows the real arguments; the real parsing happens after the
privacy check (see :func:`_private`).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from commands.args import Arg, ArgError, Tokenizer, cop_code, parse_arguments, prefixed_id
from commands.claims_rules import (
    Action,
    Actor,
    ClaimCheck,
    EventFacts,
    LineInput,
    MoneyError,
    TransitionRefused,
    allocate,
    check_claim,
    convert,
    deadline_day,
    eligibility_problems,
    event_days,
    fmt,
    may_view,
    parse_amount,
    price_new_line,
    split_note,
    transition,
    within_deadline,
)
from commands.context import Context
from commands.errors import CommandError, PermissionDenied, UsageError
from commands.events import add_exporter, csv_bytes
from commands.registry import Command, Place, Registry, Role
from commands.text import Message
from config.claims import ClaimsConfig
from storage import claims as store
from storage import events as events_store
from storage import repo
from storage.claims import Claim, ClaimLine, Status
from storage.events import Event

SECTION = "Claims"
PRIVATE = Place.DM | Place.MANAGEMENT
RECEIPT_TYPES = ("application/pdf",)
"""Besides images (``image/*``), the file types accepted as receipts."""
MAX_NOTE = 300

claim_id = prefixed_id("C", "a claim")
event_id = prefixed_id("E", "an event")


def line_number(token: str) -> int:
    value = token.strip().lstrip("#")
    if not value.isdigit() or int(value) <= 0:
        raise ArgError(f"{token!r} is not a line number such as 2")
    return int(value)


def rules_of(ctx: Context) -> ClaimsConfig:
    return ctx.settings.claims


# --- privacy: where answers go -----------------------------------------------------------------


class Out:
    """Where a claim command's answers go: the command's own room when that is private,
    otherwise a direct message to the person who asked."""

    def __init__(self, ctx: Context, *, redirected: bool) -> None:
        self.ctx = ctx
        self.redirected = redirected
        self._first = True

    async def __call__(self, message: Message) -> None:
        if not self.redirected:
            await self.ctx.reply(message)
            return
        if self._first:
            self._first = False
            message = (
                Message("You asked me about travel claims in a shared room. Claims are ")
                .text("private, so I answer here.")
                .para()
                .append(message)
            )
        await self.ctx.dm(self.ctx.sender, message)


ClaimHandler = Callable[..., Awaitable[None]]


@dataclass(frozen=True)
class _Raw(Arg):
    """Takes the whole rest of the command; ``shown`` is the usage of the real arguments."""

    shown: str = ""

    def usage(self) -> str:
        return self.shown


def _private(
    reg: Registry,
    name: str,
    *,
    help: str,
    args: Sequence[Arg] = (),
    role: Role = Role.MEMBER,
    examples: Sequence[str] = (),
    aliases: Sequence[str] = (),
    free_args: bool = False,
) -> Callable[[ClaimHandler], ClaimHandler]:
    """Declare a claim command: private places only, or move to a direct message.

    With ``free_args`` the handler gets the raw text after the fixed ``args`` as ``rest``
    (for commands with optional amounts and notes) and parses it itself.
    """
    shown = " ".join(arg.usage() for arg in args)

    def wrap(handler: ClaimHandler) -> ClaimHandler:
        command: Command

        async def run(ctx: Context, raw: str | None) -> None:
            text = raw or ""
            if ctx.place in PRIVATE:
                await _invoke(ctx, Out(ctx, redirected=False), text)
                return
            await ctx.reply(Message("Let's do this privately: I have sent you a direct message."))
            out = Out(ctx, redirected=True)
            try:
                async with ctx.session.begin_nested():
                    await _invoke(ctx, out, text)
            except CommandError as exc:
                await out(exc.message)

        async def _invoke(ctx: Context, out: Out, text: str) -> None:
            try:
                if free_args:
                    tokens = Tokenizer(text)
                    values: dict[str, Any] = {}
                    for arg in args:
                        token = tokens.next()
                        if token is None:
                            if not arg.optional:
                                raise ArgError(f"{arg.usage()} is missing")
                            values[arg.name] = arg.default
                        else:
                            values[arg.name] = arg.parser(token)
                    rest: list[str] = []
                    while (token := tokens.next()) is not None:
                        rest.append(token)
                    values["rest"] = rest
                else:
                    values = parse_arguments(text, args, None)
            except ArgError as exc:
                raise UsageError(reg.usage_message(command, str(exc))) from None
            await handler(ctx, out, **values)

        command = reg.add(
            Command(
                name=name,
                handler=run,
                help=help,
                section=SECTION,
                args=[_Raw("raw", optional=True, rest=True, shown=shown)],
                role=role,
                places=Place.ANYWHERE,
                aliases=aliases,
                examples=examples,
            )
        )
        return handler

    return wrap


# --- loading and describing ------------------------------------------------------------


@dataclass
class Loaded:
    claim: Claim
    actor: Actor
    event: Event
    lines: list[ClaimLine]

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.event.timezone)


async def _load(ctx: Context, number: int, *, lock: bool = False) -> Loaded:
    claim = await store.get_claim(ctx.session, number, lock=lock)
    actor = (
        Actor(await ctx.role_in(claim.cop_code), is_owner=claim.user_id == ctx.sender)
        if claim is not None
        else None
    )
    if claim is None or actor is None or not may_view(actor):
        # The same answer whether the claim does not exist or is someone else's.
        raise CommandError(
            Message(f"I can't find a claim C{number} that you can see. ")
            .code(f"{ctx.prefix}claims")
            .text(" lists yours.")
        )
    event = await events_store.get_event(ctx.session, claim.event_id)
    if event is None:  # pragma: no cover - the foreign key keeps the event
        raise CommandError(f"The event of claim C{number} no longer exists.")
    return Loaded(claim, actor, event, await store.lines_of(ctx.session, claim.id))


def _days_of(event: Event) -> list[date]:
    return event_days(event.starts_at, event.ends_at, ZoneInfo(event.timezone))


def _when(event: Event) -> str:
    days = _days_of(event)
    if len(days) == 1:
        return days[0].isoformat()
    return f"{days[0].isoformat()} to {days[-1].isoformat()}"


def _event_line(event: Event) -> Message:
    return (
        Message().bold(f"E{event.id}").text(f" “{event.title}” ({event.cop_code}, {_when(event)})")
    )


def _inputs(lines: Sequence[ClaimLine]) -> list[LineInput]:
    return [
        LineInput(
            category=line.category,
            amount=line.amount,
            currency=line.currency,
            quantity=line.quantity,
            distance_km=line.distance_km,
            note=line.note,
            has_receipt=line.has_receipt,
            rate=line.rate,
        )
        for line in lines
    ]


def _assess(ctx: Context, loaded: Loaded) -> ClaimCheck:
    """Apply the rules to a draft and store the verdict (caps, flags, totals)."""
    claim = loaded.claim
    if claim.status == Status.DRAFT:
        claim.days = max(len(_days_of(loaded.event)), 1)
    check = check_claim(_inputs(loaded.lines), rules_of(ctx), claim.days)
    store.record_assessment(
        claim,
        loaded.lines,
        [(item.cap, item.allowed, list(item.flags)) for item in check.lines],
        claimed=check.claimed,
        allowed=check.allowed,
    )
    return check


def _plain_number(value: Decimal) -> str:
    """``350`` for 350.00, ``12.5`` for 12.50."""
    return f"{value.normalize():f}"


def _describe_line(line: ClaimLine, rules: ClaimsConfig) -> Message:
    msg = Message().text(f"{line.position}. ").bold(line.category)
    if line.category == "car" and line.quantity is not None:
        msg.text(f", {_plain_number(line.quantity)} km at {fmt(rules.car_rate_per_km)}")
    elif line.category == "accommodation" and line.quantity is not None:
        nights = int(line.quantity)
        msg.text(f", {nights} night{'s' if nights != 1 else ''}")
    elif line.category == "daily-allowance" and line.quantity is not None:
        days = int(line.quantity)
        msg.text(f", {days} day{'s' if days != 1 else ''}")
    if line.distance_km is not None:
        msg.text(f", {line.distance_km} km one way")
    msg.text(" — ")
    if line.currency == "EUR":
        msg.text(fmt(line.eur))
    else:
        msg.text(
            f"{fmt(line.amount, line.currency)} = {fmt(line.eur)} "
            f"(at {line.rate} {line.currency} per EUR)"
        )
    if line.note:
        msg.text(" · ").italic(line.note)
    if line.allowed < line.eur:
        msg.text(" · ").bold(f"capped at {fmt(line.allowed)}")
    for flag in line.flags:
        msg.br().text(f"   ⚠ {flag}")
    if line.has_receipt:
        msg.br().text("   receipt: ").text(line.receipt_name or "attached")
    elif line.category in rules.receipt_required:
        msg.br().text("   ⚠ needs a receipt")
    if line.approved is not None:
        msg.br().text(f"   approved: {fmt(line.approved)}")
    return msg


async def _claim_message(ctx: Context, loaded: Loaded, *, heading: str | None = None) -> Message:
    claim, event, rules = loaded.claim, loaded.event, rules_of(ctx)
    msg = Message()
    if heading:
        msg.text(heading).para()
    msg.bold(f"Claim {claim.code}").text(f" · {claim.status} · ").append(_event_line(event))
    if not loaded.actor.is_owner:
        profile = (await events_store.profiles(ctx.session, [claim.user_id])).get(claim.user_id)
        msg.br().text(f"Claimant: {claim.user_id}")
        if profile is not None and profile.org:
            msg.text(f" ({profile.org}, {profile.country or '?'})")
    if loaded.lines:
        msg.bullets(_describe_line(line, rules) for line in loaded.lines)
    else:
        msg.br().text("No expenses yet.")
        msg.br()
    msg.text(f"Total: {fmt(claim.claimed)} claimed")
    if claim.allowed != claim.claimed:
        msg.text(f", {fmt(claim.allowed)} after the caps")
    msg.text(".")
    if claim.approved is not None:
        msg.br().bold(f"Approved: {fmt(claim.approved)}")
    if claim.reason:
        label = "Reason for the rejection" if claim.status == Status.REJECTED else "Reason"
        msg.br().text(f"{label}: ").text(claim.reason)
    if claim.decided_by:
        when = claim.decided_at.date().isoformat() if claim.decided_at else ""
        msg.br().text(f"Decided by {claim.decided_by} on {when}.")
    if claim.paid_at is not None:
        msg.br().text(f"Paid on {claim.paid_at.date().isoformat()}.")
    return msg


def _next_steps(ctx: Context, loaded: Loaded, check: ClaimCheck | None) -> Message:
    claim, prefix = loaded.claim, ctx.prefix
    msg = Message()
    if claim.status != Status.DRAFT or not loaded.actor.is_owner:
        return msg
    last = deadline_day(_days_of(loaded.event)[-1], rules_of(ctx))
    if check is not None and check.blocking and loaded.lines:
        missing = [item for item in check.lines if item.needs_receipt]
        if missing:
            first = missing[0].number
            msg.text("Next: upload the receipt (photo or PDF) here and reply to it with ")
            msg.code(f"{prefix}claim attach {claim.code} {first}").text(". ")
    else:
        msg.text("Add more with ").code(f"{prefix}claim add {claim.code} <category> <amount>")
        msg.text(", or send it with ").code(f"{prefix}claim submit {claim.code}").text(". ")
    msg.text(f"Submit by {last.isoformat()} ({loaded.event.timezone} time).")
    return msg


async def _audit(ctx: Context, claim: Claim, action: str, detail: str = "") -> None:
    await repo.audit(
        ctx.session,
        actor=ctx.sender,
        action=f"claim.{action}",
        cop_code=claim.cop_code,
        target=f"{claim.code} {claim.user_id}",
        detail=detail,
        now=ctx.now,
    )


def _step(loaded: Loaded, action: Action) -> Status:
    try:
        return transition(Status(loaded.claim.status), action, loaded.actor, loaded.claim.cop_code)
    except TransitionRefused as exc:
        text = exc.message[0].upper() + exc.message[1:]
        raise PermissionDenied(f"{loaded.claim.code}: {text}.") from None


# --- amounts typed in commands -----------------------------------------------------------------

_NUMBERISH = re.compile(r"^[-+]?[\d€.,]+€?$")


def _amount(token: str, what: str = "amount") -> Decimal:
    try:
        return parse_amount(token, what)
    except MoneyError as exc:
        raise ArgError(str(exc)) from None


@dataclass
class AddRequest:
    amount: Decimal | None
    currency: str | None
    note: str
    distance_km: int | None
    nights: int | None


def parse_add(words: list[str], rules: ClaimsConfig, category: str) -> AddRequest:
    """``[amount] [currency] [note…]`` after the category, as typed."""
    words = list(words)
    amount: Decimal | None = None
    currency: str | None = None
    if words and _NUMBERISH.match(words[0]):
        what = "distance in km" if category == "car" else "amount"
        amount = _amount(words.pop(0), what)
    if words:
        token = words[0]
        upper = token.upper()
        if upper in rules.rates or upper == "KM" or token == "€":
            currency = "EUR" if token == "€" else upper
            words.pop(0)
        elif re.fullmatch(r"[A-Z]{3}", token):
            raise ArgError(
                f"{token} is not a currency I have a rate for; I know {', '.join(rules.currencies)}"
            )
    try:
        parts = split_note(words)
    except MoneyError as exc:
        raise ArgError(str(exc)) from None
    if len(parts.note) > MAX_NOTE:
        raise ArgError(f"the note is too long; keep it under {MAX_NOTE} characters")
    return AddRequest(amount, currency, parts.note, parts.distance_km, parts.nights)


# --- receipts ------------------------------------------------------------------------------------


def _replied_event_id(ctx: Context) -> str | None:
    content = (ctx.event or {}).get("content") or {}
    relates = content.get("m.relates_to") or {}
    reply = relates.get("m.in_reply_to") if isinstance(relates, dict) else None
    target = reply.get("event_id") if isinstance(reply, dict) else None
    return target if isinstance(target, str) else None


async def _fetch(ctx: Context, room_id: str, event_id: str) -> dict[str, Any] | None:
    """The replied-to event, read from the homeserver (None when it cannot be read)."""
    fetch = ctx.services.fetch_event if ctx.services is not None else None
    if fetch is None:
        return None
    return await fetch(room_id, event_id)


@dataclass
class Receipt:
    url: str
    name: str
    mimetype: str
    size: int | None


def receipt_of(event: dict[str, Any] | None, sender: str) -> Receipt:
    """The file in a replied-to event, if it is an image or PDF the sender uploaded."""
    hint = (
        "Upload the receipt (a photo or a PDF) in this chat first, then reply to that file "
        "with the attach command."
    )
    if not event or event.get("type") != "m.room.message":
        raise CommandError(f"I could not find the message you replied to. {hint}")
    content = event.get("content") or {}
    if content.get("msgtype") not in ("m.image", "m.file"):
        raise CommandError(f"The message you replied to is not a file. {hint}")
    if event.get("sender") != sender:
        raise CommandError("Please reply to a receipt that you uploaded yourself.")
    info = content.get("info") if isinstance(content.get("info"), dict) else {}
    mimetype = str((info or {}).get("mimetype") or "")
    if not mimetype and content.get("msgtype") == "m.image":
        mimetype = "image/*"
    if not (mimetype.startswith("image/") or mimetype in RECEIPT_TYPES):
        raise CommandError(
            f"A receipt must be a photo or a PDF; this file is {mimetype or 'of an unknown type'}."
        )
    url = content.get("url")
    if not isinstance(url, str) and isinstance(content.get("file"), dict):
        url = content["file"].get("url")  # an encrypted upload
    if not isinstance(url, str) or not url.startswith("mxc://"):
        raise CommandError(f"I could not read that file. {hint}")
    name = str(content.get("filename") or content.get("body") or "receipt")
    size = (info or {}).get("size")
    return Receipt(url, name, mimetype, int(size) if isinstance(size, int) else None)


# --- the commands ------------------------------------------------------------------------------


def register(reg: Registry) -> None:  # noqa: PLR0915 - one declaration per command
    add_exporter("claims", "travel claims (one row per expense line)", export_claims)

    @_private(
        reg,
        "claim new",
        help="Start a travel claim for an in-person event you attended.\n"
        "You must have answered yes, been marked as attended, and be within the deadline "
        "(30 days after the event by default). Works in a direct message with me.",
        args=[Arg("event", event_id, metavar="<E#>")],
        examples=["!claim new E12"],
    )
    async def claim_new(ctx: Context, out: Out, event: int) -> None:
        rules = rules_of(ctx)
        found = await events_store.get_event(ctx.session, event)
        if found is None:
            raise CommandError(
                Message(f"There is no event E{event}. ")
                .code(f"{ctx.prefix}events")
                .text(" lists them.")
            )
        existing = await store.open_claim_for_event(ctx.session, ctx.sender, found.id)
        if existing is not None:
            raise CommandError(
                Message(f"You already have claim {existing.code} ({existing.status}) for ")
                .append(_event_line(found))
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
        days = _days_of(found)
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
                .append(_event_line(found))
                .text(" because:")
                .bullets(problems)
                .text(
                    "If you think this is wrong, please ask a moderator of "
                    f"{found.cop_code} or the Secretariat."
                )
            )
        claim = await store.create_claim(
            ctx.session,
            user_id=ctx.sender,
            event_id=found.id,
            cop_code=found.cop_code,
            days=len(days),
            now=ctx.now,
        )
        await _audit(ctx, claim, "new", f"for E{found.id}")
        last = deadline_day(days[-1], rules)
        p = ctx.prefix
        msg = (
            Message(f"Claim {claim.code} is open as a draft for ")
            .append(_event_line(found))
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
        await out(msg)

    @_private(
        reg,
        "claim add",
        help="Add an expense to your draft claim.\n"
        "Categories: rail, air, car (give the km driven), accommodation (the hotel bill; "
        "add nights=N), daily-allowance (leave the amount out to get the allowance for the "
        "event's days), other. Give another currency after the amount (e.g. 1450 SEK); add "
        "km=N for the one-way distance of a rail or air trip. Taxis are not reimbursed.",
        args=[
            Arg("claim", claim_id, metavar="<C#>"),
            Arg("category", str, metavar="<category>"),
            Arg("amount", str, optional=True, metavar="amount"),
            Arg("currency", str, optional=True, metavar="currency"),
            Arg("note", str, optional=True, metavar="note…"),
        ],
        examples=[
            '!claim add C7 rail 120.50 "Brussels–Oslo"',
            "!claim add C7 car 350",
            "!claim add C7 accommodation 2210 SEK nights=2",
            "!claim add C7 daily-allowance",
        ],
        free_args=True,
    )
    async def claim_add(ctx: Context, out: Out, **values: Any) -> None:
        rules = rules_of(ctx)
        number: int = values["claim"]
        category = str(values["category"]).lower()
        words = [w for w in (values["amount"], values["currency"], values["note"]) if w]
        words += values["rest"]
        loaded = await _load(ctx, number, lock=True)
        _step(loaded, Action.EDIT)
        command = reg.get("claim add")
        assert command is not None
        try:
            request = parse_add(words, rules, category)
            line = price_new_line(
                category=category,
                amount=request.amount,
                currency=request.currency,
                rules=rules,
                days=max(len(_days_of(loaded.event)), 1),
                quantity=Decimal(request.nights) if request.nights is not None else None,
                distance_km=request.distance_km,
                note=request.note,
            )
        except ArgError as exc:
            raise UsageError(reg.usage_message(command, str(exc))) from None
        except MoneyError as exc:
            text = str(exc)
            raise CommandError(
                text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")
            ) from None
        conversion = convert(line.amount, line.currency, rules)
        added = await store.add_line(
            ctx.session,
            loaded.claim,
            category=line.category,
            amount=conversion.amount,
            currency=conversion.currency,
            rate=conversion.rate,
            eur=conversion.eur,
            quantity=line.quantity,
            distance_km=line.distance_km,
            note=line.note,
            now=ctx.now,
        )
        loaded.lines.append(added)
        check = _assess(ctx, loaded)
        await store.save_claim(ctx.session, loaded.claim, ctx.now)
        msg = Message(f"Added line {added.position} to {loaded.claim.code}:")
        msg.bullets([_describe_line(added, rules)])
        msg.text(f"{loaded.claim.code} now totals {fmt(loaded.claim.claimed)}")
        if loaded.claim.allowed != loaded.claim.claimed:
            msg.text(f" ({fmt(loaded.claim.allowed)} after the caps)")
        msg.text(".").para()
        if check.lines[-1].needs_receipt:
            msg.text("This line needs a receipt: upload the photo or PDF here, then reply to ")
            msg.text("it with ").code(f"{ctx.prefix}claim attach {loaded.claim.code} ")
            msg.code(str(added.position)).text(". ")
            msg.text("Then add more, or ").code(f"{ctx.prefix}claim submit {loaded.claim.code}")
            msg.text(".")
        else:
            msg.append(_next_steps(ctx, loaded, check))
        await out(msg)

    @_private(
        reg,
        "claim attach",
        help="Attach a receipt: reply to the uploaded photo or PDF with this command.\n"
        "Without a line number the receipt goes to the newest line that still needs one.",
        args=[
            Arg("claim", claim_id, metavar="<C#>"),
            Arg("line", line_number, optional=True, metavar="line"),
        ],
        examples=["!claim attach C7 2"],
    )
    async def claim_attach(ctx: Context, out: Out, claim: int, line: int | None) -> None:
        rules = rules_of(ctx)
        loaded = await _load(ctx, claim, lock=True)
        _step(loaded, Action.EDIT)
        if not loaded.lines:
            raise CommandError(
                Message(f"{loaded.claim.code} has no expenses yet; add one first with ")
                .code(f"{ctx.prefix}claim add {loaded.claim.code} <category> <amount>")
                .text(".")
            )
        target = _pick_line(loaded.lines, line, rules)
        replied = _replied_event_id(ctx)
        if replied is None:
            raise CommandError(
                Message("Please upload the receipt (a photo or a PDF) in this chat, then ")
                .text("reply to that file with ")
                .code(f"{ctx.prefix}claim attach {loaded.claim.code} {target.position}")
                .text(".")
            )
        event = await _fetch(ctx, ctx.room_id, replied)
        receipt = receipt_of(event, ctx.sender)
        await store.attach_receipt(
            ctx.session,
            target,
            url=receipt.url,
            name=receipt.name,
            mimetype=receipt.mimetype,
            size=receipt.size,
            event_id=replied,
        )
        check = _assess(ctx, loaded)
        await store.save_claim(ctx.session, loaded.claim, ctx.now)
        msg = Message(f"Receipt {receipt.name!s} attached to line {target.position} of ")
        msg.text(f"{loaded.claim.code}:").bullets([_describe_line(target, rules)])
        msg.append(_next_steps(ctx, loaded, check))
        await out(msg)

    @_private(
        reg,
        "claim remove",
        help="Remove a line from your draft claim.",
        args=[Arg("claim", claim_id, metavar="<C#>"), Arg("line", line_number, metavar="<line>")],
        examples=["!claim remove C7 2"],
    )
    async def claim_remove(ctx: Context, out: Out, claim: int, line: int) -> None:
        loaded = await _load(ctx, claim, lock=True)
        _step(loaded, Action.EDIT)
        if not await store.remove_line(ctx.session, loaded.claim, line):
            raise CommandError(
                f"{loaded.claim.code} has no line {line}; it has {len(loaded.lines)} "
                f"line{'s' if len(loaded.lines) != 1 else ''}."
            )
        loaded.lines = await store.lines_of(ctx.session, loaded.claim.id)
        check = _assess(ctx, loaded)
        await store.save_claim(ctx.session, loaded.claim, ctx.now)
        msg = await _claim_message(ctx, loaded, heading=f"Line {line} removed.")
        await out(msg.para().append(_next_steps(ctx, loaded, check)))

    @_private(
        reg,
        "claim show",
        help="Show a claim: its lines, caps, receipts, totals and status.",
        args=[Arg("claim", claim_id, metavar="<C#>")],
        examples=["!claim show C7"],
    )
    async def claim_show(ctx: Context, out: Out, claim: int) -> None:
        loaded = await _load(ctx, claim)
        check = None
        if loaded.claim.status == Status.DRAFT:
            check = _assess(ctx, loaded)
        msg = await _claim_message(ctx, loaded)
        steps = _next_steps(ctx, loaded, check)
        if steps.plain:
            msg.para().append(steps)
        if not loaded.actor.is_owner and loaded.claim.status == Status.SUBMITTED:
            p, code = ctx.prefix, loaded.claim.code
            msg.para().text("Decide with ").code(f"{p}claim approve {code} [amount] [reason]")
            msg.text(" or ").code(f"{p}claim reject {code} <reason>").text(".")
        await out(msg)

    @_private(
        reg,
        "claims",
        help="List your travel claims and their status.",
        examples=["!claims"],
    )
    async def claims_mine(ctx: Context, out: Out) -> None:
        mine = await store.claims_of(ctx.session, ctx.sender)
        if not mine:
            await out(
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
                line.append(_event_line(event)).text(" · ")
            amount = claim.approved if claim.approved is not None else claim.claimed
            line.text(fmt(amount))
            items.append(line)
        msg = Message("Your travel claims:").bullets(items)
        msg.code(f"{ctx.prefix}claim show <C#>").text(" shows one.")
        await out(msg)

    @_private(
        reg,
        "claim withdraw",
        help="Withdraw your claim (a draft, or a submitted claim not yet decided).",
        args=[Arg("claim", claim_id, metavar="<C#>")],
        examples=["!claim withdraw C7"],
    )
    async def claim_withdraw(ctx: Context, out: Out, claim: int) -> None:
        loaded = await _load(ctx, claim, lock=True)
        was = loaded.claim.status
        loaded.claim.status = _step(loaded, Action.WITHDRAW)
        loaded.claim.withdrawn_at = ctx.now
        await store.save_claim(ctx.session, loaded.claim, ctx.now)
        await _audit(ctx, loaded.claim, "withdraw", f"was {was}")
        if was == Status.SUBMITTED:
            await ctx.notify_management(
                Message(f"Claim {loaded.claim.code} by {loaded.claim.user_id} for ")
                .append(_event_line(loaded.event))
                .text(" was withdrawn by its owner; nothing to decide.")
            )
        await out(
            Message(f"{loaded.claim.code} is withdrawn. You can start a new claim for ")
            .text(f"E{loaded.event.id} with ")
            .code(f"{ctx.prefix}claim new E{loaded.event.id}")
            .text(" while the deadline allows.")
        )

    @_private(
        reg,
        "claim submit",
        help="Check your claim and send it to the moderators; it can't be changed afterwards.",
        args=[Arg("claim", claim_id, metavar="<C#>")],
        examples=["!claim submit C7"],
    )
    async def claim_submit(ctx: Context, out: Out, claim: int) -> None:
        rules = rules_of(ctx)
        loaded = await _load(ctx, claim, lock=True)
        new_status = _step(loaded, Action.SUBMIT)
        check = _assess(ctx, loaded)
        days = _days_of(loaded.event)
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
        await _audit(
            ctx,
            loaded.claim,
            "submit",
            f"{fmt(check.claimed)} claimed, {fmt(check.allowed)} after caps",
        )
        msg = await _claim_message(ctx, loaded, heading=f"Submitted {loaded.claim.code}.")
        msg.para().text(
            f"The moderators of {loaded.claim.cop_code} will look at it; I'll tell you here "
            "when it is decided. It can no longer be changed (you can still withdraw it)."
        )
        await out(msg)
        flagged = len(check.flagged)
        note = Message(f"New travel claim {loaded.claim.code} from {loaded.claim.user_id} for ")
        note.append(_event_line(loaded.event)).text(f": {fmt(check.claimed)} claimed")
        if check.allowed != check.claimed:
            note.text(f", {fmt(check.allowed)} after the caps")
        note.text(".")
        if flagged:
            note.text(f" {flagged} line{'s' if flagged != 1 else ''} flagged.")
        note.text(" See it with ").code(f"{ctx.prefix}claim show {loaded.claim.code}")
        note.text("; decide with ").code(f"{ctx.prefix}claim approve {loaded.claim.code}")
        note.text(" or ").code(f"{ctx.prefix}claim reject {loaded.claim.code} <reason>").text(".")
        await ctx.notify_management(note)

    # --- moderators ----------------------------------------------------------------------

    @_private(
        reg,
        "claims pending",
        help="Claims waiting for a decision or for payment (moderators and the Secretariat).",
        args=[Arg("cop", cop_code, optional=True, metavar="COP")],
        role=Role.MODERATOR,
        examples=["!claims pending", "!claims pending HDEV"],
    )
    async def claims_pending(ctx: Context, out: Out, cop: str | None) -> None:
        cops = await _cops_for(ctx, cop)
        waiting = await store.claims_with_status(
            ctx.session, [Status.SUBMITTED, Status.APPROVED], cops
        )
        scope = ", ".join(sorted(cops)) if cops is not None else "all CoPs"
        if not waiting:
            await out(Message(f"No claims are waiting ({scope})."))
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
                    item.append(_event_line(event)).text(" · ")
                if status == Status.SUBMITTED:
                    item.text(f"{fmt(claim.claimed)} claimed")
                    if claim.allowed != claim.claimed:
                        item.text(f", {fmt(claim.allowed)} after the caps")
                else:
                    item.text(f"{fmt(claim.approved or Decimal(0))} approved")
                items.append(item)
            msg.para().bold(title).bullets(items)
        msg.code(f"{ctx.prefix}claim show <C#>").text(" shows one.")
        await out(msg)

    @_private(
        reg,
        "claim approve",
        help="Approve a submitted claim, for the amount after the caps or another amount.\n"
        "Another amount needs a reason, which the claimant is told.",
        args=[
            Arg("claim", claim_id, metavar="<C#>"),
            Arg("amount", str, optional=True, metavar="amount"),
            Arg("reason", str, optional=True, metavar="reason…"),
        ],
        role=Role.MODERATOR,
        examples=["!claim approve C7", '!claim approve C7 300 "hotel above the cap"'],
        free_args=True,
    )
    async def claim_approve(ctx: Context, out: Out, **values: Any) -> None:
        number: int = values["claim"]
        words = [w for w in (values["amount"], values["reason"]) if w] + values["rest"]
        command = reg.get("claim approve")
        assert command is not None
        amount: Decimal | None = None
        if words and _NUMBERISH.match(words[0]):
            try:
                amount = _amount(words.pop(0))
            except ArgError as exc:
                raise UsageError(reg.usage_message(command, str(exc))) from None
        reason = " ".join(words).strip()
        loaded = await _load(ctx, number, lock=True)
        new_status = _step(loaded, Action.APPROVE)
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
        await _audit(ctx, claim, "approve", detail + (f"; reason: {reason}" if reason else ""))
        notice = Message(f"Good news: your travel claim {claim.code} for ")
        notice.append(_event_line(loaded.event)).text(" was approved for ").bold(fmt(total))
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
        await out(msg)

    @_private(
        reg,
        "claim reject",
        help="Reject a submitted claim, with the reason the claimant is told.",
        args=[
            Arg("claim", claim_id, metavar="<C#>"),
            Arg("reason", str, metavar="<reason…>"),
        ],
        role=Role.MODERATOR,
        examples=['!claim reject C7 "the event was online"'],
        free_args=True,
    )
    async def claim_reject(ctx: Context, out: Out, **values: Any) -> None:
        number: int = values["claim"]
        reason = " ".join([values["reason"], *values["rest"]]).strip()
        if len(reason) > MAX_NOTE:
            raise CommandError(f"Please keep the reason under {MAX_NOTE} characters.")
        loaded = await _load(ctx, number, lock=True)
        claim = loaded.claim
        claim.status = _step(loaded, Action.REJECT)
        claim.reason = reason
        claim.decided_at = ctx.now
        claim.decided_by = ctx.sender
        await store.save_claim(ctx.session, claim, ctx.now)
        await _audit(ctx, claim, "reject", f"reason: {reason}")
        notice = Message(f"Your travel claim {claim.code} for ")
        notice.append(_event_line(loaded.event)).text(" was not approved.")
        notice.br().text("Reason: ").text(reason)
        notice.br().text(
            f"If you have questions, please ask a moderator of {claim.cop_code} or the Secretariat."
        )
        await ctx.dm(claim.user_id, notice)
        await out(Message(f"{claim.code} rejected. {claim.user_id} has been told the reason."))

    @_private(
        reg,
        "claim paid",
        help="Record that an approved claim has been paid; the claimant is told.",
        args=[Arg("claim", claim_id, metavar="<C#>")],
        role=Role.MODERATOR,
        examples=["!claim paid C7"],
    )
    async def claim_paid(ctx: Context, out: Out, claim: int) -> None:
        loaded = await _load(ctx, claim, lock=True)
        item = loaded.claim
        item.status = _step(loaded, Action.PAY)
        item.paid_at = ctx.now
        item.paid_by = ctx.sender
        await store.save_claim(ctx.session, item, ctx.now)
        amount = item.approved if item.approved is not None else item.allowed
        await _audit(ctx, item, "paid", fmt(amount))
        notice = Message(f"Your travel claim {item.code} for ").append(_event_line(loaded.event))
        notice.text(" has been paid: ").bold(fmt(amount)).text(". Thank you for taking part!")
        await ctx.dm(item.user_id, notice)
        await out(
            Message(f"{item.code} marked paid ({fmt(amount)}). {item.user_id} has been told.")
        )

    @_private(
        reg,
        "claim receipt",
        help="Show the receipt files of a claim (all lines, or one).",
        args=[
            Arg("claim", claim_id, metavar="<C#>"),
            Arg("line", line_number, optional=True, metavar="line"),
        ],
        examples=["!claim receipt C7", "!claim receipt C7 2"],
    )
    async def claim_receipt(ctx: Context, out: Out, claim: int, line: int | None) -> None:
        loaded = await _load(ctx, claim)
        chosen = [item for item in loaded.lines if item.has_receipt]
        if line is not None:
            chosen = [item for item in chosen if item.position == line]
        if not chosen:
            what = f"line {line} of {loaded.claim.code}" if line else loaded.claim.code
            raise CommandError(f"There is no receipt on {what}.")
        await out(Message(f"Receipts of {loaded.claim.code}:"))
        room = ctx.room_id if not out.redirected else None
        for item in chosen:
            content = {
                "msgtype": "m.image" if item.receipt_mimetype.startswith("image/") else "m.file",
                "body": item.receipt_name or "receipt",
                "filename": item.receipt_name or "receipt",
                "url": item.receipt_url,
                "info": {"mimetype": item.receipt_mimetype}
                | ({"size": item.receipt_size} if item.receipt_size else {}),
                "m.mentions": {},
            }
            if room is not None:
                await repo.enqueue(ctx.session, room_id=room, payload=content, now=ctx.now)
            else:
                await _dm_payload(ctx, content)


def _pick_line(lines: Sequence[ClaimLine], number: int | None, rules: ClaimsConfig) -> ClaimLine:
    if number is not None:
        found = next((line for line in lines if line.position == number), None)
        if found is None:
            raise CommandError(
                f"There is no line {number}; the claim has {len(lines)} "
                f"line{'s' if len(lines) != 1 else ''}."
            )
        return found
    for line in reversed(lines):
        if line.category in rules.receipt_required and not line.has_receipt:
            return line
    for line in reversed(lines):
        if not line.has_receipt:
            return line
    return lines[-1]


async def _dm_payload(ctx: Context, content: dict[str, Any]) -> None:
    room_id = await repo.get_direct_room(ctx.session, ctx.sender)
    if room_id is not None:
        await repo.enqueue(ctx.session, room_id=room_id, payload=content, now=ctx.now)
    else:
        await repo.enqueue(ctx.session, to_user=ctx.sender, payload=content, now=ctx.now)


async def _cops_for(ctx: Context, code: str | None) -> set[str] | None:
    """The CoPs a moderator's listing covers: the one named, or all they moderate
    (None: every CoP, for admins)."""
    if code is not None:
        cop = ctx.resolve_cop(code)
        await ctx.require(Role.MODERATOR, cop.code)
        return {cop.code}
    if ctx.is_admin:
        return None
    return set(await ctx.moderates())


# --- export ------------------------------------------------------------------------------

CSV_COLUMNS = (
    "claim",
    "status",
    "cop",
    "event",
    "event_title",
    "event_last_day",
    "claimant",
    "organisation",
    "country",
    "line",
    "category",
    "note",
    "quantity",
    "distance_km",
    "amount",
    "currency",
    "rate_per_eur",
    "amount_eur",
    "cap_eur",
    "allowed_eur",
    "approved_eur",
    "receipt",
    "flags",
    "claim_claimed_eur",
    "claim_allowed_eur",
    "claim_approved_eur",
    "submitted_at",
    "decided_by",
    "decided_at",
    "reason",
    "paid_at",
)
EXPORTED = (Status.SUBMITTED, Status.APPROVED, Status.REJECTED, Status.PAID)


def _stamp(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


def _money_cell(value: Decimal | None) -> str:
    return "" if value is None else f"{value:.2f}"


async def claims_csv(ctx: Context, cops: set[str] | None) -> tuple[bytes, int]:
    """The CSV for finance: one row per line of every submitted, decided or paid claim.

    Money is written with a dot and two decimals and no thousands separators. Per claim,
    ``amount_eur``, ``allowed_eur`` and ``approved_eur`` of its rows add up exactly to
    ``claim_claimed_eur``, ``claim_allowed_eur`` and ``claim_approved_eur`` (a rejected
    claim: 0.00; a claim still waiting for a decision: empty).
    """
    claims = await store.claims_with_status(ctx.session, EXPORTED, cops)
    lines = await store.lines_of_claims(ctx.session, [claim.id for claim in claims])
    people = await events_store.profiles(ctx.session, {claim.user_id for claim in claims})
    rows: list[list[object]] = []
    for claim in claims:
        event = await events_store.get_event(ctx.session, claim.event_id)
        person = people.get(claim.user_id)
        rejected = claim.status == Status.REJECTED
        approved_total = Decimal("0.00") if rejected else claim.approved
        for line in lines[claim.id]:
            approved = Decimal("0.00") if rejected else line.approved
            rows.append(
                [
                    claim.code,
                    claim.status,
                    claim.cop_code,
                    f"E{claim.event_id}",
                    event.title if event else "",
                    _days_of(event)[-1].isoformat() if event else "",
                    claim.user_id,
                    person.org if person and person.org else "",
                    person.country if person and person.country else "",
                    line.position,
                    line.category,
                    line.note,
                    "" if line.quantity is None else _plain_number(line.quantity),
                    "" if line.distance_km is None else line.distance_km,
                    _money_cell(line.amount),
                    line.currency,
                    str(line.rate),
                    _money_cell(line.eur),
                    _money_cell(line.cap),
                    _money_cell(line.allowed),
                    _money_cell(approved),
                    line.receipt_name if line.has_receipt else "",
                    "; ".join(line.flags),
                    _money_cell(claim.claimed),
                    _money_cell(claim.allowed),
                    _money_cell(approved_total),
                    _stamp(claim.submitted_at),
                    claim.decided_by or "",
                    _stamp(claim.decided_at),
                    claim.reason,
                    _stamp(claim.paid_at),
                ]
            )
    return csv_bytes(CSV_COLUMNS, rows), len(rows)


async def export_claims(ctx: Context, cops: list[str]) -> tuple[str, bytes]:
    """``!export claims [COP]``: in the management room only, never in a shared room."""
    if ctx.place is not Place.MANAGEMENT:
        raise CommandError(
            "Travel claims are exported only in the management room, where the Secretariat "
            "and the moderators are. Please ask there."
        )
    data, _ = await claims_csv(ctx, set(cops))
    return "claims", data
