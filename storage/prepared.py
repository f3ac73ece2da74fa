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

On PostgreSQL, or with SQLite run through aiosqlite's thread, the statement goes through
SQLAlchemy as before and its result is returned in the same shape (:class:`Rows`).

What SQLAlchemy's engine would add around a statement is not there on SQLite: its
``echo`` log and its cursor events do not see these statements.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert

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


def inline_driver(connection: AsyncConnection) -> sqlite_inline.Connection | None:
    """The SQLite connection under ``connection`` when it runs on the event loop, else None."""
    driver = connection.sync_connection.connection.driver_connection  # type: ignore[union-attr]
    return driver if isinstance(driver, sqlite_inline.Connection) else None


async def execute(
    connection: AsyncConnection,
    driver: sqlite_inline.Connection | None,
    prepared: Prepared,
    params: dict[str, Any],
) -> Rows:
    """Run ``prepared`` with ``params`` on ``connection`` (whose :func:`inline_driver` is
    ``driver``), in its current transaction."""
    if driver is not None:
        return await _on_sqlite(driver, prepared, connection.dialect, params)
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


async def _on_sqlite(
    driver: sqlite_inline.Connection, prepared: Prepared, dialect: Dialect, params: dict[str, Any]
) -> Rows:
    compiled = prepared.compiled(dialect, params)
    values: list[Any] = []
    fixed = compiled.fixed
    for name, binder in zip(compiled.names, compiled.binders, strict=True):
        value = params[name] if name in params else fixed[name]
        values.append(value if binder is None else binder(value))
    cursor: sqlite3.Cursor = await driver.execute_now(compiled.sql, values)
    try:
        raw = cursor.fetchall() if cursor.description is not None else []
        readers = compiled.readers
        rows: list[tuple[Any, ...]]
        if compiled.reads_types:
            rows = [
                tuple(
                    value if reader is None else reader(value)
                    for value, reader in zip(row, readers, strict=True)
                )
                for row in raw
            ]
        else:
            rows = [tuple(row) for row in raw]
        return Rows(
            rows=rows,
            rowcount=cursor.rowcount,
            inserted_id=cursor.lastrowid if prepared.returns_key else None,
            keys=compiled.keys,
        )
    finally:
        cursor.close()
