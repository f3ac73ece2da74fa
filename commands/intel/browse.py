"""Finding intel: ``!intel list``, ``!intel search``, ``!intel show`` and ``!intel remove``,
and the intel CSV export. In a CoP room only that CoP's items are shown (everyone in the
room reads the answer); elsewhere members see their CoPs' items and admins every CoP's."""

from __future__ import annotations

from typing import Any

from commands.args import Arg, Options, cop_code, positive_int, prefixed_id
from commands.context import Context
from commands.errors import CommandError
from commands.export import csv_bytes, exporter, utc_cell
from commands.intel.parse import (
    Search,
    human_size,
    parse_search,
    permalink,
    ref,
    shorten,
    shown_title,
    split_text,
    tag_arg,
)
from commands.intel.render import (
    LIST_TITLE,
    PAGE_SIZE,
    file_content,
    list_line,
    local,
    more_hint,
    title_piece,
)
from commands.registry import Family, Place
from commands.roles import Role
from commands.scope import Kind, Missing, cop_arg, numbered
from commands.text import Message, plural
from storage import announce as announce_store
from storage import intel as store
from storage import repo

family = Family()
item_id = prefixed_id("I", "an intel item")
INTEL_COLUMNS = ["item", "cop", "title", "tags", "urls", "author", "created_at_utc"]


async def _load(session: Any, number: int, lock: bool) -> store.IntelItem | None:
    return await store.get_item(session, number)


def not_found(prefix: str, number: int) -> Message:
    return (
        Message(f"I cannot find the intel item {ref(number)}. ")
        .code(f"{prefix}intel list")
        .text(" shows the items you can see.")
    )


ITEM: Kind[store.IntelItem] = Kind(
    letter="I",
    noun="intel item",
    load=_load,
    cop_of=lambda item: item.cop_code,
    not_found=not_found,
    owner_of=lambda item: item.author,
    owned="shared",
    topic="items",
)


def option_cop(values: dict[str, Any]) -> str | None:
    cop: str | None = values["options"].get("cop")
    return cop


def search_cop(values: dict[str, Any]) -> str | None:
    words: Search = values["words"]
    return words.cop


def _only(count: int, noun: str) -> str:
    """ "There is only 1 item" / "There are only 12 items"."""
    if count == 1:
        return f"There is only 1 {noun}"
    return f"There are only {count:,} {noun}s"


def covered(ctx: Context) -> tuple[list[str] | None, str]:
    """The CoPs a listing covers (None: every CoP) and how the answer names them."""
    assert ctx.scope is not None
    if ctx.scope.cop is not None:
        return [ctx.scope.cop.code], ctx.scope.cop.code
    assert ctx.scope.cops is not None
    if ctx.scope.cops.every:
        return None, "all CoPs"
    return list(ctx.scope.cops.codes), ctx.scope.cops.label()


