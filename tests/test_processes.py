"""Several bot processes on one database: each message sent once.

On PostgreSQL two web processes may run at once: their senders claim the outbox rows they
fetch. Each process here is a Database of its own (its own connections) with its own sender.
SQLite serves one process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from sqlalchemy import select

from bot.config import Settings
from bot.db import Database
from bot.messages import Outbound
from bot.models import OutboxMessage
from bot.sender import ChannelWorker, Sender
from tests.conftest import ON_POSTGRES
from tests.test_sender import FakePlatform, HangingPlatform, queue, rows

postgres_only = pytest.mark.skipif(
    not ON_POSTGRES, reason="SQLite serves one process; several need PostgreSQL"
)
sqlite_only = pytest.mark.skipif(ON_POSTGRES, reason="about SQLite's one process")


class SlowPlatform(FakePlatform):
    """A platform that takes a moment per message, so that two senders overlap."""

    async def deliver(self, message: Outbound) -> str | None:
        await asyncio.sleep(0.01)
        return await super().deliver(message)


async def until(condition: Callable[[], bool]) -> None:
    """Wait until `condition()` holds (checked every 50 ms), 30 s at most."""
    for _ in range(600):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("still not so after 30 s")


async def all_done(db: Database, *senders: Sender) -> None:
    """Wait until no outbox row is pending, 60 s at most."""
    async with asyncio.timeout(60):
        while True:
            for sender in senders:
                await sender.flush("telegram")
            if all(row.status != "pending" for row in await rows(db)):
                return
            await asyncio.sleep(0.05)


@postgres_only
async def test_two_processes_send_each_message_once(db: Database, settings: Settings) -> None:
    expected = [f"m{n}" for n in range(150)]
    await queue(db, *[(str(n), f"m{n}", "broadcast") for n in range(150)])
    other = Database(settings.database_url)
    one, two = SlowPlatform(), SlowPlatform()
    senders = [Sender(db, [one], batch=10), Sender(other, [two], batch=10)]
    try:
        for sender in senders:
            sender.start()
        await all_done(db, *senders)
    finally:
        for sender in senders:
            await sender.stop()
        await other.close()
    assert sorted(one.texts() + two.texts()) == sorted(expected)  # each once
    assert one.texts()
    assert two.texts()  # and both had their share
    assert {(row.status, row.claimed_by) for row in await rows(db)} == {("sent", None)}


@postgres_only
async def test_the_messages_of_a_process_that_died_are_sent_by_another(
    db: Database, settings: Settings
) -> None:
    await queue(db, *[(str(n), f"m{n}", "broadcast") for n in range(6)])
    dying = Database(settings.database_url)
    hung = HangingPlatform(after=0)
    worker = ChannelWorker(dying, hung, claim_lease=3.0)
    await worker.pass_once()  # it claims the six and starts sending; the sends hang
    await asyncio.wait_for(hung.stuck.wait(), timeout=30)
    # The process dies: nothing recorded, nothing given back, its connections gone.
    for task in worker.tasks:
        task.cancel()
    await asyncio.gather(*worker.tasks, return_exceptions=True)
    await dying.close()

    alive = FakePlatform()
    sender = Sender(db, [alive])
    sender.start()
    try:
        await sender.flush("telegram")
        assert alive.texts() == []  # still claimed by the dead process, for a while
        await all_done(db, sender)
    finally:
        await sender.stop()
    assert sorted(alive.texts()) == [f"m{n}" for n in range(6)]
    assert hung.texts() == []


@postgres_only
async def test_a_process_that_stops_gives_its_messages_back_at_once(
    db: Database, settings: Settings
) -> None:
    await queue(db, *[(str(n), f"m{n}", "broadcast") for n in range(6)])
    stopping = Database(settings.database_url)
    hung = HangingPlatform(after=2)
    first = Sender(stopping, [hung])  # the default claim: two minutes
    first.start()
    await asyncio.wait_for(hung.stuck.wait(), timeout=30)
    await first.stop(grace=0.1)
    await stopping.close()

    second = FakePlatform()
    sender = Sender(db, [second])
    sender.start()
    try:
        await all_done(db, sender)
    finally:
        await sender.stop()
    assert sorted(hung.texts() + second.texts()) == [f"m{n}" for n in range(6)]


@sqlite_only
async def test_sqlite_claims_nothing(db: Database) -> None:
    await queue(db, ("1", "hello", "reply"))
    platform = FakePlatform()
    sender = Sender(db, [platform])
    sender.start()
    try:
        await all_done(db, sender)
    finally:
        await sender.stop()
    assert platform.texts() == ["hello"]
    async with db.transaction() as session:
        claims = (await session.execute(select(OutboxMessage.claimed_by))).scalars().all()
    assert claims == [None]
