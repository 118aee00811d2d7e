"""Benchmark: broadcasts through the real sender to a fake Bot API with flood control.

Prints its figures; not a test. The fake runs in its own process on 127.0.0.1 (so that its
memory is not counted as the bot's), and answers 429 past 30 messages in any one second.

(a) at the default 30 messages/s, on the first --paced messages of a broadcast to 10,000
    subscribers: the rate achieved as a fraction of the limit, and the 429 answers provoked;
    meanwhile interactive replies are sent every 0.5 s and (c) their latency measured;
(b) with the limit lifted (no flood control, TELEGRAM_RATE 10000): the sender's rate as a
    fraction of a bare python-telegram-bot send loop against the same fake, and peak memory.

Run: .venv/bin/python benchmarks/broadcast.py [--sizes 10000 100000] [--paced 600]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, select

from bot import bulletins
from bot.config import Settings
from bot.db import upgrade_async
from bot.engine import enqueue
from bot.messages import Address, Outbound
from bot.models import Bulletin, Contact, OutboxMessage
from bot.runtime import running

ROOT = Path(__file__).resolve().parent.parent


def start_fake(flood_limit: int | None) -> tuple[subprocess.Popen[str], str, str]:
    """The fake Bot API in a child process; its base URL and token."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_telegram", str(flood_limit or "none")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    base_url, token = process.stdout.readline().split()
    return process, base_url, token


def stats(base_url: str) -> dict[str, int]:
    """The fake's counters."""
    root = base_url.removesuffix("/bot")
    with urllib.request.urlopen(f"{root}/_fake/stats", timeout=10) as response:
        data: dict[str, int] = json.load(response)
        return data


async def fill(url: str, size: int) -> None:
    """A database with `size` subscribers on Telegram, in the three languages."""
    from bot.db import Database

    await upgrade_async(url)
    db = Database(url)
    now = datetime.now(UTC)
    rows = [
        {
            "address": f"telegram:{10_000_000 + n}",
            "channel": "telegram",
            "locale": ("ar", "ckb", "en")[n % 3],
            "first_seen": now,
            "last_seen": now,
            "subscribed": True,
            "unreachable": False,
        }
        for n in range(size)
    ]
    for start in range(0, size, 5000):
        async with db.transaction() as session:
            await session.execute(insert(Contact), rows[start : start + 5000])
    await db.close()


async def broadcast(
    settings: Settings, base_url: str, target: int, replies: bool
) -> dict[str, float]:
    """Send one bulletin; measure until `target` messages reached the fake."""
    async with running(settings) as bot:
        async with bot.db.transaction() as session:
            bulletin = Bulletin(
                texts={
                    "ar": {"title": "نشرة", "text": "نص النشرة " * 20},
                    "ckb": {"title": "بڵاوکراوە", "text": "دەقی بڵاوکراوە " * 20},
                    "en": {"title": "Bulletin", "text": "The bulletin's text " * 20},
                },
                created_by="bench",
            )
            session.add(bulletin)
            await session.flush()
            await bulletins.publish(session, bulletin, datetime.now(UTC))
            bulletin_id = bulletin.id
        assert bot.scheduler is not None
        queue_start = time.perf_counter()
        await bot.scheduler.queue(bulletin_id)
        queue_seconds = time.perf_counter() - queue_start
        start = time.perf_counter()
        before = (await asyncio.to_thread(stats, base_url))["sent"]
        next_reply = start
        queued_at: dict[str, datetime] = {}
        while True:
            now = time.perf_counter()
            if replies and now >= next_reply:
                chat = f"telegram:{900 + len(queued_at)}"
                async with bot.db.transaction() as session:
                    enqueue(session, [Outbound(Address.parse(chat), "reply")], None)
                queued_at[chat] = datetime.now(UTC)
                bot.sender.wake("telegram", urgent=True)
                next_reply = now + 0.5
            sent = (await asyncio.to_thread(stats, base_url))["sent"] - before
            if sent >= target:
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - start
        await asyncio.sleep(1.0)  # let the last replies out
        latencies = []
        async with bot.db.transaction() as session:
            rows = await session.execute(
                select(OutboxMessage.address, OutboxMessage.sent_at).where(
                    OutboxMessage.address.in_(list(queued_at)),
                    OutboxMessage.sent_at.is_not(None),
                )
            )
            for address, sent_at in rows:
                if sent_at is not None:
                    latencies.append((sent_at - queued_at[address]).total_seconds())
            stopped = await session.get(Bulletin, bulletin_id)
            if stopped is not None:
                await bulletins.stop(session, stopped)
    result = {"seconds": elapsed, "messages": float(target), "queue_seconds": queue_seconds}
    if latencies:
        latencies.sort()
        result["reply_p50"] = statistics.median(latencies)
        result["reply_p95"] = latencies[max(0, int(len(latencies) * 0.95) - 1)]
        result["replies"] = float(len(latencies))
    return result


