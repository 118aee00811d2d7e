"""Benchmark: targeted bulletins with 100,000 subscribers; prints the median and range of runs.

What a targeted bulletin adds to the work: (1) the audience the desk counts as the editor types
(bot.bulletins.audience, every subscriber or those of two governorates); (2) queueing the
deliveries (bot.bulletins.queue_deliveries, to every subscriber or to those of two
governorates, which picks them with the same rule); (3) the delivery chart of a bulletin sent
to all of them (the desk's timeline, streamed from the ledger). Subscribers are spread as people
would choose: 70 % all of Iraq, the others one to three governorates; Telegram and WhatsApp,
the three languages, half of WhatsApp outside the 24-hour window. A fresh SQLite file, or a new
database on --postgres's server; each figure is measured --runs times on the same data.

Run: .venv/bin/python benchmarks/targets.py [--subscribers 100000] [--runs 5]
     [--postgres postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inbound import database  # beside this script
from sqlalchemy import delete, insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot import bulletins, gazetteer
from bot.config import Settings, load_settings
from bot.db import Database, upgrade_async
from bot.models import Bulletin, Contact, OutboxMessage

BATCH = 5_000
TWO = ["IQG09", "IQG15"]  # Duhok and Ninewa


async def fill(db: Database, count: int) -> None:
    """`count` subscribers, their languages, channels and chosen governorates spread."""
    rng = random.Random(11)
    codes = [g.pcode for g in gazetteer.GOVERNORATES]
    now = datetime.now(UTC)
    for first in range(0, count, BATCH):
        rows = []
        for n in range(first, min(count, first + BATCH)):
            channel = "telegram" if n % 3 else "whatsapp"
            chosen = None if rng.random() < 0.7 else sorted(rng.sample(codes, rng.randint(1, 3)))
            rows.append(
                {
                    "address": f"{channel}:{'+964770' if channel == 'whatsapp' else ''}{n:07d}",
                    "channel": channel,
                    "locale": rng.choice(("ar", "ar", "ckb", "en")),
                    "subscribed": True,
                    "unreachable": False,
                    "bulletin_places": " ".join(chosen) if chosen else None,
                    "first_seen": now,
                    "last_seen": now,
                    "last_inbound_at": now - timedelta(hours=rng.choice((1, 30))),
                }
            )
        async with db.transaction() as session:
            await session.execute(insert(Contact), rows)


async def timed(runs: int, work: Callable[[], Awaitable[object]]) -> list[float]:
    """Seconds each of `runs` calls of `work` took."""
    found = []
    for _ in range(runs):
        started = time.perf_counter()
        await work()
        found.append(time.perf_counter() - started)
    return found


def line(name: str, seconds: list[float], extra: str = "") -> None:
    """One figure: the median and the range, in ms."""
    ms = [s * 1000 for s in seconds]
    print(
        f"{name:<48} median {statistics.median(ms):8.1f} ms  "
        f"(range {min(ms):.1f}-{max(ms):.1f}, {len(ms)} runs) {extra}",
        flush=True,
    )


async def run(kind: str, url: str, subscribers: int, runs: int) -> None:
    """Fill, measure, print."""
    settings = Settings(database_url=load_settings({"DATABASE_URL": url}).database_url)
    await upgrade_async(settings.database_url)
    db = Database(settings.database_url)
    try:
        await fill(db, subscribers)
        print(f"{kind}: {subscribers:,} subscribers", flush=True)
        counts: dict[str, int] = {}

        async def count(places: list[str]) -> None:
            async with db.transaction() as session:
                found = await bulletins.audience(session, ["ar", "en"], places)
            counts[",".join(places) or "all"] = found.total

        line("audience, every subscriber", await timed(runs, lambda: count([])))
        line("audience, two governorates", await timed(runs, lambda: count(TWO)))
        print(f"   reached: {counts}", flush=True)

        async def queue(places: list[str]) -> None:
            now = datetime.now(UTC)
            async with db.transaction() as session:
                bulletin = Bulletin(
                    texts={"ar": {"title": "t", "text": "x"}}, places=places, created_by="b"
                )
                session.add(bulletin)
                await session.flush()
                await bulletins.publish(session, bulletin, now)
                ident = bulletin.id
            queued = await bulletins.queue_deliveries(db, ident, now)
            queued_to[",".join(places) or "all"] = queued
            async with db.transaction() as session:  # the next run starts from none
                await session.execute(delete(OutboxMessage))

        queued_to: dict[str, int] = {}
        line("queue deliveries, every subscriber", await timed(runs, lambda: queue([])))
        line("queue deliveries, two governorates", await timed(runs, lambda: queue(TWO)))
        print(f"   queued: {queued_to}", flush=True)

        # The chart of a bulletin sent to everyone: every row sent, a third delivered.
        now = datetime.now(UTC)
        async with db.transaction() as session:
            bulletin = Bulletin(texts={"ar": {"title": "t", "text": "x"}}, created_by="b")
            session.add(bulletin)
            await session.flush()
            await bulletins.publish(session, bulletin, now)
            ident = bulletin.id
        await bulletins.queue_deliveries(db, ident, now)
        async with db.transaction() as session:
            await session.execute(
                update(OutboxMessage).values(status="sent", sent_at=now, delivered_at=None)
            )
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id % 3 == 0)
                .values(delivered_at=now + timedelta(seconds=30))
            )

        async def chart() -> None:
            async with db.read() as connection, AsyncSession(bind=connection) as session:
                await bulletins.timeline(session, ident)

        line("delivery chart, every subscriber's row", await timed(runs, chart))
    finally:
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--postgres", default=None)
    args = parser.parse_args()

    async def both() -> None:
        with tempfile.TemporaryDirectory() as folder:
            kinds = ["sqlite", *(["postgresql"] if args.postgres else [])]
            for kind in kinds:
                async with database(kind, Path(folder), args.postgres) as url:
                    await run(kind, url, args.subscribers, args.runs)

    asyncio.run(both())


if __name__ == "__main__":
    main()
