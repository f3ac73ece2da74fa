"""Market intelligence: ``!intel share``, ``list``, ``search``, ``show`` and ``remove``.

Items belong to one CoP. In a CoP room only that CoP's items are shown (the room's
members read the reply); in a direct message or the management room members see the
items of their CoPs and admins see every CoP's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from commands.args import Arg, ArgError, Options, cop_code, positive_int, prefixed_id
from commands.context import Context
from commands.errors import CommandError, UsageError
from commands.registry import Place, Registry, Role
from commands.text import Message, defuse
from storage import intel as store
from storage import repo

SECTION = "Intel"
PAGE_SIZE = 10
MAX_TITLE = 200
MAX_TEXT = 20_000
MAX_TAGS = 20
SHOW_CHUNK = 3000
LIST_TITLE = 120
FILE_MSGTYPES = ("m.file", "m.image", "m.video", "m.audio")
VIEWING = Place.COP_ROOM | Place.DM | Place.MANAGEMENT

item_id = prefixed_id("I", "an intel item")

# --- parsing what people share ----------------------------------------------------------------

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


def _shorten(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters at a word boundary, with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-") + "…"


def parse_share(text: str) -> Share:
    """First non-empty line: the title; the rest: the note. Links and tags come from both.

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
    if len(first) > MAX_TITLE:
        title = _shorten(first, MAX_TITLE)
        note = text.strip()
    else:
        title = first
        note = rest.strip()
    return Share(title=title, note=note, tags=find_tags(text), urls=find_urls(text))


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


# --- who sees what ----------------------------------------------------------------------------


async def visible_cops(ctx: Context, wanted: str | None = None) -> list[str] | None:
    """CoPs whose items the caller may see here; None means every CoP (admins)."""
    if ctx.place is Place.COP_ROOM and ctx.room_cop:
        if wanted and wanted != ctx.room_cop:
            raise CommandError(
                Message(f"In this room I only show {ctx.room_cop}'s items. Ask about ").text(
                    f"{wanted} in its own room or in a direct message with me."
                )
            )
        await ctx.require(Role.MEMBER, ctx.room_cop)
        return [ctx.room_cop]
    if wanted:
        cop = ctx.resolve_cop(wanted)
        await ctx.require(Role.MEMBER, cop.code)
        return [cop.code]
    if ctx.is_admin:
        return None
    mine = {code for code, status in (await ctx.memberships()).items() if status == "member"}
    return sorted(mine | await ctx.moderates())


async def find_visible(ctx: Context, number: int) -> store.IntelItem:
    cops = await visible_cops(ctx)
    item = await store.get_item(ctx.session, number)
    if item is None or (cops is not None and item.cop_code not in cops):
        where = f" in {ctx.room_cop}" if ctx.place is Place.COP_ROOM else ""
        raise CommandError(
            Message(f"I cannot find the intel item {ref(number)}{where}. ")
            .code(f"{ctx.prefix}intel list")
            .text(" shows the items you can see.")
        )
    return item


# --- rendering --------------------------------------------------------------------------------


def local(ctx: Context, cop: str, when: datetime) -> datetime:
    return when.astimezone(ZoneInfo(ctx.settings.cop_timezone(cop)))


def title_piece(item: store.IntelItem, limit: int = LIST_TITLE) -> Message:
    """The title, linked to the item's first link when it has one."""
    shown = _shorten(item.title, limit)
    urls = list(item.urls or [])
    if urls:
        return Message().link(urls[0], shown)
    return Message().text(shown)


def list_line(ctx: Context, item: store.IntelItem, *, show_cop: bool) -> Message:
    line = Message().bold(ref(item)).text(" ").append(title_piece(item))
    details: list[str] = []
    if show_cop:
        details.append(item.cop_code)
    if item.tag_list:
        details.append(" ".join(f"#{tag}" for tag in item.tag_list[:5]))
    if item.has_file:
        details.append(f"📎 {_shorten(item.file_name or 'file', 40)}")
    details.append(f"{local(ctx, item.cop_code, item.created_at):%d %b %Y} by {item.author}")
    return line.text(" · " + " · ".join(details))


def more_hint(
    ctx: Context, page: int, shown: int, total: int, command: str, *, capped: bool = False
) -> Message:
    """How many there are ("Showing 11–20 of 37.") and how to see the next page."""
    first = (page - 1) * PAGE_SIZE + 1
    last = first + shown - 1
    counted = f"more than {total - 1:,}" if capped else f"{total:,}"
    msg = Message(f"Showing {first}–{last} of {counted}." if total > shown else "")
    if capped:
        msg.text(f" I ranked the newest {total - 1:,}; more words narrow the search down.")
    if last < (total - 1 if capped else total):
        msg.text(" For the next ones send ").code(f"{ctx.prefix}{command} page={page + 1}")
        msg.text(".")
    return msg


