"""An expense as typed in a command (``[amount] [currency] [note…] km=N nights=N``), the
receipt a command replies to, and which line a receipt goes to."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from commands.args import ArgError
from commands.claims.rates import is_currency_word
from commands.claims.rules import MoneyError, parse_amount, split_note
from commands.errors import CommandError
from commands.files import encrypted_file, file_url
from commands.text import plural
from config.claims import ClaimsConfig
from storage.claims import ClaimLine

RECEIPT_TYPES = ("application/pdf",)
"""Besides images (``image/*``), the file types accepted as receipts."""
MAX_NOTE = 300


def line_number(token: str) -> int:
    value = token.strip().lstrip("#")
    if not value.isdigit() or int(value) <= 0:
        raise ArgError(f"{token!r} is not a line number such as 2")
    return int(value)


NUMBERISH = re.compile(r"^[-+]?[\d€.,]+€?$")


def amount_arg(token: str, what: str = "amount") -> Decimal:
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
    if words and NUMBERISH.match(words[0]):
        what = "distance in km" if category == "car" else "amount"
        amount = amount_arg(words.pop(0), what)
    if words:
        token = words[0]
        upper = token.upper()
        if upper == "KM" or token == "€" or is_currency_word(token, rules):
            currency = "EUR" if token == "€" else upper
            words.pop(0)
    try:
        parts = split_note(words)
    except MoneyError as exc:
        raise ArgError(str(exc)) from None
    if len(parts.note) > MAX_NOTE:
        raise ArgError(f"the note is too long; keep it under {MAX_NOTE} characters")
    return AddRequest(amount, currency, parts.note, parts.distance_km, parts.nights)


# --- receipts ------------------------------------------------------------------------------------


@dataclass
class Receipt:
    url: str
    name: str
    mimetype: str
    size: int | None
    file: dict[str, Any] | None = None
    """The ``file`` object of a receipt uploaded encrypted (see commands.files)."""


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
    url = file_url(content)
    if url is None:
        raise CommandError(f"I could not read that file. {hint}")
    name = str(content.get("filename") or content.get("body") or "receipt")
    size = (info or {}).get("size")
    size = int(size) if isinstance(size, int) else None
    return Receipt(url, name, mimetype, size, encrypted_file(content))


# --- the commands ------------------------------------------------------------------------------


def pick_line(lines: Sequence[ClaimLine], number: int | None, rules: ClaimsConfig) -> ClaimLine:
    if number is not None:
        found = next((line for line in lines if line.position == number), None)
        if found is None:
            raise CommandError(
                f"There is no line {number}; the claim has {plural(len(lines), 'line')}."
            )
        return found
    for line in reversed(lines):
        if line.category in rules.receipt_required and not line.has_receipt:
            return line
    for line in reversed(lines):
        if not line.has_receipt:
            return line
    return lines[-1]
