"""Benchmark: broadcasts through the real sender to a fake Bot API with flood control.

Prints its figures; not a test. The fake runs in its own process on 127.0.0.1 (its memory and
CPU are not the bot's) and notes when it accepted each message; rates are measured from those
times, at the fake's end. Each measurement runs in a fresh child process, so that its peak
memory is its own.

(a) at the default 30 messages/s, a broadcast to 10,000 subscribers with the fake answering 429
    past 30 messages in any one second (a sliding window): the steady-state rate (the messages
    the fake accepted between the --warmup-th and the (--warmup + --paced)-th, over the seconds
    between them, over the limit) and the 429 answers provoked in the whole run; meanwhile
    interactive replies are queued every 0.5 s and (c) their latency measured (queued to sent);
(b) with the limits lifted (no flood control, TELEGRAM_RATE 10000), a broadcast to each of
    --sizes subscribers: the sender's rate, as a fraction of a bare python-telegram-bot send
    loop's (same fake, same HTTP stack and pool, same messages, as many sends in flight as the
    sender has lanes) taking turns with it every few seconds; the CPU each costs per message;
    the child's peak RSS; and the sender's own cost, through a transport that sends nothing.
(d) over real round trips (--trips): the fakes answer each message after a delay with jitter, as
    Telegram and Twilio do from Iraq (0.1-0.5 s): Telegram at 30/s with flood control, answers
    in 50, 150 and 300 ms (the share of the limit, the 429s); Telegram at 1,000/s (paid
    broadcasts, the fake refusing past 1,000 in a second) answering in 150 ms, to 4,000 and
    --big subscribers; WhatsApp at 80/s (the fake Twilio refusing past 80 in a second)
    answering in 300 ms, to 800 and --big subscribers: the rate between the first and the last
    tenth of the messages, over the configured rate; the bot's CPU per message; peak RSS.

Run: .venv/bin/python benchmarks/broadcast.py [--sizes 10000 100000] [--paced 600] [--skip-a]
     [--trips [--big 100000] [--skip-b]]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, insert, select

from bot import bulletins, runtime
from bot.bulletins import Renderer
from bot.config import Settings
from bot.db import Database, upgrade_async
from bot.engine import enqueue
from bot.messages import Address, Outbound
from bot.models import Bulletin, Contact, OutboxMessage
from bot.runtime import running
from bot.scheduler import BulletinScheduler
from bot.sender import ChannelWorker, Sender

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 30
TURN = 3.0  # seconds the sender sends in (b) before the bare loop takes its turn
PAUSE = 2  # seconds of each turn of the bare loop (the retry_after the sender is given)
BARE_CHATS = 20_000_000  # the bare loop's chats are numbered from here; subscribers' below
TEXTS = {
    "ar": {"title": "نشرة", "text": "نص النشرة " * 20},
    "ckb": {"title": "بڵاوکراوە", "text": "دەقی بڵاوکراوە " * 20},
    "en": {"title": "Bulletin", "text": "The bulletin's text " * 20},
}
# As many sends at a time as the sender makes: the bare loop is a fair ceiling only then.
# (The sender's grow with the round trip, bot/inflight.py: against the fake's millisecond, a few
# more than its least.)
IN_FLIGHT = ChannelWorker.LANES


class Fake:
    """The fake Bot API in a child process."""

    def __init__(self, flood_limit: int | None, delay: float = 0.0, jitter: float = 0.0) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.fake_telegram",
                str(flood_limit or "none"),
                str(delay),
                str(jitter),
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,  # it ends when this process does, even when killed
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.base_url, self.token = self.process.stdout.readline().split()
        self.root = self.base_url.removesuffix("/bot")

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.root}{path}", timeout=30) as response:
            return json.load(response)

    def stats(self) -> dict[str, int]:
        """Messages accepted and 429 answers so far."""
        data: dict[str, int] = self._get("/_fake/stats")
        return data

    def accepted(self, start: int) -> list[tuple[float, int]]:
        """When (time.monotonic, shared by processes) and to which chat the fake accepted the
        messages from the `start`-th on."""
        return [(at, chat) for at, chat in self._get(f"/_fake/accepted?start={start}")]

    def times(self, start: int, stop: int) -> list[float]:
        """When the fake accepted messages start..stop-1."""
        return [at for at, _chat in self.accepted(start)[: stop - start]]

    def retry_after(self, seconds: int) -> None:
        """Make the fake answer the next sendMessage with 429 and retry_after=`seconds`."""
        request = urllib.request.Request(
            f"{self.root}/_fake/retry_after?seconds={seconds}", method="POST"
        )
        with urllib.request.urlopen(request, timeout=30):
            pass

    def cpu(self) -> float:
        """CPU seconds the fake has used."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        """Stop the fake."""
        self.process.terminate()
        self.process.wait(10)


def own_cpu() -> float:
    """CPU seconds this process has used (every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def fill(url: str, size: int, channel: str = "telegram") -> None:
    """A database with `size` subscribers on `channel`, in the three languages (on WhatsApp,
    each wrote in the last day: the bulletin goes as text, not as a template)."""

    def chunk(first: int, last: int) -> Iterator[dict[str, Any]]:
        now = datetime.now(UTC)
        for n in range(first, last):
            yield {
                "address": (
                    f"telegram:{10_000_000 + n}"
                    if channel == "telegram"
                    else f"whatsapp:+964770{n:07}"
                ),
                "channel": channel,
                "last_inbound_at": now if channel == "whatsapp" else None,
                "locale": ("ar", "ckb", "en")[n % 3],
                "first_seen": now,
                "last_seen": now,
                "subscribed": True,
                "unreachable": False,
            }

    await upgrade_async(url)
    db = Database(url)
    for start in range(0, size, 5000):
        async with db.transaction() as session:
            await session.execute(insert(Contact), list(chunk(start, min(size, start + 5000))))
    await db.close()


def settings_for(folder: str, fake: Fake, rate: float) -> Settings:
    """The bot's settings for one run."""
    return dataclasses.replace(
        Settings(database_url=f"sqlite+aiosqlite:///{folder}/bench.db"),
        telegram_bot_token=fake.token,
        telegram_api_base_url=fake.base_url,
        telegram_file_base_url=fake.base_url.replace("/bot", "/file/bot"),
        telegram_rate=rate,
    )


async def start_broadcast(bot: Any) -> tuple[int, float]:
    """Publish a bulletin ("Send now") and queue its deliveries; its id and the seconds queueing
    took. Queued as the bot does it, by the scheduler (under its lock)."""
    async with bot.db.transaction() as session:
        bulletin = Bulletin(texts=TEXTS, created_by="bench")
        session.add(bulletin)
        await session.flush()
        await bulletins.publish(session, bulletin, datetime.now(UTC))
        bulletin_id = int(bulletin.id)
    start = time.perf_counter()
    await bot.scheduler.sync()
    return bulletin_id, time.perf_counter() - start


async def paced(
    warmup: int, count: int, delay_ms: int = 0, jitter_ms: int = 0
) -> dict[str, float]:
    """(a) and (c): the steady-state rate at 30/s, the 429s, the replies' latency; (d) with the
    fake answering after `delay_ms` ± `jitter_ms` / 2."""
    fake = Fake(LIMIT, delay_ms / 1000, jitter_ms / 1000)
    try:
        with tempfile.TemporaryDirectory() as folder:
            await fill(f"sqlite+aiosqlite:///{folder}/bench.db", 10_000)
            settings = settings_for(folder, fake, float(LIMIT))
            async with running(settings) as bot:
                before = (await asyncio.to_thread(fake.stats))["sent"]
                bulletin_id, queue_seconds = await start_broadcast(bot)
                queued = time.monotonic()
                cpu = own_cpu()
                queued_at: dict[str, datetime] = {}
                next_reply = 0.0
                while True:
                    now = time.monotonic()
                    if now >= next_reply:
                        chat = f"telegram:{900 + len(queued_at)}"
                        async with bot.db.transaction() as session:
                            await enqueue(session, [Outbound(Address.parse(chat), "reply")], None)
                        queued_at[chat] = datetime.now(UTC)
                        bot.sender.wake("telegram", urgent=True)
                        next_reply = now + 0.5
                    sent = (await asyncio.to_thread(fake.stats))["sent"] - before
                    if sent > warmup + count:
                        break
                    await asyncio.sleep(0.1)
                await asyncio.sleep(1.0)  # let the last replies out
                cpu = own_cpu() - cpu
                sent = (await asyncio.to_thread(fake.stats))["sent"] - before
                async with bot.db.transaction() as session:
                    rows = await session.execute(
                        select(OutboxMessage.address, OutboxMessage.sent_at).where(
                            OutboxMessage.address.in_(list(queued_at)),
                            OutboxMessage.sent_at.is_not(None),
                        )
                    )
                    latencies = sorted(
                        (sent_at - queued_at[address]).total_seconds()
                        for address, sent_at in rows
                        if sent_at is not None
                    )
                    stopped = await session.get(Bulletin, bulletin_id)
                    assert stopped is not None
                    await bulletins.stop(session, stopped, "benchmark", datetime.now(UTC))
        times = fake.times(before, before + warmup + count + 1)
        hits = fake.stats()["flood_hits"]
    finally:
        fake.close()
    steady = count / (times[warmup + count] - times[warmup])
    whole = (warmup + count) / (times[warmup + count] - queued)
    # The most messages the fake accepted in any one second (its own sliding window).
    densest = max(
        sum(1 for t in times[i : i + LIMIT + 5] if t - times[i] < 1.0) for i in range(len(times))
    )
    return {
        "queue_seconds": queue_seconds,
        "steady": steady,
        "whole": whole,
        "hits": hits,
        "densest": densest,
        "replies": len(latencies),
        "reply_p50": statistics.median(latencies),
        "reply_p95": latencies[max(0, -(-len(latencies) * 95 // 100) - 1)],
        "reply_max": latencies[-1],
        "cpu_ms": 1000 * cpu / sent,
    }


class FakeTwilioProcess:
    """The fake Twilio REST API in a child process."""

    def __init__(self, rate_limit: int, delay: float, jitter: float) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.fake_twilio",
                f"--rate-limit={rate_limit}",
                f"--delay={delay}",
                f"--jitter={jitter}",
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.base_url, self.account_sid, self.auth_token = self.process.stdout.readline().split()

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.base_url}{path}", timeout=30) as response:
            return json.load(response)

    def stats(self) -> dict[str, int]:
        """Messages accepted and 429 answers so far."""
        data = self._get("/_fake/stats")
        return {"sent": data["messages"], "flood_hits": data["rate_limited"]}

    def times(self, start: int, stop: int) -> list[float]:
        """When the fake accepted messages start..stop-1."""
        return list(self._get(f"/_fake/accepted?start={start}"))[: stop - start]

    def close(self) -> None:
        """Stop the fake."""
        self.process.terminate()
        self.process.wait(10)


async def round_trips(
    channel: str, rate: int, size: int, delay_ms: int, jitter_ms: int
) -> dict[str, float]:
    """(d) A broadcast to `size` subscribers at `rate`/s, the platform answering in `delay_ms`
    ± `jitter_ms` / 2: the rate between the first and the last tenth, the 429s, CPU, RSS."""
    delay, jitter = delay_ms / 1000, jitter_ms / 1000
    fake: Fake | FakeTwilioProcess
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{folder}/bench.db"
        if channel == "telegram":
            fake = Fake(LIMIT, delay, jitter)  # 30 a second, or 1,000 with paid broadcasts
            settings = dataclasses.replace(
                settings_for(folder, fake, float(rate)),
                telegram_paid_broadcast=rate > LIMIT,
            )
        else:
            fake = FakeTwilioProcess(rate, delay, jitter)
            settings = Settings(
                database_url=url,
                twilio_account_sid=fake.account_sid,
                twilio_auth_token=fake.auth_token,
                twilio_whatsapp_from="whatsapp:+14155238886",
                twilio_api_base_url=fake.base_url,
                twilio_rate=float(rate),
            )
        try:
            await fill(url, size, channel)
            async with running(settings) as bot:
                before = (await asyncio.to_thread(fake.stats))["sent"]
                _bulletin_id, queue_seconds = await start_broadcast(bot)
                cpu, started = own_cpu(), time.monotonic()
                # The fake is another process: it is asked.
                while (await asyncio.to_thread(fake.stats))["sent"] - before < size:  # noqa: ASYNC110
                    await asyncio.sleep(0.5)
                cpu, seconds = own_cpu() - cpu, time.monotonic() - started
                times = await asyncio.to_thread(fake.times, before, before + size)
                hits = (await asyncio.to_thread(fake.stats))["flood_hits"]
        finally:
            fake.close()
    first, last = size // 10, size - size // 10 - 1
    steady = (last - first) / (times[last] - times[first])
    # Where the time went: the share of the rate in each tenth of the messages (stderr).
    marks = [times[min(size - 1, n * size // 10)] for n in range(11)]
    tenths = [(size // 10) / max(1e-9, b - a) for a, b in itertools.pairwise(marks)]
    print("share in each tenth:", " ".join(f"{t / rate:.2f}" for t in tenths), file=sys.stderr)
    return {
        "queue_seconds": queue_seconds,
        "share": steady / rate,
        "hits": hits,
        "seconds": seconds,
        "cpu_ms": 1000 * cpu / size,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


class BareLoop:
    """A plain python-telegram-bot send loop, the ceiling of the HTTP stack.

    The same stack as the bot's (ApplicationBuilder, its pool size), the same messages (the
    bulletin rendered in the three languages in turn, as HTML, no link preview), and as many
    sends at a time as the sender has lanes.
    """

    def __init__(self, fake: Fake) -> None:
        from telegram.ext import ApplicationBuilder

        from bot.channels.telegram import html_text
        from bot.channels.telegram_http import AiohttpRequest

        bulletin = Bulletin(id=1, public_id="B-BENCH1", texts=TEXTS, created_at=datetime.now(UTC))
        self.texts = []
        for locale in ("ar", "ckb", "en"):
            message = bulletins.render(bulletin, Address("telegram", "1"), locale, "Asia/Baghdad")
            self.texts.append(html_text(message, message.text, True))
        self.app = (
            ApplicationBuilder()
            .token(fake.token)
            .base_url(fake.base_url)
            # The bot's own HTTP stack (python-telegram-bot over aiohttp), as TelegramChannel
            # builds it: the ceiling is the stack's, and the ratio the sender's own cost.
            .request(AiohttpRequest(32))
            .updater(None)
            .build()
        )
        self.number = 0

    async def run(self, until: float) -> None:
        """Send until time.monotonic() reaches `until`."""
        from telegram import LinkPreviewOptions
        from telegram.constants import ParseMode

        async def worker() -> None:
            while time.monotonic() < until:
                self.number += 1
                await self.app.bot.send_message(
                    BARE_CHATS + self.number,
                    self.texts[self.number % 3],
                    parse_mode=ParseMode.HTML,
                    link_preview_options=LinkPreviewOptions(is_disabled=True),
                )

        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))


@dataclasses.dataclass
class Share:
    """Messages, seconds (first to last accepted, per stretch) and CPU seconds of one side."""

    messages: int = 0
    seconds: float = 0.0
    cpu: float = 0.0
    fake_cpu: float = 0.0
    turns: int = 0

    def add(self, times: list[float], cpu: float, fake_cpu: float) -> None:
        """One stretch: the fake's acceptance times in it, and the CPU it took."""
        self.turns += 1
        if len(times) > 1:
            self.messages += len(times) - 1
            self.seconds += times[-1] - times[0]
        self.cpu += cpu
        self.fake_cpu += fake_cpu

    @property
    def rate(self) -> float:
        """Messages a second (nan when it had no turn: the broadcast ended before it)."""
        return self.messages / self.seconds if self.seconds else float("nan")


async def lifted(size: int) -> dict[str, float]:
    """(b): the sender's rate with the limits lifted against a bare loop's, interleaved.

    The machine is shared: its load swings within seconds. So the two take turns every few
    seconds: the fake answers the sender's next message with 429 and retry_after=PAUSE (the
    sender then holds the channel, as it does for Telegram), the bare loop sends meanwhile,
    and the sender goes on. Each side's rate is taken between the first and last message the
    fake accepted in each of its stretches.
    """
    fake = Fake(None)
    sender, bare = Share(), Share()
    sender_times: list[float] = []  # the sender's messages since the last stretch, and the bare
    bare_times: list[float] = []  # loop's (told apart by their chats)
    cursor = sent = 0

    async def collect() -> None:
        """Fetch what the fake accepted since the last look, sorted by who sent it."""
        nonlocal cursor, sent
        entries = await asyncio.to_thread(fake.accepted, cursor)
        cursor += len(entries)
        for at, chat in entries:
            if chat >= BARE_CHATS:
                bare_times.append(at)
            else:
                sender_times.append(at)
                sent += 1

    try:
        with tempfile.TemporaryDirectory() as folder:
            await fill(f"sqlite+aiosqlite:///{folder}/bench.db", size)
            loop = BareLoop(fake)
            settings = settings_for(folder, fake, 10_000.0)
            async with loop.app, running(settings) as bot:
                await loop.run(time.monotonic() + 1.0)  # its connections made
                await collect()
                bare_times.clear()
                _bulletin_id, queue_seconds = await start_broadcast(bot)
                # Rows are committed in batches while queueing, and the sender may start on
                # them: its rate is taken from the end of queueing, when all are waiting.
                queued = time.monotonic()
                early = 0
                while True:
                    cpu, fake_cpu = own_cpu(), fake.cpu()
                    turn_ends = time.monotonic() + TURN
                    while sent < size and time.monotonic() < turn_ends:
                        await asyncio.sleep(0.5)  # (the polling costs the bot's process CPU)
                        await collect()
                    paused = time.monotonic()
                    if sent < size:
                        answered = (await asyncio.to_thread(fake.stats))["faults_answered"]
                        await asyncio.to_thread(fake.retry_after, PAUSE)
                        while sent < size:
                            await asyncio.sleep(0.01)
                            stats = await asyncio.to_thread(fake.stats)
                            if stats["faults_answered"] > answered:
                                break
                            await collect()
                        paused = time.monotonic()
                        await asyncio.sleep(0.1)  # the sends under way end
                    await collect()
                    stretch = [t for t in sender_times if t >= queued]
                    early += len(sender_times) - len(stretch)
                    sender.add(stretch, own_cpu() - cpu, fake.cpu() - fake_cpu)
                    sender_times.clear()
                    if sent >= size:
                        break
                    cpu, fake_cpu = own_cpu(), fake.cpu()
                    await loop.run(paused + PAUSE - 0.3)  # done before the sender goes on
                    await collect()
                    bare.add(bare_times, own_cpu() - cpu, fake.cpu() - fake_cpu)
                    bare_times.clear()
    finally:
        fake.close()
    return {
        "size": size,
        "queue_seconds": queue_seconds,
        "sent_while_queueing": early,
        "rate": sender.rate,
        "cpu_ms": 1000 * sender.cpu / sender.messages,
        "fake_cpu_ms": 1000 * sender.fake_cpu / sender.messages,
        "bare_rate": bare.rate,
        "bare_cpu_ms": 1000 * bare.cpu / max(1, bare.messages),
        "bare_fake_cpu_ms": 1000 * bare.fake_cpu / max(1, bare.messages),
        "bare_messages": bare.messages,
        "turns": bare.turns,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


class NullTransport:
    """A Transport that sends nothing: what a broadcast then costs is the sender's own work."""

    channel = "telegram"
    rate = 1_000_000.0

    def chat_limit(self, address: str) -> tuple[float, int]:
        """Telegram's limit for one person."""
        return 1.0, 3

    async def deliver(self, message: Outbound) -> str | None:
        """Nothing, after one turn of the event loop (as any send takes at least)."""
        await asyncio.sleep(0)
        return "1"


async def own_cost(size: int) -> dict[str, float]:
    """The ledger's and the rate logic's cost: a broadcast to `size` through NullTransport."""
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{folder}/bench.db"
        await fill(url, size)
        settings = Settings(database_url=url)
        db = Database(url)
        bot = SimpleNamespace(db=db, scheduler=BulletinScheduler(db, settings))
        await start_broadcast(bot)
        sender = Sender(db, [NullTransport()], render=Renderer(db, settings.timezone))
        cpu, start = own_cpu(), time.perf_counter()
        sender.start()
        await sender.flush("telegram")
        elapsed, cpu = time.perf_counter() - start, own_cpu() - cpu
        await sender.stop()
        async with db.transaction() as session:
            sent = await session.scalar(select(func.count()).where(OutboxMessage.status == "sent"))
        await db.close()
    assert sent == size, sent
    return {"rate": size / elapsed, "cpu_ms": 1000 * cpu / size}


def child(*args: str) -> dict[str, float]:
    """Run one measurement in a fresh process; its figures."""
    output = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        cwd=ROOT,
        check=True,
        stdout=subprocess.PIPE,
        timeout=6 * 3600,
    ).stdout
    result: dict[str, float] = json.loads(output.splitlines()[-1])
    return result


def main() -> None:
    """Run (a), (b) and (c) and print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000])
    parser.add_argument("--paced", type=int, default=600, help="messages measured in (a)")
    parser.add_argument("--warmup", type=int, default=60, help="messages before (a) measures")
    parser.add_argument("--skip-a", action="store_true")
    parser.add_argument("--skip-b", action="store_true")
    parser.add_argument("--trips", action="store_true", help="(d): over real round trips")
    parser.add_argument("--big", type=int, default=100_000, help="the large broadcasts of (d)")
    parser.add_argument("--big-whatsapp", type=int, help="... on WhatsApp (default: --big)")
    parser.add_argument("--only-big", action="store_true", help="(d): the large ones only")
    parser.add_argument(
        "--in-flight",
        type=int,
        help="the sender's max_in_flight (messages a crash may repeat) in (b); default: its own",
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *numbers = args.child
        values = [int(n) for n in numbers]
        if args.in_flight is not None:  # the bot's sender, and the one of own_cost
            in_flight = functools.partial(Sender, max_in_flight=args.in_flight)
            vars(runtime)["Sender"] = in_flight
            globals()["Sender"] = in_flight
        if kind == "paced":
            result = asyncio.run(paced(*values))
        elif kind in ("telegram", "whatsapp"):
            result = asyncio.run(round_trips(kind, *values))
        elif kind == "lifted":
            result = asyncio.run(lifted(*values))
        else:
            result = asyncio.run(own_cost(*values))
        print(json.dumps(result))
        return
    print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} at the start")
    if not args.skip_a:
        a = child("paced", str(args.warmup), str(args.paced))
        print(
            f"(a) 30/s, broadcast to 10,000: messages {args.warmup} to "
            f"{args.warmup + args.paced} accepted at {a['steady']:.2f}/s = "
            f"{a['steady'] / LIMIT:.3f} of the limit (from the end of queueing, start-up "
            f"included: {a['whole'] / LIMIT:.3f}); 429 answers: {int(a['hits'])}; most "
            f"accepted in any one second: {int(a['densest'])}; the bot's CPU per message "
            f"{a['cpu_ms']:.2f} ms (replies and polling included)"
        )
        print(
            f"(c) {int(a['replies'])} interactive replies during it: latency p50 "
            f"{a['reply_p50']:.3f} s, p95 {a['reply_p95']:.3f} s, max {a['reply_max']:.3f} s"
        )
    if args.trips:
        trips(args.warmup, args.paced, args.big, args.big_whatsapp or args.big, args.only_big)
    if args.skip_b:
        print(f"load average {os.getloadavg()[0]:.2f} at the end")
        return
    bound = [] if args.in_flight is None else ["--in-flight", str(args.in_flight)]
    print(
        f"(b) with the sender's max_in_flight {args.in_flight or 'bound(10,000) = 1,250'}: a "
        "crash may send that many messages twice (as many as the rate and round trip need)"
    )
    for size in args.sizes:
        b = child("lifted", str(size), *bound)
        print(
            f"(b) limits lifted, {size:,} subscribers: queued in {b['queue_seconds']:.1f} s "
            f"({int(b['sent_while_queueing']):,} sent meanwhile); then {b['rate']:.0f}/s, and "
            f"the bare loop {b['bare_rate']:.0f}/s in {int(b['turns'])} turns with it "
            f"({int(b['bare_messages']):,} messages): ratio {b['rate'] / b['bare_rate']:.2f}; "
            f"peak RSS {b['rss_mb']:.0f} MB"
        )
        print(
            f"    CPU per message: the bot's process {b['cpu_ms']:.2f} ms with the sender, "
            f"{b['bare_cpu_ms']:.2f} ms with the bare loop (ratio "
            f"{b['bare_cpu_ms'] / b['cpu_ms']:.2f}); the fake's {b['fake_cpu_ms']:.2f} and "
            f"{b['bare_fake_cpu_ms']:.2f} ms"
        )
        own = child("own", str(size), *bound)
        print(
            f"    the sender alone (a transport that sends nothing), {size:,} subscribers: "
            f"{own['rate']:.0f}/s, {own['cpu_ms']:.3f} ms of CPU per message"
        )
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


def trips(warmup: int, count: int, big: int, big_whatsapp: int, only_big: bool) -> None:
    """(d): print the figures over real round trips."""
    for delay in () if only_big else (50, 150, 300):
        d = child("paced", str(warmup), str(count), str(delay), str(delay * 2 // 3))
        print(
            f"(d) Telegram 30/s, answers in {delay} ms ± {delay // 3}: messages {warmup} to "
            f"{warmup + count} at {d['steady'] / LIMIT:.3f} of the limit; 429 answers: "
            f"{int(d['hits'])}; most in any one second: {int(d['densest'])}; the bot's CPU per "
            f"message {d['cpu_ms']:.2f} ms"
        )
    runs = [("telegram", 1000, size, 150, 100) for size in (4000, big)][only_big:]
    runs += [("whatsapp", 80, size, 300, 200) for size in (800, big_whatsapp)][only_big:]
    for channel, rate, size, delay, jitter in runs:
        d = child(channel, str(rate), str(size), str(delay), str(jitter))
        print(
            f"(d) {channel} {rate}/s, answers in {delay} ms ± {jitter // 2}, {size:,} "
            f"subscribers: {d['share']:.3f} of the rate (queued in {d['queue_seconds']:.1f} s, "
            f"sent in {d['seconds']:.1f} s); 429 answers: {int(d['hits'])}; the bot's CPU per "
            f"message {d['cpu_ms']:.2f} ms; peak RSS {d['rss_mb']:.0f} MB"
        )


if __name__ == "__main__":
    main()
