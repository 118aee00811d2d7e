"""Benchmark: the engine's own cost per update (no HTTP, no sender); prints its figures.

The real Engine and flows on a fresh SQLite file (or --postgres URL's server): --people
simulated people each send /start, pick a language, then "Report a displaced family", "I agree",
a governorate and a district (the six updates of benchmarks/inbound.py), HANDLING of them at a
time. Printed: CPU milliseconds of this process per update, updates a second, and the rows the
database then holds (every reply queued, every update marked handled), so that a faster engine
that forgets something shows it.

Run: .venv/bin/python benchmarks/engine.py [--people 400] [--postgres postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inbound import database  # beside this script
from sqlalchemy import func, select

from bot.config import Settings, load_settings
from bot.db import Database, upgrade_async
from bot.engine import HANDLING, Engine
from bot.messages import Address, Inbound
from bot.models import Conversation, OutboxMessage, ProcessedInbound
from handlers import build_registry

LOCALES = ("ar", "ckb", "en")


def steps(person: int) -> list[Inbound]:
    """The six updates one person sends."""
    address = Address("telegram", str(10_000 + person))
    locale = LOCALES[person % 3]
    said = [
        ("command", "/start", None),
        ("button", "", f"lang:{locale}"),
        ("button", "", "menu:report"),
        ("button", "", "r:agree"),
        ("button", "", "gov:IQG09"),
        ("button", "", "dist:IQG09Q04"),
    ]
    return [
        Inbound(
            address=address,
            message_id=f"{person}-{index}",
            kind=kind,  # type: ignore[arg-type]
            text=words,
            payload=payload,
            command="start" if words == "/start" else None,
        )
        for index, (kind, words, payload) in enumerate(said)
    ]


async def measure(url: str, people: int) -> None:
    """Run the people through the engine and print the figures."""
    await upgrade_async(url)
    db = Database(url)
    engine = Engine(db, Settings(database_url=url), build_registry())
    queues = [steps(person) for person in range(people)]
    # Warm-up: the first people pay for compiling statements and importing handlers.
    for inbound in queues[0]:
        await engine.handle(inbound)
    busy = asyncio.Semaphore(HANDLING)

    async def person(updates: list[Inbound]) -> None:
        for inbound in updates:
            async with busy:
                await engine.handle(inbound)

    cpu, start = time.process_time(), time.perf_counter()
    await asyncio.gather(*(person(updates) for updates in queues[1:]))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - start
    count = 6 * (people - 1)
    async with db.transaction() as session:
        handled = await session.scalar(select(func.count()).select_from(ProcessedInbound))
        queued = await session.scalar(select(func.count()).select_from(OutboxMessage))
        asked = await session.scalar(
            select(func.count()).where(Conversation.step == "place", Conversation.flow == "report")
        )
    await db.close()
    print(
        f"{url.split(':')[0]}: {count} updates, {1000 * cpu / count:.2f} ms of CPU each, "
        f"{count / wall:.0f}/s; rows: {handled} handled, {queued} replies queued, "
        f"{asked} people at the place step"
    )


async def main(args: argparse.Namespace) -> None:
    """SQLite, then PostgreSQL if given."""
    kinds = ["sqlite"] + (["postgresql"] if args.postgres else [])
    for kind in kinds:
        with tempfile.TemporaryDirectory() as folder:
            async with database(kind, Path(folder), args.postgres) as url:
                await measure(load_settings({"DATABASE_URL": url}).database_url, args.people)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--people", type=int, default=400)
    parser.add_argument("--postgres", help="postgresql://… of a server where we may create one")
    asyncio.run(main(parser.parse_args()))
