"""The statements every command runs, compiled once and run on SQLite's connection directly.

A Core statement executed through SQLAlchemy's asyncio API costs far more than running it:
a short statement on a small local SQLite database takes tens of microseconds, while the
execution machinery around it (a greenlet switch, the compiled cache's key, an execution
context, bind and result processing, the result object) takes several times that. A
``!help`` runs three such statements and an ``!rsvp`` seven.

:class:`Prepared` keeps the SQL SQLAlchemy compiled for a statement, with the order of its
parameters and the type processing of its parameters and result columns (the same
functions SQLAlchemy applies: dates to UTC, JSON, booleans), and runs it on the sqlite3
connection under the session's own transaction (:mod:`storage.sqlite_inline`). Only what
SQLAlchemy would do for these statements is done; a statement that needs more (a Python
default computed per row, an expanding parameter) is refused when it is prepared.

On PostgreSQL the same compiled statement runs on asyncpg's connection directly, inside
the session's transaction, which SQLAlchemy's asyncpg adapter begins on that connection
first if no statement did yet (asyncpg prepares the statement once per connection and keeps
it in its own statement cache). A statement on a connection SQLAlchemy has no transaction
on goes through SQLAlchemy: nothing runs outside the session's transaction. An error the
driver raises (on either database) is SQLAlchemy's exception, as SQLAlchemy would have
raised it (``IntegrityError``, ``OperationalError``, ...).

With SQLite run through aiosqlite's thread the statement goes through SQLAlchemy as before
and its result is returned in the same shape (:class:`Rows`).

What SQLAlchemy's engine would add around a statement is not there on these direct paths:
its ``echo`` log and its cursor events do not see these statements.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert, UpdateBase
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.sql.selectable import TableClause
from sqlalchemy.sql.util import find_tables
from sqlalchemy.sql.visitors import iterate

from storage import sqlite_inline


class NotPreparable(ValueError):
    """The statement needs SQLAlchemy at execution time (see :class:`Prepared`)."""


@dataclass(frozen=True, slots=True)
class Rows:
    """A statement's result, read at once: its rows (as tuples), the count of rows it
    changed and, for an INSERT without RETURNING into a table whose key is one integer
    column, the new row's id."""

    rows: list[tuple[Any, ...]]
    rowcount: int
    inserted_id: Any
    keys: tuple[str, ...]

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.rows)

    def first(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None

    def mappings(self) -> list[dict[str, Any]]:
        return [dict(zip(self.keys, row, strict=True)) for row in self.rows]


Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]
    fixed: dict[str, Any]
    binders: tuple[Processor, ...]
    readers: tuple[Processor, ...]
    keys: tuple[str, ...]
    reads_types: bool


