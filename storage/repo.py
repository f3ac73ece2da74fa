"""Repository functions for the foundation tables. Command code never writes SQL itself."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Required, TypedDict, TypeVar, Unpack, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Integer,
    String,
    Table,
    Text,
    bindparam,
    case,
    column,
    delete,
    func,
    insert,
    inspect,
    literal,
    null,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy import cast as cast_
from sqlalchemy import event as orm_events
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, aliased
from sqlalchemy.util import await_only

from storage.db import (
    CONNECTION,
    INLINE,
    TRANSACTION,
    BatchingSession,
    dialect_insert,
    dialect_of,
)
from storage.models import (
    AuditEntry,
    BotState,
    Cop,
    DirectRoom,
    InboundEvent,
    Membership,
    OutboxMessage,
    Person,
    Role,
)
from storage.prepared import Prepared, Rows, inline_driver, tables_named
from storage.prepared import execute as execute_prepared


async def _connection(session: AsyncSession) -> AsyncConnection:
    """The session's connection. In a transaction of ``Database.session`` or
    ``Database.read`` it is asked of the session once and kept in its ``info``: asking again
    for every statement cost about 4 % of the instructions of a ``!help`` or an ``!rsvp``.
    Any other session is asked each time (it may commit and go on with another
    connection)."""
    connection = session.info.get(CONNECTION)
    if connection is None:
        connection = await session.connection()
        if TRANSACTION in session.info:
            session.info[CONNECTION] = connection
    return cast(AsyncConnection, connection)


T = TypeVar("T")


def held(session: AsyncSession, model: type[T], key: Any) -> T | None:
    """The ``model`` object with primary key ``key`` that ``session`` holds, if it loaded
    one (no query): what a prepared statement that changed its row must expire."""
    return cast("T | None", session.sync_session.identity_map.get(Session.identity_key(model, key)))


def held_loaded(session: AsyncSession, model: type[T], key: Any) -> T | None:
    """:func:`held`, when it is not expired: what ``session.get`` returns for it, without
    its turn through SQLAlchemy's greenlet (an ``!rsvp`` asks for its event three times)."""
    found = held(session, model, key)
    return None if found is None or inspect(found).expired else found


LOCKED_ROWS = "bbwt.locked_rows"
"""In a session's ``info`` (PostgreSQL): the objects whose rows its transaction locked
(``SELECT ... FOR UPDATE``), by identity key, kept by :func:`lock_row`. (Held here, as the
session's identity map holds its objects only while something else does.)"""


def locked_row(session: AsyncSession, model: type[T], key: Any) -> T | None:
    """The ``model`` object with key ``key`` whose row this transaction locked, if the
    session holds it unexpired: no other transaction can have changed the row since, so it
    is current and need not be locked and read again."""
    if Session.identity_key(model, key) not in session.info.get(LOCKED_ROWS, {}):
        return None
    return held_loaded(session, model, key)


def lock_row(session: AsyncSession, locked: object) -> None:
    """Record that this transaction locked the row of ``locked`` (a loaded object), until
    it ends (see :func:`_transaction_ended`)."""
    identity = inspect(locked).identity_key
    session.info.setdefault(LOCKED_ROWS, {})[identity] = locked


@orm_events.listens_for(Session, "after_transaction_end")
def _transaction_ended(session: Session, transaction: SessionTransaction) -> None:
    """The end of a transaction releases its row locks, and so does a savepoint rolled
    back (for those taken after it) while the session keeps the objects it loaded
    meanwhile: forget which rows are locked. (One still locked, after a savepoint that
    was kept, is locked again at the cost of a statement.) The session's own inner steps (a
    flush) are no transaction of the database's and release nothing.

    At the end of the whole transaction, outbox rows still queued (:func:`queue`) are
    dropped: a commit wrote them first (:func:`_write_before_commit`), so these are rows
    of a transaction rolled back."""
    if transaction.parent is not None and not transaction.nested:
        return
    session.info.pop(LOCKED_ROWS, None)
    if transaction.parent is None:
        session.info.pop(QUEUED, None)
        session.info.pop(CLAIMS, None)


@orm_events.listens_for(Session, "after_transaction_create")
def _savepoint_now(session: Session, transaction: SessionTransaction) -> None:
    """A savepoint (``begin_nested``) is set on the database at once. SQLAlchemy sets it
    only when the session is next asked for its connection, and :func:`run_prepared` uses
    the connection it asked for before: what they ran first
    inside a savepoint was not undone when it was rolled back.

    Outbox rows queued before it (:func:`queue`) are written first: they belong to the
    transaction, not to the savepoint, whatever becomes of it."""
    if transaction.nested:
        _write_queued_now(session)
        session.connection()


def start_afresh(session: AsyncSession) -> None:
    """Let the next command of a shared transaction see the database, not the objects the
    one before it loaded, as in a transaction of its own: the session forgets them. The
    caller flushed first. Kept are those whose rows this transaction locked
    (:func:`lock_row`) and which are not expired: no other transaction can change their
    rows while the lock is held, and what this one changed is written, so they are as the
    database has them, and a burst of answers to one event locks and reads its row once
    per group instead of once per command."""
    sync = session.sync_session
    locked = session.info.get(LOCKED_ROWS)
    if not locked:
        sync.expunge_all()
        return
    kept = {id(found) for found in locked.values() if not inspect(found).expired}
    for held_object in list(sync.identity_map.values()):
        if id(held_object) not in kept:
            sync.expunge(held_object)


