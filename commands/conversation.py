"""What the bot says about a message that is no command: the pointer to ``help`` in a direct
chat, and the answer to an edit of a message it already acted on.

The processor (``bot.processor``) decides when these apply; the wording lives here, with
the other replies.
"""

from __future__ import annotations

from datetime import timedelta

from commands.text import Message, excerpt

POINTER_EVERY = timedelta(hours=24)
"""A person gets the pointer to ``help`` at most once in this time, however much they write."""


def pointer(prefix: str) -> Message:
    """The answer to plain text in a direct chat that is no command."""
    return (
        Message("I only understand commands. Send ")
        .code("help")
        .text(" to see what I can do; in our direct chat you can leave out the ")
        .code(prefix)
        .text(".")
    )


def acted_on(prefix: str, *, earlier_edit: bool, edited: str | None) -> Message:
    """The answer to an edit of a message the bot already acted on. ``edited``: the command
    the edited version says (without prefix), if it is one."""
    version = "an earlier edit" if earlier_edit else "the first version"
    msg = Message(f"I acted on {version} of this message, so I did not act on this edit. ")
    if edited:
        msg.text("To do what it says now, send it as a new message: ")
        msg.code(excerpt(f"{prefix}{edited}", 80)).text(".")
    else:
        msg.text("To change something, send a new command; ").code(f"{prefix}help")
        msg.text(" lists them.")
    return msg
