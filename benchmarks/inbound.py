"""Benchmark: people talking to the bot through Telegram's webhook; prints figures (not a test).

Three processes on 127.0.0.1: the real bot (`icssi-bot serve`, webhook mode, its own database),
the fake Bot API (`python -m tests.fake_telegram`), and this load generator, which posts real
Update JSON with the secret header to the bot's /telegram as Telegram would (at most 40
connections at once, Telegram's default, and making the Bot API call a webhook's answer
carries, as Telegram does: the answer to a pressed button). Each simulated
person sends /start, picks a language, then "Report a displaced family", "I agree", a
governorate and a district: six updates, each button press made on the message that carried the
button, one after the other (a person answers what they were asked), with at least --think
seconds between a question and the answer.

Arrivals follow a schedule (an open model): at R updates per second, each slot goes to the person
who has waited longest since their question arrived, or to a new person saying /start; nobody
waits for the bot to go faster. Latency: from posting an update to the webhook until the fake
Bot API receives the first message of its reply (both read time.monotonic(), one clock for every
process); "answered": until the message with the next question. Errors: webhook answers other
than 200, failed or timed-out posts, replies missing after a grace period, apologies.

(1) capacity, the sender's limits lifted (TELEGRAM_RATE 10000, TELEGRAM_CHAT_RATE 1000), at each
    of --rates on SQLite and, given --postgres, on PostgreSQL (each rate a fresh database);
(2) drain, at the default 30 messages/s with the fake's flood control on: --wave people send
    /start at once; how long until every reply is out;
(3) priority, at the default limits: replies to --priority-rate updates/s, without and then during
    a bulletin broadcast to --subscribers people; the broadcast messages sent meanwhile.
(4) flood (--flood, or --only flood), at the default limits with the fake's flood control on: one
    chat posts --burst messages in 3 s, then one a second, while --conversing others go through
    their conversations (each a newcomer doing the six steps, then another); the others' first
    replies, with INBOUND_PER_MINUTE at each of --inbound-limits (1000: the sender's fairness
    alone).

Run: .venv/bin/python benchmarks/inbound.py [--rates 25 50 100 200] [--seconds 20]
     .venv/bin/python benchmarks/inbound.py --flood [--burst 400] [--conversing 20]
     [--postgres postgresql://postgres@/postgres?host=/tmp/icssi-pg.XXXX] [--only capacity ...]
PostgreSQL: a server whose user may create databases; each run creates its own and drops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import heapq
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.i18n import translate_in

ROOT = Path(__file__).resolve().parent.parent
SECRET = "inbound-benchmark-secret-0123456789"
LOCALES = ("ar", "ckb", "en")
# Telegram opens at most 40 connections to a webhook unless told otherwise (setWebhook).
CONNECTIONS = 40
# (kind, what the person sends, a button of the question that answers it); "{locale}" is theirs.
# The place question offers "Share my location": a reply keyboard, whose buttons carry no payload.
LOCATION = "(request_location)"
STEPS: list[tuple[str, str, str]] = [
    ("text", "/start", "lang:ar"),
    ("button", "lang:{locale}", "menu:report"),
    ("button", "menu:report", "r:agree"),
    ("button", "r:agree", "gov:IQG09"),
    ("button", "gov:IQG09", "dist:IQG09Q04"),
    ("button", "dist:IQG09Q04", LOCATION),
]
APOLOGIES = (
    "Sorry, something went wrong on our side. Please try again in a moment.",
    "Sorry, I did not understand that. Please choose one of the options below.",
    "This menu has expired. Here is where we are now.",
)


def apologies() -> list[str]:
    """What the bot says when something went wrong, in every language."""
    return [translate_in(locale, text) for locale in LOCALES for text in APOLOGIES]


# ------------------------------------------------------------------------- processes


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> tuple[float, float]:
    """Seconds a process (all its threads) has run on a CPU, and waited for one, so far.

    The wait tells a bot slowed by other programs on a shared machine from a slow bot.
    """
    run = wait = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            fields = (task / "schedstat").read_text().split()
            run, wait = run + int(fields[0]), wait + int(fields[1])
    return run / 1e9, wait / 1e9


@dataclasses.dataclass
class Fake:
    """The fake Bot API in its own process."""

    process: subprocess.Popen[str]
    base_url: str
    token: str

    @property
    def root(self) -> str:
        """Its address without /bot."""
        return self.base_url.removesuffix("/bot")


@contextlib.contextmanager
def fake_telegram(flood_limit: int | None) -> Any:
    """Start the fake Bot API (flood control past `flood_limit` messages a second, or none)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_telegram", str(flood_limit or "none")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        base_url, token = process.stdout.readline().split()
        yield Fake(process, base_url, token)
    finally:
        process.terminate()
        process.wait(10)


