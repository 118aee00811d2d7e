"""Benchmark: export 10,000 and 100,000 reports; prints time and peak memory (not a test).

Run: .venv/bin/python benchmarks/export.py [--sizes 10000 100000]
Each size runs in a fresh process so that peak memory (ru_maxrss) belongs to that size alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert

from bot import exports, gazetteer
from bot.db import Database, upgrade_async
from bot.models import Report


def rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def fill(db: Database, count: int) -> None:
    """Insert `count` plausible reports in batches."""
    rng = random.Random(7)
    districts = [d for g in gazetteer.GOVERNORATES for d in gazetteer.districts_of(g.pcode)]
    now = datetime.now(UTC)
    batch: list[dict[str, object]] = []
    for n in range(count):
        district = rng.choice(districts)
        people = rng.randint(1, 12)
        batch.append(
            {
                "reference": f"R-{n:07d}",
                "locale": rng.choice(["ar", "ckb", "en"]),
                "status": "new",
                "created_at": now,
                "updated_at": now,
                "governorate": district.parent,
                "district": district.pcode,
                "place": f"Camp {n % 300}",
                "latitude": round(district.lat, 2),
                "longitude": round(district.lon, 2),
                "people": people,
                "children": rng.randint(0, people // 2),
                "elderly": 0,
                "disabled": 0,
                "pregnant": 0,
                "female_headed": rng.random() < 0.2,
                "shelter": "camp",
                "needs": ["food", "health"],
                "urgent": "health",
                "notes": "=cmd|' /C calc'!A0" if n % 1000 == 0 else "Winter is coming",
                "contact_ok": False,
            }
        )
        if len(batch) == 5000:
            async with db.transaction() as session:
                await session.execute(insert(Report), batch)
            batch = []
    if batch:
        async with db.transaction() as session:
            await session.execute(insert(Report), batch)


async def measure(count: int, fmt: str) -> None:
    """Fill a fresh database with `count` reports and export them; print the figures."""
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{folder}/bench.db"
        await upgrade_async(url)
        db = Database(url)
        await fill(db, count)
        before = rss_mb()
        start = time.perf_counter()
        with open(os.devnull, "w", encoding="utf-8") as out:  # noqa: ASYNC230
            written = await exports.export(db, exports.Query(private=True), fmt, out, "bench")
        seconds = time.perf_counter() - start
        await db.close()
    print(
        f"{fmt:8} {written:>7} reports  {seconds:6.2f} s  {written / seconds:8.0f} reports/s  "
        f"peak RSS {rss_mb():6.1f} MB (before the export {before:6.1f} MB)"
    )


def main() -> None:
    """Run each size and format in its own process."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--formats", nargs="*", default=["csv", "geojson"])
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "FORMAT"))
    args = parser.parse_args()
    if args.one:
        asyncio.run(measure(int(args.one[0]), args.one[1]))
        return
    for size in args.sizes:
        for fmt in args.formats:
            subprocess.run([sys.executable, __file__, "--one", str(size), fmt], check=True)


if __name__ == "__main__":
    main()
