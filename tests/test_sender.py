"""The sender: replies first, the platform's pace, retries, unreachable people, restarts.

The transport here is a fake of the platform (it records what would have been sent and fails
on cue); the sender, the outbox and the database are the real ones.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import pytest
from sqlalchemy import select

from bot.db import Database
from bot.engine import enqueue
from bot.messages import Address, Outbound, Priority
from bot.models import Contact, OutboxMessage
from bot.sender import Rejected, RetryLater, Sender, Unreachable


class FakePlatform:
    """Records deliveries; `fail` decides, per message, whether to raise instead."""

    channel = "telegram"

    def __init__(self, rate: float = 1000.0, chat_rate: float = 1000.0, chat_burst: int = 100):
        self.rate = rate
        self.chat_rate = chat_rate
        self.chat_burst = chat_burst
        self.sent: list[tuple[float, Outbound]] = []
        self.calls = 0
        self.fail: Callable[[Outbound, int], Exception | None] = lambda message, call: None

    def chat_limit(self, address: str) -> tuple[float, int]:
        return self.chat_rate, self.chat_burst

    async def deliver(self, message: Outbound) -> str | None:
        self.calls += 1
        error = self.fail(message, self.calls)
        if error is not None:
            raise error
        self.sent.append((time.monotonic(), message))
        return f"m{len(self.sent)}"

    def texts(self) -> list[str]:
        return [message.text for _at, message in self.sent]


async def queue(db: Database, *items: tuple[str, str, Priority]) -> None:
    """Put messages in the outbox: (chat id, text, priority)."""
    async with db.transaction() as session:
        for chat, text, priority in items:
            message = Outbound(Address("telegram", chat), text, priority=priority)
            await enqueue(session, [message], None)


async def rows(db: Database) -> list[OutboxMessage]:
    async with db.transaction() as session:
        return list(
            (await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all()
        )


async def run(db: Database, platform: FakePlatform, **options: float) -> Sender:
    """Start a sender and wait until nothing is pending (retries included), 30 s at most."""
    sender = Sender(db, [platform], **options)
    sender.start()
    for _ in range(600):
        await sender.flush("telegram")
        if all(row.status != "pending" for row in await rows(db)):
            break
        await asyncio.sleep(0.05)
    return sender


async def test_replies_go_before_broadcasts(db: Database) -> None:
    await queue(db, *[(str(n), f"bulletin {n}", "broadcast") for n in range(5)])
    await queue(db, ("99", "reply", "reply"), ("98", "notice", "notice"))
    platform = FakePlatform()
    sender = await run(db, platform)
    await sender.stop()
    assert platform.texts()[:2] == ["reply", "notice"]
    assert sorted(platform.texts()[2:]) == [f"bulletin {n}" for n in range(5)]
    assert {row.status for row in await rows(db)} == {"sent"}
    assert all(row.platform_message_id for row in await rows(db))


async def test_one_chat_keeps_its_order(db: Database) -> None:
    await queue(db, *[("7", f"part {n}", "reply") for n in range(12)])
    platform = FakePlatform(chat_rate=200.0, chat_burst=3)
    sender = await run(db, platform)
    await sender.stop()
    assert platform.texts() == [f"part {n}" for n in range(12)]


async def test_the_overall_pace_is_kept(db: Database) -> None:
    await queue(db, *[(str(n), "hello", "broadcast") for n in range(21)])
    platform = FakePlatform(rate=50.0)
    sender = await run(db, platform)
    await sender.stop()
    times = [at for at, _message in platform.sent]
    assert len(times) == 21
    # Evenly spaced at 50/s: 20 intervals take at least 0.4 s (less would trip flood control).
    assert times[-1] - times[0] >= 0.38


class FloodPlatform(FakePlatform):
    """Counts each message when it arrives, a random moment after it left and before its
    answer, and answers RetryLater past `rate` messages in any one second, like Telegram."""

    def __init__(self, rate: float) -> None:
        super().__init__(rate=rate)
        self.arrivals: list[float] = []
        self.random = random.Random(6)

    async def deliver(self, message: Outbound) -> str | None:
        await asyncio.sleep(self.random.uniform(0.0, 0.15))  # on its way
        now = time.monotonic()
        if sum(1 for at in self.arrivals if now - at < 1.0) >= self.rate:
            raise RetryLater(1.0)
        self.arrivals.append(now)
        answer = await super().deliver(message)
        await asyncio.sleep(self.random.uniform(0.0, 0.02))  # the answer on its way back
        return answer


async def test_the_platform_never_counts_too_many_in_a_second(db: Database) -> None:
    await queue(db, *[(str(n), f"bulletin {n}", "broadcast") for n in range(45)])
    platform = FloodPlatform(rate=20.0)
    sender = await run(db, platform)
    await sender.stop()
    assert sorted(platform.texts()) == sorted(f"bulletin {n}" for n in range(45))
    stored = await rows(db)
    assert {row.status for row in stored} == {"sent"}
    assert all(row.attempts == 1 and row.error is None for row in stored)  # no RetryLater


async def test_retry_after_holds_the_channel_and_sends_once(db: Database) -> None:
    await queue(db, ("1", "first", "reply"), ("2", "second", "reply"))
    platform = FakePlatform()
    platform.fail = lambda message, call: RetryLater(0.5) if call == 1 else None
    sender = await run(db, platform)
    await sender.stop()
    assert sorted(platform.texts()) == ["first", "second"]
    stored = await rows(db)
    assert {row.status for row in stored} == {"sent"}
    assert all(row.attempts == 1 for row in stored)  # waiting is not the message's fault


async def test_a_blocked_user_is_marked_and_skipped(db: Database) -> None:
    async with db.transaction() as session:
        session.add(Contact(address="telegram:5", channel="telegram", locale="ar"))
    await queue(db, ("5", "one", "reply"), ("5", "two", "reply"), ("6", "other", "reply"))
    platform = FakePlatform()
    platform.fail = lambda message, call: (
        Unreachable("Forbidden: bot was blocked by the user")
        if message.address.id == "5"
        else None
    )
    sender = await run(db, platform)
    await sender.stop()
    assert platform.texts() == ["other"]
    stored = await rows(db)
    assert [row.status for row in stored] == ["unreachable", "unreachable", "sent"]
    assert "blocked" in (stored[0].error or "")
    async with db.transaction() as session:
        contact = await session.scalar(select(Contact).where(Contact.address == "telegram:5"))
        assert contact is not None
        assert contact.unreachable
        assert "blocked" in (contact.unreachable_reason or "")


async def test_network_errors_are_retried_with_backoff(db: Database) -> None:
    await queue(db, ("1", "hello", "reply"))
    platform = FakePlatform()
    platform.fail = lambda message, call: ConnectionError("reset") if call <= 2 else None
    sender = await run(db, platform, backoff=0.1)
    await sender.stop()
    assert platform.texts() == ["hello"]
    [row] = await rows(db)
    assert (row.status, row.attempts) == ("sent", 3)


async def test_giving_up_is_recorded(db: Database) -> None:
    await queue(db, ("1", "hello", "reply"))
    platform = FakePlatform()
    platform.fail = lambda message, call: ConnectionError("down")
    sender = await run(db, platform, backoff=0.01, max_attempts=3)
    await sender.stop()
    [row] = await rows(db)
    assert (row.status, row.attempts) == ("failed", 3)
    assert "down" in (row.error or "")
    assert platform.calls == 3


async def test_a_rejected_message_fails_alone(db: Database) -> None:
    await queue(db, ("1", "bad", "reply"), ("2", "good", "reply"))
    platform = FakePlatform()
    platform.fail = lambda message, call: (
        Rejected("Bad Request") if message.text == "bad" else None
    )
    sender = await run(db, platform)
    await sender.stop()
    assert platform.texts() == ["good"]
    assert [row.status for row in await rows(db)] == ["failed", "sent"]


@pytest.mark.parametrize("sent_before_crash", [0, 3])
async def test_after_a_crash_only_the_unsent_go(db: Database, sent_before_crash: int) -> None:
    await queue(db, *[(str(n), f"m{n}", "broadcast") for n in range(6)])
    first = HangingPlatform(after=sent_before_crash)
    sender = Sender(db, [first])
    sender.start()
    await asyncio.wait_for(first.stuck.wait(), timeout=30)
    await sender.stop(grace=0.1)  # the process dies with a send in flight

    second = FakePlatform()
    sender = await run(db, second)
    await sender.stop()
    assert len(first.texts()) == sent_before_crash
    assert sorted(first.texts() + second.texts()) == [f"m{n}" for n in range(6)]
    assert {row.status for row in await rows(db)} == {"sent"}


class HangingPlatform(FakePlatform):
    """Delivers `after` messages, then hangs like a dead connection."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after
        self.stuck = asyncio.Event()

    async def deliver(self, message: Outbound) -> str | None:
        if len(self.sent) >= self.after:
            self.stuck.set()
            await asyncio.sleep(3600)
        return await super().deliver(message)