@dataclasses.dataclass
class BotProcess:
    """The bot's process and where it listens."""

    process: asyncio.subprocess.Process
    port: int
    env: dict[str, str]
    log: Path

    @property
    def webhook(self) -> str:
        """The bot's /telegram address."""
        return f"http://127.0.0.1:{self.port}/telegram"


def bot_env(
    database_url: str, fake: Fake, port: int, limits: tuple[str, str] | None
) -> dict[str, str]:
    """The bot's environment: webhook mode against the fake; `limits` lifts the sender's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TELEGRAM", "TWILIO", "PUBLIC_URL", "DATABASE_URL", "COORDINATORS"))
    }
    env.update(
        DATABASE_URL=database_url,
        TELEGRAM_BOT_TOKEN=fake.token,
        TELEGRAM_API_BASE_URL=fake.base_url,
        TELEGRAM_FILE_BASE_URL=fake.base_url.replace("/bot", "/file/bot"),
        # Told to the fake by setWebhook only; the updates come from this script.
        PUBLIC_URL="https://bot.example.org",
        TELEGRAM_WEBHOOK_SECRET=SECRET,
        HOST="127.0.0.1",
        PORT=str(port),
    )
    if limits is not None:
        env.update(TELEGRAM_RATE=limits[0], TELEGRAM_CHAT_RATE=limits[1])
    return env


async def cli(env: dict[str, str], *args: str) -> str:
    """Run `icssi-bot ARGS` to the end; its standard output."""
    process = await asyncio.create_subprocess_exec(
        BOT_COMMAND[0],
        "-m",
        "bot.cli",
        *args,
        env=env,
        cwd=BOT_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"icssi-bot {' '.join(args)} failed: {err.decode()}")
    return out.decode()


# How the bot is started (a profiler may be put in front of it), and from where.
BOT_COMMAND = [sys.executable, "-m", "bot.cli", "serve"]
BOT_ROOT = ROOT
# With --procfile, as the Procfile deploys it: `serve --role web` takes the webhooks and a
# `worker` process of its own sends (PostgreSQL only: the two share the outbox).
WORKER_COMMAND: list[str] | None = None


@contextlib.asynccontextmanager
async def bot_process(env: dict[str, str], folder: Path) -> AsyncIterator[BotProcess]:
    """`icssi-bot serve` until it answers /healthz; SIGTERM on the way out."""
    log = folder / "bot.log"
    with log.open("w") as out:
        process = await asyncio.create_subprocess_exec(
            *BOT_COMMAND,
            env=env,
            cwd=BOT_ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    bot = BotProcess(process, int(env["PORT"]), env, log)
    worker: asyncio.subprocess.Process | None = None
    if WORKER_COMMAND is not None:
        with (folder / "worker.log").open("w") as out:
            worker = await asyncio.create_subprocess_exec(
                *WORKER_COMMAND,
                env=env,
                cwd=BOT_ROOT,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
    try:
        async with aiohttp.ClientSession() as client:
            for _ in range(300):
                with contextlib.suppress(aiohttp.ClientError):
                    async with client.get(f"http://127.0.0.1:{bot.port}/healthz") as answer:
                        if answer.status == 200:
                            break
                if process.returncode is not None:
                    raise RuntimeError(f"the bot exited: {log.read_text()[-2000:]}")
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("the bot did not answer /healthz within 30 s")
        yield bot
    finally:
        for running in (process, worker):
            if running is not None and running.returncode is None:
                running.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(running.wait(), 60)
                except TimeoutError:
                    running.kill()
        text = log.read_text()
        if "Traceback" in text:
            print(f"   the bot logged errors: {text[text.index('Traceback') :][:1500]}")


@contextlib.asynccontextmanager
async def database(kind: str, folder: Path, postgres: str | None) -> AsyncIterator[str]:
    """A fresh database: a SQLite file, or a new database on the PostgreSQL server."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'bench.db'}"
        return
    import asyncpg
    from sqlalchemy.engine import make_url

    assert postgres is not None
    server = make_url(postgres).set(drivername="postgresql")
    name = f"icssi_bench_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
    dsn = server.render_as_string(hide_password=False)
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