async def bare_loop(base_url: str, token: str, count: int) -> float:
    """Messages per second of a plain python-telegram-bot send loop to the same fake."""
    from telegram import Bot

    bot = Bot(token, base_url=base_url)
    async with bot:
        start = time.perf_counter()
        for n in range(count):
            await bot.send_message(20_000_000 + n, "The bulletin's text " * 20)
        return count / (time.perf_counter() - start)


def settings_for(folder: str, base_url: str, token: str, rate: float) -> Settings:
    """The bot's settings for one run."""
    return dataclasses.replace(
        Settings(database_url=f"sqlite+aiosqlite:///{folder}/bench.db"),
        telegram_bot_token=token,
        telegram_api_base_url=base_url,
        telegram_file_base_url=base_url.replace("/bot", "/file/bot"),
        telegram_rate=rate,
    )


async def main(sizes: list[int], paced: int) -> None:
    """Run (a), (b) and (c) and print the figures."""
    fake, base_url, token = start_fake(30)
    try:
        with tempfile.TemporaryDirectory() as folder:
            await fill(f"sqlite+aiosqlite:///{folder}/bench.db", 10_000)
            settings = settings_for(folder, base_url, token, 30.0)
            result = await broadcast(settings, base_url, paced, True)
        rate = result["messages"] / result["seconds"]
        hits = stats(base_url)["flood_hits"]
        print(
            f"(a) paced at 30/s, the first {paced} messages of a broadcast to 10,000: "
            f"{rate:.1f} messages/s = {rate / 30:.3f} of the limit; 429 answers: {hits}"
        )
        if "reply_p95" in result:
            print(
                f"(c) interactive replies during that broadcast: {int(result['replies'])}; "
                f"latency p50 {result['reply_p50']:.3f} s, p95 {result['reply_p95']:.3f} s"
            )
    finally:
        fake.terminate()
    for size in sizes:
        fake, base_url, token = start_fake(None)
        try:
            bare = await bare_loop(base_url, token, 2000)
            with tempfile.TemporaryDirectory() as folder:
                await fill(f"sqlite+aiosqlite:///{folder}/bench.db", size)
                settings = settings_for(folder, base_url, token, 10_000.0)
                result = await broadcast(settings, base_url, size, False)
            rate = result["messages"] / result["seconds"]
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"(b) limit lifted, {size:,} subscribers: queued in "
                f"{result['queue_seconds']:.1f} s, sent at {rate:.0f} messages/s; a bare "
                f"python-telegram-bot loop: {bare:.0f}/s; ratio {rate / bare:.2f}; "
                f"peak RSS {rss:.0f} MB"
            )
        finally:
            fake.terminate()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000])
    parser.add_argument("--paced", type=int, default=600)
    args = parser.parse_args()
    asyncio.run(main(args.sizes, args.paced))