# One outcome waits a moment for others to be written with it; three (half the slots) do not.
@pytest.mark.parametrize("sent", [1, 3])
async def test_outcomes_are_written_while_other_sends_hang(db: Database, sent: int) -> None:
    await queue(db, *[(str(n), f"m{n}", "broadcast") for n in range(6)])
    platform = HangingPlatform(after=sent)
    sender = Sender(db, [platform])
    sender.start()
    await asyncio.wait_for(platform.stuck.wait(), timeout=30)
    for _ in range(100):  # a crash now must not send these again
        if [row.status for row in await rows(db)].count("sent") == sent:
            break
        await asyncio.sleep(0.05)
    assert [row.status for row in await rows(db)].count("sent") == sent
    await sender.stop(grace=0.1)


async def test_flush_waits_for_a_row_locked_for_a_moment(db: Database) -> None:
    """A row another transaction holds (a status callback being written to it) is skipped by
    the PostgreSQL claim; flush() must still wait until it is sent, as a conversation's reply."""
    if db.is_sqlite:
        pytest.skip("about PostgreSQL's SKIP LOCKED; SQLite has no row locks")
    platform = FakePlatform()
    sender = Sender(db, [platform])
    sender.start()
    try:
        await sender.flush("telegram")  # the worker is up and idle
        await queue(db, ("5", "the reply", "reply"))
        async with db.engine.connect() as other:
            locking = await other.begin()
            await other.execute(
                select(OutboxMessage.id)
                .where(OutboxMessage.address == "telegram:5")
                .with_for_update()
            )
            flushed = asyncio.ensure_future(sender.flush("telegram"))
            # While the row is held, the worker must keep looking (not call itself idle).
            done, _ = await asyncio.wait({flushed}, timeout=1.0)
            assert not done, "flush() returned while the reply waited behind a row lock"
            await locking.rollback()
        await asyncio.wait_for(flushed, timeout=20)
        assert platform.texts() == ["the reply"]
    finally:
        await sender.stop()
