"""Typed argument parsers. A parser takes one raw token and returns a value or raises ArgError."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from config.models import USER_ID_RE


class ArgError(ValueError):
    """An argument is wrong; the message says exactly what, in plain words."""


QUOTES = '"“”„'


class Tokenizer:
    """Reads tokens from a command's text: bare words, "quoted values" or key="quoted values"."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def _skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def at_end(self) -> bool:
        self._skip_space()
        return self.pos >= len(self.text)

    def peek(self) -> str | None:
        saved = self.pos
        try:
            return self.next()
        finally:
            self.pos = saved

    def next(self) -> str | None:
        self._skip_space()
        if self.pos >= len(self.text):
            return None
        out: list[str] = []
        quote: str | None = None
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if quote:
                if ch in QUOTES:
                    quote = None
                else:
                    out.append(ch)
            elif ch in QUOTES:
                quote = ch
            elif ch.isspace():
                break
            else:
                out.append(ch)
            self.pos += 1
        if quote:
            raise ArgError("a quotation mark is not closed")
        return "".join(out)

    def rest(self) -> str:
        self._skip_space()
        value = self.text[self.pos :].strip()
        self.pos = len(self.text)
        return value


Parser = Callable[[str], Any]


@dataclass(frozen=True)
class Arg:
    """One positional argument."""

    name: str
    parser: Parser = str
    optional: bool = False
    rest: bool = False
    """Takes all the remaining text, spaces and new lines included."""
    metavar: str | None = None
    default: Any = None

    def usage(self) -> str:
        shown = self.metavar or f"<{self.name}>"
        if self.rest and not self.metavar:
            shown = f"<{self.name}…>"
        return f"[{shown}]" if self.optional and not shown.startswith("[") else shown


@dataclass(frozen=True)
class Options:
    """Trailing ``key=value`` options."""

    parsers: dict[str, Parser] = field(default_factory=dict)
    name: str = "options"

    def usage(self) -> str:
        return " ".join(f"[{key}=…]" for key in self.parsers)


def parse_arguments(text: str, args: Sequence[Arg], options: Options | None) -> dict[str, Any]:
    tokens = Tokenizer(text)
    values: dict[str, Any] = {}
    for arg in args:
        if arg.rest:
            raw = tokens.rest()
            if options is not None:
                raise ArgError("internal: rest argument cannot be followed by options")
            if not raw:
                if not arg.optional:
                    raise ArgError(f"{arg.usage()} is missing")
                values[arg.name] = arg.default
            else:
                values[arg.name] = arg.parser(raw)
            continue
        token = tokens.peek()
        is_option = (
            token is not None
            and options is not None
            and "=" in token
            and token.split("=", 1)[0].lower() in options.parsers
        )
        if token is None or is_option:
            if not arg.optional:
                raise ArgError(f"{arg.usage()} is missing")
            values[arg.name] = arg.default
            continue
        if arg.optional:
            try:
                values[arg.name] = arg.parser(token)
            except ArgError:
                values[arg.name] = arg.default
                continue
            tokens.next()
        else:
            tokens.next()
            values[arg.name] = arg.parser(token)
    if options is not None:
        given: dict[str, Any] = {}
        while (token := tokens.next()) is not None:
            if "=" not in token:
                raise ArgError(f"I did not understand {token!r}; options look like key=value")
            key, raw = token.split("=", 1)
            key = key.lower()
            if key not in options.parsers:
                known = ", ".join(options.parsers)
                raise ArgError(f"{key!r} is not an option here (known: {known})")
            given[key] = options.parsers[key](raw)
        values[options.name] = given
    if not tokens.at_end():
        raise ArgError(f"there is more than I expected: {tokens.rest()!r}")
    return values


# --- parsers -----------------------------------------------------------------------------


def user_id(token: str) -> str:
    value = token.strip()
    if not USER_ID_RE.match(value):
        raise ArgError(f"{token!r} is not a Matrix ID like @name:example.org")
    return value


def positive_int(token: str) -> int:
    if not token.isdigit() or int(token) <= 0:
        raise ArgError(f"{token!r} should be a whole number above zero")
    return int(token)


def prefixed_id(letter: str, what: str) -> Parser:
    """Parser for IDs shown as ``E12``: accepts ``E12``, ``e12`` and ``12``."""
    pattern = re.compile(rf"^{letter}?(\d+)$", re.IGNORECASE)

    def parse(token: str) -> int:
        match = pattern.match(token.strip().lstrip("#"))
        if not match or int(match.group(1)) == 0:
            raise ArgError(f"{token!r} is not {what} number such as {letter}12")
        return int(match.group(1))

    parse.__name__ = f"{what} id"
    return parse


def choice(*values: str) -> Parser:
    def parse(token: str) -> str:
        lowered = token.lower()
        if lowered not in values:
            raise ArgError(f"{token!r} is not one of: {', '.join(values)}")
        return lowered

    return parse


def cop_code(token: str) -> str:
    """Shape only; commands check that the CoP exists (see ``Context.resolve_cop``)."""
    value = token.strip().upper()
    if not re.match(r"^[A-Z][A-Z0-9]{1,11}$", value):
        raise ArgError(f"{token!r} is not a CoP code such as HDEV")
    return value


ALL = "ALL"
"""What :func:`cop_or_all` gives for ``all``."""


def cop_or_all(token: str) -> str:
    """A CoP code, or ``all`` (as ``ALL``) for every CoP."""
    value = token.strip().upper()
    if value == ALL:
        return value
    if not re.match(r"^[A-Z][A-Z0-9]{1,11}$", value):
        raise ArgError(f"{token!r} is not a CoP code such as HDEV, or all")
    return value


def word_list(text: str) -> list[str]:
    """The words of a text as the tokenizer reads them (quotes group words)."""
    tokens = Tokenizer(text)
    words: list[str] = []
    while (token := tokens.next()) is not None:
        words.append(token)
    return words


def sentence(text: str) -> str:
    """Free text, with quotation marks taken off: ``"not eligible"`` -> ``not eligible``."""
    return " ".join(word_list(text)).strip()
