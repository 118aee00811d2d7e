"""Statements straight through the DB-API connection: the busiest work, without a Session.

A broadcast writes the outcome of every message it sends, in a transaction per few of them, and
reads the outbox a batch at a time. Through a Session, such a transaction cost about 0.9 ms of
CPU (SQLite, six rows), more than the send itself; straight through the DB-API connection of a
connection held for the purpose, 0.18 ms. SQLAlchemy still writes the SQL: each Core statement
is compiled once for the engine's dialect, and its values take the same conversions as through
a Session (the types' bind and result processors). The engine runs a message's own statements
the same way, on the connection of the message's transaction (Engine._arrive and _leave).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar, cast

from sqlalchemy import ClauseElement, Connection
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.compiler import SQLCompiler

from bot.db import Database

T = TypeVar("T")
_Processor = Callable[[Any], Any] | None


class Prepared:
    """A Core statement compiled for one dialect: its SQL, and how to bind and read its values."""

    def __init__(self, statement: ClauseElement, dialect: Any) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        self.sql = str(compiled)
        self.constants: Mapping[str, Any] = compiled.params  # values the statement holds
        self.parameters: list[tuple[str, _Processor]] = [
            (name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
            for name in compiled.positiontup or ()
        ]
        columns = getattr(statement, "exported_columns", ())  # selected, or RETURNING
        self.results: list[_Processor] = [
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        ]

    def bind(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The DB-API's parameters, in order, from the values by name."""
        bound = []
        for name, processor in self.parameters:
            value = values[name] if name in values else self.constants[name]
            bound.append(value if processor is None else processor(value))
        return tuple(bound)

    def read(self, row: Sequence[Any]) -> tuple[Any, ...]:
        """A row as the DB-API gave it, with its values as a Session would give them."""
        return tuple(
            value if processor is None else processor(value)
            for processor, value in zip(self.results, row, strict=True)
        )


class HeldConnection:
    """A pooled connection kept by one user between its transactions, which go straight to its
    DB-API connection; back to the pool on release(), and after an error.

    Checking a connection out of the pool and back costs about 0.2 ms of CPU: more than what a
    transaction of the sender's does. Its user runs one transaction at a time on it.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.dialect = db.engine.dialect
        self.connection: AsyncConnection | None = None
        self.statements: dict[Hashable, Prepared] = {}

    def compiled(self, key: Hashable, build: Callable[[], ClauseElement]) -> Prepared:
        """The statement `build` makes, compiled once under `key`."""
        statement = self.statements.get(key)
        if statement is None:
            statement = self.statements[key] = Prepared(build(), self.dialect)
        return statement

    async def fetch(self, statement: Prepared, values: Mapping[str, Any]) -> list[Sequence[Any]]:
        """Run a statement that returns rows, alone in its transaction; the rows as the DB-API
        gives them (statement.read() converts one).

        On SQLite it takes no turn at the write lock: it must only read.
        """

        def work(cursor: Any) -> list[Sequence[Any]]:
            cursor.execute(statement.sql, statement.bind(values))
            return list(cursor.fetchall())

        return await self._run(work, begin=False)

    async def write(self, batches: Sequence[tuple[Prepared, Sequence[Mapping[str, Any]]]]) -> None:
        """Run statements in one transaction, each once for every set of values in its list."""

        def work(cursor: Any) -> None:
            for statement, values in batches:
                cursor.executemany(statement.sql, [statement.bind(v) for v in values])

        # SQLite: BEGIN IMMEDIATE, at this process's turn at the write lock (see Database).
        async with self.db.turn():
            await self._run(work, begin=self.db.is_sqlite)

    async def _run(self, work: Callable[[Any], T], *, begin: bool) -> T:
        if self.connection is None:
            self.connection = await self.db.engine.connect()
            self.db.held.add(self.connection)
        try:
            return await self.connection.run_sync(_transaction, work, begin)
        except BaseException:
            # The connection may be broken, or cancelled mid-statement (then its driver may
            # not know of the transaction open on the server, nor roll it back): it is closed,
            # not put back in the pool, as SQLAlchemy does with its own.
            with contextlib.suppress(Exception):
                await self.release(discard=True)
            raise

    async def release(self, *, discard: bool = False) -> None:
        """Give the connection back to the pool, or close it (`discard`); the next statement
        takes one again."""
        connection, self.connection = self.connection, None
        if connection is not None:
            self.db.held.discard(connection)
            if discard:
                await connection.invalidate()
            await connection.close()


def _transaction(connection: Connection, work: Callable[[Any], T], begin: bool) -> T:
    """Run `work` with a DB-API cursor, and commit; roll back if it fails."""
    dbapi = connection.connection.dbapi_connection
    assert dbapi is not None
    cursor = dbapi.cursor()
    try:
        if begin:  # SQLite's connections begin no transaction by themselves (see Database)
            cursor.execute("BEGIN IMMEDIATE")
        result = work(cursor)
        dbapi.commit()
        return result
    except BaseException:
        with contextlib.suppress(Exception):
            dbapi.rollback()
        raise
    finally:
        cursor.close()
