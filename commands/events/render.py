"""How events are written for people: the one table of kind labels, headings, details,
the announcement and the messages about answers, seats and reminders."""

from __future__ import annotations

from datetime import datetime

from commands.events.times import event_when, in_text, reminder_list
from commands.text import Message
from config.models import Settings
from storage.events import MAYBE, NO, WAITING, YES, Event, RsvpOutcome

KIND_LABELS = {
    "online-meeting": "online meeting",
    "in-person-meeting": "in-person meeting",
    "study-visit": "study visit",
    "market-dialogue": "market dialogue",
    "pitching-session": "producers' pitching session",
    "industry-meeting": "meeting with industry",
}
"""The one table of event kinds as people read them (the digest capitalises them)."""
ANSWER_LABELS = {YES: "going", NO: "not going", MAYBE: "maybe", WAITING: "on the waiting list"}


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)


def event_heading(event: Event) -> Message:
    return Message().bold(event.code).text(" “").bold(event.title).text("”")


def details(event: Event, zone_name: str) -> Message:
    """Kind, time, place and link: the facts every message about an event repeats."""
    msg = Message(kind_label(event.kind).capitalize()).text(" · ")
    msg.text(event_when(event, zone_name))
    if zone_name != event.timezone:
        msg.text(f" — {event_when(event)} local time")
    if event.location:
        msg.br().text("Where: ").text(event.location)
    if event.url:
        msg.br().text("Link: ").link(event.url)
    return msg


def seats_text(capacity: int | None) -> str:
    if capacity is None:
        return "no seat limit"
    return f"{capacity} seat" + ("s" if capacity != 1 else "")


def seats_count(capacity: int | None) -> str:
    """After "Seats:": ``12`` or ``no limit``."""
    return "no limit" if capacity is None else str(capacity)


def rsvp_hint(prefix: str, event: Event) -> Message:
    return Message("Answer with ").code(f"{prefix}rsvp {event.code} yes|no|maybe").text(".")


def announcement(prefix: str, event: Event, zone_name: str, cop_name: str) -> Message:
    msg = Message("📅 New event in ").text(cop_name).text(": ").append(event_heading(event))
    msg.br().append(details(event, zone_name))
    msg.br().text(f"Seats: {seats_count(event.capacity)}")
    msg.para().text("Coming? React with ✅ (yes), ❌ (no) or ❔ (maybe), or send ")
    msg.code(f"{prefix}rsvp {event.code} yes").text(". Details: ")
    msg.code(f"{prefix}event {event.code}").text(".")
    return msg


def promotion_message(prefix: str, event: Event, zone_name: str) -> Message:
    msg = Message("Good news: a seat freed up at ").append(event_heading(event))
    msg.text(" and it is yours. ").br().append(details(event, zone_name))
    msg.para().text("If you can no longer come, send ")
    msg.code(f"{prefix}rsvp {event.code} no").text(" so the next person gets the seat.")
    return msg


def outcome_message(
    settings: Settings, event: Event, outcome: RsvpOutcome, now: datetime
) -> Message:
    """What someone is told after answering (by command or by reaction)."""
    zone = settings.cop_timezone(event.cop_code)
    msg = Message()
    if outcome.answer == YES:
        if outcome.previous == YES:
            msg.text("You already have a seat at ").append(event_heading(event)).text(".")
        else:
            msg.text("You're going to ").append(event_heading(event)).text(". See you there!")
        msg.br().append(details(event, zone))
        reminders = reminder_list(settings.events, event.starts_at, now)
        if reminders:  # only the reminders that will really go out
            msg.br().text(f"I'll remind you {reminders} before.")
    elif outcome.answer == WAITING:
        msg.append(event_heading(event)).text(f" is full ({seats_text(event.capacity)}), so ")
        msg.text("you are ").bold(f"number {outcome.position}").text(" on the waiting list. ")
        msg.text("If a seat frees up it goes to the first one waiting, and I'll tell you in a ")
        msg.text("direct message.")
    elif outcome.answer == MAYBE:
        msg.text("Noted: maybe for ").append(event_heading(event)).text(".")
    elif outcome.answer == NO:
        msg.text("Noted: you're not going to ").append(event_heading(event)).text(".")
        if outcome.previous == YES and event.capacity is not None:
            msg.text(" Your seat is free for someone else now.")
    else:
        msg.text("Your answer to ").append(event_heading(event)).text(" is withdrawn.")
    return msg


def reminder_message(prefix: str, event: Event, zone_name: str, now: datetime) -> Message:
    msg = Message("⏰ Reminder: ").append(event_heading(event))
    msg.text(f" starts in {in_text(event.starts_at - now)}.").br()
    msg.append(details(event, zone_name))
    msg.para().text("Can't make it? Send ").code(f"{prefix}rsvp {event.code} no")
    msg.text(" so someone else can have your seat.")
    return msg
