"""SQLite connections for SQLAlchemy's asyncio engine that run in the event loop's own thread.

aiosqlite hands every call of a connection (cursor, execute, fetch, close: about four per
statement) to a thread of its own, and each hand-over waits for the GIL. Measured with
benchmarks/inbound.py, the hand-overs took about 40% of the CPU of handling a message, and under
load a transaction lasted many times its own work while every other one waited for it. SQLite on
a local file in WAL mode answers in microseconds: here each call runs at once, in the loop's
thread. Where SQLite would sleep until another process lets go of the write lock, the wait is
the loop's: the connection's busy timeout is 0, and a call answered SQLITE_BUSY is tried again
after a pause, for up to BUSY_TIMEOUT seconds, while the loop goes on with other work.

The connection is our own, on the standard sqlite3 module: it offers what SQLAlchemy's
aiosqlite dialect calls (the aiosqlite interface: awaitable execute, cursors, commit, and the
`_conn` and `_tx` through which the dialect sets the isolation level), and relies on nothing
inside aiosqlite, which serves only as the dialect's module of exceptions.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Sequence
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")

BUSY_TIMEOUT = 10.0  # seconds a call waits for another process's write lock
_FIRST_PAUSE = 0.001
_LONGEST_PAUSE = 0.05


def busy(error: sqlite3.OperationalError) -> bool:
    """Whether SQLite refused because another connection holds the lock (try again later)."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return int(code) & 0xFF == sqlite3.SQLITE_BUSY
    return "database is locked" in str(error)


async def _patiently(call: Callable[[], T]) -> T:
    """Make a call now; while SQLite answers busy, try it again after a pause, on the loop."""
    deadline: float | None = None
    pause = _FIRST_PAUSE
    while True:
        try:
            return call()
        except sqlite3.OperationalError as exc:
            if not busy(exc):
                raise
            now = time.monotonic()
            if deadline is None:
                deadline = now + BUSY_TIMEOUT
            if now >= deadline:
                raise
        # A statement SQLite refused as busy had no effect: the same call is tried again.
        await asyncio.sleep(pause)
        pause = min(pause * 2, _LONGEST_PAUSE)


class _RunNow:
    """Where SQLAlchemy's dialect puts a call to make on the connection (`_tx`): made at once."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        """Run the call and settle its future."""
        future, function = item
        try:
            result = function()
        except Exception as exc:
            if future is not None:
                future.set_exception(exc)
        else:
            if future is not None:
                future.set_result(result)


class InlineCursor:
    """A sqlite3 cursor behind awaitable calls, each made at once."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self.cursor = cursor

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> InlineCursor:
        """Run one statement."""
        await _patiently(partial(self.cursor.execute, sql, parameters))
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> InlineCursor:
        """Run one statement for each set of parameters."""
        rows = list(parameters)  # tried again when busy: an iterator would be spent
        await _patiently(partial(self.cursor.executemany, sql, rows))
        return self

    async def fetchone(self) -> Any:
        """The next row, or None."""
        return self.cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        """The next `size` rows (arraysize by default)."""
        return self.cursor.fetchmany(self.cursor.arraysize if size is None else size)

    async def fetchall(self) -> list[Any]:
        """The rows left."""
        return self.cursor.fetchall()

    async def __aiter__(self) -> AsyncIterator[Any]:
        for row in self.cursor:
            yield row

    async def close(self) -> None:
        """Close the cursor."""
        self.cursor.close()

    @property
    def description(self) -> Any:
        """The columns of the last statement's rows (DB-API)."""
        return self.cursor.description

    @property
    def rowcount(self) -> int:
        """The rows the last statement changed (DB-API)."""
        return self.cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        """The id of the last row inserted (DB-API)."""
        return self.cursor.lastrowid

    @property
    def arraysize(self) -> int:
        """Rows fetchmany() gives by default (DB-API)."""
        return self.cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self.cursor.arraysize = value


class InlineConnection:
    """A sqlite3 connection with aiosqlite's asyncio interface, each call made at once in the
    calling thread (the event loop's)."""

    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        self.connector = connector
        # The names SQLAlchemy's aiosqlite dialect reaches for: the sqlite3 connection, and a
        # queue of calls to make on it (see the module's docstring).
        self._conn: sqlite3.Connection | None = None
        self._tx = _RunNow()

    def __await__(self) -> Generator[Any, None, InlineConnection]:
        return self._connect().__await__()

    async def _connect(self) -> InlineConnection:
        if self._conn is None:
            self._conn = self.connector()
        return self

    @property
    def _connection(self) -> sqlite3.Connection | None:
        """The sqlite3 connection while open (the dialect commits only then)."""
        return self._conn

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError("Connection closed")
        return self._conn

    def cursor(self) -> InlineCursor:
        """A new cursor (the dialect enters it with `async with`)."""
        return InlineCursor(self._open().cursor())

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> InlineCursor:
        """Run one statement on a new cursor."""
        return await self.cursor().execute(sql, parameters)

    async def commit(self) -> None:
        """Commit the transaction."""
        await _patiently(self._open().commit)

    async def rollback(self) -> None:
        """Roll the transaction back."""
        await _patiently(self._open().rollback)

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        """Register a Python function for SQL (sqlite3's create_function)."""
        self._open().create_function(*args, **kwargs)

    @property
    def isolation_level(self) -> str | None:
        """sqlite3's isolation level (None: no transaction begun by the module)."""
        return self._open().isolation_level

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open."""
        return self._conn is not None and self._conn.in_transaction

    def stop(self) -> None:
        """Close the SQLite connection (there is no thread to stop)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def close(self) -> None:
        """Close the SQLite connection."""
        self.stop()


def creator(path: str) -> Callable[[], Any]:
    """The async_creator for create_async_engine: a new connection to the file at `path`."""

    async def connect() -> InlineConnection:
        """Open the file (SQLAlchemy's options for aiosqlite; the busy wait is ours)."""
        connection = InlineConnection(
            partial(sqlite3.connect, path, check_same_thread=False, timeout=0)
        )
        return await connection

    return connect
