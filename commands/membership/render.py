"""How the membership family writes people, profiles, questions and refusals."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from commands.membership.rules import (
    COUNTRIES,
    COUNTRY_CHOICES,
    TYPE_CHOICES,
    TYPE_LABELS,
    country_name,
    short_type,
)
from commands.text import Message
from config.models import CopConfig, Settings
from storage.models import Membership, Person

STATUS_WORDS = {
    "member": "member",
    "applied": "applied, waiting for a decision",
    "rejected": "not accepted",
    "left": "left",
    "removed": "removed",
}


def sentence(problem: str) -> str:
    return problem[:1].upper() + problem[1:]


def cop_title(cop: CopConfig) -> Message:
    return Message().bold(cop.code).text(f" — {cop.name}")


def describe(person: Person | None) -> Message:
    """``City of Oslo · Norway (NO) · local authority`` (the name a piece of its own, so it
    is isolated from the bot's words around it)."""
    if person is None:
        return Message("no profile")
    return (
        Message()
        .text(person.org or "organisation not given")
        .text(f" · {country_name(person.country)} · {short_type(person.authority_type)}")
    )


def local_time(settings: Settings, when: datetime) -> str:
    return when.astimezone(ZoneInfo(settings.secretariat.timezone)).strftime("%Y-%m-%d %H:%M")


def cancel_hint(prefix: str) -> Message:
    return Message("(Send ").code(f"{prefix}cancel").text(" to stop.)")


def question(kind: str, prefix: str) -> Message:
    if kind == "org":
        msg = Message("What is the full name of your organisation? (For example: City of Oslo.)")
    elif kind == "country":
        msg = Message("In which country is your organisation established? ")
        msg.text("Answer with the number, the country's name (in English or its own ")
        msg.text("language) or its code:")
        msg.bullets(f"{n} — {COUNTRIES[c]} ({c})" for n, c in enumerate(COUNTRY_CHOICES, 1))
    else:
        msg = Message("What kind of organisation is it? Answer with the number:")
        msg.bullets(f"{n} — {TYPE_LABELS[t]}" for n, t in enumerate(TYPE_CHOICES, 1))
    return msg.br().append(cancel_hint(prefix))


def country_retry(prefix: str) -> Message:
    """After an answer that is not an EU or EEA country: no list again, but a way out."""
    return (
        Message("If your organisation is established elsewhere, send ")
        .code(f"{prefix}cancel")
        .text(" to stop. (Suppliers, consultancies and other market actors can't join either, ")
        .text("but a CoP moderator can invite them as guests to single events.)")
    )


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
