"""Text in and out: replies built with a plain-text body and an HTML body in step (user
text escaped), and the reply fallback stripped from what people send.

Every piece of text that did not come from the bot's own source code must go through
:meth:`Message.text` (or another method that escapes). ``@room`` is defused everywhere, and
every message carries an empty ``m.mentions`` so that clients and servers that follow
intentional mentions never turn user text into a ping.

People's text can carry invisible characters. Every piece that goes into a message is
isolated (:func:`isolate`): a right-to-left override or embedding left open in an
organisation's name cannot reverse the rest of the bot's line. Rules that look at people's
text (the company check, country names) compare text after :func:`fold`, so a zero-width space
cannot hide a word; what is stored is what the person typed.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

_ROOM_PING = re.compile(r"@room\b", re.IGNORECASE)
MAX_MESSAGE_BYTES = 24_000
"""Text per message: Matrix events are at most 64 KiB, and an encrypted one is about a
third larger than its content (base64), so a reply longer than this is sent in parts."""
WORD_JOINER = "\u2060"

# Unicode bidirectional controls (UAX #9): embeddings and overrides end with PDF, isolates
# with PDI.
_EMBEDDINGS = frozenset("\u202a\u202b\u202d\u202e")  # LRE RLE LRO RLO
_PDF = "\u202c"
_ISOLATES = frozenset("\u2066\u2067\u2068")  # LRI RLI FSI
_PDI = "\u2069"
FSI, PDI = "\u2068", "\u2069"
_NEEDS_ISOLATION = frozenset(
    {"R", "AL", "AN", "LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"}
)
"""Bidi classes that can change how the text around them is displayed: right-to-left
letters, Arabic numbers and the explicit controls."""


def defuse(text: str) -> str:
    """Stop ``@room`` in text from notifying a whole room (legacy push rules match the body)."""
    if "@" not in text:  # most text: no need for the expression
        return text
    return _ROOM_PING.sub(lambda m: m.group(0)[0] + WORD_JOINER + m.group(0)[1:], text)


def fold(text: str) -> str:
    """People's text as the rules compare it: NFKC-normalised (full-width letters, ligatures
    and the like become plain ones) and without format characters (Unicode category Cf:
    zero-width spaces and joiners, bidi controls, soft hyphens). For checks only; store and
    show what the person typed."""
    text = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


def match_key(text: str) -> str:
    """:func:`fold` plus no accents, no case and single spaces: ``"  Österreich"`` and
    ``"osterreich"`` give the same key (for matching names, never for showing)."""
    decomposed = unicodedata.normalize("NFKD", fold(text))
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(unicodedata.normalize("NFC", bare).casefold().split())


def balance_bidi(text: str) -> str:
    """``text`` without the bidi controls that are not properly paired in it: an override
    or isolate left open, a PDF or PDI that closes nothing, and embeddings that an isolate's
    end would close implicitly. What is left is nested pairs, which end where they began."""
    if text.isascii():
        return text
    drop: set[int] = set()
    stack: list[tuple[int, bool]] = []  # (position, is an isolate)
    for index, ch in enumerate(text):
        if ch in _EMBEDDINGS or ch in _ISOLATES:
            stack.append((index, ch in _ISOLATES))
        elif ch == _PDF:
            if stack and not stack[-1][1]:
                stack.pop()
            else:
                drop.add(index)
        elif ch == _PDI:
            if any(isolate for _, isolate in stack):
                while stack:
                    position, isolate = stack.pop()
                    if isolate:
                        break
                    drop.add(position)  # an embedding the isolate's end would cut short
            else:
                drop.add(index)
        elif ch in "\n\r\u2029\x1c\x1d\x1e\x85":  # a paragraph's end closes everything
            drop.update(position for position, _ in stack)
            stack.clear()
    drop.update(position for position, _ in stack)
    if not drop:
        return text
    return "".join(ch for index, ch in enumerate(text) if index not in drop)


def isolate(text: str) -> str:
    """A piece of text made safe to put in a line of the bot's own: unpaired bidi controls
    removed and, when it holds right-to-left text or bidi controls, each line wrapped in a
    first-strong isolate (FSI … PDI), so it is shown in its own direction and cannot turn
    the rest of the line around. Plain left-to-right text is left exactly as it is."""
    if text.isascii():
        return text
    lines = balance_bidi(text).split("\n")
    return "\n".join(
        FSI + line + PDI
        if any(unicodedata.bidirectional(ch) in _NEEDS_ISOLATION for ch in line)
        else line
        for line in lines
    )


def excerpt(text: str, limit: int = 40) -> str:
    """At most ``limit`` characters of someone's text, for quoting it back in a reply."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def plural(count: int, one: str, many: str | None = None) -> str:
    """A count with its noun in agreement: ``1 event``, ``0 events``, ``2 people``
    (``many`` for nouns that do not just add an s)."""
    return f"{count} {one if count == 1 else (many or one + 's')}"


def esc(text: object) -> str:
    return html.escape(_safe(text), quote=True)


def _safe(text: object) -> str:
    """Any piece of a message: bidi-isolated, ``@room`` defused."""
    return isolate(defuse(str(text)))


class Message:
    """A reply under construction. Methods return ``self`` so calls can be chained."""

    def __init__(self, text: str = "") -> None:
        self._plain: list[str] = []
        self._html: list[str] = []
        if text:
            self.text(text)

    # inline pieces -----------------------------------------------------------------------
    def text(self, text: object) -> Message:
        value = _safe(text)
        self._plain.append(value)
        self._html.append(html.escape(value, quote=True).replace("\n", "<br>"))
        return self

    def _tagged(self, text: object, tag: str) -> Message:
        value = _safe(text)
        self._plain.append(value)
        self._html.append(f"<{tag}>{html.escape(value)}</{tag}>")
        return self

    def bold(self, text: object) -> Message:
        return self._tagged(text, "strong")

    def italic(self, text: object) -> Message:
        return self._tagged(text, "em")

    def code(self, text: object) -> Message:
        return self._tagged(text, "code")

    def link(self, url: str, label: object | None = None) -> Message:
        """A link; only http(s) and mxc URLs become clickable, anything else stays text."""
        shown = _safe(label if label is not None else url)
        if re.match(r"^(https?|mxc)://", url, re.IGNORECASE):
            self._plain.append(shown if label is None else f"{shown} ({_safe(url)})")
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
        return len("".join(self._plain).encode()) + len("".join(self._html).encode())

    def split(self, limit: int = MAX_MESSAGE_BYTES) -> list[Message]:
        """This message as one or more messages of at most ``limit`` bytes of text each,
        cut only at line ends or between list items (a list goes on in the next part)."""
        # Most replies are far below the limit: a UTF-8 character takes 4 bytes at most, so
        # counting characters spares encoding the whole text to count its bytes.
        if 4 * (sum(map(len, self._plain)) + sum(map(len, self._html))) <= limit:
            return [self]
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