# --- commands ---------------------------------------------------------------------------------


def register(reg: Registry) -> None:  # noqa: PLR0915 - one declaration per command
    @reg.command(
        "intel share",
        help="Share market intelligence with your CoP.\n"
        "The first line is the title, everything after it a note; links and #tags are "
        "picked out. To share a file, upload it to the room, then reply to it with "
        "`!intel share <title>`.",
        section=SECTION,
        args=[Arg("text", rest=True, optional=True, metavar="<title and note…>")],
        role=Role.MEMBER,
        places=Place.COP_ROOM,
        examples=[
            "!intel share Oslo tenders 40 e-buses #ebus https://example.org/tender",
            "!intel share Supplier price list 2026   (as a reply to an uploaded file)",
        ],
    )
    async def share(ctx: Context, text: str | None) -> None:
        cop = ctx.room_cop
        assert cop is not None  # places=COP_ROOM
        await ctx.require(Role.MEMBER, cop)
        text = text or ""
        if len(text) > MAX_TEXT:
            raise CommandError(
                f"That is longer than I can keep ({MAX_TEXT:,} characters). Share a link to "
                "the document instead, or upload it as a file and reply to it with "
                f"{ctx.prefix}intel share <title>."
            )
        file = await replied_file(ctx, has_text=bool(text.strip()))
        parsed = parse_share(text)
        title = parsed.title
        if file is not None and not title:
            title = _shorten(" ".join(str(file["name"]).split()), MAX_TITLE)
        if not title:
            command = reg.get("intel share")
            assert command is not None
            raise UsageError(reg.usage_message(command, "tell me what to share after the command"))
        item = await store.add_item(
            ctx.session,
            cop_code=cop,
            author=ctx.sender,
            title=title,
            note=parsed.note,
            tags=parsed.tags,
            urls=parsed.urls,
            file=file,
            room_id=ctx.room_id,
            event_id=ctx.event_id,
            created_at=ctx.now,
        )
        msg = Message("Thanks! Shared with ").text(cop).text(" as ").bold(ref(item))
        msg.text(": ").append(title_piece(item))
        extras: list[str] = []
        if file is not None:
            extras.append(f"the file {file['name']} ({human_size(file.get('size'))})")
        if parsed.tags:
            extras.append("tags " + " ".join(f"#{t}" for t in parsed.tags))
        if parsed.urls:
            extras.append("1 link" if len(parsed.urls) == 1 else f"{len(parsed.urls)} links")
        if extras:
            msg.br().text("With " + ", ".join(extras) + ".")
        msg.br().text("Anyone in the CoP can open it with ").code(
            f"{ctx.prefix}intel show {ref(item)}"
        )
        msg.text("; you can take it back with ").code(f"{ctx.prefix}intel remove {ref(item)}")
        await ctx.reply(msg.text("."))

    @reg.command(
        "intel list",
        help="List the market intelligence of your CoP, newest first, 10 at a time.\n"
        "Give a #tag to see only items with that tag; `page=2` shows the next 10. In a "
        "direct message `cop=HDEV` picks one CoP.",
        section=SECTION,
        args=[Arg("tag", parser=tag_arg, optional=True, metavar="[#tag]")],
        options=Options({"page": positive_int, "cop": cop_code}),
        role=Role.MEMBER,
        places=VIEWING,
        examples=["!intel list", "!intel list #ebus", "!intel list page=2"],
    )
    async def list_(ctx: Context, tag: str | None, options: dict[str, Any]) -> None:
        cops = await visible_cops(ctx, options.get("cop"))
        page = int(options.get("page") or 1)
        result = await store.list_items(
            ctx.session, cops, tag=tag, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
        )
        scope = scope_label(cops)
        what = f"tagged #{tag}" if tag else ""
        if not result.items:
            if result.total:
                raise CommandError(
                    f"There are only {result.total} items{' ' + what if what else ''}; "
                    f"page {page} is empty. Send {ctx.prefix}intel list"
                    f"{' #' + tag if tag else ''} to start from the newest."
                )
            msg = Message(f"No market intelligence {what + ' ' if what else ''}in {scope} yet. ")
            if ctx.place is Place.COP_ROOM:
                msg.text("Be the first: ").code(f"{ctx.prefix}intel share <title>")
                msg.text(" followed by a note, links and #tags.")
            await ctx.reply(msg)
            return
        header = Message("Market intelligence ").text(f"{what + ' ' if what else ''}in {scope}")
        header.text(", newest first:")
        show_cop = cops is None or len(cops) > 1
        header.bullets(list_line(ctx, item, show_cop=show_cop) for item in result.items)
        command = "intel list" + (f" #{tag}" if tag else "")
        if options.get("cop"):
            command += f" cop={options['cop']}"
        header.append(more_hint(ctx, page, len(result.items), result.total, command))
        header.text(
            " Open one with " if result.total > len(result.items) else "Open one with "
        ).code(f"{ctx.prefix}intel show I<number>").text(".")
        await ctx.reply(header)

    @reg.command(
        "intel search",
        help="Search the market intelligence of your CoP; the best matches come first.\n"
        "Items with all the words are listed first; add `page=2` for more results.",
        section=SECTION,
        args=[Arg("words", rest=True)],
        role=Role.MEMBER,
        places=VIEWING,
        examples=["!intel search electric buses", "!intel search hydrogen page=2"],
    )
    async def search(ctx: Context, words: str) -> None:
        query, options = split_search_options(words)
        if not store.search_words(query):
            command = reg.get("intel search")
            assert command is not None
            raise UsageError(reg.usage_message(command, "give at least one word to look for"))
        cops = await visible_cops(ctx, options.get("cop"))
        page = int(options.get("page") or 1)
        result = await store.search_items(
            ctx.session, cops, query, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
        )
        scope = scope_label(cops)
        if not result.total:
            await ctx.reply(
                Message("Nothing in ")
                .text(scope)
                .text(" matches ")
                .bold(query)
                .text(". Try other or fewer words, or browse with ")
                .code(f"{ctx.prefix}intel list")
                .text(".")
            )
            return
        if not result.items:
            raise CommandError(
                f"There are only {result.total} results; page {page} is empty. "
                f"Send {ctx.prefix}intel search {query} for the first ones."
            )
        msg = Message("Results for ").bold(query).text(f" in {scope}, best first")
        if not result.all_words:
            msg.text(" (no item has all the words; these have some of them)")
        msg.text(":")
        show_cop = cops is None or len(cops) > 1
        msg.bullets(list_line(ctx, item, show_cop=show_cop) for item in result.items)
        again = f"intel search {query}"
        if options.get("cop"):
            again += f" cop={options['cop']}"
        msg.append(
            more_hint(ctx, page, len(result.items), result.total, again, capped=result.capped)
        )
        await ctx.reply(msg)

    @reg.command(
        "intel show",
        help="Show one item in full: its note, links, tags and file.\n"
        "A long note comes in parts; `page=2` shows the second part.",
        section=SECTION,
        args=[Arg("item", parser=item_id, metavar="<I#>")],
        options=Options({"page": positive_int}),
        role=Role.MEMBER,
        places=VIEWING,
        examples=["!intel show I34"],
    )
    async def show(ctx: Context, item: int, options: dict[str, Any]) -> None:
        found = await find_visible(ctx, item)
        parts = split_text(found.note) if found.note else []
        page = int(options.get("page") or 1)
        if parts and page > len(parts):
            raise CommandError(
                f"{ref(found)} has {len(parts)} part{'s' if len(parts) > 1 else ''}; "
                f"send {ctx.prefix}intel show {ref(found)} to start from the first."
            )
        if not parts and page > 1:
            raise CommandError(f"{ref(found)} has no note to show in parts.")
        msg = Message().bold(f"{ref(found)} · ").append(title_piece(found, 300))
        if len(parts) > 1:
            msg.text(f" (part {page} of {len(parts)})")
        if parts:
            msg.para().text(parts[page - 1])
            if page < len(parts):
                msg.para().text("The note goes on: send ")
                msg.code(f"{ctx.prefix}intel show {ref(found)} page={page + 1}").text(".")
        if page == 1:
            urls = list(found.urls or [])
            if urls:
                msg.para().text("Links:").bullets(Message().link(url) for url in urls)
            if found.tag_list:
                if not urls:
                    msg.para()
                msg.text("Tags: " + " ".join(f"#{t}" for t in found.tag_list))
            if found.has_file:
                msg.br().text("File: ").bold(found.file_name or "file")
                msg.text(f" ({human_size(found.file_size)}")
                msg.text(f", {found.file_mimetype})" if found.file_mimetype else ")")
                msg.text(" — I am posting it below.")
        when = local(ctx, found.cop_code, found.created_at)
        msg.br().text(f"Shared by {found.author} in {found.cop_code} on ")
        msg.text(f"{when:%d %b %Y at %H:%M} ({when.tzinfo}).")
        link = permalink(found.room_id, found.file_event_id or found.event_id)
        if link and page == 1:
            msg.text(" ").link(link, "Original message")
        await ctx.reply(msg)
        if found.has_file and page == 1:
            content = file_content(found)
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": ctx.event_id}}
            await repo.enqueue(ctx.session, room_id=ctx.room_id, payload=content, now=ctx.now)

    @reg.command(
        "intel remove",
        help="Remove an item you shared (moderators can remove any item of their CoP).\n"
        "It disappears from lists, searches and digests.",
        section=SECTION,
        args=[Arg("item", parser=item_id, metavar="<I#>")],
        role=Role.MEMBER,
        places=VIEWING,
        examples=["!intel remove I34"],
    )
    async def remove(ctx: Context, item: int) -> None:
        found = await find_visible(ctx, item)
        if found.author != ctx.sender and await ctx.role_in(found.cop_code) < Role.MODERATOR:
            raise CommandError(
                f"Only {found.author}, who shared {ref(found)}, or a moderator of "
                f"{found.cop_code} can remove it."
            )
        if not await store.remove_item(ctx.session, found.id, ctx.sender, now=ctx.now):
            raise CommandError(f"{ref(found)} was removed already.")
        await repo.audit(
            ctx.session,
            actor=ctx.sender,
            action="intel.remove",
            cop_code=found.cop_code,
            target=ref(found),
            detail=f"shared by {found.author}: {found.title[:200]}",
            now=ctx.now,
        )
        await ctx.reply(
            Message("Removed ")
            .bold(ref(found))
            .text(" (")
            .text(_shorten(found.title, LIST_TITLE))
            .text("). It no longer appears in lists, searches or digests.")
        )