class Prepared:
    """A Core statement compiled once per dialect (and, for an INSERT that names no
    columns, per set of columns given) and run without SQLAlchemy's execution machinery on
    SQLite. ``statement`` is kept for the other databases."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self.is_insert = isinstance(statement, Insert)
        self.returns_key = self.is_insert and not getattr(
            statement, "returning_column_descriptions", None
        )
        self._compiled: dict[tuple[str, tuple[str, ...]], _Compiled] = {}

    @functools.cached_property
    def tables(self) -> frozenset[str] | None:
        """The names of the tables it reads or writes (see :func:`tables_named`), found when
        first asked for, not at start-up."""
        return tables_named(self.statement)

    @functools.cached_property
    def written(self) -> frozenset[str] | None:
        """The names of the tables it writes (see :func:`tables_written`), found when
        first asked for."""
        return tables_written(self.statement)

    def compiled(self, dialect: Dialect, params: dict[str, Any]) -> _Compiled:
        keys = tuple(params) if self.is_insert else ()
        found = self._compiled.get((dialect.name, keys))
        if found is None:
            found = self._compile(dialect, keys)
            self._compiled[(dialect.name, keys)] = found
        return found

    def _compile(self, dialect: Dialect, keys: tuple[str, ...]) -> _Compiled:
        compiled = cast(
            SQLCompiler,
            cast(ClauseElement, self.statement).compile(
                dialect=dialect, column_keys=list(keys) if keys else None
            ),
        )
        if compiled.positiontup is None:
            raise NotPreparable(f"{dialect.name} takes named parameters")
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise NotPreparable("the statement has parameters rendered at execution")
        fixed: dict[str, Any] = {}
        for column in compiled.insert_prefetch:
            default = column.default
            if default is None or not getattr(default, "is_scalar", False):
                raise NotPreparable(f"column {column.key} has a default computed per row")
            fixed[column.key] = getattr(default, "arg", None)
        names = tuple(compiled.positiontup)
        for name in names:
            bind = compiled.binds[name]
            if name not in fixed and not bind.required and bind.callable is None:
                fixed[name] = bind.value
        binders = tuple(
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in names
        )
        # The result columns as SQLAlchemy itself reads them back (names and types), so the
        # values come out exactly as through SQLAlchemy (an EXISTS as a bool, say).
        columns = [(str(entry.keyname), entry.type) for entry in compiled._result_columns]
        readers = tuple(
            type_.dialect_impl(dialect).result_processor(dialect, None) for _, type_ in columns
        )
        return _Compiled(
            sql=compiled.string,
            names=names,
            fixed=fixed,
            binders=binders,
            readers=readers,
            keys=tuple(name for name, _ in columns),
            reads_types=any(reader is not None for reader in readers),
        )


Driver = Any
"""What :func:`inline_driver` returns: a :class:`storage.sqlite_inline.Connection`, an
``asyncpg.Connection`` or None."""


def tables_named(statement: Any) -> frozenset[str] | None:
    """The names of the tables ``statement`` reads or writes (None: it holds text, whose
    tables are not known)."""
    if any(isinstance(element, TextClause) for element in iterate(statement)):
        return None
    found = find_tables(
        statement,
        check_columns=True,
        include_aliases=True,
        include_joins=True,
        include_selects=True,
        include_crud=True,
    )
    return frozenset(str(table.name) for table in found if isinstance(table, TableClause))


def tables_written(statement: Any) -> frozenset[str] | None:
    """The names of the tables ``statement`` inserts into, updates or deletes from, its
    ``WITH`` clauses included (empty: a query); None for a text statement, whose are not
    known."""
    found: set[str] = set()
    for element in iterate(statement):
        if isinstance(element, TextClause):
            return None
        if isinstance(element, UpdateBase):
            table = element.table
            if not isinstance(table, TableClause):
                return None  # (an alias's or a join's: not looked into)
            found.add(str(table.name))
    return frozenset(found)


def inline_driver(connection: AsyncConnection) -> Driver:
    """The connection a prepared statement runs on directly: SQLite's when it runs on the
    event loop, asyncpg's on PostgreSQL; None when statements go through SQLAlchemy."""
    driver = connection.sync_connection.connection.driver_connection  # type: ignore[union-attr]
    if isinstance(driver, sqlite_inline.Connection):
        return driver
    if connection.dialect.driver == "asyncpg":
        return driver
    return None


async def execute(
    connection: AsyncConnection,
    driver: Driver,
    prepared: Prepared,
    params: dict[str, Any],
) -> Rows:
    """Run ``prepared`` with ``params`` on ``connection`` (whose :func:`inline_driver` is
    ``driver``), in its current transaction."""
    if isinstance(driver, sqlite_inline.Connection):
        return await _on_sqlite(driver, prepared, connection.dialect, params)
    if driver is not None and (driver.is_in_transaction() or await _begin_asyncpg(connection)):
        return await _on_asyncpg(connection, driver, prepared, params)
    return await _through_sqlalchemy(connection, prepared, params)


async def _begin_asyncpg(connection: AsyncConnection) -> bool:
    """Begin the transaction SQLAlchemy began on ``connection`` on asyncpg's connection too,
    as SQLAlchemy's asyncpg adapter does before its first statement (it begins lazily); True
    when it is begun. False outside a transaction of SQLAlchemy's, on a connection in
    autocommit, or with an adapter of another shape (the statement then goes through
    SQLAlchemy, which begins the transaction itself if there is one)."""
    if not connection.in_transaction():
        return False
    adapter = connection.sync_connection.connection.dbapi_connection  # type: ignore[union-attr]
    if getattr(adapter, "isolation_level", None) == "autocommit":
        return False
    if getattr(adapter, "_transaction", False) is not None:
        return False
    await adapter._start_transaction()  # type: ignore[union-attr]
    return True


