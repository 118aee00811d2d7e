"""A web process and a worker process: one receives and answers into the outbox, one sends."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.fake_telegram import FakeTelegram
from tests.test_telegram_process import SECRET, environment, free_port, start, stop


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


def pending(tmp_path: Path) -> int:
    """Outbox rows waiting to be sent, read straight from the SQLite file."""
    with sqlite3.connect(tmp_path / "bot.db") as conn:
        return int(
            conn.execute("SELECT count(*) FROM outbox WHERE status='pending'").fetchone()[0]
        )


async def test_web_answers_into_the_outbox_and_the_worker_sends(
    tmp_path: Path, telegram: FakeTelegram
) -> None:
    port = free_port()
    env = environment(
        tmp_path,
        telegram,
        PUBLIC_URL="https://bot.example.org",
        TELEGRAM_WEBHOOK_SECRET=SECRET,
        HOST="127.0.0.1",
        PORT=str(port),
    )
    web = await start(["serve", "--role", "web"], env)
    worker = None
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(150):  # until it listens
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            answer = await client.post(
                "/telegram",
                json=telegram.text_update(91, "/start"),
                headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
            )
            assert answer.status_code == 200
        # The web process does not send: the language question waits in the outbox.
        await asyncio.sleep(1.5)
        assert telegram.sent(91) == []
        assert pending(tmp_path) == 1
        worker = await start(["worker"], env)
        [picker] = await telegram.wait_for_sent(1, chat_id=91, timeout=30)
        assert "English" in str(picker["reply_markup"])
        for _ in range(50):  # the outcome is written just after the send
            if pending(tmp_path) == 0:
                break
            await asyncio.sleep(0.1)
        assert pending(tmp_path) == 0
    finally:
        errors = await stop(web)
        if worker is not None:
            errors += await stop(worker)
    assert "Traceback" not in errors
    assert "running as web" in errors
    assert "running as worker" in errors
