"""Reading what people share: the title and note, links, #tags, long notes in parts, and
the words of a search."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from commands.args import ArgError, cop_code, positive_int
from storage import intel as store

MAX_TITLE = 200
MAX_TAGS = 20
SHOW_CHUNK = 3000

_URL_RE = re.compile(r"https?://[^\s<>\"'`{}|\\^\[\]]+", re.IGNORECASE)
_TAG_RE = re.compile(r"(?<![\w#&/])#([^\W\d_][\w-]*)", re.UNICODE)
_TRAILING = ".,;:!?'\")]}>"


def find_urls(text: str) -> list[str]:
    """The http(s) links in ``text`` in order, without trailing punctuation, each once."""
    found: list[str] = []
    for match in _URL_RE.finditer(text):
        url = match.group(0)
        while url and url[-1] in _TRAILING:
            if url[-1] == ")" and url.count("(") >= url.count(")"):
                break  # keep the bracket of https://en.wikipedia.org/wiki/Bus_(disambiguation)
            url = url[:-1]
        if re.match(r"^https?://[^/\s]+", url, re.IGNORECASE) and url not in found:
            found.append(url)
    return found


def find_tags(text: str) -> list[str]:
    """``#tags`` in ``text`` (not inside links), lower case, without ``#``, each once."""
    without_urls = _URL_RE.sub(" ", text)
    tags: list[str] = []
    for match in _TAG_RE.finditer(without_urls):
        tag = match.group(1).rstrip("-_").lower()[: store.MAX_TAG]
        if tag and tag not in tags:
            tags.append(tag)
    return tags[:MAX_TAGS]


@dataclass(frozen=True)
class Share:
    title: str
    note: str = ""
    tags: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)


def shorten(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters at a word boundary, with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-") + "…"


_EDGES = " -–—:;,|·•"


def _tidy(original: str, kept: str) -> str:
    """Spaces tidied, and (when something was taken out) the separators left dangling."""
    tidy = " ".join(kept.split())
    if tidy != " ".join(original.split()):
        tidy = tidy.rstrip(_EDGES).lstrip(_EDGES.replace("-", ""))
    return tidy


def without_tags_and_links(line: str) -> str:
    """``line`` without its links and #tags, spaces tidied: "Oslo tenders #ebus
    https://x.org" -> "Oslo tenders"."""
    return _tidy(line, _TAG_RE.sub(" ", _URL_RE.sub(" ", line)))


def link_title(url: str) -> str:
    """How a link names itself: its domain and path, without ``https://``, ``www.``, the
    query or a trailing slash: "https://www.ted.europa.eu/notice/123?lang=en" ->
    "ted.europa.eu/notice/123"."""
    parts = urlsplit(url)
    host = (parts.hostname or "").removeprefix("www.")
    path = unquote(parts.path).rstrip("/")
    return shorten(f"{host}{path}" if host else url, MAX_TITLE)


def parse_share(text: str) -> Share:
    """First non-empty line: the title (without its #tags and links); the rest: the note.
    Links and tags come from both. A first line of links and tags only is titled after its
    first link ("ted.europa.eu/notice/123"); a first line of tags only gets no title (a
    shared file is then titled by its name).

    A first line longer than the title limit is shortened for the title and kept whole in
    the note, so nothing typed is lost.
    """
    lines = text.strip().splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        return Share(title="")
    first = " ".join(lines[0].split())
    rest = "\n".join(lines[1:]).strip("\n")
    title = without_tags_and_links(first)
    first_urls = find_urls(first)
    if not title and first_urls:
        title = link_title(first_urls[0])
    elif not title and rest.strip():  # tags only on the first line: the next one is the title
        later = parse_share(rest)
        return Share(later.title, later.note, find_tags(text), find_urls(text))
    if len(title) > MAX_TITLE:
        title = shorten(title, MAX_TITLE)
        note = text.strip()
    else:
        note = rest.strip()
    return Share(title=title, note=note, tags=find_tags(text), urls=find_urls(text))


def shown_title(title: str, tags: list[str]) -> str:
    """A stored title as shown: without the item's #tags (they are shown beside it) and, for
    a title that is a bare link (items shared before titles were tidied), the link's name."""
    kept = title
    if tags:
        kept = _TAG_RE.sub(
            lambda m: " " if m.group(1).rstrip("-_").lower() in tags else m.group(0), title
        )
        kept = _tidy(title, kept) or title
    if _URL_RE.fullmatch(kept.strip()):
        return link_title(kept.strip())
    return kept


def tag_arg(token: str) -> str:
    """``#ebus`` or ``ebus`` -> ``ebus``."""
    body = token.strip().removeprefix("#")
    tags = find_tags(f"#{body}")
    if len(tags) != 1 or tags[0] != body.lower().rstrip("-_"):
        raise ArgError(f"{token!r} is not a tag such as #tenders")
    return tags[0]


def split_text(text: str, size: int = SHOW_CHUNK) -> list[str]:
    """Split a long text into parts of at most ``size`` characters, at line or word ends."""
    parts: list[str] = []
    rest = text.strip()
    while len(rest) > size:
        cut = rest.rfind("\n", 0, size)
        if cut < size // 2:
            cut = rest.rfind(" ", 0, size)
        if cut < size // 2:
            cut = size
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest or not parts:
        parts.append(rest)
    return parts


def human_size(size: int | None) -> str:
    if size is None:
        return "size unknown"
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"  # pragma: no cover


def ref(item: store.IntelItem | int) -> str:
    return f"I{item if isinstance(item, int) else item.id}"


def permalink(room_id: str | None, event_id: str | None) -> str | None:
    if not room_id or not event_id:
        return None
    return f"https://matrix.to/#/{room_id}/{event_id}"


@dataclass(frozen=True)
class Search:
    """``!intel search`` words with ``page=N`` and ``cop=CODE`` taken out."""

    query: str
    page: int = 1
    cop: str | None = None


def parse_search(words: str) -> Search:
    kept: list[str] = []
    page, cop = 1, None
    for token in words.split():
        key, sep, value = token.partition("=")
        key = key.lower()
        if sep and key == "page":
            page = positive_int(value)
        elif sep and key == "cop":
            cop = cop_code(value)
        else:
            kept.append(token)
    return Search(" ".join(kept), page, cop)
