"""A web process and a worker process: one receives and answers into the outbox, one sends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select

from bot.db import Database
from bot.models import OutboxMessage
from tests.fake_telegram import FakeTelegram
from tests.net import free_port, healthy
from tests.test_telegram_process import SECRET, start, stop, web_environment


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


async def pending(db_url: str) -> int:
    """Outbox rows waiting to be sent, read from the database."""
    db = Database(db_url)
    try:
        async with db.transaction() as session:
            return int(
                await session.scalar(
                    select(func.count(OutboxMessage.id)).where(OutboxMessage.status == "pending")
                )
                or 0
            )
    finally:
        await db.close()


async def test_web_answers_into_the_outbox_and_the_worker_sends(
    db_url: str, telegram: FakeTelegram
) -> None:
    port = free_port()
    env = web_environment(db_url, telegram, port)
    web = await start(["serve", "--role", "web"], env)
    worker = None
    try:
        await healthy(port)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            answer = await client.post(
                "/telegram",
                json=telegram.text_update(91, "/start"),
                headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
            )
            assert answer.status_code == 200
        # The web process does not send: the language question waits in the outbox.
        await asyncio.sleep(1.5)
        assert telegram.sent(91) == []
        assert await pending(db_url) == 1
        worker = await start(["worker"], env)
        [picker] = await telegram.wait_for_sent(1, chat_id=91, timeout=30)
        assert "English" in str(picker["reply_markup"])
        for _ in range(50):  # the outcome is written just after the send
            if await pending(db_url) == 0:
                break
            await asyncio.sleep(0.1)
        assert await pending(db_url) == 0
    finally:
        errors = await stop(web)
        if worker is not None:
            errors += await stop(worker)
    assert "Traceback" not in errors
    assert "running as web" in errors
    assert "running as worker" in errors