# ------------------------------------------------------------------------- the load


@dataclasses.dataclass
class Posted:
    """One update posted to the webhook and what became of it."""

    chat: int
    step: int
    scheduled: float
    posted: float = 0.0
    status: int | None = None  # the webhook's HTTP status; None: no answer
    answered: float | None = None  # when the webhook answered
    first: float | None = None  # when the first message of the reply reached the fake
    done: float | None = None  # when the message with the next question reached the fake
    apology: bool = False
    failure: str | None = None


@dataclasses.dataclass
class Person:
    """A simulated person: their chat, language, and the question they were asked last."""

    chat: int
    locale: str
    step: int = 0
    pending: Posted | None = None
    question: dict[str, Any] | None = None  # the Message whose buttons they press next


class Load:
    """The simulated people, the updates they post and the replies the fake received."""

    def __init__(
        self, client: aiohttp.ClientSession, bot: BotProcess, fake: Fake, first_chat: int
    ) -> None:
        self.client = client
        self.webhook = bot.webhook
        self.bot_api = f"{fake.base_url}{fake.token}"
        self.next_chat = first_chat
        self.people: dict[int, Person] = {}
        self.ready: list[tuple[float, int]] = []  # (when their question arrived + think, chat)
        self.posted: list[Posted] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.others: list[float] = []  # arrival times of messages to other chats (a broadcast)
        self.broadcasting = asyncio.Event()  # set by the first of those
        self.replies: list[float] = []  # arrival times of messages to the simulated people
        self.think = 1.0
        self.next_update = 1
        self.next_query = 1
        self.sorry = apologies()

    # -- updates as Telegram sends them

    def _user(self, person: Person) -> dict[str, Any]:
        # Telegram's clients report two-letter codes: Sorani readers often have "ar" or none.
        language = "ar" if person.locale == "ckb" else person.locale
        return {
            "id": person.chat,
            "is_bot": False,
            "first_name": "User",
            "language_code": language,
        }

    def update(self, person: Person) -> dict[str, Any]:
        """The Update of the person's next step."""
        kind, value, _ = STEPS[person.step]
        value = value.format(locale=person.locale)
        update_id = self.next_update
        self.next_update += 1
        if kind == "text":
            message = {
                "message_id": 1_000_000 + update_id,
                "from": self._user(person),
                "chat": {"id": person.chat, "type": "private", "first_name": "User"},
                "date": int(time.time()),
                "text": value,
                "entities": [{"type": "bot_command", "offset": 0, "length": len(value)}],
            }
            return {"update_id": update_id, "message": message}
        assert person.question is not None
        query_id = self.query_id(self.next_query)
        self.next_query += 1
        query = {
            "id": query_id,
            "from": self._user(person),
            "message": person.question,
            "chat_instance": str(8_000_000_000_000_000_000 + person.chat),
            "data": value,
        }
        return {"update_id": update_id, "callback_query": query}

    @staticmethod
    def query_id(number: int) -> str:
        """A callback query id (issued to the fake beforehand, so that it accepts the answer)."""
        return str(6_000_000_000_000_000_000 + number)

    # -- sending

    def pick(self, now: float) -> Person:
        """Who posts in this slot: the person waiting longest for their turn, or a newcomer."""
        if self.ready and self.ready[0][0] <= now:
            _when, chat = heapq.heappop(self.ready)
            return self.people[chat]
        chat = self.next_chat
        self.next_chat += 1
        person = Person(chat, LOCALES[chat % 3])
        self.people[chat] = person
        return person

    def post(self, person: Person, scheduled: float) -> None:
        """Post the person's next update now, without waiting for the answer."""
        record = Posted(person.chat, person.step, scheduled)
        person.pending = record
        self.posted.append(record)
        body = json.dumps(self.update(person)).encode()
        task = asyncio.create_task(self._post(record, body))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _post(self, record: Posted, body: bytes) -> None:
        headers = {
            "Content-Type": "application/json",
            "X-Telegram-Bot-Api-Secret-Token": SECRET,
        }
        record.posted = time.monotonic()
        call: dict[str, Any] | None = None
        try:
            async with self.client.post(self.webhook, data=body, headers=headers) as answer:
                content = await answer.read()
                record.status = answer.status
                if answer.status == 200 and content:
                    call = json.loads(content)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            record.failure = type(exc).__name__
        record.answered = time.monotonic()
        if call is not None:
            # A method in the answer: Telegram makes that call for the bot.
            method = call.pop("method")
            async with self.client.post(f"{self.bot_api}/{method}", json=call) as made:
                await made.read()

    async def run(self, rate: float, seconds: float) -> None:
        """Post updates at `rate` a second for `seconds`, evenly, each slot on its schedule."""
        start = time.monotonic()
        slot = start
        while slot < start + seconds:
            delay = slot - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.post(self.pick(time.monotonic()), slot)
            slot += 1.0 / rate

    async def wave(self, count: int) -> None:
        """`count` newcomers send /start all at once (the client keeps CONNECTIONS open)."""
        now = time.monotonic()
        for _ in range(count):
            self.post(self.pick(float("-inf")), now)

    async def settle(self, grace: float) -> None:
        """Wait for the posts to be answered and the replies to arrive (at most `grace` s)."""
        if self.tasks:
            await asyncio.wait(set(self.tasks))
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if all(p.done is not None or p.status != 200 for p in self.posted):
                return
            await asyncio.sleep(0.1)

    # -- receiving

    def received(self, at: float, message: dict[str, Any], markup: dict[str, Any] | None) -> None:
        """A message the bot sent, as the fake received it, and the keyboard sent with it."""
        person = self.people.get(int(message["chat"]["id"]))
        if person is None:
            self.others.append(at)
            self.broadcasting.set()
            return
        self.replies.append(at)
        record = person.pending
        if record is None:
            return
        if record.first is None:
            record.first = at
        text = message.get("text") or message.get("caption") or ""
        if any(sorry in text for sorry in self.sorry):
            record.apology = True
        markup = markup or {}
        rows = markup.get("inline_keyboard") or markup.get("keyboard") or []
        buttons = [button for row in rows for button in row if isinstance(button, dict)]
        payloads = {button.get("callback_data") for button in buttons}
        if any(button.get("request_location") for button in buttons):
            payloads.add(LOCATION)
        if STEPS[person.step][2] in payloads:
            record.done = at
            person.pending = None
            person.question = message
            person.step += 1
            if person.step < len(STEPS):
                heapq.heappush(self.ready, (at + self.think, person.chat))


