"""Errors a command raises to answer the user; anything else is an unexpected failure."""

from __future__ import annotations

from commands.text import Message


class CommandError(Exception):
    """An expected problem. The message is shown to the user; the command's effects roll back."""

    outcome = "refused"

    def __init__(self, message: Message | str) -> None:
        self.message = message if isinstance(message, Message) else Message(message)
        super().__init__(self.message.plain)


class PermissionDenied(CommandError):
    outcome = "denied"


class UsageError(CommandError):
    outcome = "usage"
