"""``!intel share``: a note, links and #tags, or (as a reply to an upload) a file, shared
with the CoP of the room."""

from __future__ import annotations

from typing import Any

from commands.args import Arg
from commands.context import Context
from commands.errors import CommandError
from commands.files import encrypted_file, file_url
from commands.intel.parse import MAX_TITLE, human_size, parse_share, ref, shorten
from commands.intel.render import title_piece
from commands.registry import Family, Place
from commands.roles import Role
from commands.scope import room_cop
from commands.text import Message, plural
from storage import intel as store

family = Family()
MAX_TEXT = 20_000
FILE_MSGTYPES = ("m.file", "m.image", "m.video", "m.audio")


@family.command(
    "intel share",
    help="Share market intelligence with your CoP.\n"
    "The first line is the title, everything after it a note; links and #tags are "
    "picked out. To share a file, upload it to the room, then reply to it with "
    "`!intel share <title>`.",
    section="Intel",
    args=[Arg("text", rest=True, optional=True, metavar="[title and note…]")],
    role=Role.MEMBER,
    cop=room_cop(topic="items"),
    places=Place.COP_ROOM,
    reads_replied_event=True,
    examples=[
        "!intel share Oslo tenders 40 e-buses #ebus https://example.org/tender",
        "!intel share Supplier price list 2026   (as a reply to an uploaded file)",
    ],
)
async def share(ctx: Context, text: str | None) -> None:
    assert ctx.scope is not None
    assert ctx.scope.cop is not None
    cop = ctx.scope.cop.code
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
        title = shorten(" ".join(str(file["name"]).split()), MAX_TITLE)
    if not title:
        raise ctx.usage_error("tell me what to share after the command")
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
        extras.append(plural(len(parsed.urls), "link"))
    if extras:
        msg.br().text("With " + ", ".join(extras) + ".")
    msg.br().text("Anyone in the CoP can open it with ").code(f"{ctx.prefix}intel show {ref(item)}")
    msg.text("; you can take it back with ").code(f"{ctx.prefix}intel remove {ref(item)}")
    await ctx.reply(msg.text("."))


async def replied_file(ctx: Context, *, has_text: bool) -> dict[str, Any] | None:
    """The file of the message this command replies to, or None when it is no reply.

    The replied-to message is read from the homeserver (the bot does not store files).
    """
    target = ctx.replied_event_id()
    if target is None:
        return None
    event = await ctx.fetch_event(target)
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
    url = file_url(file_content)
    if url is None:
        raise CommandError(
            "I cannot keep that file: it has no download address. Upload it again and reply "
            "to it, or share a link instead."
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
        "file": encrypted_file(file_content),
    }
