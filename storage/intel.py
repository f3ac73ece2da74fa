"""Market intelligence: the items members share, their tags, and full-text search.

Search works on word forms computed here, in Python, by :mod:`storage.wordforms` (folded
accents, Snowball stems in the members' languages), so both databases find the same items.
When an item is written its forms are stored in ``search_title``, ``search_tags`` and
``search_body`` (note and file name); a search is cut into the same forms. The indexes over
those columns (created by migrations 0004 and 0008s, never by the ORM):

* SQLite: the FTS5 table ``intel_fts`` (cop, title, tags, body) whose rowid is the item id.
  Triggers on ``intel_items`` keep it in step: an insert adds the row, an update replaces it
  (and drops it when the item is removed), a delete deletes it.
* PostgreSQL: the stored generated column ``intel_items.search_vector`` (weights: title A,
  tags B, body C; ``simple`` configuration, as the forms are made already) with a GIN index.

Queries are built from the computed forms only (letters and digits): nothing the user types
reaches the query syntax of either database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    String,
    Text,
    bindparam,
    func,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql import Select

from storage import wordforms
from storage.db import dialect_of
from storage.models import Base, BigId

MAX_TITLE = 300
FORMER_MEMBER = "a former member"
"""The author of an item whose author's personal data was erased: the item stays for the
community and is shown as shared by "a former member" (it never matches a Matrix ID)."""
MAX_TAG = 50
SEARCH_CANDIDATES = 1000
"""A search ranks at most this many matches (the newest) and counts up to this many."""


class IntelItem(Base):
    """One piece of market intelligence shared in a CoP."""

    __tablename__ = "intel_items"
    __table_args__ = (Index("ix_intel_items_cop_live", "cop_code", "removed_at", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    cop_code: Mapped[str] = mapped_column(ForeignKey("cops.code"))
    author: Mapped[str] = mapped_column(String(255), index=True)
    title: Mapped[str] = mapped_column(String(MAX_TITLE))
    note: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[str] = mapped_column(Text, default="")
    """Space-separated, lower case, without the ``#``."""
    urls: Mapped[list[str]] = mapped_column(JSON, default=list)
    file_url: Mapped[str | None] = mapped_column(String(500))
    """The ``mxc://`` URI of a shared file."""
    file_name: Mapped[str | None] = mapped_column(String(300))
    file_size: Mapped[int | None] = mapped_column(BigInteger)
    file_mimetype: Mapped[str | None] = mapped_column(String(200))
    file_msgtype: Mapped[str | None] = mapped_column(String(32))
    """``m.file``, ``m.image``, ``m.video`` or ``m.audio``: how to show the file again."""
    room_id: Mapped[str | None] = mapped_column(String(255))
    event_id: Mapped[str | None] = mapped_column(String(255))
    """The command that shared the item."""
    file_event_id: Mapped[str | None] = mapped_column(String(255))
    """The message holding the file."""
    file_object: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """The ``file`` object (url, key, iv, hashes) of a file shared encrypted; never logged
    or exported."""
    created_at: Mapped[datetime] = mapped_column(index=True)
    removed_at: Mapped[datetime | None]
    removed_by: Mapped[str | None] = mapped_column(String(255))
    search_title: Mapped[str] = mapped_column(Text, default="")
    """The word forms of the title (:func:`storage.wordforms.index_terms`); likewise of the
    tags and of the note with the file name. Written with the item, read by the indexes."""
    search_tags: Mapped[str] = mapped_column(Text, default="")
    search_body: Mapped[str] = mapped_column(Text, default="")

    @property
    def tag_list(self) -> list[str]:
        return self.tags.split() if self.tags else []

    @property
    def has_file(self) -> bool:
        return bool(self.file_url)


