"""Benchmark: how late people are answered while retention purges 200,000 outbox rows.

Prints its figures; not a test (tests/test_retention.py checks a generous bound). The real
Engine and flows on a fresh SQLite file: --rows sent messages three weeks old (past
retention), then bot.retention.purge runs while new people write /start one after another,
one every --every seconds (never before the last one was answered). Printed, for the purge in
batches (the bot's) and in one statement (--batch 0, as before): how long the purge took, how
many people wrote meanwhile, and how late their answers came (median, 95th percentile, most),
each over --runs runs. The target: every answer within 200 ms.

Run: .venv/bin/python benchmarks/retention.py [--rows 200000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from bot import retention
from bot.config import load_settings
from bot.db import Database, upgrade_async
from bot.engine import Engine
from bot.messages import Address, Inbound
from handlers import build_registry
from tests.test_retention import old_outbox


async def one_run(rows: int, batch: int, every: float) -> tuple[float, list[float]]:
    """A purge with people writing meanwhile: its seconds, and how late each answer came."""
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings({"DATABASE_URL": f"sqlite:///{Path(folder) / 'bench.db'}"})
        await upgrade_async(settings.database_url)
        db = Database(settings.database_url)
        engine = Engine(db, settings, build_registry())
        now = datetime.now(UTC)
        await old_outbox(db, rows, now)  # and one pending
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
    for label, batch in (("in batches", retention.PURGE_BATCH), ("in one statement", 0)):
        took, p50, p95, worst, writes = [], [], [], [], []
        for _run in range(args.runs):
            seconds, late = await one_run(args.rows, batch, args.every)
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
    asyncio.run(main(parser.parse_args()))
