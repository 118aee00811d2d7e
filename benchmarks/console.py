"""Benchmark: the console's reports page (filtered, paged) and the map's aggregate, with
100,000 reports; prints p50 and p95 per request and the rows behind them.

The real app on uvicorn on 127.0.0.1, signed in as a coordinator, asked over HTTP one request
at a time (a coordinator's browser), on a fresh SQLite file or a database on --postgres's server.
Reports are spread over every district, the ten needs and the six statuses, over a year.

Run: .venv/bin/python benchmarks/console.py [--reports 100000] [--requests 40]
     [--postgres postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import uvicorn
from inbound import database  # beside this script
from sqlalchemy import insert

from bot import gazetteer, roles, signin
from bot.config import NEEDS, Settings, load_settings
from bot.db import Database, upgrade_async
from bot.models import Report
from bot.reports import STATUS_LABELS
from bot.web import create_app

BATCH = 5_000


async def fill(db: Database, count: int) -> None:
    """`count` anonymous reports, as families would have sent them over a year."""
    rng = random.Random(7)
    districts = [d for ds in gazetteer.DISTRICTS.values() for d in ds]
    statuses = list(STATUS_LABELS)
    start = datetime.now(UTC) - timedelta(days=365)
    for first in range(0, count, BATCH):
        rows = []
        for n in range(first, min(count, first + BATCH)):
            where = rng.choice(districts)
            needs = rng.sample(NEEDS, rng.randint(1, 4))
            rows.append(
                {
                    "reference": f"R-{n:07d}",
                    "locale": "ar",
                    "status": rng.choice(statuses),
                    "created_at": start + timedelta(seconds=rng.randint(0, 365 * 86400)),
                    "updated_at": start,
                    "governorate": where.parent,
                    "district": where.pcode,
                    "people": rng.randint(1, 12),
                    "shelter": "camp",
                    "needs": needs,
                    "urgent": needs[0],
                    "contact_ok": False,
                }
            )
        async with db.transaction() as session:
            await session.execute(insert(Report), rows)


def percentile(values: list[float], share: float) -> float:
    """The value below which `share` of the values lie."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run(kind: str, url: str, reports: int, requests: int) -> None:
    """Fill, serve, ask, print."""
    settings = Settings(database_url=load_settings({"DATABASE_URL": url}).database_url)
    await upgrade_async(settings.database_url)
    db = Database(settings.database_url)
    began = time.perf_counter()
    await fill(db, reports)
    filled = time.perf_counter() - began
    async with db.transaction() as session:
        await roles.set_role(session, "telegram:1", "coordinator", "benchmark")
        link = await signin.new_link(session, settings, "telegram:1")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(db, settings=settings),
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
        )
    )
    serving = asyncio.create_task(server.serve())
    async with asyncio.timeout(30):
        while not server.started:  # noqa: ASYNC110 (uvicorn says it only by this flag)
            await asyncio.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    pages = {
        "reports, a governorate and a need, page 3": (
            "/console/reports",
            {"governorate": "IQG09", "need": "health", "page": "2"},
        ),
        "reports, a status and a date range": (
            "/console/reports",
            {"status": "new", "since": "2026-03-01", "until": "2026-09-30"},
        ),
        "reports, no filter, page 40": ("/console/reports", {"page": "39"}),
        "map aggregate, no filter": ("/console/map.json", {}),
        "map aggregate, a need": ("/console/map.json", {"need": "water"}),
    }
    print(
        f"{kind}: {reports:,} reports (filled in {filled:.1f} s); {requests} requests each, "
        "one at a time"
    )
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        answer = await client.post(link.removeprefix(signin.base_url(settings)))
        assert answer.status_code == 303, answer.status_code
        for label, (path, params) in pages.items():
            times = []
            for _ in range(requests):
                began = time.perf_counter()
                response = await client.get(path, params=params)
                times.append((time.perf_counter() - began) * 1000)
                assert response.status_code == 200, (label, response.status_code)
            print(
                f"  {label:45s} p50 {statistics.median(times):6.1f} ms   "
                f"p95 {percentile(times, 0.95):6.1f} ms   max {max(times):6.1f} ms"
            )
    server.should_exit = True
    await serving
    await db.close()


async def main() -> None:
    """Parse the arguments and run on each database asked for."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reports", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--postgres", help="a PostgreSQL server's URL: run there too")
    args = parser.parse_args()
    kinds = ["sqlite"] + (["postgresql"] if args.postgres else [])
    for kind in kinds:
        with tempfile.TemporaryDirectory() as folder:
            async with database(kind, Path(folder), args.postgres) as url:
                await run(kind, url, args.reports, args.requests)


if __name__ == "__main__":
    asyncio.run(main())
