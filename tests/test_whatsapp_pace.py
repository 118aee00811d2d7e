"""WhatsApp's pace: Twilio's "too many requests" holds the whole channel, as Telegram's RetryAfter
does, and the status callbacks, however late, never hold the sender.

The whole bot (its web app on 127.0.0.1) against the fake Twilio REST API on loopback.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.config import Settings
from bot.db import Database
from bot.models import OutboxMessage
from bot.runtime import Bot
from tests.fake_twilio import FakeTwilio
from tests.net import free_port
from tests.test_whatsapp import TEXTS, listening, publish, subscriber, with_twilio

NUMBERS = [f"+96477055{n:05}" for n in range(60)]
WAIT = 60.0  # seconds: a deadline for what takes a few, on a busy shared machine


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilio]:
    """Twilio answering in 0.2 to 0.4 s, as from Iraq."""
    async with FakeTwilio(delay=0.3, jitter=0.2) as twilio:
        yield twilio
        assert twilio.errors == []


@pytest.fixture
async def bot(fake: FakeTwilio, settings: Settings, db: Database) -> AsyncIterator[Bot]:
    """The whole bot with WhatsApp only, at Twilio's 80 messages a second."""
    port = free_port()
    async with listening(with_twilio(settings, fake, port, twilio_rate=80.0), port) as started:
        yield started


async def deliveries(db: Database, bulletin_id: int) -> list[tuple[str, int]]:
    """The bulletin's rows: (status, attempts)."""
    async with db.transaction() as session:
        rows = await session.execute(
            select(OutboxMessage.status, OutboxMessage.attempts).where(
                OutboxMessage.bulletin_id == bulletin_id
            )
        )
        return [(status, attempts) for status, attempts in rows]


async def broadcast(bot: Bot, db: Database) -> int:
    """A bulletin to everyone of NUMBERS (who wrote an hour ago), sent to the end; its id."""
    for number in NUMBERS:
        await subscriber(db, number, "en", timedelta(hours=1))
    bulletin_id = await publish(db, TEXTS)
    async with asyncio.timeout(WAIT):
        while any(status == "pending" for status, _n in await deliveries(db, bulletin_id)):
            bot.sender.wake("whatsapp")
            await bot.sender.flush("whatsapp")
    return bulletin_id


@pytest.mark.parametrize(("status", "code"), [(429, 20429), (400, 20429)])
async def test_too_many_requests_holds_the_whole_channel(
    fake: FakeTwilio, bot: Bot, db: Database, status: int, code: int
) -> None:
    fake.fail_next(1, status=status, code=code)
    bulletin_id = await broadcast(bot, db)
    # Everyone once; waiting was not the message's fault.
    assert sorted(message.to for message in fake.sent()) == [f"whatsapp:{n}" for n in NUMBERS]
    assert await deliveries(db, bulletin_id) == [("sent", 1)] * len(NUMBERS)
    [refused] = [call for call in fake.calls if call.status == status]
    # The whole channel waited the second Twilio asked for, from its answer: nothing arrived
    # then but what was on its way (sends begun before it, the 24-hour window read from the
    # database on the way: 0.45 s allowed for them on a busy machine) ...
    told = refused.answered_at
    arrived = [call.at - told for call in fake.calls if call is not refused]
    assert [at for at in arrived if 0.45 < at < 0.95] == []
    # ... and the rest went after it (at 80 a second, never stopped otherwise).
    assert len([at for at in arrived if at >= 0.95]) >= 10


async def test_late_status_callbacks_do_not_hold_the_sender(
    fake: FakeTwilio, bot: Bot, db: Database
) -> None:
    fake.callback_delay = 30.0  # the status callbacks come half a minute late
    bulletin_id = await broadcast(bot, db)
    assert await deliveries(db, bulletin_id) == [("sent", 1)] * len(NUMBERS)
    assert fake.callbacks == []  # all sent before the first of them came