@contextlib.asynccontextmanager
async def feed(client: aiohttp.ClientSession, fake: Fake, load: Load) -> AsyncIterator[None]:
    """Give `load` every message the fake receives from now on, as it comes."""
    async with client.get(f"{fake.root}/_fake/stats") as answer:
        after = int((await answer.json())["sent"])

    async def follow() -> None:
        nonlocal after
        while True:
            url = f"{fake.root}/_fake/sent?after={after}&wait=1"
            async with client.get(url) as answer:
                data = await answer.json()
            for item in data["messages"]:
                load.received(float(item["at"]), item["message"], item["reply_markup"])
            after = int(data["next"])
            await asyncio.sleep(0.02)  # no busy loop: gather 20 ms of messages at a time

    task = asyncio.create_task(follow())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def issue_callbacks(client: aiohttp.ClientSession, fake: Fake, count: int) -> None:
    """Tell the fake the callback query ids the load will use (as if Telegram issued them)."""
    ids = [Load.query_id(n) for n in range(1, count + 1)]
    async with client.post(f"{fake.root}/_fake/callbacks", json={"ids": ids}) as answer:
        assert answer.status == 200


def client_session() -> aiohttp.ClientSession:
    """An HTTP client like Telegram's side: a bounded number of connections, a timeout."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=CONNECTIONS),
        timeout=aiohttp.ClientTimeout(total=60),
    )


# ------------------------------------------------------------------------- figures


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of `values` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(fraction * len(ordered)) - 1))]


def ms(value: float) -> str:
    """Seconds as milliseconds."""
    return f"{value * 1000:.0f}"


@dataclasses.dataclass
class Errors:
    """What went wrong with a set of updates."""

    refused: int = 0  # an HTTP status other than 200
    failed: int = 0  # no answer (connection error, timeout)
    missing: int = 0  # answered 200, but the reply never came
    apologies: int = 0

    @property
    def total(self) -> int:
        """All errors."""
        return self.refused + self.failed + self.missing + self.apologies

    def __str__(self) -> str:
        if not self.total:
            return "0"
        return (
            f"{self.total} ({self.refused} refused, {self.failed} failed, "
            f"{self.missing} unanswered, {self.apologies} apologies)"
        )


def errors(posted: list[Posted]) -> Errors:
    """Count the errors among `posted`."""
    found = Errors()
    for record in posted:
        if record.failure is not None:
            found.failed += 1
        elif record.status != 200:
            found.refused += 1
        elif record.done is None:
            found.missing += 1
        if record.apology:
            found.apologies += 1
    return found


def latencies(posted: list[Posted]) -> tuple[list[float], list[float]]:
    """First-reply and answered latencies (seconds) of the updates that got a reply."""
    first = [p.first - p.posted for p in posted if p.first is not None]
    done = [p.done - p.posted for p in posted if p.done is not None]
    return first, done


def summary(values: list[float]) -> str:
    """p50/p95/p99/max in ms."""
    if not values:
        return "no replies"
    return (
        f"p50 {ms(statistics.median(values))} p95 {ms(percentile(values, 0.95))} "
        f"p99 {ms(percentile(values, 0.99))} max {ms(max(values))} ms"
    )


def load_average() -> str:
    """The machine's load average over 1, 5 and 15 minutes."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


