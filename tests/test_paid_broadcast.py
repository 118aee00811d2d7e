"""Telegram's paid broadcasts (TELEGRAM_PAID_BROADCAST): bulletins only, and the free 30 a second
again, the broadcast going on, once the bot's Stars run out.

The real python-telegram-bot Application and sender against the fake Bot API on loopback, which
charges 0.1 Star for each message sent with allow_paid_broadcast and refuses them (400) when the
balance is spent, and answers 429 past 30 free messages in any second.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from bot import bulletins
from bot.config import ConfigError, Settings, load_settings
from bot.db import Database
from bot.inflight import bound
from bot.models import Bulletin, OutboxMessage
from bot.runtime import running
from tests.fake_telegram import FakeTelegram
from tests.helpers import until
from tests.test_faults import subscribe
from tests.test_telegram import TelegramUser

FIRST = 5_000_000  # the subscribers' chats
TEXTS = {
    "ar": {"title": "نشرة", "text": "نص النشرة"},
    "ckb": {"title": "بڵاوکراوە", "text": "دەقی بڵاوکراوە"},
    "en": {"title": "Bulletin", "text": "The bulletin's text"},
}


def test_paid_broadcasts_need_a_rate_above_the_free_limit() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"TELEGRAM_PAID_BROADCAST": "true"})  # the default 30 a second
    assert raised.value.variable == "TELEGRAM_RATE"
    assert "more than 30" in str(raised.value)
    with pytest.raises(ConfigError):
        load_settings({"TELEGRAM_PAID_BROADCAST": "true", "TELEGRAM_RATE": "30"})
    paid = load_settings({"TELEGRAM_PAID_BROADCAST": "yes", "TELEGRAM_RATE": "1000"})
    assert paid.telegram_paid_broadcast
    assert paid.telegram_rate == 1000.0
    assert not load_settings({"TELEGRAM_RATE": "1000"}).telegram_paid_broadcast


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    """The Bot API with 5 Stars on the bot's balance: 50 paid messages."""
    async with FakeTelegram(flood_limit=30, stars=5.0) as server:
        yield server
        assert server.errors == []


async def publish(db: Database) -> int:
    """A bulletin published now; its id."""
    async with db.transaction() as session:
        bulletin = Bulletin(texts=TEXTS, created_by="test")
        session.add(bulletin)
        await session.flush()
        await bulletins.publish(session, bulletin, datetime.now(UTC))
        return int(bulletin.id)


async def statuses(db: Database, bulletin_id: int) -> Counter[str]:
    """The bulletin's deliveries by status."""
    async with db.transaction() as session:
        rows = await session.scalars(
            select(OutboxMessage.status).where(OutboxMessage.bulletin_id == bulletin_id)
        )
        return Counter(rows)


async def test_a_broadcast_goes_on_at_the_free_limit_when_the_stars_run_out(
    settings: Settings, fake: FakeTelegram, db: Database
) -> None:
    people = await subscribe(db, FIRST, 120)
    paid = dataclasses.replace(
        settings,
        telegram_bot_token=fake.token,
        telegram_api_base_url=fake.base_url,
        telegram_file_base_url=fake.base_file_url,
        telegram_chat_rate=200.0,
        telegram_rate=1000.0,
        telegram_paid_broadcast=True,
    )
    async with running(paid) as bot:
        user = TelegramUser(fake)
        await user.say("/start")  # a reply: never paid for
        bulletin_id = await publish(db)
        assert bot.scheduler is not None
        await bot.scheduler.sync()
        await until(lambda: fake.sent_count >= len(people) + 1, "the bulletin sent to everyone")
        await until(lambda: _all_sent(db, bulletin_id), "every delivery written")

    # Everyone got it once: the refused messages went again, at the free limit.
    got = Counter(int(message["chat"]["id"]) for message in fake.sent())
    assert {chat: got[chat] for chat in people} == dict.fromkeys(people, 1)
    assert await statuses(db, bulletin_id) == Counter({"sent": len(people)})
    # 50 paid for, then refused; none after the sender knew (those already on their way may
    # be refused too: at most the sends in flight).
    assert fake.paid_sent == 50
    assert 1 <= fake.paid_refused <= bound(1000.0)
    sends = [call for call in fake.calls if call.method == "sendMessage"]
    paid_calls = [call for call in sends if call.params.get("allow_paid_broadcast")]
    assert len(paid_calls) == fake.paid_sent + fake.paid_refused
    # Never a reply paid for, nor any message after the fallback.
    assert all(int(call.params["chat_id"]) in people for call in paid_calls)
    last_paid = max(call.at for call in paid_calls)
    after = [call for call in sends if call.at > last_paid]
    assert len(after) >= len(people) - 50
    assert not any(call.params.get("allow_paid_broadcast") for call in after)
    assert fake.flood_hits == 0  # the free limit kept after the fallback


async def _all_sent(db: Database, bulletin_id: int) -> bool:
    """Whether none of the bulletin's deliveries is pending."""
    return "pending" not in await statuses(db, bulletin_id)
