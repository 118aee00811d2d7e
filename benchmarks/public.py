"""Benchmark: the public pages /signatories and /bulletins under 200 requests a second; prints
the rate achieved and p50/p95/p99 per page, for several runs, with their median and spread.

The real app runs in its own uvicorn process on 127.0.0.1, on a SQLite file filled with 2,000
verified organizations and 500 published bulletins in three languages. The load is an open
loop (requests start on a schedule whatever the answers do, as independent readers would, and a
latency counts from the scheduled start, so a stalled server cannot hide its queue): each
request a random page among the first ten, in a random language, as a new reader (no cookie,
no If-None-Match). Pages are rendered at most once every CACHE_SECONDS per page and language
(bot/public); --cache 0 renders every request, to see the cost without that cache.

Run: flock /tmp/icssi-bench.lock .venv/bin/python benchmarks/public.py [--rate 200]
     [--seconds 15] [--runs 5] [--cache 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from sqlalchemy import insert

from bot import bulletins, gazetteer
from bot.config import Settings
from bot.db import Database, upgrade_async
from bot.models import Bulletin, Signature
from bot.signatures import TYPE_LABELS

ROOT = Path(__file__).resolve().parent.parent
ORGANIZATIONS = 2_000
BULLETINS = 500
PAGES = 10  # readers ask for one of the first PAGES pages
LOCALES = ("ar", "ckb", "en")
EN_WORDS = [
    "the",
    "water",
    "food",
    "camp",
    "families",
    "Duhok",
    "Sunday",
    "distribution",
    "tents",
    "health",
    "begins",
    "in",
    "of",
]
AR_WORDS = [
    "المياه",
    "الغذاء",
    "المخيم",
    "العائلات",
    "دهوك",
    "الأحد",
    "توزيع",
    "الخيام",
    "الصحة",
    "يبدأ",
    "في",
]
CKB_WORDS = [
    "ئاو",
    "خۆراک",
    "کەمپ",
    "خێزان",
    "دهۆک",
    "یەکشەممە",
    "دابەشکردن",
    "چادر",
    "تەندروستی",
    "دەست",
    "لە",
]


async def fill(url: str) -> None:
    """Verified organizations all over Iraq, and a year and a half of bulletins."""
    await upgrade_async(url)
    db = Database(url)
    rng = random.Random(23)
    now = datetime.now(UTC)
    kinds = list(TYPE_LABELS)
    governorates = [g.pcode for g in gazetteer.GOVERNORATES]
    async with db.transaction() as session:
        await session.execute(
            insert(Signature),
            [
                {
                    "receipt": f"S-{n:08d}",
                    "locale": "ar",
                    "version": "2014-07-11",
                    "text_sha256": "0" * 64,
                    "name_ar": f"جمعية التضامن رقم {n}",
                    "name_en": f"Solidarity Association {n}",
                    "name_key": f"solidarity association {n}",
                    "org_type": rng.choice(kinds),
                    "governorate": rng.choice(governorates),
                    "city": "Baghdad",
                    "status": "verified",
                    "created_at": now - timedelta(days=n % 400),
                    "decided_at": now - timedelta(days=n % 400),
                }
                for n in range(ORGANIZATIONS)
            ],
        )
        rows = []
        for n in range(BULLETINS):
            texts = {
                "ar": {"title": f"النشرة رقم {n}", "text": "توزيع المياه يبدأ يوم الأحد. " * 20},
                "ckb": {
                    "title": f"بڵاوکراوەی ژمارە {n}",
                    "text": "دابەشکردنی ئاو دەست پێدەکات. " * 20,
                },
                "en": {
                    "title": f"Bulletin number {n}",
                    "text": "Water distribution starts. " * 20,
                },
            }
            rows.append(
                {
                    "public_id": f"B-{n:06d}",
                    "texts": texts,
                    "hashes": {k: bulletins.sha256(bulletins.plain(v)) for k, v in texts.items()},
                    "status": "sent",
                    "created_by": "benchmark",
                    "created_at": now - timedelta(days=n),
                    "published_at": now - timedelta(days=n),
                }
            )
        await session.execute(insert(Bulletin), rows)
    await db.close()


def serve(url: str, port: int, cache: float) -> None:
    """The app alone in this process, on uvicorn (run with --serve)."""
    import uvicorn

    import bot.public
    from bot.web import create_app

    bot.public.CACHE_SECONDS = cache
    db = Database(url)
    app = create_app(db, settings=Settings(database_url=url, port=port))
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


def percentile(values: list[float], share: float) -> float:
    """The value below which `share` of the values lie."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    """The processor time a process has used (user and system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Connections:
    """Keep-alive HTTP/1.1 connections to the app, for plain GETs: a client that costs a
    fraction of httpx's processor time, which on this 2-core machine the server needs."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def get(self, target: str) -> int:
        """GET `target`; the status (the body is read and dropped). A kept connection the
        server has closed meanwhile (uvicorn closes idle ones after 5 s) is replaced, as a
        browser does."""
        while self.idle:
            reader, writer = self.idle.pop()
            try:
                return await self._ask(reader, writer, target)
            except (ConnectionError, asyncio.IncompleteReadError):
                writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        return await self._ask(reader, writer, target)

    async def _ask(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: str
    ) -> int:
        """One request on one connection, kept for the next when it is done."""
        writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _sep, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        self.idle.append((reader, writer))
        return status

    async def close(self) -> None:
        """Close every connection."""
        for _reader, writer in self.idle:
            writer.close()
        self.idle.clear()


async def load(base: str, path: str, rate: float, seconds: float, server: int) -> dict[str, float]:
    """`rate` requests a second to `path` for `seconds`; the achieved rate, the latencies, and
    the processor time a request took in the server and in this client."""
    rng = random.Random(path)
    latencies: list[float] = []
    failures = 0
    client = Connections(int(base.rsplit(":", 1)[1]))
    try:

        async def one(due: float) -> None:
            nonlocal failures
            page = rng.randint(1, PAGES)
            locale = rng.choice(LOCALES)
            try:
                if await client.get(f"{path}?page={page}&lang={locale}") != 200:
                    failures += 1
            except (OSError, asyncio.IncompleteReadError, ValueError):
                failures += 1
            latencies.append((time.perf_counter() - due) * 1000)

        began = time.perf_counter()
        cpu = cpu_seconds(server)
        mine = time.process_time()
        tasks = []
        count = int(rate * seconds)
        for n in range(count):
            due = began + n / rate
            pause = due - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            tasks.append(asyncio.ensure_future(one(due)))
        await asyncio.gather(*tasks)
        took = time.perf_counter() - began
        cpu = cpu_seconds(server) - cpu
        mine = time.process_time() - mine
    finally:
        await client.close()
    return {
        "cpu": cpu * 1000 / count,
        "client": mine * 1000 / count,
        "load": os.getloadavg()[0],
        "rate": count / took,
        "p50": statistics.median(latencies),
        "p95": percentile(latencies, 0.95),
        "p99": percentile(latencies, 0.99),
        "failures": failures,
    }


def long_text(n: int, words: list[str]) -> str:
    """A bulletin-sized text (about 1,500 characters) of `words`, different for each `n`."""
    rng = random.Random(n)
    return " ".join(rng.choice(words) for _ in range(220))


async def verify_load(base: str, count: int) -> dict[str, list[float]]:
    """`count` checks of a pasted text, one at a time, of each kind: a bulletin with a word
    changed (compared with all 500), and a long text that is none (the most work)."""
    times: dict[str, list[float]] = {}
    tampered = f"Bulletin number 250\n\n{long_text(250, EN_WORDS)}".replace(" the ", " a ", 1)
    unrelated = long_text(99_999, [*EN_WORDS[::-1], "bread", "price", "market"]) * 4
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        for label, text in (
            ("a word changed", tampered),
            ("7,000 characters of no bulletin", unrelated),
        ):
            for _ in range(count):
                began = time.perf_counter()
                answer = await client.post("/bulletins/verify", data={"text": text[:7000]})
                times.setdefault(label, []).append((time.perf_counter() - began) * 1000)
                assert answer.status_code == 200, answer.status_code
    return times


async def main() -> None:
    """Fill a database, start the app's process, load each page for each run, summarize."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cache", type=float, default=10.0, help="bot.public.CACHE_SECONDS")
    parser.add_argument("--checks", type=int, default=20, help="pasted texts checked, each kind")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{Path(folder) / 'public.db'}"
        await fill(url)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--serve",
            url,
            str(port),
            str(args.cache),
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        base = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(base_url=base) as client:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        if (await client.get("/healthz")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise TimeoutError("the app did not start")
                    await asyncio.sleep(0.1)
            print(
                f"SQLite: {ORGANIZATIONS:,} verified organizations, {BULLETINS} bulletins; "
                f"{args.rate:.0f} requests/s for {args.seconds:.0f} s a page and run, "
                f"{args.runs} runs; page cache {args.cache:g} s; the app alone in a uvicorn "
                f"process; {os.cpu_count()} cores"
            )
            results: dict[str, list[dict[str, float]]] = {}
            for run in range(args.runs):
                for path in ("/signatories", "/bulletins"):
                    found = await load(base, path, args.rate, args.seconds, server.pid)
                    results.setdefault(path, []).append(found)
                    print(
                        f"  run {run + 1} {path:13s} {found['rate']:6.1f} req/s  "
                        f"p50 {found['p50']:6.1f} ms  p95 {found['p95']:6.1f} ms  "
                        f"p99 {found['p99']:6.1f} ms  CPU a request: server "
                        f"{found['cpu']:.2f} ms, client {found['client']:.2f} ms  "
                        f"load {found['load']:.1f}  "
                        f"failed {found['failures']:.0f}"
                    )
            checks = await verify_load(base, args.checks)
            print("median (min–max) of the runs:")
            for path, runs in results.items():
                summary = []
                for key, unit in (
                    ("rate", "req/s"),
                    ("p50", "ms"),
                    ("p95", "ms"),
                    ("p99", "ms"),
                    ("cpu", "ms CPU/request"),
                ):
                    values = [r[key] for r in runs]
                    summary.append(
                        f"{key} {statistics.median(values):.1f} {unit} "
                        f"({min(values):.1f}–{max(values):.1f})"
                    )
                failed = sum(r["failures"] for r in runs)
                print(f"  {path:13s} " + "   ".join(summary) + f"   failed {failed:.0f}")
            for label, times in checks.items():
                print(
                    f"  /bulletins/verify, {label}: one at a time, p50 "
                    f"{statistics.median(times):.1f} ms  p95 {percentile(times, 0.95):.1f} ms  "
                    f"max {max(times):.1f} ms ({len(times)} checks)"
                )
        finally:
            server.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(server.wait(), 30)
            except TimeoutError:
                server.kill()
                await server.wait()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    else:
        asyncio.run(main())