# ------------------------------------------------------------------------- the three runs


async def capacity(
    kind: str, rate: float, seconds: float, warmup: float, think: float, postgres: str | None
) -> dict[str, Any]:
    """(1) One rate on one database with the sender's limits lifted; the figures."""
    with tempfile.TemporaryDirectory() as name, fake_telegram(None) as fake:
        folder = Path(name)
        async with database(kind, folder, postgres) as url:
            env = bot_env(url, fake, free_port(), ("10000", "1000"))
            await cli(env, "db", "upgrade")
            async with bot_process(env, folder) as bot, client_session() as client:
                await issue_callbacks(client, fake, int(rate * (seconds + warmup) * 1.2) + 100)
                load = Load(client, bot, fake, 10_000_000)
                load.think = think
                async with feed(client, fake, load):
                    await load.run(rate, warmup)
                    measured_from = len(load.posted)
                    before = cpu_seconds(bot.process.pid), cpu_seconds(fake.process.pid)
                    mine = time.process_time()
                    start = time.monotonic()
                    await load.run(rate, seconds)
                    end = time.monotonic()
                    after = cpu_seconds(bot.process.pid), cpu_seconds(fake.process.pid)
                    mine = time.process_time() - mine
                    await load.settle(grace=30)
    posted = load.posted[measured_from:]
    first, done = latencies(posted)
    replies = sum(1 for at in load.replies if start <= at < end)
    lag = [p.posted - p.scheduled for p in posted]
    answers = [p.answered - p.posted for p in posted if p.answered is not None]
    return {
        "kind": kind,
        "rate": rate,
        "updates": len(posted),
        "sent_rate": len(posted) / (end - start),
        "replies_rate": replies / (end - start),
        "first": first,
        "done": done,
        "webhook": answers,
        "errors": errors(posted),
        "lag_p99": percentile(lag, 0.99) if lag else 0.0,
        "bot_cpu": (after[0][0] - before[0][0]) / (end - start),
        "bot_waited": (after[0][1] - before[0][1]) / (end - start),
        "fake_cpu": (after[1][0] - before[1][0]) / (end - start),
        "own_cpu": mine / (end - start),
        "people": len(load.people),
    }


def print_capacity(result: dict[str, Any]) -> None:
    """One line (and a detail line) of figures for a capacity run."""
    first = result["first"]
    p95 = percentile(first, 0.95) if first else float("inf")
    print(
        f"{result['kind']:10} {result['rate']:5.0f}/s: posted {result['sent_rate']:5.1f}/s, "
        f"replies {result['replies_rate']:6.1f}/s; first reply {summary(first)}; "
        f"errors {result['errors']}" + ("" if p95 < 0.2 else "  (p95 >= 200 ms)")
    )
    print(
        f"{'':10}        answered (next question) {summary(result['done'])}; webhook 200 in "
        f"{summary(result['webhook'])}; bot CPU {result['bot_cpu'] * 100:.0f}% (waited for "
        f"one {result['bot_waited'] * 100:.0f}%), fake {result['fake_cpu'] * 100:.0f}%, "
        f"this script {result['own_cpu'] * 100:.0f}%; "
        f"schedule lag p99 {ms(result['lag_p99'])} ms; "
        f"{result['people']} people; load {load_average()}"
    )