def scope_label(cops: list[str] | None) -> str:
    if cops is None:
        return "all CoPs"
    if not cops:
        return "your CoPs"
    return ", ".join(cops)


def split_search_options(words: str) -> tuple[str, dict[str, Any]]:
    """Take ``page=N`` and ``cop=CODE`` out of the search words."""
    options: dict[str, Any] = {}
    kept: list[str] = []
    for token in words.split():
        key, sep, value = token.partition("=")
        key = key.lower()
        if sep and key == "page":
            options["page"] = positive_int(value)
        elif sep and key == "cop":
            options["cop"] = cop_code(value)
        else:
            kept.append(token)
    return " ".join(kept), options


async def replied_file(ctx: Context, *, has_text: bool) -> dict[str, Any] | None:
    """The file of the message this command replies to, or None when it is no reply.

    The replied-to message is read from the homeserver (the bot does not store files).
    """
    content = (ctx.event or {}).get("content") or {}
    relates = content.get("m.relates_to") or {}
    target = (
        (relates.get("m.in_reply_to") or {}).get("event_id") if isinstance(relates, dict) else None
    )
    if not isinstance(target, str) or not target:
        return None
    fetch = ctx.services.fetch_event if ctx.services is not None else None
    event = await fetch(ctx.room_id, target) if fetch is not None else None
    if event is None:
        raise CommandError(
            "I could not read the message you replied to. Please try again in a moment; "
            "if it keeps failing, upload the file again and reply to the new message."
        )
    file_content = event.get("content") or {}
    msgtype = file_content.get("msgtype")
    if event.get("type") != "m.room.message" or msgtype not in FILE_MSGTYPES:
        if has_text:
            return None  # a reply to an ordinary message: share the text itself
        raise CommandError(
            Message("The message you replied to is not a file. Reply to an uploaded file with ")
            .code(f"{ctx.prefix}intel share <title>")
            .text(", or send ")
            .code(f"{ctx.prefix}intel share <title>")
            .text(" with your note to share text.")
        )
    url = file_content.get("url")
    if not isinstance(url, str) or not url.startswith("mxc://"):
        raise CommandError(
            "I cannot keep that file: it is encrypted or has no download address. Upload it "
            "again in this room (unencrypted) and reply to it, or share a link instead."
        )
    raw_info = file_content.get("info")
    info: dict[str, Any] = raw_info if isinstance(raw_info, dict) else {}
    name = file_content.get("filename") or file_content.get("body") or "file"
    size = info.get("size")
    return {
        "url": url,
        "name": " ".join(str(name).split())[:300] or "file",
        "size": int(size) if isinstance(size, int) and size >= 0 else None,
        "mimetype": str(info.get("mimetype"))[:200] if info.get("mimetype") else None,
        "msgtype": msgtype,
        "event_id": target,
    }


def file_content(item: store.IntelItem) -> dict[str, Any]:
    """An ``m.file`` (or image, video, audio) message pointing at the stored file again."""
    name = defuse(item.file_name or "file")
    info: dict[str, Any] = {}
    if item.file_size is not None:
        info["size"] = item.file_size
    if item.file_mimetype:
        info["mimetype"] = item.file_mimetype
    return {
        "msgtype": item.file_msgtype or "m.file",
        "body": name,
        "filename": name,
        "url": item.file_url,
        "info": info,
        "m.mentions": {},
    }