async def run_prepared(session: AsyncSession, statement: Prepared, params: dict[str, Any]) -> Rows:
    """Execute a :class:`~storage.prepared.Prepared` statement on the session's connection
    (:func:`_connection`), with no ORM bookkeeping (nothing the session holds unflushed is
    written first); on SQLite without SQLAlchemy's execution machinery. One that names the
    outbox or the direct chats comes after the outbox rows queued before it
    (:func:`batch_outbox`)."""
    info = session.info  # (a property of the session's: asked once)
    if QUEUED in info and (
        statement.tables is None or not statement.tables.isdisjoint(_WRITTEN_WITH)
    ):
        await write_queued(session)
    if CLAIMS in info and statement is not _SET_OUTCOME:
        written = statement.written  # (a command's own outcome changes no other claim)
        if written is None or not written.isdisjoint(_CLAIMED_FROM):
            _unsettle(session)
    connection = info.get(CONNECTION)
    if connection is None:
        connection = await _connection(session)
    driver = info.get(INLINE, False)
    if driver is False:
        driver = inline_driver(connection)
        if TRANSACTION in info:
            info[INLINE] = driver
    return await execute_prepared(connection, driver, statement, params)


def _insert_ignore_statement(table: Table, keys: tuple[str, ...], dialect: str) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING (its callers keep what they build from it)."""
    return dialect_insert(dialect)(table).on_conflict_do_nothing(index_elements=list(keys))


@functools.cache
def _insert_ignore_prepared(table: Table, keys: tuple[str, ...], dialect: str) -> Prepared:
    """Built once per table, keys and dialect."""
    return Prepared(_insert_ignore_statement(table, keys, dialect))


async def _insert_ignore(
    session: AsyncSession, model: type[Any], values: dict[str, Any], keys: list[str]
) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True when a row was inserted."""
    table = cast(Table, model.__table__)
    statement = _insert_ignore_prepared(table, tuple(keys), dialect_of(session))
    return bool((await run_prepared(session, statement, values)).rowcount)


# --- bot state ---------------------------------------------------------------------------


ERASURE_TAG = "erasure"
"""Outbox rows queued by an erasure (kicks, redactions, the last reply to the person): their
payload and addressee are erased as soon as they are delivered or given up."""


async def get_state(session: AsyncSession, key: str) -> str | None:
    row = await session.get(BotState, key)
    return row.value if row else None


@functools.cache
def _set_state_statement(dialect: str) -> Prepared:
    insert = dialect_insert(dialect)(BotState)
    return Prepared(
        insert.on_conflict_do_update(
            index_elements=["key"],
            set_={"value": insert.excluded.value, "updated_at": insert.excluded.updated_at},
        )
    )


async def set_state(session: AsyncSession, key: str, value: str, now: datetime) -> None:
    """Store ``value`` under ``key`` (one statement, built once per dialect: the sync loop
    moves its token with it after every sync)."""
    statement = _set_state_statement(dialect_of(session))
    await run_prepared(session, statement, {"key": key, "value": value, "updated_at": now})
    stale = held(session, BotState, key)
    if stale is not None:
        session.expire(stale)  # loaded before in this transaction: read it again when used


async def set_state_once(session: AsyncSession, key: str, value: str, now: datetime) -> str:
    """Store ``value`` under ``key`` unless something is stored already; returns what is
    stored (a second process doing the same at once gets the first one's value)."""
    await _insert_ignore(
        session, BotState, {"key": key, "value": value, "updated_at": now}, ["key"]
    )
    stored = await session.scalar(
        select(BotState.value).where(BotState.key == key).execution_options(populate_existing=True)
    )
    assert stored is not None
    return stored


async def delete_state(session: AsyncSession, key: str) -> None:
    await session.execute(delete(BotState).where(BotState.key == key))


# --- CoPs and rooms ------------------------------------------------------------------------


async def sync_cops(session: AsyncSession, cops: Sequence[tuple[str, str]], now: datetime) -> None:
    """Make the ``cops`` table hold every configured (code, name); rooms are kept."""
    existing = {cop.code: cop for cop in (await session.scalars(select(Cop))).all()}
    for code, name in cops:
        if code in existing:
            existing[code].name = name
        else:
            session.add(Cop(code=code, name=name, created_at=now))
    await session.flush()


async def list_cops(session: AsyncSession) -> list[Cop]:
    return list((await session.scalars(select(Cop).order_by(Cop.code))).all())


async def get_cop(session: AsyncSession, code: str) -> Cop | None:
    return await session.get(Cop, code.upper())


async def set_cop_room(session: AsyncSession, code: str, room_id: str) -> None:
    await session.execute(update(Cop).where(Cop.code == code).values(room_id=room_id))


async def cop_for_room(session: AsyncSession, room_id: str) -> Cop | None:
    return await session.scalar(select(Cop).where(Cop.room_id == room_id))