async def drain(wave: int) -> None:
    """(2) `wave` people send /start at once, at the default limits; until every reply is out."""
    with tempfile.TemporaryDirectory() as name, fake_telegram(30) as fake:
        folder = Path(name)
        env = bot_env(f"sqlite:///{folder / 'bench.db'}", fake, free_port(), None)
        await cli(env, "db", "upgrade")
        async with bot_process(env, folder) as bot, client_session() as client:
            load = Load(client, bot, fake, 20_000_000)
            async with feed(client, fake, load):
                start = time.monotonic()
                await load.wave(wave)
                await asyncio.wait(set(load.tasks))
                taken = time.monotonic() - start
                await load.settle(grace=wave / 30 * 3 + 30)
            async with client.get(f"{fake.root}/_fake/stats") as answer:
                flood_hits = (await answer.json())["flood_hits"]
    first, _done = latencies(load.posted)
    last = max((p.first for p in load.posted if p.first is not None), default=start)
    out = last - start
    print(
        f"drain: {wave:,} people send /start at once (30 messages/s): the webhook took them in "
        f"{taken:.1f} s ({wave / taken:.0f}/s); every reply out after {out:.1f} s "
        f"({len(first) / out:.1f} messages/s; {wave / 30:.1f} s at exactly 30/s); "
        f"reply {summary(first)}; 429 answers {flood_hits}; errors {errors(load.posted)}; "
        f"load {load_average()}"
    )


async def subscribers(url: str, count: int) -> None:
    """`count` people subscribed to the bulletin on Telegram, in the three languages."""
    from sqlalchemy import insert

    from bot.db import Database
    from bot.models import Contact

    db = Database(url.replace("sqlite:///", "sqlite+aiosqlite:///", 1))
    now = datetime.now(UTC)
    rows = [
        {
            "address": f"telegram:{30_000_000 + n}",
            "channel": "telegram",
            "locale": LOCALES[n % 3],
            "first_seen": now,
            "last_seen": now,
            "subscribed": True,
            "unreachable": False,
        }
        for n in range(count)
    ]
    for start in range(0, count, 5000):
        async with db.transaction() as session:
            await session.execute(insert(Contact), rows[start : start + 5000])
    await db.close()


async def priority(rate: float, seconds: float, count: int) -> None:
    """(3) Replies without and during a broadcast to `count` people, at the default limits."""
    with tempfile.TemporaryDirectory() as name, fake_telegram(30) as fake:
        folder = Path(name)
        url = f"sqlite:///{folder / 'bench.db'}"
        env = bot_env(url, fake, free_port(), None)
        await cli(env, "db", "upgrade")
        await subscribers(url, count)
        texts = []
        for locale, title, text in (
            ("ar", "نشرة", "نص النشرة "),
            ("ckb", "بڵاوکراوە", "دەقی بڵاوکراوە "),
            ("en", "Bulletin", "The bulletin's text "),
        ):
            path = folder / f"{locale}.txt"
            path.write_text(text * 20, encoding="utf-8")
            texts += [f"--title-{locale}", title, f"--text-{locale}", str(path)]
        async with bot_process(env, folder) as bot, client_session() as client:
            await issue_callbacks(client, fake, int(rate * seconds * 3) + 100)
            quiet = Load(client, bot, fake, 40_000_000)
            quiet.think = 2.0
            async with feed(client, fake, quiet):
                await quiet.run(rate, seconds)
                await quiet.settle(grace=30)
            busy = Load(client, bot, fake, 50_000_000)
            busy.think = 2.0
            busy.next_query = quiet.next_query
            busy.next_update = quiet.next_update
            async with feed(client, fake, busy):
                created = await cli(env, "bulletin", "create", *texts, "--now", "--yes")
                await busy.broadcasting.wait()
                start = time.monotonic()
                await busy.run(rate, seconds)
                end = time.monotonic()
                await busy.settle(grace=30)
            bulletin = next(word for word in created.split() if word.isdigit())
            await cli(env, "bulletin", "stop", bulletin)
            async with client.get(f"{fake.root}/_fake/stats") as answer:
                flood_hits = (await answer.json())["flood_hits"]
    quiet_first, quiet_done = latencies(quiet.posted)
    busy_first, busy_done = latencies(busy.posted)
    during = sum(1 for at in busy.others if start <= at < end)
    replies = sum(1 for at in busy.replies if start <= at < end)
    print(
        f"priority: {rate:.0f} updates/s at the default limits (30 messages/s, 1 a second to a "
        f"person)\n  without a broadcast: first reply {summary(quiet_first)}; next question "
        f"{summary(quiet_done)}; errors {errors(quiet.posted)}\n"
        f"  during a broadcast to {count:,}: first reply {summary(busy_first)}; next question "
        f"{summary(busy_done)}; errors {errors(busy.posted)}\n"
        f"  meanwhile ({end - start:.0f} s): {during} broadcast messages "
        f"({during / (end - start):.1f}/s) and {replies} replies ({replies / (end - start):.1f}/s)"
        f"; 429 answers {flood_hits}; load {load_average()}"
    )


