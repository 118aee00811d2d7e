"""SQLite under load: connections in the loop's thread, another process's lock, taking turns."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from bot import sqlite_driver
from bot.db import Database, Turns
from bot.models import Contact
from tests.conftest import ON_POSTGRES

pytestmark = pytest.mark.skipif(ON_POSTGRES, reason="about SQLite's write lock")


def add_contact(number: int) -> Contact:
    """A contact to write."""
    now = datetime.now(UTC)
    return Contact(address=f"telegram:{number}", channel="telegram", first_seen=now, last_seen=now)


async def contacts(db: Database) -> int:
    """How many contacts the database holds."""
    async with db.transaction() as session:
        return int(await session.scalar(select(func.count(Contact.id))) or 0)


def hold_write_lock(db: Database) -> sqlite3.Connection:
    """Another process's connection, holding SQLite's write lock until it commits."""
    other = sqlite3.connect(make_url(db.url).database or "", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


async def test_a_write_waits_for_another_process_and_the_bot_goes_on_meanwhile(
    db: Database,
) -> None:
    other = hold_write_lock(db)
    try:
        writing = asyncio.create_task(write_one(db, 1))
        ticks = 0
        for _ in range(10):  # the event loop is free while the write waits
            await asyncio.sleep(0.02)
            ticks += 1
        assert not writing.done()
        assert ticks == 10
    finally:
        other.commit()
        other.close()
    await asyncio.wait_for(writing, 10)
    assert await contacts(db) == 1


async def write_one(db: Database, number: int) -> None:
    """One transaction that writes a contact."""
    async with db.transaction() as session:
        session.add(add_contact(number))


async def test_a_lock_held_too_long_is_a_database_error(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_driver, "BUSY_TIMEOUT", 0.3)
    other = hold_write_lock(db)
    try:
        started = time.monotonic()
        with pytest.raises(OperationalError, match="locked"):
            await write_one(db, 1)
        assert time.monotonic() - started >= 0.3
    finally:
        other.rollback()
        other.close()
    await write_one(db, 2)  # the bot writes again once the lock is free
    assert await contacts(db) == 1


async def test_many_concurrent_transactions_all_commit(db: Database) -> None:
    await asyncio.gather(
        *(write_one(db, n) for n in range(100)),
        *(contacts(db) for _ in range(20)),
    )
    assert await contacts(db) == 100
    assert await db.ping()


async def test_a_file_database_has_no_thread_per_connection(tmp_path: Path) -> None:
    import threading

    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    before = threading.active_count()
    try:
        async with db.transaction() as session:
            await session.execute(select(1))
        assert threading.active_count() == before
    finally:
        await db.close()


async def test_turns_alternate_between_the_queues_when_both_wait() -> None:
    turns = Turns()
    order: list[str] = []

    async def take(name: str, behind: bool) -> None:
        await turns.acquire(behind)
        order.append(name)
        await asyncio.sleep(0)
        turns.release()

    await turns.acquire(False)  # held while the others line up
    crowd = [asyncio.create_task(take(f"message {n}", True)) for n in range(4)]
    await asyncio.sleep(0)
    sender = [asyncio.create_task(take(f"sender {n}", False)) for n in range(2)]
    await asyncio.sleep(0)
    turns.release()
    await asyncio.gather(*crowd, *sender)
    assert order == [
        "message 0",
        "sender 0",
        "message 1",
        "sender 1",
        "message 2",
        "message 3",
    ]
    assert not turns.held


async def test_a_cancelled_waiter_passes_its_turn_on() -> None:
    turns = Turns()
    await turns.acquire(False)
    cancelled = asyncio.create_task(turns.acquire(True))
    waiting = asyncio.create_task(turns.acquire(True))
    await asyncio.sleep(0)
    cancelled.cancel()
    turns.release()
    await asyncio.wait_for(waiting, 1)  # the turn went past the cancelled one
    turns.release()
    assert not turns.held


async def test_a_transaction_inside_another_of_the_same_task_is_refused(db: Database) -> None:
    # It would wait for its own turn for ever, and every transaction of the process with it.
    async with db.transaction() as session:
        session.add(add_contact(1))
        with pytest.raises(RuntimeError, match="inside another"):
            async with asyncio.timeout(5):  # in this task (wait_for would make another)
                await write_one(db, 2)
        # Another task's transaction only waits for this one's turn.
        other = asyncio.create_task(write_one(db, 3))
        await asyncio.sleep(0.05)
        assert not other.done()
    await asyncio.wait_for(other, 5)
    assert await contacts(db) == 2