async def member_counts(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(
        select(Membership.cop_code, func.count())
        .where(Membership.status == "member")
        .group_by(Membership.cop_code)
    )
    return {code: count for code, count in rows.all()}


async def memberships_of(session: AsyncSession, user_id: str) -> dict[str, str]:
    """CoP code -> membership status for one person."""
    rows = await session.execute(
        select(Membership.cop_code, Membership.status).where(Membership.user_id == user_id)
    )
    return {code: status for code, status in rows.all()}


_ROLES_OF = Prepared(
    union_all(
        select(Role.cop_code, Role.role, literal(1).label("is_role")).where(
            Role.user_id == bindparam("user"), Role.role == "moderator"
        ),
        select(Membership.cop_code, Membership.status, literal(0)).where(
            Membership.user_id == bindparam("user")
        ),
    )
)


async def roles_of(session: AsyncSession, user_id: str) -> tuple[set[str], dict[str, str]]:
    """One person's moderated CoPs and memberships (CoP code -> status), in one query."""
    rows = await run_prepared(session, _ROLES_OF, {"user": user_id})
    return _roles_by_person([user_id], [(user_id, *row) for row in rows])[user_id]


def _roles_by_person(
    users: Iterable[str], rows: Iterable[tuple[str, str, str, Any]]
) -> dict[str, Roles]:
    """Each of ``users``'s moderated CoPs and memberships, from rows of (person, CoP code,
    role or membership status, whether it is a role)."""
    found: dict[str, Roles] = {user: (set(), {}) for user in users}
    for user, code, value, is_role in rows:
        moderates, memberships = found[user]
        if is_role:
            moderates.add(code)
        else:
            memberships[code] = value
    return found


async def roles_of_people(session: AsyncSession, users: Sequence[str]) -> dict[str, Roles]:
    """:func:`roles_of` for each of ``users``, in one query (a reminder's recipients)."""
    if not users:
        return {}
    rows = await session.execute(
        union_all(
            select(Role.user_id, Role.cop_code, Role.role, literal(1).label("is_role")).where(
                Role.user_id.in_(users), Role.role == "moderator"
            ),
            select(Membership.user_id, Membership.cop_code, Membership.status, literal(0)).where(
                Membership.user_id.in_(users)
            ),
        )
    )
    return _roles_by_person(users, rows.all())


async def moderated_cops(session: AsyncSession, user_id: str) -> set[str]:
    rows = await session.scalars(
        select(Role.cop_code).where(Role.user_id == user_id, Role.role == "moderator")
    )
    return set(rows.all())


async def sync_config_moderators(
    session: AsyncSession, moderators: dict[str, list[str]], now: datetime
) -> None:
    """Config moderators are stored with source='config'; ones removed from config go away."""
    rows = (await session.scalars(select(Role).where(Role.source == "config"))).all()
    wanted = {(user, code) for code, users in moderators.items() for user in users}
    for row in rows:
        if (row.user_id, row.cop_code) not in wanted:
            await session.delete(row)
    have = {(row.user_id, row.cop_code) for row in rows}
    for user, code in sorted(wanted - have):
        await _insert_ignore(
            session,
            Role,
            {
                "user_id": user,
                "cop_code": code,
                "role": "moderator",
                "source": "config",
                "created_at": now,
            },
            ["user_id", "cop_code", "role"],
        )
    await session.flush()


async def seed_member(
    session: AsyncSession,
    *,
    user_id: str,
    org: str,
    country: str,
    authority_type: str,
    cop_code: str,
    now: datetime,
) -> None:
    """Demo data: a person with a profile who is already a member of one CoP."""
    person = await session.get(Person, user_id)
    if person is None:
        session.add(
            Person(
                user_id=user_id,
                org=org,
                country=country,
                authority_type=authority_type,
                created_at=now,
                updated_at=now,
            )
        )
    existing = await session.scalar(
        select(Membership).where(Membership.user_id == user_id, Membership.cop_code == cop_code)
    )
    if existing is None:
        session.add(
            Membership(
                user_id=user_id,
                cop_code=cop_code,
                status="member",
                applied_at=now,
            )
        )
        room_id = await session.scalar(select(Cop.room_id).where(Cop.code == cop_code))
        if room_id:
            await enqueue(
                session, room_id=room_id, kind="invite", payload={"user_id": user_id}, now=now
            )
    await session.flush()


# --- direct rooms --------------------------------------------------------------------------


_DIRECT_ROOM = Prepared(
    select(DirectRoom.room_id).where(DirectRoom.user_id == bindparam("user_id"))
)


async def get_direct_room(session: AsyncSession, user_id: str) -> str | None:
    """The bot's direct chat with ``user_id``, or None.

    A row the session holds is read from it, as ``session.get`` does; any other with a
    prepared statement. Every direct message to a person looks it up, and the ORM's load of
    one row cost as much as the rest of a promotion's message. (The rows are only written
    by ``set_direct_room``, which writes at once, and deleted by statements.)"""
    if held(session, DirectRoom, user_id) is not None:
        # (read again if expired)
        row = held_loaded(session, DirectRoom, user_id) or await session.get(DirectRoom, user_id)
        return row.room_id if row else None
    return cast(
        "str | None", (await run_prepared(session, _DIRECT_ROOM, {"user_id": user_id})).scalar()
    )


async def set_direct_room(session: AsyncSession, user_id: str, room_id: str, now: datetime) -> None:
    row = await session.get(DirectRoom, user_id)
    if row is None:
        session.add(DirectRoom(user_id=user_id, room_id=room_id, created_at=now))
    else:
        row.room_id = room_id
    await session.flush()


async def recorded_room_ids(session: AsyncSession) -> set[str]:
    """Every room the bot has on record as a CoP room or someone's direct chat."""
    direct = await session.scalars(select(DirectRoom.room_id))
    cops = await session.scalars(select(Cop.room_id).where(Cop.room_id.is_not(None)))
    return {str(room) for room in [*direct, *cops]}


async def direct_room_user(session: AsyncSession, room_id: str) -> str | None:
    return await session.scalar(select(DirectRoom.user_id).where(DirectRoom.room_id == room_id))


# --- inbound events ------------------------------------------------------------------------

ACTED_ON = ("ok", "answer")
"""Outcomes of a message the bot acted on: a command carried out, a dialogue answer taken.
An edit of such a message is not acted on again."""


@functools.cache
def _add_inbound_statement(dialect: str) -> Prepared:
    table = cast(Table, InboundEvent.__table__)
    return Prepared(_insert_ignore_statement(table, ("event_id",), dialect).returning(table.c.id))


async def add_inbound(
    session: AsyncSession,
    *,
    event_id: str,
    room_id: str,
    sender: str,
    origin_ts: datetime,
    content: dict[str, Any],
    kind: str = "command",
    replaces: str | None = None,
    now: datetime,
) -> InboundEvent | None:
    """Store a received event once. Returns the row as stored (not attached to the session:
    the sync loop hands it to the room's worker, which need not read it back), or None if
    the event was already stored. ``replaces``: for an edit, the event id of the message it
    changes."""
    values = {
        "event_id": event_id,
        "room_id": room_id,
        "sender": sender,
        "origin_ts": origin_ts,
        "content": content,
        "kind": kind,
        "replaces": replaces,
        "status": "pending",
        "received_at": now,
    }
    statement = _add_inbound_statement(dialect_of(session))
    row_id = (await run_prepared(session, statement, values)).scalar()
    if row_id is None:
        return None
    return InboundEvent(id=row_id, **values)


async def find_inbound(
    session: AsyncSession, event_id: str, *, lock: bool = False
) -> InboundEvent | None:
    """The stored event with this Matrix event id. ``lock``: keep the row locked until the
    transaction ends (PostgreSQL), so two edits of one message are decided one at a time."""
    query = select(InboundEvent).where(InboundEvent.event_id == event_id)
    if lock:
        query = query.with_for_update()
    return await session.scalar(query.execution_options(populate_existing=True))


async def edit_acted_on(session: AsyncSession, event_id: str, *, other_than: int) -> bool:
    """Was an edit of message ``event_id`` (other than row ``other_than``) carried out?"""
    found = await session.scalar(
        select(InboundEvent.id)
        .where(
            InboundEvent.replaces == event_id,
            InboundEvent.id != other_than,
            InboundEvent.status == "done",
            InboundEvent.outcome.in_(ACTED_ON),
        )
        .limit(1)
    )
    return found is not None


async def last_outcome_for(
    session: AsyncSession, sender: str, outcome: str, since: datetime
) -> datetime | None:
    """When ``sender``'s latest event handled since ``since`` with ``outcome`` was handled
    (the "send help" pointer they were given, say), or None."""
    return await session.scalar(
        select(func.max(InboundEvent.handled_at)).where(
            InboundEvent.sender == sender,
            InboundEvent.handled_at >= since,
            InboundEvent.outcome == outcome,
        )
    )


async def forget_inbound(session: AsyncSession, row_id: int, now: datetime) -> None:
    """Erase a handled event's text and sender at once (a message the bot does not act on)."""
    await session.execute(
        update(InboundEvent)
        .where(InboundEvent.id == row_id)
        .values(content={}, sender="", scrubbed_at=now)
    )


async def pending_inbound(
    session: AsyncSession, limit: int = 500, room_id: str | None = None
) -> list[InboundEvent]:
    query = select(InboundEvent).where(InboundEvent.status == "pending")
    if room_id is not None:
        query = query.where(InboundEvent.room_id == room_id)
    rows = await session.scalars(query.order_by(InboundEvent.id).limit(limit))
    return list(rows.all())


async def pending_rooms(session: AsyncSession, limit: int = 500) -> list[str]:
    """The rooms with events waiting to be handled."""
    rows = await session.scalars(
        select(InboundEvent.room_id)
        .where(InboundEvent.status == "pending")
        .group_by(InboundEvent.room_id)
        .order_by(func.min(InboundEvent.id))
        .limit(limit)
    )
    return list(rows.all())


_CLAIM_STATEMENT = (
    update(InboundEvent)
    .where(InboundEvent.id == bindparam("row_id"), InboundEvent.status == "pending")
    .values(status="done", outcome=bindparam("new_outcome"), handled_at=bindparam("now"))
)
_CLAIM = Prepared(_CLAIM_STATEMENT)
_SET_OUTCOME = Prepared(
    update(InboundEvent)
    .where(InboundEvent.id == bindparam("row_id"))
    .values(outcome=bindparam("new_outcome"))
)


async def claim_inbound(session: AsyncSession, row_id: int, outcome: str, now: datetime) -> bool:
    """Mark an event done inside the caller's transaction.

    False when another worker or process already handled it: the caller must then roll
    back. On PostgreSQL the row stays locked until the transaction ends, so a concurrent
    claim waits and then sees the event done.
    """
    params = {"row_id": row_id, "new_outcome": outcome, "now": now}
    return bool((await run_prepared(session, _CLAIM, params)).rowcount)


_EDIT = aliased(InboundEvent, name="edit")
# The event's own id comes as a parameter: SQLite names no table in RETURNING, so a column
# of the updated row would be read as one of the inner query's.
_EDITED = (
    select(_EDIT.id).where(_EDIT.replaces == bindparam("message_id"), _EDIT.status == "done")
).exists()
_CLAIM_SEEING_EDITS = Prepared(_CLAIM_STATEMENT.returning(_EDITED))
_CLAIMED = _CLAIM_STATEMENT.returning(_EDITED.label("edited")).cte("claimed")
_CLAIM_WITH_ROLES = Prepared(
    # PostgreSQL only (SQLite has no UPDATE inside WITH): the claim and the sender's roles
    # in one round trip. A first column of 2 is the claim's row (absent: not claimed), 1 a
    # moderated CoP, 0 a membership. The roles are read as the claim's own statement sees
    # the database, as the separate read after it would.
    union_all(
        select(
            literal(2).label("part"),
            cast_(null(), String).label("code"),
            cast_(null(), String).label("value"),
            _CLAIMED.c.edited,
        ),
        select(literal(1), Role.cop_code, Role.role, cast_(null(), Boolean)).where(
            Role.user_id == bindparam("user"), Role.role == "moderator"
        ),
        select(literal(0), Membership.cop_code, Membership.status, cast_(null(), Boolean)).where(
            Membership.user_id == bindparam("user")
        ),
    )
)


async def claim_to_handle(
    session: AsyncSession, row_id: int, event_id: str, now: datetime
) -> bool | None:
    """Claim an event as :func:`claim_inbound` does (outcome ``ok``), and in the same
    statement look whether an edit of it was handled already (the message itself came late,
    its key after its edit's). None: not claimed (handled elsewhere: roll back); else
    whether such an edit was handled."""
    params = {"row_id": row_id, "message_id": event_id, "new_outcome": "ok", "now": now}
    found = (await run_prepared(session, _CLAIM_SEEING_EDITS, params)).first()
    return None if found is None else bool(found[0])


Roles = tuple[set[str], dict[str, str]]
"""One person's moderated CoPs and memberships, as :func:`roles_of` reads them."""


async def claim_with_roles(
    session: AsyncSession, row_id: int, event_id: str, now: datetime, sender: str
) -> tuple[bool, Roles | None] | None:
    """:func:`claim_to_handle`, and the roles of ``sender`` as :func:`roles_of` would read
    them next: on PostgreSQL in the same round trip to the server; elsewhere they are not
    read (None: read them when needed). None: not claimed."""
    if dialect_of(session) != "postgresql":
        edited = await claim_to_handle(session, row_id, event_id, now)
        return None if edited is None else (edited, None)
    params = {
        "row_id": row_id,
        "message_id": event_id,
        "new_outcome": "ok",
        "now": now,
        "user": sender,
    }
    claimed: bool | None = None
    moderates: set[str] = set()
    memberships: dict[str, str] = {}
    for part, code, value, edited in await run_prepared(session, _CLAIM_WITH_ROLES, params):
        if part == 2:
            claimed = bool(edited)
        elif part == 1:
            moderates.add(code)
        else:
            memberships[code] = value
    return None if claimed is None else (claimed, (moderates, memberships))


# --- a backlog group's claims in one statement (PostgreSQL) ------------------------------------

CLAIMS = "bbwt.group_claims"
"""In a session's ``info``: the :class:`GroupClaims` of its transaction (see
:func:`claim_group`), until it ends."""

_CLAIMED_FROM = frozenset({"inbound_events", "roles", "memberships"})
"""What a group's claims and roles are read from: a write to any of them ends the group."""


@dataclass
class GroupClaims:
    """What :func:`claim_group` claimed, each row id with what :func:`claim_with_roles`
    would have returned for it: whether an edit of it was handled already, and its sender's
    roles."""

    claimed: dict[int, tuple[bool, Roles]]
    unsettled: bool = False
    """A statement since then may have written the inbound events, roles or memberships: a
    :class:`~storage.prepared.Prepared` one that writes one of them (a command's own
    outcome excepted), a text statement, any ORM statement but a query, a flush that
    deletes anything or writes one of those tables."""


_CLAIM_GROUP = Prepared(
    # PostgreSQL only. The rows are locked in the order of their ids (two processes never
    # wait for each other crosswise) and claimed if still pending once locked (the status
    # read with the lock is the row's newest); each claimed row says whether an edit of it
    # was handled, as _CLAIMED does. Then the senders' moderated CoPs and memberships, as
    # _CLAIM_WITH_ROLES reads them. A first column of 2 is a claimed row, 1 a moderated
    # CoP, 0 a membership.
    #
    # The rows are found by their keys alone. With "status = 'pending'" in the same WHERE,
    # the plan PostgreSQL keeps for the statement went through the index of pending events
    # (and, for the UPDATE, once per row), which still lists every row a backlog has
    # claimed until it is vacuumed: 0.8 ms became 7 ms after 4,000 commands, and growing.
    text(
        "WITH locked AS (SELECT id, status FROM inbound_events"
        " WHERE id = ANY(:ids) ORDER BY id FOR UPDATE),"
        " claimed AS (UPDATE inbound_events AS e"
        " SET status = 'done', outcome = 'ok', handled_at = :now"
        " FROM locked WHERE e.id = locked.id AND locked.status = 'pending'"
        " RETURNING e.id, EXISTS (SELECT 1 FROM inbound_events AS edit"
        " WHERE edit.replaces = e.event_id AND edit.status = 'done') AS edited) "
        "SELECT 2 AS part, id, CAST(NULL AS varchar) AS user_id, CAST(NULL AS varchar) AS code,"
        " CAST(NULL AS varchar) AS value, edited FROM claimed "
        "UNION ALL SELECT 1, NULL, user_id, cop_code, role, NULL FROM roles"
        " WHERE user_id = ANY(:users) AND role = 'moderator' "
        "UNION ALL SELECT 0, NULL, user_id, cop_code, status, NULL FROM memberships"
        " WHERE user_id = ANY(:users)"
    )
    .bindparams(
        bindparam("ids", type_=ARRAY(BigInteger)),
        bindparam("users", type_=ARRAY(String)),
        bindparam("now", type_=InboundEvent.__table__.c.handled_at.type),
    )
    .columns(
        column("part", Integer),
        column("id", BigInteger),
        column("user_id", String),
        column("code", String),
        column("value", String),
        column("edited", Boolean),
    )
)
_UNCLAIM = Prepared(
    text(
        "UPDATE inbound_events SET status = 'pending', outcome = NULL, handled_at = NULL"
        " WHERE id = ANY(:ids)"
    ).bindparams(bindparam("ids", type_=ARRAY(BigInteger)))
)


async def claim_group(
    session: AsyncSession, rows: Sequence[InboundEvent], now: datetime
) -> GroupClaims | None:
    """For a backlog group of commands handled in one transaction on PostgreSQL: claim
    them all as :func:`claim_with_roles` claims one, in one statement, instead of one
    statement each. Rows another worker or process claimed first are left out. None on
    SQLite (a statement costs little more than its work there) and for a group with other
    events than commands: claim each with :func:`claim_with_roles` or
    :func:`claim_to_handle`.

    The roles are read before the group's first command, so they hold only until a
    statement of the transaction may change them or the claims (``unsettled``): the group
    must end after that command (:func:`unclaim` what it did not handle)."""
    if not isinstance(session.sync_session, BatchingSession):
        return None
    if any(row.kind != "command" for row in rows):
        return None  # (an edit in the group may claim a message of it in its place)
    sender_of = {row.id: row.sender for row in rows}
    senders = sorted(set(sender_of.values()))
    params = {"ids": list(sender_of), "users": senders, "now": now}
    found = await run_prepared(session, _CLAIM_GROUP, params)
    roles = _roles_by_person(
        senders,
        [(user, code, value, part == 1) for part, _, user, code, value, _ in found if part != 2],
    )
    claims = GroupClaims(
        {
            row_id: (bool(edited), roles[sender_of[row_id]])
            for part, row_id, *_, edited in found
            if part == 2
        }
    )
    session.info[CLAIMS] = claims
    return claims


def _unsettle(session: Session | AsyncSession) -> None:
    claims = cast("GroupClaims | None", session.info.get(CLAIMS))
    if claims is not None:
        claims.unsettled = True


async def unclaim(session: AsyncSession, row_ids: Sequence[int]) -> None:
    """Make rows of :func:`claim_group` pending again: the group ended before them."""
    if row_ids:
        await run_prepared(session, _UNCLAIM, {"ids": list(row_ids)})


async def set_inbound_outcome(session: AsyncSession, row_id: int, outcome: str) -> None:
    await run_prepared(session, _SET_OUTCOME, {"row_id": row_id, "new_outcome": outcome})


async def count_inbound(session: AsyncSession, status: str | None = None) -> int:
    query = select(func.count()).select_from(InboundEvent)
    if status:
        query = query.where(InboundEvent.status == status)
    return int(await session.scalar(query) or 0)


# --- outbox --------------------------------------------------------------------------------


_ENQUEUE = Prepared(insert(OutboxMessage))


class OutboxRow(TypedDict, total=False):
    """What :func:`enqueue` and :func:`queue` are given: a message (or another Matrix
    action, ``kind``) for ``room_id``, or for ``to_user`` (a direct message whose room is
    not known yet), written ``now``."""

    payload: Required[dict[str, Any]]
    now: Required[datetime]
    room_id: str | None
    to_user: str | None
    kind: str
    tag: str | None
    private_to: str | None


def _row_values(row: OutboxRow) -> dict[str, Any]:
    """The outbox's columns for ``row``. ``to_user`` implies ``private_to``: a private row
    only ever goes to a room with just the bot and that person in it."""
    room_id, to_user = row.get("room_id"), row.get("to_user")
    if (room_id is None) == (to_user is None):
        raise ValueError("give exactly one of room_id or to_user")
    return {
        "room_id": room_id,
        "to_user": to_user,
        "kind": row.get("kind", "message"),
        "payload": row["payload"],
        "tag": row.get("tag"),
        "private_to": row.get("private_to") or to_user,
        "created_at": row["now"],
    }


async def enqueue(session: AsyncSession, **row: Unpack[OutboxRow]) -> int:
    """Add a message (or another Matrix action) to send once the transaction commits, now;
    returns its row id (the Matrix transaction id). Rows queued before it (:func:`queue`)
    are written first, by :func:`run_prepared`: the outbox's order is the order messages
    go out in."""
    key = (await run_prepared(session, _ENQUEUE, _row_values(row))).inserted_id
    assert key is not None
    return int(key)


_DM_ROOM = (
    select(DirectRoom.room_id).where(DirectRoom.user_id == bindparam("user_id")).scalar_subquery()
)
_ENQUEUE_DM = Prepared(
    # The person's direct chat looked up in the same statement: the room when the bot has
    # one with them, otherwise the person (the sender opens the chat first).
    insert(OutboxMessage).from_select(
        ["room_id", "to_user", "private_to", "kind", "payload", "tag", "created_at"],
        select(
            _DM_ROOM,
            case((_DM_ROOM.is_(None), bindparam("user_id")), else_=null()),
            bindparam("user_id"),
            bindparam("kind", type_=String),
            bindparam("payload", type_=OutboxMessage.payload.type),
            bindparam("tag", type_=String),
            bindparam("created_at", type_=OutboxMessage.created_at.type),
        ),
    )
)


async def enqueue_dm(
    session: AsyncSession,
    user_id: str,
    *,
    payload: dict[str, Any],
    kind: str = "message",
    tag: str | None = None,
    now: datetime,
) -> None:
    """Add a message for ``user_id``'s eyes only, to go to the bot's direct chat with them
    (:func:`get_direct_room`), or, with none yet, to a chat the sender opens first: as
    :func:`enqueue` with ``room_id`` or ``to_user``, in one statement."""
    queued = _queueing(session)
    if queued is not None:
        queued.rows.append(
            {
                "room_id": None,
                "to_user": None,
                "person": user_id,  # the room or, with none, to_user: found when written
                "private_to": user_id,
                "kind": kind,
                "payload": payload,
                "tag": tag,
                "created_at": now,
            }
        )
        return
    values = {
        "user_id": user_id,
        "kind": kind,
        "payload": payload,
        "tag": tag,
        "created_at": now,
    }
    await run_prepared(session, _ENQUEUE_DM, values)


# --- outbox rows written together ------------------------------------------------------------

QUEUED = "bbwt.queued_outbox"
"""In a session's ``info`` (see :func:`batch_outbox`): the outbox rows queued and not
written yet."""


@dataclass
class _Queued:
    connection: AsyncConnection
    driver: Any
    rows: list[dict[str, Any]] = field(default_factory=list)
    """The outbox's columns (as :func:`_row_values` gives them) and ``person``: for a
    direct message, whose direct chat's room is looked up when it is written."""


async def batch_outbox(session: AsyncSession) -> None:
    """On PostgreSQL, from now until this transaction ends, the outbox rows queued with
    :func:`queue` and :func:`enqueue_dm` are written together, in one statement, in the
    order they were queued: before the transaction commits, before anything else reads or
    writes the outbox in it (a statement of this module that names the outbox, any ORM
    statement, an immediate :func:`enqueue`) and before a savepoint begins. Inside a
    savepoint they are written at once (a savepoint rolled back takes them with it).

    For a backlog of commands handled in one transaction (``bot.processor``): their
    replies cost one statement, not one each. On SQLite, where a statement costs little
    more than the work it does, rows are written at once: only PostgreSQL's sessions
    (``BatchingSession``) listen for the moments the rows must be written."""
    if not isinstance(session.sync_session, BatchingSession):
        return  # (its queued rows would not be written before the commit)
    connection = await _connection(session)
    session.info[QUEUED] = _Queued(connection, inline_driver(connection))


def _queueing(session: AsyncSession) -> _Queued | None:
    """Where to queue an outbox row: None when it is to be written now."""
    queued = cast("_Queued | None", session.info.get(QUEUED))
    if queued is None or session.in_nested_transaction():
        return None
    return queued


async def queue(session: AsyncSession, **row: Unpack[OutboxRow]) -> None:
    """:func:`enqueue` for a row whose id is not needed: written with the rows queued
    with it (see :func:`batch_outbox`), or at once."""
    values = _row_values(row)
    queued = _queueing(session)
    if queued is None:
        await run_prepared(session, _ENQUEUE, values)
    else:
        queued.rows.append({**values, "person": None})


_WRITE_QUEUED = Prepared(
    # One row per element of the arrays, in their order (ORDER BY: the ids follow it); a
    # direct chat's room is looked up as in _ENQUEUE_DM.
    text(
        "INSERT INTO outbox (room_id, to_user, private_to, kind, payload, tag, created_at,"
        " attempts, failed) "
        "SELECT coalesce(q.room_id, d.room_id),"
        " CASE WHEN q.person IS NOT NULL AND d.room_id IS NULL THEN q.person"
        " ELSE q.to_user END,"
        " q.private_to, q.kind, CAST(q.payload AS json), q.tag, q.created_at, 0, false "
        "FROM unnest(CAST(:room_ids AS varchar[]), CAST(:to_users AS varchar[]),"
        " CAST(:persons AS varchar[]), CAST(:private_tos AS varchar[]),"
        " CAST(:kinds AS varchar[]), CAST(:payloads AS text[]), CAST(:tags AS varchar[]),"
        " CAST(:created AS timestamptz[]))"
        " WITH ORDINALITY AS q(room_id, to_user, person, private_to, kind, payload, tag,"
        " created_at, n) "
        "LEFT JOIN direct_rooms AS d ON d.user_id = q.person "
        "ORDER BY q.n"
    ).bindparams(
        *(
            bindparam(name, type_=ARRAY(String))
            for name in ("room_ids", "to_users", "persons", "private_tos", "kinds", "tags")
        ),
        bindparam("payloads", type_=ARRAY(Text)),
        bindparam("created", type_=ARRAY(DateTime(timezone=True))),
    )
)


async def write_queued(session: AsyncSession) -> None:
    """Write the outbox rows queued in this transaction (see :func:`batch_outbox`) now."""
    queued = cast("_Queued | None", session.info.get(QUEUED))
    if queued is not None and queued.rows:
        await _write(queued)


@functools.cache
def _binders(dialect: Dialect) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """How the payload (JSON to text) and the time (in UTC) are sent, as SQLAlchemy would."""
    as_json = OutboxMessage.__table__.c.payload.type.bind_processor(dialect)
    as_utc = OutboxMessage.__table__.c.created_at.type.bind_processor(dialect)
    assert as_json is not None
    assert as_utc is not None
    return as_json, as_utc


async def _write(queued: _Queued) -> None:
    rows, queued.rows = queued.rows, []
    as_json, as_utc = _binders(queued.connection.dialect)
    params = {
        "room_ids": [row["room_id"] for row in rows],
        "to_users": [row["to_user"] for row in rows],
        "persons": [row["person"] for row in rows],
        "private_tos": [row["private_to"] for row in rows],
        "kinds": [row["kind"] for row in rows],
        "payloads": [as_json(row["payload"]) for row in rows],
        "tags": [row["tag"] for row in rows],
        "created": [as_utc(row["created_at"]) for row in rows],
    }
    await execute_prepared(queued.connection, queued.driver, _WRITE_QUEUED, params)


def _write_queued_now(session: Session) -> None:
    """:func:`write_queued` from the session's own (synchronous) code: its events run in
    the greenlet of the awaited call that set them off."""
    queued = cast("_Queued | None", session.info.get(QUEUED))
    if queued is not None and queued.rows:
        await_only(_write(queued))


@orm_events.listens_for(BatchingSession, "before_commit")
def _write_before_commit(session: Session) -> None:
    _write_queued_now(session)


_WRITTEN_WITH = frozenset({"outbox", "direct_rooms"})
"""What a statement must not touch before the queued outbox rows are written: the outbox
itself (``!mydata`` and ``!forget`` read it), and the direct chats their rooms are looked
up in."""


@orm_events.listens_for(BatchingSession, "do_orm_execute")
def _write_before_statement(state: ORMExecuteState) -> None:
    """A statement through the session that names the outbox or the direct chats (or holds
    text) comes after the rows queued before it. Any but a query may write what a group's
    claims were read from (an ORM query that writes in a ``WITH`` clause is not made: such
    a statement is a ``Prepared`` one)."""
    queued = cast("_Queued | None", state.session.info.get(QUEUED))
    if queued is not None and queued.rows:
        names = tables_named(state.statement)
        if names is None or not names.isdisjoint(_WRITTEN_WITH):
            _write_queued_now(state.session)
    if not state.is_select:
        _unsettle(state.session)


@orm_events.listens_for(BatchingSession, "before_flush")
def _write_before_flush(session: Session, _context: Any, _instances: Any) -> None:
    if any(isinstance(new, OutboxMessage) for new in session.new):
        _write_queued_now(session)
    if CLAIMS in session.info and (
        session.deleted
        or any(
            getattr(changed, "__tablename__", None) in _CLAIMED_FROM
            for changed in (*session.new, *session.dirty)
        )
    ):
        _unsettle(session)


_UNSENT = Prepared(
    select(*OutboxMessage.__table__.columns)
    .where(OutboxMessage.sent_at.is_(None), OutboxMessage.failed.is_(False))
    .order_by(OutboxMessage.id)
    .limit(bindparam("limit"))
)


async def unsent(session: AsyncSession, limit: int = 200) -> list[OutboxMessage]:
    """The rows to send, oldest first, as plain objects (not attached to the session: the
    sender reads them and writes its marks by id). Read as Core, the sender's read after
    every wake costs a third of an ORM query."""
    result = await run_prepared(session, _UNSENT, {"limit": limit})
    return [OutboxMessage(**row) for row in result.mappings()]


async def get_outbox(session: AsyncSession, row_id: int) -> OutboxMessage | None:
    return await session.get(OutboxMessage, row_id)


def _forget_erasure_row(row_id: int, now: datetime) -> Any:
    """Once an erasure's own row is done with, nothing of it names the person any more."""
    return (
        update(OutboxMessage)
        .where(OutboxMessage.id == row_id, OutboxMessage.tag == ERASURE_TAG)
        .values(payload={}, to_user=None, private_to=None, last_error=None, scrubbed_at=now)
    )


async def mark_sent(session: AsyncSession, row_id: int, result: str | None, now: datetime) -> None:
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == row_id)
        .values(sent_at=now, result=result, last_error=None)
    )
    await session.execute(_forget_erasure_row(row_id, now))


