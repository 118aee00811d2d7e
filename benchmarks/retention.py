"""Benchmark: how late people are answered while retention purges 200,000 outbox rows.

Prints its figures; not a test (tests/test_retention.py checks a generous bound). The real
Engine and flows on a fresh SQLite file: --rows sent messages three weeks old (past
retention), then bot.retention.purge runs while new people write /start one after another,
one every --every seconds (never before the last one was answered). Printed, for the purge in
batches (the bot's) and in one statement (--batch 0, as before): how long the purge took, how
many people wrote meanwhile, and how late their answers came (median, 95th percentile, most),
each over --runs runs. The target: every answer within 200 ms. With --bulletins N, a third
line: the same rows as the deliveries of N bulletins (a tenth of them failed), which the purge
counts into the bulletins' tallies as it deletes them.

Run: .venv/bin/python benchmarks/retention.py [--rows 200000] [--runs 3] [--bulletins 20]
[--batches-only]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from sqlalchemy import update

from bot import retention
from bot.config import load_settings
from bot.db import Database, upgrade_async
from bot.engine import Engine
from bot.messages import Address, Inbound
from bot.models import Bulletin, OutboxMessage
from handlers import build_registry
from tests.test_retention import old_outbox


async def as_deliveries(db: Database, count: int, now: datetime) -> None:
    """Make the old outbox rows the deliveries of `count` bulletins, sent a minute apart, a
    tenth of them failed."""
    async with db.transaction() as session:
        sent = now - timedelta(days=21)
        made = [
            Bulletin(
                texts={"ar": {"title": "t", "text": "x"}},
                created_by="b",
                status="sent",
                published_at=sent,
            )
            for _n in range(count)
        ]
        session.add_all(made)
        await session.flush()
        first = made[0].id
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.status != "pending")
            .values(
                bulletin_id=first + OutboxMessage.id % count,
                locale="ar",
                sent_at=sent,
                delivered_at=sent + timedelta(minutes=1),
            )
        )
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.status != "pending", OutboxMessage.id % 10 == 0)
            .values(
                status="failed",
                error="Forbidden: bot was blocked by the user",
                sent_at=None,
                delivered_at=None,
                failed_at=sent,
            )
        )


async def one_run(
    rows: int, batch: int, every: float, bulletins: int = 0
) -> tuple[float, list[float]]:
    """A purge with people writing meanwhile: its seconds, and how late each answer came."""
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings({"DATABASE_URL": f"sqlite:///{Path(folder) / 'bench.db'}"})
        await upgrade_async(settings.database_url)
        db = Database(settings.database_url)
        engine = Engine(db, settings, build_registry())
        now = datetime.now(UTC)
        await old_outbox(db, rows, now)  # and one pending
        if bulletins:
            await as_deliveries(db, bulletins, now)
        loop = asyncio.get_running_loop()
        began = time.perf_counter()
        purge = asyncio.create_task(
            retention.purge(db, settings, now, batch=batch or 1_000_000_000)
        )
        late: list[float] = []
        started = answered = loop.time()
        for n in range(1_000_000):
            due = max(started + n * every, answered)
            await asyncio.sleep(max(0.0, due - loop.time()))
            if purge.done():
                break
            address = Address("telegram", str(900_000 + n))
            await engine.handle(
                Inbound(address, f"m{n}", kind="command", text="/start", command="start")
            )
            answered = loop.time()
            late.append(answered - due)
        await purge
        took = time.perf_counter() - began
        await db.close()
    return took, late


def spread(values: list[float]) -> str:
    """Median and range, in milliseconds."""
    return (
        f"{1000 * statistics.median(values):.0f} ms "
        f"({1000 * min(values):.0f}-{1000 * max(values):.0f})"
    )


async def main(args: argparse.Namespace) -> None:
    """Each way of purging, --runs times; the figures."""
    print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} at the start")
    ways = [("in batches", retention.PURGE_BATCH, 0), ("in one statement", 0, 0)]
    if args.bulletins:
        label = f"in batches, deliveries of {args.bulletins} bulletins counted into tallies"
        ways.append((label, retention.PURGE_BATCH, args.bulletins))
    if args.batches_only:
        ways = [way for way in ways if way[1]]
    for label, batch, bulletins in ways:
        took, p50, p95, worst, writes = [], [], [], [], []
        for _run in range(args.runs):
            seconds, late = await one_run(args.rows, batch, args.every, bulletins)
            ordered = sorted(late)
            took.append(seconds)
            writes.append(len(late))
            p50.append(ordered[len(ordered) // 2])
            p95.append(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))])
            worst.append(ordered[-1])
        print(
            f"purge of {args.rows:,} rows {label} (batch {batch or 'all'}), {args.runs} runs: "
            f"took {statistics.median(took):.2f} s ({min(took):.2f}-{max(took):.2f}); "
            f"{min(writes)}-{max(writes)} people wrote meanwhile; answers late by: "
            f"median {spread(p50)}, p95 {spread(p95)}, most {spread(worst)}"
        )
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--every", type=float, default=0.02, help="seconds between two people")
    parser.add_argument("--bulletins", type=int, default=0, help="the rows as their deliveries")
    parser.add_argument(
        "--batches-only", action="store_true", help="without the one statement's line"
    )
    asyncio.run(main(parser.parse_args()))
