"""How intel items are written: list lines with linked titles, paging hints, and the file
message that posts a shared file again."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from commands.context import Context
from commands.files import pointing_at
from commands.intel.parse import ref, shorten, shown_title
from commands.text import Message, defuse
from storage import intel as store

PAGE_SIZE = 10
LIST_TITLE = 120


def local(ctx: Context, cop: str, when: datetime) -> datetime:
    return when.astimezone(ZoneInfo(ctx.settings.cop_timezone(cop)))


def title_piece(item: store.IntelItem, limit: int = LIST_TITLE) -> Message:
    """The title (without the tags shown beside it), linked to the item's first link when
    it has one."""
    shown = shorten(shown_title(item.title, item.tag_list), limit)
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
        details.append(f"📎 {shorten(item.file_name or 'file', 40)}")
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
        **pointing_at(item.file_url, item.file_object),
        "info": info,
        "m.mentions": {},
    }