class IntelTag(Base):
    """One tag of one item, for ``!intel list #tag`` without scanning every item."""

    __tablename__ = "intel_tags"
    __table_args__ = (Index("ix_intel_tags_tag_item", "tag", "item_id"),)

    item_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("intel_items.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(MAX_TAG), primary_key=True)


@dataclass(frozen=True)
class Page:
    items: list[IntelItem]
    total: int


@dataclass(frozen=True)
class SearchResult:
    items: list[IntelItem]
    total: int
    all_words: bool
    """True when every result has all the words; False when none had, so any word counts."""

    @property
    def capped(self) -> bool:
        """More matches than were counted and ranked: the newest ones were ranked."""
        return self.total > SEARCH_CANDIDATES


def search_columns(title: str, tags: str, note: str, file_name: str | None) -> dict[str, str]:
    """The ``search_*`` column values of an item (also used by migration 0008s)."""
    return {
        "search_title": wordforms.index_terms(title),
        "search_tags": wordforms.index_terms(tags),
        "search_body": wordforms.index_terms(note, file_name or ""),
    }


# --- writing -------------------------------------------------------------------------------


async def add_item(
    session: AsyncSession,
    *,
    cop_code: str,
    author: str,
    title: str,
    note: str = "",
    tags: Sequence[str] = (),
    urls: Sequence[str] = (),
    file: dict[str, Any] | None = None,
    room_id: str | None = None,
    event_id: str | None = None,
    created_at: datetime,
) -> IntelItem:
    """Store a new item. ``file``: ``url``, ``name``, ``size``, ``mimetype``, ``msgtype``,
    ``event_id`` of a file message."""
    unique_tags = list(dict.fromkeys(tag.lower() for tag in tags))
    item = IntelItem(
        cop_code=cop_code,
        author=author,
        title=title[:MAX_TITLE],
        note=note,
        tags=" ".join(unique_tags),
        urls=list(urls),
        room_id=room_id,
        event_id=event_id,
        created_at=created_at,
    )
    if file:
        item.file_url = file["url"]
        item.file_name = file.get("name")
        item.file_size = file.get("size")
        item.file_mimetype = file.get("mimetype")
        item.file_msgtype = file.get("msgtype")
        item.file_event_id = file.get("event_id")
        item.file_object = file.get("file")
    for column, value in search_columns(item.title, item.tags, note, item.file_name).items():
        setattr(item, column, value)
    session.add(item)
    await session.flush()
    for tag in unique_tags:
        session.add(IntelTag(item_id=item.id, tag=tag[:MAX_TAG]))
    await session.flush()
    return item


async def remove_item(session: AsyncSession, item_id: int, by: str, now: datetime) -> bool:
    """Mark an item removed: it disappears from lists, search and digests."""
    result = await session.execute(
        update(IntelItem)
        .where(IntelItem.id == item_id, IntelItem.removed_at.is_(None))
        .values(removed_at=now, removed_by=by)
    )
    return bool(getattr(result, "rowcount", 0))


# --- reading -------------------------------------------------------------------------------


def _live(query: Select[Any], cops: Sequence[str] | None) -> Select[Any]:
    query = query.where(IntelItem.removed_at.is_(None))
    if cops is not None:
        query = query.where(IntelItem.cop_code.in_(list(cops)))
    return query


async def get_item(
    session: AsyncSession, item_id: int, *, include_removed: bool = False
) -> IntelItem | None:
    item = await session.get(IntelItem, item_id)
    if item is None or (item.removed_at is not None and not include_removed):
        return None
    return item


async def list_items(
    session: AsyncSession,
    cops: Sequence[str] | None,
    *,
    tag: str | None = None,
    limit: int = 10,
    offset: int = 0,
) -> Page:
    """Live items of the given CoPs (None: every CoP), newest first."""
    query = _live(select(IntelItem), cops)
    count = _live(select(func.count()).select_from(IntelItem), cops)
    if tag:
        tagged = select(IntelTag.item_id).where(IntelTag.tag == tag.lower())
        query = query.where(IntelItem.id.in_(tagged))
        count = count.where(IntelItem.id.in_(tagged))
    rows = await session.scalars(query.order_by(IntelItem.id.desc()).limit(limit).offset(offset))
    total = int(await session.scalar(count) or 0)
    return Page(items=list(rows.all()), total=total)


async def items_between(
    session: AsyncSession, cop_code: str, start: datetime, end: datetime, *, limit: int
) -> Page:
    """Live items of one CoP shared in ``[start, end]``, newest first (for the digest)."""
    where = (
        IntelItem.cop_code == cop_code,
        IntelItem.removed_at.is_(None),
        IntelItem.created_at >= start,
        IntelItem.created_at <= end,
    )
    rows = await session.scalars(
        select(IntelItem).where(*where).order_by(IntelItem.id.desc()).limit(limit)
    )
    total = int(
        await session.scalar(select(func.count()).select_from(IntelItem).where(*where)) or 0
    )
    return Page(items=list(rows.all()), total=total)


def search_words(query: str) -> list[str]:
    """The words of a search, folded, stop words dropped (unless only those are given)."""
    return wordforms.query_words(query)


async def search_items(
    session: AsyncSession,
    cops: Sequence[str] | None,
    query: str,
    *,
    limit: int = 10,
    offset: int = 0,
) -> SearchResult:
    """Full-text search over live items, best match first.

    Items having all the words come first; when no item has them all, items with any of
    them are returned instead (``all_words`` tells which happened). Each time the words'
    forms are looked for first; only when no item has one, words starting with a search
    word of :data:`~storage.wordforms.PREFIX_MIN` letters or more count too (a prefix
    search reads every word beginning so, which costs time on common beginnings).
    """
    words = wordforms.query_terms(query)
    if not words:
        return SearchResult(items=[], total=0, all_words=True)
    exact = [
        wordforms.QueryWord(w.word, w.exact + (w.prefix,) if w.prefix else w.exact, None)
        for w in words
    ]
    rounds = [exact] + ([words] if any(w.prefix for w in words) else [])
    for all_words in (True, False):
        if not all_words and len(words) == 1:
            break
        for terms in rounds:
            ids, total = await _search_ids(
                session, cops, terms, all_words=all_words, limit=limit, offset=offset
            )
            if total:
                items = {
                    item.id: item
                    for item in (
                        await session.scalars(select(IntelItem).where(IntelItem.id.in_(ids)))
                    ).all()
                }
                return SearchResult(
                    items=[items[i] for i in ids if i in items],
                    total=total,
                    all_words=all_words,
                )
    return SearchResult(items=[], total=0, all_words=True)


TITLE_WEIGHT, TAGS_WEIGHT, BODY_WEIGHT = 3, 2, 1
"""What a search word found in an item's title, tags or note (or file name) adds to its
score; the best place counts. Equal scores: the newer item first."""


async def _search_ids(
    session: AsyncSession,
    cops: Sequence[str] | None,
    words: list[wordforms.QueryWord],
    *,
    all_words: bool,
    limit: int,
    offset: int,
) -> tuple[list[int], int]:
    """Ids of one page of results, best first, and the number of matches (counted up to
    one more than :data:`SEARCH_CANDIDATES`).

    The database finds the newest :data:`SEARCH_CANDIDATES` matches (ranking every match
    of a very common word would take time in proportion to the whole collection); they
    are ranked here from the forms of their titles and tags, which are short.
    """
    postgresql = dialect_of(session) == "postgresql"
    cop_filter = ""
    params: dict[str, Any] = {"cap": SEARCH_CANDIDATES + 1}
    if cops is not None:
        cop_filter = "AND i.cop_code IN :cops"
        params["cops"] = list(cops)
    if postgresql:
        params["q"] = (" & " if all_words else " | ").join(_pg_group(w) for w in words)
        found = (
            "SELECT i.id FROM intel_items i "
            "WHERE i.search_vector @@ to_tsquery('simple', :q) "
            f"AND i.removed_at IS NULL {cop_filter} ORDER BY i.id DESC LIMIT :cap"
        )
    else:
        params["q"] = (" AND " if all_words else " OR ").join(_fts_group(w) for w in words)
        # Removed items are not in the index, and it has the CoP: no need to read the items.
        found = (
            "SELECT rowid FROM intel_fts WHERE intel_fts MATCH :q "
            f"{cop_filter.replace('i.cop_code', 'cop')} ORDER BY rowid DESC LIMIT :cap"
        )
    found_sql = text(found)
    if cops is not None:
        found_sql = found_sql.bindparams(bindparam("cops", expanding=True))
    ids = [int(row[0]) for row in (await session.execute(found_sql, params)).all()]
    total = len(ids)
    candidates = ids[:SEARCH_CANDIDATES]
    if not candidates:
        return [], 0
    scores = await _scores(session, candidates, words, all_words=all_words)
    ranked = sorted(candidates, key=lambda i: (-scores.get(i, 0), -i))
    return ranked[offset : offset + limit], total


async def _scores(
    session: AsyncSession,
    ids: list[int],
    words: list[wordforms.QueryWord],
    *,
    all_words: bool,
) -> dict[int, int]:
    """Each candidate's score: per search word, the weight of the best place it is in."""
    if dialect_of(session) == "postgresql":  # one parameter, not a thousand
        sql = "SELECT id, search_title, search_tags FROM intel_items WHERE id = ANY(:ids)"
        params: dict[str, Any] = {"ids": ids}
        rows = (await session.execute(text(sql), params)).all()
    else:
        # The index's own copy (FTS5 keeps it in intel_fts_content: c1 title, c2 tags): its
        # rows are short at the front, where intel_items has the note before these columns.
        sql = "SELECT id, c1, c2 FROM intel_fts_content WHERE id IN :ids"
        rows = (
            await session.execute(
                text(sql).bindparams(bindparam("ids", expanding=True)), {"ids": ids}
            )
        ).all()
    in_body: list[set[int]] = []
    if not all_words:  # which candidates have which word at all
        for word in words:
            in_body.append(await _having(session, ids, word))
    scores: dict[int, int] = {}
    for item_id, title_terms, tag_terms in rows:
        title, tags = set(title_terms.split()), set(tag_terms.split())
        score = 0
        for number, word in enumerate(words):
            if _has(title, word):
                score += TITLE_WEIGHT
            elif _has(tags, word):
                score += TAGS_WEIGHT
            elif all_words or item_id in in_body[number]:
                score += BODY_WEIGHT
        scores[int(item_id)] = score
    return scores


def _has(terms: set[str], word: wordforms.QueryWord) -> bool:
    if not terms.isdisjoint(word.exact):
        return True
    prefix = word.prefix
    return prefix is not None and any(term.startswith(prefix) for term in terms)


async def _having(session: AsyncSession, ids: list[int], word: wordforms.QueryWord) -> set[int]:
    """Which of ``ids`` have one search word anywhere."""
    if dialect_of(session) == "postgresql":
        sql = text(
            "SELECT id FROM intel_items WHERE id = ANY(:ids) "
            "AND search_vector @@ to_tsquery('simple', :q)"
        )
        rows = await session.execute(sql, {"q": _pg_group(word), "ids": ids})
    else:
        sql = text(
            "SELECT rowid FROM intel_fts WHERE intel_fts MATCH :q AND rowid BETWEEN :low AND :high"
        )
        rows = await session.execute(
            sql, {"q": _fts_group(word), "low": min(ids), "high": max(ids)}
        )
    return {int(row[0]) for row in rows.all()}


def _pg_group(word: wordforms.QueryWord) -> str:
    """One search word as a ``tsquery``: any of its forms, or words starting with it."""
    options = list(word.exact) + ([f"{word.prefix}:*"] if word.prefix else [])
    return "(" + " | ".join(options) + ")"


def _fts_group(word: wordforms.QueryWord) -> str:
    """One search word as an FTS5 query: any of its forms, or words starting with it."""
    options = [f'"{term}"' for term in word.exact]
    if word.prefix:
        options.append(f'"{word.prefix}"*')
    return "(" + " OR ".join(options) + ")"


async def items_by_author(session: AsyncSession, user_id: str) -> list[IntelItem]:
    """Everything a person shared, removed items included, oldest first (for ``!mydata``)."""
    rows = await session.scalars(
        select(IntelItem).where(IntelItem.author == user_id).order_by(IntelItem.id)
    )
    return list(rows.all())


async def erase_author(session: AsyncSession, user_id: str) -> int:
    """Delete everything a person shared (for ``!forgetme``); returns how many items.

    Their tags go with them and the search index forgets them (triggers / generated column).
    """
    items = await items_by_author(session, user_id)
    for item in items:
        await session.delete(item)
    await session.flush()
    return len(items)


async def anonymise_author(
    session: AsyncSession, user_id: str, pseudonym: str, *, remove: bool = False
) -> tuple[int, int]:
    """Take a person's name off what they shared (for an erasure): live items stay, shown as
    shared by :data:`FORMER_MEMBER`; with ``remove`` they are deleted instead. Items already
    removed are deleted either way. Removals they made of others' items keep the pseudonym.

    Returns (items kept, items deleted).
    """
    kept = deleted = 0
    for item in await items_by_author(session, user_id):
        if remove or item.removed_at is not None:
            await session.delete(item)
            deleted += 1
        else:
            item.author = FORMER_MEMBER
            kept += 1
    await session.execute(
        update(IntelItem).where(IntelItem.removed_by == user_id).values(removed_by=pseudonym)
    )
    await session.flush()
    return kept, deleted


async def count_live(session: AsyncSession, cop_code: str) -> int:
    return int(
        await session.scalar(_live(select(func.count()).select_from(IntelItem), [cop_code])) or 0
    )


__all__ = [
    "FORMER_MEMBER",
    "IntelItem",
    "IntelTag",
    "Page",
    "SearchResult",
    "add_item",
    "anonymise_author",
    "count_live",
    "erase_author",
    "get_item",
    "items_between",
    "items_by_author",
    "list_items",
    "remove_item",
    "search_columns",
    "search_items",
    "search_words",
]
