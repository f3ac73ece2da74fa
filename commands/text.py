"""Text in and out: replies built with a plain-text body and an HTML body in step (user
text escaped), and the reply fallback stripped from what people send.

Every piece of text that did not come from the bot's own source code must go through
:meth:`Message.text` (or another method that escapes). ``@room`` is defused everywhere, and
every message carries an empty ``m.mentions`` so that clients and servers that follow
intentional mentions never turn user text into a ping.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from typing import Any

_ROOM_PING = re.compile(r"@room\b", re.IGNORECASE)
MAX_MESSAGE_BYTES = 24_000
"""Text per message: Matrix events are at most 64 KiB, and an encrypted one is about a
third larger than its content (base64), so a reply longer than this is sent in parts."""
WORD_JOINER = "\u2060"


def defuse(text: str) -> str:
    """Stop ``@room`` in text from notifying a whole room (legacy push rules match the body)."""
    return _ROOM_PING.sub(lambda m: m.group(0)[0] + WORD_JOINER + m.group(0)[1:], text)


def excerpt(text: str, limit: int = 40) -> str:
    """At most ``limit`` characters of someone's text, for quoting it back in a reply."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def plural(count: int, one: str, many: str | None = None) -> str:
    """A count with its noun in agreement: ``1 event``, ``0 events``, ``2 people``
    (``many`` for nouns that do not just add an s)."""
    return f"{count} {one if count == 1 else (many or one + 's')}"


def esc(text: object) -> str:
    return html.escape(defuse(str(text)), quote=True)


class Message:
    """A reply under construction. Methods return ``self`` so calls can be chained."""

    def __init__(self, text: str = "") -> None:
        self._plain: list[str] = []
        self._html: list[str] = []
        if text:
            self.text(text)

    # inline pieces -----------------------------------------------------------------------
    def text(self, text: object) -> Message:
        value = defuse(str(text))
        self._plain.append(value)
        self._html.append(html.escape(value, quote=True).replace("\n", "<br>"))
        return self

    def bold(self, text: object) -> Message:
        value = defuse(str(text))
        self._plain.append(value)
        self._html.append(f"<strong>{html.escape(value)}</strong>")
        return self

    def italic(self, text: object) -> Message:
        value = defuse(str(text))
        self._plain.append(value)
        self._html.append(f"<em>{html.escape(value)}</em>")
        return self

    def code(self, text: object) -> Message:
        value = defuse(str(text))
        self._plain.append(value)
        self._html.append(f"<code>{html.escape(value)}</code>")
        return self

    def link(self, url: str, label: object | None = None) -> Message:
        """A link; only http(s) and mxc URLs become clickable, anything else stays text."""
        shown = defuse(str(label if label is not None else url))
        if re.match(r"^(https?|mxc)://", url, re.IGNORECASE):
            self._plain.append(shown if label is None else f"{shown} ({url})")
            self._html.append(f'<a href="{html.escape(url, quote=True)}">{html.escape(shown)}</a>')
        else:
            self.text(shown)
        return self

    def br(self) -> Message:
        self._plain.append("\n")
        self._html.append("<br>")
        return self

    def para(self) -> Message:
        """Start a new paragraph."""
        self._plain.append("\n\n")
        self._html.append("<br><br>")
        return self

    def append(self, other: Message) -> Message:
        self._plain.extend(other._plain)
        self._html.extend(other._html)
        return self

    def bullets(self, items: Iterable[Message | str]) -> Message:
        entries = [item if isinstance(item, Message) else Message(item) for item in items]
        if entries:
            if self._plain and not self._plain[-1].endswith("\n"):
                self._piece("\n", "")
            self._piece("", "<ul>")
            for entry in entries:  # one piece each, so a long list can be split between items
                self._piece("• " + entry.plain + "\n", f"<li>{entry.html}</li>")
            self._piece("", "</ul>")
        return self

    def _piece(self, plain: str, markup: str) -> None:
        self._plain.append(plain)
        self._html.append(markup)

    # results ---------------------------------------------------------------------------------
    @property
    def plain(self) -> str:
        return "".join(self._plain).strip("\n")

    @property
    def html(self) -> str:
        out = "".join(self._html)
        while out.endswith("<br>"):
            out = out[: -len("<br>")]
        return out

    def size(self) -> int:
        """Bytes of text the message carries (its plain and its HTML body)."""
        return sum(len(piece.encode()) for piece in (*self._plain, *self._html))

    def split(self, limit: int = MAX_MESSAGE_BYTES) -> list[Message]:
        """This message as one or more messages of at most ``limit`` bytes of text each,
        cut only at line ends or between list items (a list goes on in the next part)."""
        if self.size() <= limit:
            return [self]
        units: list[list[int]] = [[]]
        for index, (plain, markup) in enumerate(zip(self._plain, self._html, strict=True)):
            units[-1].append(index)
            if "\n" in plain or markup.endswith(("<br>", "</li>", "</ul>")):
                units.append([])
        parts = [Message()]
        used = depth = 0
        for unit in units:
            needed = sum(len(self._plain[i].encode()) + len(self._html[i].encode()) for i in unit)
            if parts[-1]._plain and used + needed > limit:
                if depth:
                    parts[-1]._piece("", "</ul>")
                parts.append(Message())
                used = 0
                if depth:
                    parts[-1]._piece("", "<ul>")
            for i in unit:
                parts[-1]._piece(self._plain[i], self._html[i])
                depth += (self._html[i] == "<ul>") - (self._html[i] == "</ul>")
            used += needed
        return [part for part in parts if part.plain or part.html]

    def contents(self, *, reply_to: str | None = None) -> list[dict[str, Any]]:
        """The message's content, split to fit into Matrix events; only the first part is
        a reply (the rest follow it in order)."""
        return [
            part.content(reply_to=reply_to if index == 0 else None)
            for index, part in enumerate(self.split())
        ]

    def content(self, *, reply_to: str | None = None, msgtype: str = "m.notice") -> dict[str, Any]:
        content: dict[str, Any] = {
            "msgtype": msgtype,
            "body": self.plain,
            "format": "org.matrix.custom.html",
            "formatted_body": self.html,
            "m.mentions": {},
        }
        if reply_to:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        return content


def m(text: str = "") -> Message:
    """Shorthand: ``m("Hello ").bold(name)``."""
    return Message(text)


def strip_reply_fallback(body: str) -> str:
    """Remove the ``> <@user> quoted text`` lines some clients put before a reply."""
    if not body.startswith("> "):
        return body
    lines = body.splitlines()
    while lines and lines[0].startswith(">"):
        lines.pop(0)
    while lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(lines)
