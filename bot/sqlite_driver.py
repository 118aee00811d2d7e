"""SQLite connections for SQLAlchemy's asyncio engine that run in the event loop's own thread.

aiosqlite hands every call of a connection (cursor, execute, fetch, close: about four per
statement) to a thread of its own, and each hand-over waits for the GIL. Measured with
benchmarks/inbound.py, the hand-overs took about 40% of the CPU of handling a message, and under
load a transaction lasted many times its own work while every other one waited for it. SQLite on
a local file in WAL mode answers in microseconds: here each call runs at once, in the loop's
thread. Where SQLite would sleep until another process lets go of the write lock, the wait is
the loop's: the connection's busy timeout is 0, and a call answered SQLITE_BUSY is tried again
after a pause, for up to BUSY_TIMEOUT seconds, while the loop goes on with other work.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Generator
from functools import partial
from typing import Any

import aiosqlite

BUSY_TIMEOUT = 10.0  # seconds a call waits for another process's write lock
_FIRST_PAUSE = 0.001
_LONGEST_PAUSE = 0.05


def busy(error: sqlite3.OperationalError) -> bool:
    """Whether SQLite refused because another connection holds the lock (try again later)."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return int(code) & 0xFF == sqlite3.SQLITE_BUSY
    return "database is locked" in str(error)


class _RunNow:
    """Stands in for aiosqlite's queue to its thread (SQLAlchemy uses it): runs each call put."""

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


class InlineConnection(aiosqlite.Connection):
    """aiosqlite's connection (and cursors), each call run at once in the calling thread."""

    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._tx = _RunNow()  # type: ignore[assignment]

    def __await__(self) -> Generator[Any, None, InlineConnection]:
        return self._connect().__await__()

    async def _connect(self) -> InlineConnection:
        if self._connection is None:
            self._connection = self._connector()
        return self

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or self._connection is None:
            raise ValueError("Connection closed")
        deadline: float | None = None
        pause = _FIRST_PAUSE
        while True:
            try:
                return fn(*args, **kwargs)
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

    def stop(self) -> None:
        """Close the SQLite connection (there is no thread to stop)."""
        self._running = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None

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