async def _through_sqlalchemy(
    connection: AsyncConnection, prepared: Prepared, params: dict[str, Any]
) -> Rows:
    result = await connection.execute(prepared.statement, params)
    inserted = None
    rows: list[tuple[Any, ...]] = []
    keys: tuple[str, ...] = ()
    if prepared.returns_key:
        # (PostgreSQL reads the new row's key with a RETURNING of its own.)
        key = result.inserted_primary_key
        inserted = None if key is None else key[0]
    elif result.returns_rows:
        keys = tuple(result.keys())
        rows = [tuple(row) for row in result.all()]
    return Rows(rows=rows, rowcount=result.rowcount, inserted_id=inserted, keys=keys)


def _values(compiled: _Compiled, params: dict[str, Any]) -> list[Any]:
    values: list[Any] = []
    fixed = compiled.fixed
    for name, binder in zip(compiled.names, compiled.binders, strict=True):
        value = params[name] if name in params else fixed[name]
        values.append(value if binder is None else binder(value))
    return values


def _read(compiled: _Compiled, raw: Sequence[Any]) -> list[tuple[Any, ...]]:
    if not compiled.reads_types:
        return [tuple(row) for row in raw]
    readers = compiled.readers
    return [
        tuple(
            value if reader is None else reader(value)
            for value, reader in zip(row, readers, strict=True)
        )
        for row in raw
    ]


async def _on_asyncpg(
    connection: AsyncConnection, driver: Any, prepared: Prepared, params: dict[str, Any]
) -> Rows:
    dialect = connection.dialect
    compiled = prepared.compiled(dialect, params)
    values = _values(compiled, params)
    try:
        if compiled.keys:
            raw = await driver.fetch(compiled.sql, *values)
            status = None
        else:
            raw, status = [], await driver.execute(compiled.sql, *values)
    except Exception as error:
        raise _translated(connection, compiled.sql, values, error) from error
    if prepared.returns_key:
        # (The new row's key, read with the RETURNING SQLAlchemy adds to the INSERT.)
        return Rows(rows=[], rowcount=len(raw), inserted_id=raw[0][0] if raw else None, keys=())
    if status is None:
        rowcount = len(raw)
    else:
        # "UPDATE 3", "DELETE 0", "INSERT 0 1": the count of rows comes last.
        count = status.rsplit(" ", 1)[-1]
        rowcount = int(count) if count.isdigit() else -1
    return Rows(rows=_read(compiled, raw), rowcount=rowcount, inserted_id=None, keys=compiled.keys)


def _translated(
    connection: AsyncConnection, sql: str, values: list[Any], error: Exception
) -> Exception:
    """``error`` (asyncpg's) as SQLAlchemy raises it for a statement of its own: first as its
    asyncpg adapter translates it, then wrapped in SQLAlchemy's exception classes."""
    adapter = connection.sync_connection.connection.dbapi_connection  # type: ignore[union-attr]
    try:
        adapter._handle_exception(error)  # type: ignore[union-attr]
    except Exception as translated:
        error = translated
    return _wrapped(connection.dialect, sql, values, error)


def _wrapped(dialect: Dialect, sql: str, values: list[Any], error: Exception) -> Exception:
    """A driver's error in the SQLAlchemy exception its class names (``IntegrityError``,
    ``OperationalError``, ...), as SQLAlchemy raises it; any other error as it is."""
    base = dialect.loaded_dbapi.Error
    if not isinstance(error, base):
        return error
    return cast(Exception, sa_exc.DBAPIError.instance(sql, values, error, base, dialect=dialect))


async def _on_sqlite(
    driver: sqlite_inline.Connection, prepared: Prepared, dialect: Dialect, params: dict[str, Any]
) -> Rows:
    compiled = prepared.compiled(dialect, params)
    values = _values(compiled, params)
    try:
        cursor: sqlite3.Cursor = await driver.execute_now(compiled.sql, values)
    except sqlite3.Error as error:
        raise _wrapped(dialect, compiled.sql, values, error) from error
    try:
        raw = cursor.fetchall() if cursor.description is not None else []
        return Rows(
            rows=_read(compiled, raw),
            rowcount=cursor.rowcount,
            inserted_id=cursor.lastrowid if prepared.returns_key else None,
            keys=compiled.keys,
        )
    finally:
        cursor.close()
