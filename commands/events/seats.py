"""Giving up a person's places at upcoming events when they lose a CoP: removed by its
moderators, leaving it (``!leave``), or leaving its room. The next people on the waiting
lists get the seats and are told, as when someone answers no; erasure does the same through
:func:`storage.erasure.erase_person`."""

from __future__ import annotations

from collections.abc import Iterable

from commands.context import Context
from commands.events.render import event_heading, promotion_message
from commands.text import Message
from storage import events as store
from storage.events import MAYBE, WAITING, YES, FreedSeat

SHOWN = {YES: "you had a seat", WAITING: "you were on the waiting list", MAYBE: "maybe"}
"""The answers worth telling someone about when they are withdrawn (not a no)."""


async def release_seats(ctx: Context, user: str, cops: Iterable[str]) -> list[FreedSeat]:
    """Withdraw ``user``'s answers to the upcoming events of ``cops``; the people who get a
    seat are told in a direct message. Returns what was withdrawn."""
    freed = await store.free_seats(ctx.session, user, ctx.now, cops=list(cops))
    for item in freed:
        zone = ctx.settings.cop_timezone(item.event.cop_code)
        for person in item.promoted:
            await ctx.dm(person, promotion_message(ctx.prefix, item.event, zone))
    return freed


def withdrawn_answers(freed: list[FreedSeat]) -> Message | None:
    """``E3 “Depot visit” (you had a seat), E5 “Pitching” (maybe)``, or None when no answer
    but a no was withdrawn."""
    shown = [item for item in freed if item.previous in SHOWN]
    if not shown:
        return None
    msg = Message()
    for index, item in enumerate(shown):
        if index:
            msg.text(", ")
        msg.append(event_heading(item.event)).text(f" ({SHOWN[item.previous or '']})")
    return msg


def seat_note(freed: list[FreedSeat]) -> Message:
    """`` The first person waiting has your seat.`` when someone got one, else nothing."""
    if not promoted_count(freed):
        return Message()
    return Message(" The first person on the waiting list has your seat and has been told.")


def promoted_count(freed: list[FreedSeat]) -> int:
    return sum(len(item.promoted) for item in freed)