FLOODER = 90_000_000  # the chat that floods


def flood_update(number: int) -> dict[str, Any]:
    """One of the flooder's text messages, as Telegram posts it."""
    return {
        "update_id": 500_000_000 + number,
        "message": {
            "message_id": number,
            "from": {"id": FLOODER, "is_bot": False, "first_name": "F", "language_code": "ar"},
            "chat": {"id": FLOODER, "type": "private", "first_name": "F"},
            "date": int(time.time()),
            "text": f"hello {number}",
        },
    }


async def converse(load: Load, first_chat: int, until: float) -> None:
    """One conversation after another in this slot: a newcomer goes through the six steps,
    answering each question at least `load.think` seconds after it came; then the next one."""
    chat = first_chat
    while time.monotonic() < until:
        person = Person(chat, LOCALES[chat % 3])
        load.people[chat] = person
        while person.step < len(STEPS) and time.monotonic() < until:
            load.post(person, time.monotonic())
            record = person.pending
            assert record is not None
            deadline = time.monotonic() + 30
            while record.done is None and time.monotonic() < deadline:  # noqa: ASYNC110 - set by the feed
                await asyncio.sleep(0.01)
            if record.done is None:
                break  # counted as unanswered; a newcomer takes the slot
            await asyncio.sleep(load.think)
        chat += 1_000


async def flood(seconds: float, limit: str, burst: int, conversing: int) -> dict[str, Any]:
    """(4) One chat posts `burst` messages in about 3 s, then one a second, while `conversing`
    people go through their conversations; at the default limits (30 messages/s, 1 a second to
    a chat, the fake's flood control on) and INBOUND_PER_MINUTE=`limit`."""
    with tempfile.TemporaryDirectory() as name, fake_telegram(30) as fake:
        folder = Path(name)
        env = bot_env(f"sqlite:///{folder / 'bench.db'}", fake, free_port(), None)
        env["INBOUND_PER_MINUTE"] = limit
        await cli(env, "db", "upgrade")
        async with bot_process(env, folder) as bot, client_session() as client:
            await issue_callbacks(client, fake, int(conversing * seconds * 1.2) + 100)
            load = Load(client, bot, fake, 60_000_000)
            load.think = 1.0
            statuses: list[int | None] = []

            async def post_flood(number: int) -> None:
                body = json.dumps(flood_update(number)).encode()
                headers = {
                    "Content-Type": "application/json",
                    "X-Telegram-Bot-Api-Secret-Token": SECRET,
                }
                try:
                    async with client.post(bot.webhook, data=body, headers=headers) as answer:
                        await answer.read()
                        statuses.append(answer.status)
                except (aiohttp.ClientError, TimeoutError):
                    statuses.append(None)

            async def flooder(until: float) -> None:
                if not burst:  # the baseline: nobody floods
                    return
                sent = []
                for number in range(burst):  # `burst` in about 3 s
                    sent.append(asyncio.create_task(post_flood(number)))
                    await asyncio.sleep(3.0 / burst)
                number = burst
                while time.monotonic() < until:  # then a steady one a second
                    sent.append(asyncio.create_task(post_flood(number)))
                    number += 1
                    await asyncio.sleep(1.0)
                await asyncio.gather(*sent)

            async with feed(client, fake, load):
                start = time.monotonic()
                until = start + seconds
                await asyncio.gather(
                    flooder(until),
                    *(converse(load, 70_000_000 + n, until) for n in range(conversing)),
                )
                end = time.monotonic()
                await load.settle(grace=30)
            async with client.get(f"{fake.root}/_fake/stats") as answer:
                flood_hits = (await answer.json())["flood_hits"]
    first, done = latencies(load.posted)
    flooded = [at for at in load.others if start <= at]
    return {
        "limit": limit,
        "seconds": end - start,
        "first": first,
        "done": done,
        "errors": errors(load.posted),
        "updates": len(load.posted),
        "flood_posted": len(statuses),
        "flood_refused": sum(1 for status in statuses if status != 200),
        "flood_replies": len(flooded),
        "flood_hits": flood_hits,
    }