async def mark_sent_many(
    session: AsyncSession, marks: Sequence[tuple[int, str | None, datetime]]
) -> None:
    """:func:`mark_sent` for many rows at once: ``(row id, result, when)`` each."""
    if not marks:
        return
    await session.execute(
        update(OutboxMessage),
        [
            {"id": row_id, "sent_at": now, "result": result, "last_error": None}
            for row_id, result, now in marks
        ],
    )
    table = cast(Table, OutboxMessage.__table__)
    await session.execute(
        update(table)
        .where(table.c.id == bindparam("row_id"), table.c.tag == ERASURE_TAG)
        .values(
            payload={}, to_user=None, private_to=None, last_error=None, scrubbed_at=bindparam("at")
        ),
        [{"row_id": row_id, "at": now} for row_id, _, now in marks],
    )


async def mark_attempt(
    session: AsyncSession,
    row_id: int,
    *,
    error: str,
    not_before: datetime | None,
    failed: bool = False,
    now: datetime | None = None,
) -> None:
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == row_id)
        .values(
            attempts=OutboxMessage.attempts + 1,
            last_error=error[:2000],
            not_before=not_before,
            failed=failed,
        )
    )
    if failed and now is not None:
        await session.execute(_forget_erasure_row(row_id, now))


async def resolve_outbox_room(session: AsyncSession, user_id: str, room_id: str) -> None:
    """Point every unsent direct message for ``user_id`` at the room just opened."""
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.to_user == user_id, OutboxMessage.room_id.is_(None))
        .values(room_id=room_id)
    )


