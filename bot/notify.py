"""On PostgreSQL, the web process wakes the worker process at once: LISTEN/NOTIFY.

In the Procfile deployment a worker hears of the rows that the web process queues only from the
database. Looking every 0.1 s cost an idle worker two small queries ten times a second, and a
reply waited 50 ms for the look on average. Now the web process sends a NOTIFY once the inbound
transaction has committed (the engine tells its Wakeup after the commit), and the worker,
listening on a connection of its own, wakes its sender as an engine in its own process would.
The worker still looks every second (runtime.running): a notification lost with a connection,
or sent while the worker reconnected, delays a reply by a second at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from bot.db import Database

logger = logging.getLogger(__name__)

CHANNEL = "icssi_outbox"  # PostgreSQL's channel of the notifications (not a bot's channel)
RETRY = 2.0  # seconds between attempts to (re)connect


async def _driver_connection(db: Database) -> tuple[AsyncConnection, Any]:
    """A connection of the engine's, kept out of its pool, and its asyncpg connection."""
    conn = await db.engine.connect()
    try:
        raw = await conn.get_raw_connection()
    except BaseException:
        await conn.close()
        raise
    db.held.add(conn)  # closed with the database, whatever happens here
    return conn, raw.driver_connection


async def _drop(db: Database, conn: AsyncConnection | None) -> None:
    """Close a connection of _driver_connection's for good (never back into the pool)."""
    if conn is None:
        return
    db.held.discard(conn)
    with contextlib.suppress(Exception):  # a broken connection is gone all the same
        await conn.invalidate()


class Notifier:
    """The web process's side: NOTIFY after rows were queued (connect it to outbox.Wakeup).

    Wake-ups come one per message, at a hundred a second; those that come while a NOTIFY is
    under way go together in the next (one per channel, urgent if any of them was).
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.waiting: dict[str, bool] = {}  # channel -> urgent
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def __call__(self, channel: str, *, urgent: bool = False) -> None:
        """Rows wait on `channel`: tell the worker (soon, from the loop)."""
        self.waiting[channel] = self.waiting.get(channel, False) or urgent
        self.ready.set()
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run(), name="notify")

    async def _run(self) -> None:
        conn: AsyncConnection | None = None
        driver: Any = None
        try:
            while True:
                await self.ready.wait()
                self.ready.clear()
                waiting, self.waiting = self.waiting, {}
                try:
                    if conn is None:
                        conn, driver = await _driver_connection(self.db)
                    for channel, urgent in waiting.items():
                        # Outside a transaction: delivered at once.
                        await driver.execute(
                            "SELECT pg_notify($1, $2)", CHANNEL, f"{channel} {int(urgent)}"
                        )
                except Exception:  # the worker's look every second finds the rows
                    logger.warning("could not notify the worker", exc_info=True)
                    await _drop(self.db, conn)
                    conn = None
                    await asyncio.sleep(RETRY)
        finally:
            await _drop(self.db, conn)

    async def close(self) -> None:
        """Stop notifying, and close the connection."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None


class Listener:
    """The worker's side: LISTEN on a connection of its own, and call `wake(channel, urgent=)`
    for each notification; connect again when the connection is lost."""

    def __init__(self, db: Database, wake: Callable[..., None], channels: list[str]) -> None:
        self.db = db
        self.wake = wake
        self.channels = channels  # the bot's channels this worker sends
        self.listening = asyncio.Event()  # set while LISTEN holds (for tests)
        self.lost = asyncio.Event()  # set when the connection listening is closed
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Listen from the running loop on."""
        self.task = asyncio.get_running_loop().create_task(self._run(), name="listen")

    def _lost(self, _connection: Any) -> None:
        self.lost.set()

    def _heard(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        channel, _, urgent = payload.partition(" ")
        self.wake(channel, urgent=urgent == "1")

    async def _run(self) -> None:
        while True:
            conn: AsyncConnection | None = None
            try:
                conn, driver = await _driver_connection(self.db)
                lost = self.lost = asyncio.Event()
                driver.add_termination_listener(self._lost)
                await driver.add_listener(CHANNEL, self._heard)
                self.listening.set()
                for channel in self.channels:  # rows queued while no one listened
                    self.wake(channel)
                while not lost.is_set() and not driver.is_closed():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(5.0):
                            await lost.wait()
                logger.warning("lost the connection listening for the web process")
            except Exception:
                logger.warning("could not listen for the web process", exc_info=True)
            finally:
                self.listening.clear()
                await _drop(self.db, conn)
            await asyncio.sleep(RETRY)

    async def close(self) -> None:
        """Stop listening, and close the connection."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