def print_flood(result: dict[str, Any]) -> None:
    """The figures of one flood run."""
    first = result["first"]
    p95 = percentile(first, 0.95) if first else float("inf")
    print(
        f"flood, INBOUND_PER_MINUTE={result['limit']}: {result['updates']} updates of the "
        f"others in {result['seconds']:.0f} s; their first reply {summary(first)}"
        + ("" if p95 < 1.0 else "  (p95 >= 1 s)")
        + f"; next question {summary(result['done'])}; errors {result['errors']}\n"
        f"  the flooder posted {result['flood_posted']} ({result['flood_refused']} not 200) and "
        f"got {result['flood_replies']} messages back; 429 answers {result['flood_hits']}; "
        f"load {load_average()}"
    )


async def main(args: argparse.Namespace) -> None:
    """Run the parts asked for and print their figures."""
    print(f"load average before: {load_average()} ({os.cpu_count()} cores)")
    if "capacity" in args.only:
        print(
            f"(1) capacity, the sender's limits lifted, {args.seconds:.0f} s per rate after "
            f"{args.warmup:.0f} s of warm-up; latency from the webhook post to the fake's receipt"
        )
        # The Procfile's two processes share one outbox: PostgreSQL only.
        kinds = ([] if args.procfile else ["sqlite"]) + (["postgresql"] if args.postgres else [])
        if args.procfile:
            print("    as the Procfile deploys it: `serve --role web` and `worker`")
        for kind in kinds:
            for rate in args.rates:
                result = await capacity(
                    kind, rate, args.seconds, args.warmup, args.think, args.postgres
                )
                print_capacity(result)
        if not args.postgres:
            print("PostgreSQL skipped: give --postgres URL (a server where we may create one)")
    if "drain" in args.only:
        await drain(args.wave)
    if "priority" in args.only:
        await priority(args.priority_rate, args.seconds, args.subscribers)
    if "flood" in args.only:
        print(
            f"(4) flood: one chat sends {args.burst} messages in 3 s, then one a second, while "
            f"{args.conversing} others converse, for {args.flood_seconds:.0f} s; default limits"
        )
        for limit in args.inbound_limits:
            print_flood(await flood(args.flood_seconds, limit, args.burst, args.conversing))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rates", type=float, nargs="*", default=[25, 50, 100, 200])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per rate")
    parser.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds first")
    parser.add_argument("--think", type=float, default=1.0, help="least seconds to answer")
    parser.add_argument("--postgres", help="postgresql://… of a server (see above)")
    parser.add_argument(
        "--procfile",
        action="store_true",
        help="as the Procfile deploys it: `serve --role web` and a `worker` (PostgreSQL only)",
    )
    parser.add_argument("--wave", type=int, default=2000)
    parser.add_argument("--subscribers", type=int, default=5000)
    parser.add_argument("--priority-rate", type=float, default=5.0)
    parser.add_argument(
        "--only",
        nargs="*",
        choices=["capacity", "drain", "priority", "flood"],
        default=["capacity", "drain", "priority"],
    )
    parser.add_argument("--flood", action="store_true", help="the flood alone (--only flood)")
    parser.add_argument(
        "--burst", type=int, default=400, help="the flooder's first messages (0: no flooder)"
    )
    parser.add_argument(
        "--bot-root", type=Path, help="run the bot of another checkout (to compare versions)"
    )
    parser.add_argument("--conversing", type=int, default=20, help="people talking meanwhile")
    parser.add_argument("--flood-seconds", type=float, default=40.0)
    parser.add_argument(
        "--inbound-limits",
        nargs="*",
        default=["20", "1000"],
        help="INBOUND_PER_MINUTE of each flood run (1000: the sender's fairness alone)",
    )
    arguments = parser.parse_args()
    if arguments.flood:
        arguments.only = ["flood"]
    if arguments.bot_root is not None:
        BOT_ROOT = arguments.bot_root.resolve()
    if arguments.procfile:
        BOT_COMMAND += ["--role", "web"]
        WORKER_COMMAND = [sys.executable, "-m", "bot.cli", "worker"]
    asyncio.run(main(arguments))