@family.command(
    "intel list",
    help="List the market intelligence of your CoP, newest first, 10 at a time.\n"
    "Give a #tag to see only items with that tag; `page=2` shows the next 10. In a "
    "direct message `cop=HDEV` picks one CoP.",
    section="Intel",
    args=[Arg("tag", parser=tag_arg, optional=True, metavar="[#tag]")],
    options=Options({"page": positive_int, "cop": cop_code}),
    role=Role.MEMBER,
    cop=cop_arg(missing=Missing.ROOM_OR_MINE, topic="items", read=option_cop),
    places=Place.ANYWHERE,
    examples=["!intel list", "!intel list #ebus", "!intel list page=2"],
)
async def list_(ctx: Context, tag: str | None, options: dict[str, Any]) -> None:
    cops, scope = covered(ctx)
    page = int(options.get("page") or 1)
    result = await store.list_items(
        ctx.session, cops, tag=tag, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
    )
    what = f"tagged #{tag}" if tag else ""
    if not result.items:
        if result.total:
            raise CommandError(
                f"{_only(result.total, 'item')}{' ' + what if what else ''}; "
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
    header.text(" Open one with " if result.total > len(result.items) else "Open one with ").code(
        f"{ctx.prefix}intel show I<number>"
    ).text(".")
    await ctx.reply(header)


@family.command(
    "intel search",
    help="Search the market intelligence of your CoP; the best matches come first.\n"
    "Other forms of a word count, in the languages members write, and accents don't matter: "
    "`bus` finds buses, `electrique` finds électriques. Items with all the words are listed "
    "first; add `page=2` for more results.",
    section="Intel",
    args=[Arg("words", parse_search, rest=True, metavar="<words…>")],
    role=Role.MEMBER,
    cop=cop_arg("words", missing=Missing.ROOM_OR_MINE, topic="items", read=search_cop),
    places=Place.ANYWHERE,
    examples=["!intel search electric buses", "!intel search hydrogen page=2"],
)
async def search(ctx: Context, words: Search) -> None:
    query, page = words.query, words.page
    if not store.search_words(query):
        raise ctx.usage_error("give at least one word to look for")
    cops, scope = covered(ctx)
    result = await store.search_items(
        ctx.session, cops, query, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
    )
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
            f"{_only(result.total, 'result')}; page {page} is empty. "
            f"Send {ctx.prefix}intel search {query} for the first ones."
        )
    msg = Message("Results for ").bold(query).text(f" in {scope}, best first")
    if not result.all_words:
        msg.text(" (no item has all the words; these have some of them)")
    msg.text(":")
    show_cop = cops is None or len(cops) > 1
    msg.bullets(list_line(ctx, item, show_cop=show_cop) for item in result.items)
    again = f"intel search {query}"
    if words.cop:
        again += f" cop={words.cop}"
    msg.append(more_hint(ctx, page, len(result.items), result.total, again, capped=result.capped))
    await ctx.reply(msg)


@family.command(
    "intel show",
    help="Show one item in full: its note, links, tags and file.\n"
    "A long note comes in parts; `page=2` shows the second part.",
    section="Intel",
    args=[Arg("item", parser=item_id, metavar="<I#>")],
    options=Options({"page": positive_int}),
    role=Role.MEMBER,
    cop=numbered("item", ITEM),
    places=Place.ANYWHERE,
    examples=["!intel show I34"],
)
async def show(ctx: Context, item: store.IntelItem, options: dict[str, Any]) -> None:
    found = item
    parts = split_text(found.note) if found.note else []
    page = int(options.get("page") or 1)
    if parts and page > len(parts):
        raise CommandError(
            f"{ref(found)} has {plural(len(parts), 'part')}; "
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


@family.command(
    "intel remove",
    help="Remove an item you shared (moderators can remove any item of their CoP).\n"
    "It disappears from lists, searches and digests.",
    section="Intel",
    args=[Arg("item", parser=item_id, metavar="<I#>")],
    role=Role.MODERATOR,
    owner=True,
    cop=numbered("item", ITEM),
    places=Place.ANYWHERE,
    examples=["!intel remove I34"],
)
async def remove(ctx: Context, item: store.IntelItem) -> None:
    found = item
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
        .text(shorten(shown_title(found.title, found.tag_list), LIST_TITLE))
        .text("). It no longer appears in lists, searches or digests.")
    )


@exporter("intel", "intel items (removed ones left out)")
async def export_intel(ctx: Context, cops: list[str]) -> tuple[str, bytes]:
    """Live intel items; removed items are left out."""
    rows = [
        [
            f"I{item.id}",
            item.cop_code,
            item.title,
            " ".join(f"#{tag}" for tag in item.tag_list),
            " ".join(item.urls or []),
            item.author,
            utc_cell(item.created_at),
        ]
        for item in await announce_store.live_intel_of_cops(ctx.session, cops)
    ]
    return "intel", csv_bytes(INTEL_COLUMNS, rows)