async def tag_of_sent_event(session: AsyncSession, event_id: str) -> str | None:
    """The tag of the bot's own message with this Matrix event id (for reactions to it)."""
    return await session.scalar(
        select(OutboxMessage.tag).where(OutboxMessage.result == event_id).limit(1)
    )


async def tagged_message(session: AsyncSession, tag: str, room_id: str) -> OutboxMessage | None:
    """The bot's first message with this tag in this room (what a queued reaction goes to)."""
    return await session.scalar(
        select(OutboxMessage)
        .where(OutboxMessage.tag == tag, OutboxMessage.room_id == room_id)
        .order_by(OutboxMessage.id)
        .limit(1)
    )


async def outbox_depth(session: AsyncSession) -> int:
    return int(
        await session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.sent_at.is_(None), OutboxMessage.failed.is_(False))
        )
        or 0
    )


# --- audit log -----------------------------------------------------------------------------


async def audit(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    cop_code: str | None = None,
    target: str | None = None,
    detail: str = "",
    now: datetime,
) -> None:
    session.add(
        AuditEntry(
            actor=actor, action=action, cop_code=cop_code, target=target, detail=detail, at=now
        )
    )
    await session.flush()


async def recent_audit(
    session: AsyncSession, limit: int, cops: set[str] | None = None
) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if cops is not None:
        query = query.where(AuditEntry.cop_code.in_(cops))
    return list((await session.scalars(query)).all())
