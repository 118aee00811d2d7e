"""The database: async engine and sessions for SQLite (default) and PostgreSQL, and migrations."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections import deque
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from bot import sqlite_driver

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _sqlite_setup(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    """WAL, foreign keys, a busy timeout, and BEGIN IMMEDIATE for SQLite connections.

    BEGIN IMMEDIATE takes the write lock at the start of a transaction: two transactions that
    read first and write later would otherwise deadlock and fail at once with "database is
    locked" instead of waiting for each other.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Any) -> None:
        # A read (Database.read) takes no lock: in WAL mode it never waits for a writer.
        deferred = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")


READ_ONLY = "icssi_read_only"  # the execution option of Database.read's connections


class DatabaseInUse(OSError):
    """Another bot process sends from this SQLite database (SQLite serves one such process)."""


class Turns:
    """Turns at SQLite's write lock within this process, in two queues.

    Each queue is first come, first served. When both have work waiting, they alternate: a
    crowd of people's messages cannot keep the sender from writing down what it sent (and so
    from sending the replies to them), and the sender cannot keep the messages waiting either.
    """

    def __init__(self) -> None:
        self.held = False
        self.holder: asyncio.Task[Any] | None = None  # the task whose turn it is
        self.queues: tuple[deque[asyncio.Future[None]], deque[asyncio.Future[None]]] = (
            deque(),
            deque(),
        )
        self.last = 0  # the queue served last

    async def acquire(self, behind: bool) -> None:
        """Wait for a turn: in the second queue when `behind`."""
        task = asyncio.current_task()
        if self.held and task is not None and self.holder is task:
            # It would wait for its own turn for ever, and every transaction of the process
            # behind it: a loud error instead, for a code path that nests transactions.
            raise RuntimeError("a transaction inside another of the same task (SQLite)")
        if not self.held:
            self.held = True
            self.holder = task
            self.last = int(behind)
            return
        turn = asyncio.get_running_loop().create_future()
        self.queues[int(behind)].append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # handed over just as it was cancelled: pass it on
            raise
        self.holder = task

    def release(self) -> None:
        """End a turn: hand it to the next one waiting, from the other queue if it has any."""
        self.holder = None
        for index in (1 - self.last, self.last):
            queue = self.queues[index]
            while queue:
                turn = queue.popleft()
                if not turn.done():  # not cancelled meanwhile
                    self.last = index
                    turn.set_result(None)
                    return
        self.held = False


class Database:
    """One database: an engine and a session factory."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self.path: Path | None = None  # the SQLite file
        if self.is_sqlite and parsed.database and parsed.database != ":memory:":
            self.path = Path(parsed.database)
            self.path.parent.mkdir(parents=True, exist_ok=True)
        options: dict[str, Any] = {}
        if self.path is not None:
            options["async_creator"] = sqlite_driver.creator(str(self.path))
        # hide_parameters: a database error's message must not carry people's data into logs.
        self.engine = create_async_engine(
            url, echo=echo, pool_pre_ping=not self.is_sqlite, hide_parameters=True, **options
        )
        if self.is_sqlite:
            # A file's connections wait for another process's lock in the driver, asynchronously.
            _sqlite_setup(self.engine, 0 if self.path is not None else 10_000)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time, and each of our transactions writes (BEGIN
        # IMMEDIATE): in this process they take turns here rather than by polling SQLite's
        # lock. The connections run in the loop's thread (bot/sqlite_driver.py), so this also
        # keeps a transaction from waiting for a lock held by another one of this process that
        # cannot go on.
        self._turns = Turns() if self.is_sqlite else None
        self._alone: int | None = None  # the descriptor of the lock file held by hold_alone
        # Connections kept out of the pool by their users (bot/dbapi.py): closed with the rest.
        self.held: set[AsyncConnection] = set()

    @asynccontextmanager
    async def _one_at_a_time(self, *, behind: bool = False) -> AsyncIterator[None]:
        """Wait for this process's turn at SQLite's write lock (no wait for PostgreSQL)."""
        if self._turns is None:
            yield
            return
        await self._turns.acquire(behind)
        try:
            yield
        finally:
            self._turns.release()

    def turn(self) -> AbstractAsyncContextManager[None]:
        """This process's turn at SQLite's write lock, for a transaction made without a session."""
        return self._one_at_a_time()

    def hold_alone(self) -> None:
        """On SQLite, make sure that no other bot process sends from this file, until close().

        The senders and the schedulers of two processes would send the same messages: SQLite
        serves one sending process (PostgreSQL serves several). Raise DatabaseInUse if one runs.
        """
        if self.path is None or self._alone is not None:
            return
        lock = self.path.with_name(self.path.name + ".lock")
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise DatabaseInUse(
                f"another icssi-bot process sends from {self.path}; SQLite serves one sending "
                "process: stop that one, or use PostgreSQL (DATABASE_URL) to run several"
            ) from None
        self._alone = descriptor

    @asynccontextmanager
    async def transaction(self, *, behind: bool = False) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed at the end, rolled back on error.

        `behind`: on SQLite, work that may wait (people's messages, which come in crowds)
        takes every other turn when other work waits too, however many of it wait.
        """
        async with (
            self._one_at_a_time(behind=behind),
            self.sessions() as session,
            session.begin(),
        ):
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reading only: no turn at SQLite's write lock, no write lock taken.

        For what anyone may ask for at any rate (the public pictures): such reads must not
        queue behind, or hold up, the people's messages.
        """
        async with self.engine.connect() as conn:
            await conn.execution_options(**{READ_ONLY: True})
            try:
                yield conn
            finally:
                await conn.rollback()

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """An ORM session on a read() connection: queries without a turn at SQLite's write
        lock, for pages, exports and checks that change nothing."""
        async with (
            self.read() as connection,
            AsyncSession(bind=connection, expire_on_commit=False) as session,
        ):
            yield session

    async def ping(self) -> bool:
        """Whether the database answers."""
        try:
            async with self._one_at_a_time(), self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:  # any failure means "not healthy"; the caller reports it
            logger.warning("database ping failed", exc_info=True)
            return False
        return True

    async def close(self) -> None:
        """Close every pooled connection (and let another process hold the SQLite file)."""
        for connection in list(self.held):
            with contextlib.suppress(Exception):  # a broken one is discarded all the same
                await connection.close()
        self.held.clear()
        await self.engine.dispose()
        if self._alone is not None:
            os.close(self._alone)  # frees the lock
            self._alone = None


def alembic_config(url: str) -> Any:
    """An Alembic Config for our migrations and `url`, without an alembic.ini."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Create or migrate the database to `revision` (blocking; not inside a running loop)."""
    from alembic import command

    if make_url(url).get_backend_name() == "sqlite":
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), revision)


async def at_head(url: str) -> bool:
    """Whether the database is migrated to this version of the bot."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    wanted = set(ScriptDirectory.from_config(alembic_config(url)).get_heads())
    engine = create_async_engine(url)  # an async URL, as Settings.database_url is
    try:
        async with engine.connect() as connection:
            current = await connection.run_sync(
                lambda sync: set(MigrationContext.configure(sync).get_current_heads())
            )
    finally:
        await engine.dispose()
    return current == wanted


async def upgrade_async(url: str, revision: str = "head") -> None:
    """`upgrade` from inside an event loop (Alembic's env runs its own loop in a thread)."""
    await asyncio.to_thread(upgrade, url, revision)
