"""Faults with the real `icssi-bot` process: killed in a broadcast and in a conversation,
Telegram answering 500 for a while, the database locked by another process.

The bot runs as its own process on the test's database (a SQLite file, or PostgreSQL); Telegram
is the fake Bot API on 127.0.0.1 (tests/fake_telegram.py). The assertions are on what the users
received, as the fake recorded it, and on what the database holds.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import func, insert, select

from bot.db import Database, upgrade_async
from bot.inflight import bound
from bot.models import Contact, OutboxMessage, Report
from bot.sender import ChannelWorker
from tests.conftest import ON_POSTGRES, user_url
from tests.fake_telegram import FakeTelegram
from tests.helpers import LANGS, t, until
from tests.net import free_port
from tests.test_telegram_process import SECRET

# The broadcast killed midway: a rate whose sends in flight, the most that can go out twice,
# are well under the third of it sent before the kill (bot/inflight.py: bound(200) = 125, and
# about 200 × 0.35 × 1.25 = 90 with the fake answering in 0.3 s).
KILLED_RATE = 200
TITLES = {
    "ar": "نشرة المبادرة ٧",
    "ckb": "بڵاوکراوەی دەستپێشخەری ٧",
    "en": "Initiative bulletin 7",
}
TEXTS = {
    "ar": "اجتمعت منظمات المبادرة في بغداد.",
    "ckb": "ڕێکخراوەکانی دەستپێشخەری لە بەغدا کۆبوونەوە.",
    "en": "The Initiative's organizations met in Baghdad.",
}
T = TypeVar("T")
WAIT = 60.0  # seconds: a deadline for what normally takes a few, on a busy shared machine


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


class BotProcess:
    """The real `icssi-bot` process; its standard error goes to a file (a pipe could fill up)."""

    def __init__(self, tmp_path: Path, env: dict[str, str], args: list[str]) -> None:
        self.env = env
        self.args = args
        self.log_path = tmp_path / "bot.log"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start it (the database must be migrated)."""
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot.cli",
                *self.args,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    @property
    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process is not None and self.process.returncode is None

    async def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or closed."""
        assert self.process is not None
        self.process.kill()
        assert await asyncio.wait_for(self.process.wait(), timeout=60) == -signal.SIGKILL

    async def stop(self) -> None:
        """SIGTERM, then a clean exit."""
        if not self.alive:
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.process.wait(), timeout=60)
        assert code == 0, self.log()

    def log(self) -> str:
        """What the process wrote so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@pytest.fixture
async def bots() -> AsyncIterator[list[BotProcess]]:
    """The processes a test starts; any still running at the end is killed."""
    started: list[BotProcess] = []
    yield started
    for bot in started:
        if bot.alive:
            assert bot.process is not None
            bot.process.kill()
            await asyncio.wait_for(bot.process.wait(), timeout=60)


def environment(db_url: str, fake: FakeTelegram, **more: str) -> dict[str, str]:
    """The bot's environment: the test's database and the fake as Telegram."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TELEGRAM", "PUBLIC_URL", "DATABASE_URL", "COORDINATORS"))
    }
    env.update(
        DATABASE_URL=user_url(db_url),
        TELEGRAM_BOT_TOKEN=fake.token,
        TELEGRAM_API_BASE_URL=fake.base_url,
        TELEGRAM_FILE_BASE_URL=fake.base_file_url,
        TELEGRAM_CHAT_RATE="50",
        LOG_LEVEL="INFO",
        **more,
    )
    return env


def webhook_environment(db_url: str, fake: FakeTelegram, port: int) -> dict[str, str]:
    """The environment of `icssi-bot serve` taking Telegram's webhook on `port`."""
    return environment(
        db_url,
        fake,
        PUBLIC_URL="https://bot.example.org",
        TELEGRAM_WEBHOOK_SECRET=SECRET,
        HOST="127.0.0.1",
        PORT=str(port),
    )


async def migrated(db_url: str) -> Database:
    """The test's database, migrated by the real migrations."""
    db = Database(db_url)
    await upgrade_async(db.url)
    return db


async def subscribe(db: Database, first_chat: int, count: int) -> dict[int, str]:
    """`count` Telegram subscribers in the three languages, straight into the database."""
    now = datetime.now(UTC)
    people = {first_chat + n: LANGS[n % 3] for n in range(count)}
    async with db.transaction() as session:
        await session.execute(
            insert(Contact),
            [
                {
                    "address": f"telegram:{chat}",
                    "channel": "telegram",
                    "locale": locale,
                    "first_seen": now,
                    "last_seen": now,
                    "subscribed": True,
                    "subscribed_at": now,
                    "unreachable": False,
                }
                for chat, locale in people.items()
            ],
        )
    return people


async def create_bulletin(tmp_path: Path, env: dict[str, str]) -> int:
    """`icssi-bot bulletin create ... --now` in three languages; the bulletin's id."""
    args = []
    for locale in LANGS:
        text = tmp_path / f"bulletin-{locale}.txt"
        text.write_text(TEXTS[locale], encoding="utf-8")
        args += [f"--title-{locale}", TITLES[locale], f"--text-{locale}", str(text)]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "bulletin",
        "create",
        *args,
        "--now",
        "--yes",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode()
    return int(out.decode().split("\t")[0])


def bulletins_received(fake: FakeTelegram, people: dict[int, str]) -> Counter[int]:
    """How many times each subscriber got the bulletin, checking it came in their language."""
    got: Counter[int] = Counter()
    for message in fake.sent():
        chat = int(message["chat"]["id"])
        locale = people.get(chat)
        if locale is None or TITLES[locale] not in message["plain"]:
            continue
        assert message["plain"].startswith(TITLES[locale]), message["plain"]
        assert TEXTS[locale] in message["plain"]
        assert message["formatted"][0] == ("b", TITLES[locale])  # the title in bold
        got[chat] += 1
    return got


async def deliveries(db: Database, bulletin_id: int) -> list[tuple[int | None, str]]:
    """The bulletin's delivery rows: (contact id, status)."""
    async with db.transaction() as session:
        rows = await session.execute(
            select(OutboxMessage.contact_id, OutboxMessage.status).where(
                OutboxMessage.bulletin_id == bulletin_id
            )
        )
        return [(contact, status) for contact, status in rows]


async def contact_ids(db: Database) -> set[int]:
    """Every contact's id."""
    async with db.transaction() as session:
        return set((await session.scalars(select(Contact.id))).all())


async def settled(db: Database) -> bool:
    """Whether the outbox has rows and none of them is still pending."""
    async with db.transaction() as session:
        total = await session.scalar(select(func.count(OutboxMessage.id)))
        pending = await session.scalar(
            select(func.count(OutboxMessage.id)).where(OutboxMessage.status == "pending")
        )
    return bool(total) and not pending


# 1. Killed in the middle of a broadcast -----------------------------------------------------


@pytest.fixture
async def slow_fake() -> AsyncIterator[FakeTelegram]:
    """Telegram answering in 0.2 to 0.4 s, as from Iraq."""
    async with FakeTelegram(delay=0.3, jitter=0.2) as server:
        yield server


async def test_a_broadcast_killed_midway_resumes_without_losses_or_repeats(
    tmp_path: Path, db_url: str, slow_fake: FakeTelegram, bots: list[BotProcess]
) -> None:
    fake = slow_fake
    size = 2000
    db = await migrated(db_url)
    try:
        people = await subscribe(db, 3_000_000, size)
        subscribers = await contact_ids(db)
        env = environment(db_url, fake, TELEGRAM_RATE=str(KILLED_RATE))
        bulletin_id = await create_bulletin(tmp_path, env)

        first = BotProcess(tmp_path, env, ["run"])
        bots.append(first)
        await first.start()
        await until(lambda: fake.sent_count >= size // 3, "a third of the broadcast sent")
        await first.kill()
        sent_before = fake.sent_count
        assert sent_before < size, "the broadcast ended before the kill; nothing was tested"

        second = BotProcess(tmp_path, env, ["run"])
        bots.append(second)
        await second.start()
        await until(lambda: settled(db), "every delivery row written", every=0.5)
        await second.stop()

        got = bulletins_received(fake, people)
        assert set(got) == set(people)  # every subscriber, in their language
        twice = [chat for chat, times in got.items() if times > 1]
        assert max(got.values()) <= 2
        assert len(twice) <= bound(KILLED_RATE), f"{len(twice)} subscribers got it twice"
        rows = await deliveries(db, bulletin_id)
        assert len(rows) == size
        assert {contact for contact, _status in rows} == subscribers  # one row each
        assert {status for _contact, status in rows} == {"sent"}
        assert "Traceback" not in second.log()
    finally:
        await db.close()


# 2. Killed in the middle of a conversation --------------------------------------------------

PLACE = (
    "What is the name of the camp, neighbourhood or village? Type it, or share your "
    "location. You may also skip this question."
)
WHEN = "When was the family displaced? Choose, or type the month and year, for example 3/2024."
PEOPLE = "How many people are in the family, including you? Type a number from 1 to 30."
NEEDS = "What does the family need? Choose all that apply, then press Done."
NOTES = (
    "Is there anything else we should know? You can write up to 1,000 characters or send a "
    "photo. Please do not send photos that show faces. Or press Skip."
)


class User:
    """Someone on Telegram writing to the bot: updates by long polling, or to the webhook."""

    def __init__(self, fake: FakeTelegram, chat: int, webhook: httpx.AsyncClient | None = None):
        self.fake = fake
        self.chat = chat
        self.webhook = webhook
        self.answers: list[int] = []  # the webhook's HTTP status for each update posted

    def seen(self) -> int:
        """How many messages the bot has sent this user."""
        return len(self.fake.sent(self.chat))

    async def deliver(self, update: dict[str, Any]) -> None:
        """Telegram hands the update to the bot."""
        if self.webhook is None:
            self.fake.push_update(update)
            return
        response = await self.webhook.post(
            "/telegram", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
        )
        self.answers.append(response.status_code)

    def text(self, words: str) -> dict[str, Any]:
        """An update with a text the user typed."""
        return self.fake.text_update(self.chat, words)

    def tap(self, payload: str) -> dict[str, Any]:
        """An update with a press on a button of the last message that had buttons."""
        keyboards = [
            m
            for m in self.fake.sent(self.chat)
            if isinstance(m["reply_markup"], dict) and "inline_keyboard" in m["reply_markup"]
        ]
        return self.fake.callback_update(
            self.chat, payload, message_id=keyboards[-1]["message_id"]
        )

    async def expect(self, after: int, words: str) -> dict[str, Any]:
        """The first message after the first `after` ones that contains `words`."""
        found: list[dict[str, Any]] = []

        def arrived() -> bool:
            found[:] = [m for m in self.fake.sent(self.chat)[after:] if words in m["plain"]]
            return bool(found)

        try:
            await until(arrived, f"the bot to say {words!r} to {self.chat}")
        except AssertionError as exc:
            said = [m["plain"][:80] for m in self.fake.sent(self.chat)[after:]]
            raise AssertionError(f"{exc}; it said {said!r}") from None
        return found[0]

    async def say(self, words: str, then: str) -> dict[str, Any]:
        """Type `words`; the bot's answer that contains `then`."""
        before = self.seen()
        await self.deliver(self.text(words))
        return await self.expect(before, then)

    async def press(self, payload: str, then: str) -> dict[str, Any]:
        """Press a button; the bot's answer that contains `then`."""
        before = self.seen()
        await self.deliver(self.tap(payload))
        return await self.expect(before, then)


async def test_a_conversation_killed_midway_goes_on_at_the_same_step(
    tmp_path: Path, db_url: str, fake: FakeTelegram, bots: list[BotProcess]
) -> None:
    db = await migrated(db_url)
    try:
        env = environment(db_url, fake)
        first = BotProcess(tmp_path, env, ["run"])
        bots.append(first)
        await first.start()
        user = User(fake, 6001)
        await user.say("/start", t("ar", "Please choose your language."))
        await user.press("lang:ar", t("ar", "How can I help you? Choose one of the options."))
        await user.press("menu:report", t("ar", "Do you agree?"))
        await user.press("r:agree", t("ar", "In which governorate is the family staying now?"))
        await user.press("gov:IQG09", t("ar", "In which district?"))
        await user.press("dist:IQG09Q04", t("ar", PLACE))
        origin = await user.say(
            "مخيم شاريا", t("ar", "From which governorate was the family displaced?")
        )
        await first.kill()

        # Written while the bot is down: Telegram keeps it until the bot asks again.
        before = user.seen()
        await user.deliver(user.text("نينوى"))
        second = BotProcess(tmp_path, env, ["run"])
        bots.append(second)
        await second.start()
        question = await user.expect(before, t("ar", WHEN))
        # Before it, at most the question that was in flight at the kill, said again.
        said = [m["plain"] for m in fake.sent(user.chat)[before:]]
        assert set(said[: said.index(question["plain"])]) <= {origin["plain"]}

        await user.press("when:gt1y", t("ar", PEOPLE))
        await user.press("n:6", t("ar", "How many of them are children under 5?"))
        await user.press("n:2", t("ar", "How many of them are over 60?"))
        await user.press("n:1", t("ar", "How many of them live with a disability?"))
        await user.press("n:0", t("ar", "How many women are pregnant or breastfeeding?"))
        await user.press("n:1", t("ar", "Is the family headed by a woman?"))
        await user.press("no", t("ar", "Where is the family sheltering?"))
        await user.press("shelter:camp", t("ar", NEEDS))
        chosen = await user.press("need:food", t("ar", NEEDS))
        assert "✅ " + t("ar", "Food") in str(chosen["reply_markup"])
        await user.press("need:done", t("ar", NOTES))
        await user.press("notes:skip", t("ar", "May a coordinator contact you about this report?"))
        summary = await user.press("no", t("ar", "Please check your answers:"))
        # The answers given before the kill are all there.
        for answer in ("دهوك", "زاخو", "مخيم شاريا", "نينوى", t("ar", "More than a year ago")):
            assert answer in summary["plain"]
        await user.press("r:send", t("ar", "Main menu"))
        await second.stop()

        async with db.transaction() as session:
            [report] = (await session.scalars(select(Report))).all()
        assert (report.governorate, report.district, report.origin) == (
            "IQG09",
            "IQG09Q04",
            "IQG15",
        )
        assert (report.place, report.displaced, report.people, report.children) == (
            "مخيم شاريا",
            "gt1y",
            6,
            2,
        )
        assert (report.shelter, report.needs, report.locale) == ("camp", ["food"], "ar")
        assert "Traceback" not in second.log()
    finally:
        await db.close()


# 3. Telegram answering 500 for a while ------------------------------------------------------


async def healthy(client: httpx.AsyncClient) -> bool:
    """Whether the web app answers /healthz with 200."""
    try:
        return (await client.get("/healthz")).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.timeout(300)  # Telegram down for seconds on purpose; slow on a busy CI machine
async def test_telegram_answering_500_delays_replies_and_broadcasts_but_loses_none(
    tmp_path: Path, db_url: str, fake: FakeTelegram, bots: list[BotProcess]
) -> None:
    db = await migrated(db_url)
    try:
        people = await subscribe(db, 4_000_000, 60)
        port = free_port()
        env = {**webhook_environment(db_url, fake, port), "TELEGRAM_RATE": "100"}
        bot = BotProcess(tmp_path, env, ["serve"])
        bots.append(bot)
        await bot.start()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            await until(lambda: healthy(client), "the web app answers", every=0.2)
            user = User(fake, 7001, client)
            await user.say("/start", "Please choose your language.")

            fake.outage(5.0)
            before = user.seen()
            await user.deliver(user.text("English"))  # the reply is queued; Telegram fails
            bulletin_id = await create_bulletin(tmp_path, env)
            assert user.seen() == before

            await user.expect(before, "How can I help you? Choose one of the options.")
            assert not fake.in_outage
            await until(lambda: settled(db), "every message sent", every=0.5)
        await bot.stop()

        assert fake.outage_answers > 0  # the bot did meet the outage
        assert user.answers == [200, 200]
        got = bulletins_received(fake, people)
        assert got == Counter(dict.fromkeys(people, 1))  # each subscriber, once, in their language
        rows = await deliveries(db, bulletin_id)
        assert len(rows) == len(people)
        async with db.transaction() as session:
            statuses = Counter((await session.scalars(select(OutboxMessage.status))).all())
        assert set(statuses) == {"sent"}
        assert "Traceback" not in bot.log()
    finally:
        await db.close()


@pytest.mark.parametrize("outage", [60.0, 300.0])
def test_after_an_outage_messages_go_within_tens_of_seconds_and_none_is_given_up(
    outage: float,
) -> None:
    """The sender's retry policy, tried out on paper for every moment a message could fail."""
    from telegram.ext import ApplicationBuilder

    from bot.channels.telegram import TelegramTransport

    app = ApplicationBuilder().token("123456:TEST-token").build()
    worker = ChannelWorker(Database("sqlite+aiosqlite://"), TelegramTransport(app, 30.0, 1.0))
    worst = 0.0
    for tenth in range(int(outage * 10)):
        moment, failures = tenth / 10, 0  # first tried then, failing until the outage ends
        while moment < outage:
            failures += 1
            delay = worker.retry_delay(failures)
            assert delay is not None, f"given up after {moment - tenth / 10:.0f} s of outage"
            moment += delay
        worst = max(worst, moment - outage)
    assert worst <= 30.0


# 4. The database locked by another process --------------------------------------------------


@pytest.mark.skipif(ON_POSTGRES, reason="about SQLite: another process holding its write lock")
@pytest.mark.timeout(300)  # a database locked for seconds on purpose; slow on a busy machine
async def test_a_locked_database_gets_503s_then_everything_works_again(
    tmp_path: Path, db_url: str, fake: FakeTelegram, bots: list[BotProcess]
) -> None:
    port = free_port()
    env = webhook_environment(db_url, fake, port)
    db = await migrated(db_url)
    try:
        people = await subscribe(db, 5_000_000, 150)
    finally:
        await db.close()
    bulletin_id = await create_bulletin(tmp_path, env)  # going out while the database is locked
    bot = BotProcess(tmp_path, env, ["serve"])
    bots.append(bot)
    await bot.start()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        await until(lambda: healthy(client), "the web app answers", every=0.2)
        user = User(fake, 8001, client)
        await user.say("/start", "Please choose your language.")

        # Another process holds the database's write lock for 10 seconds (an operator's
        # sqlite3 shell in a transaction, a backup, a migration).
        lock = sqlite3.connect(tmp_path / "bot.db", timeout=30, check_same_thread=False)
        await asyncio.to_thread(lock.execute, "BEGIN EXCLUSIVE")

        async def release() -> None:
            await asyncio.sleep(10.0)
            await asyncio.to_thread(lock.rollback)

        async def while_locked(request: Awaitable[T]) -> tuple[T, bool]:
            """The request's result, and whether the database was still locked when it came."""
            result = await request
            return result, lock.in_transaction

        releasing = asyncio.create_task(release())
        try:
            before = user.seen()
            english = user.text("English")
            (health, health_locked), (_, update_locked) = await asyncio.gather(
                while_locked(client.get("/healthz")), while_locked(user.deliver(english))
            )
        finally:
            await releasing
            lock.close()
        assert health_locked, "/healthz waited until the database was back"
        assert update_locked, "the webhook waited until the database was back"
        assert health.status_code == 503
        assert health.json()["database"] == "unreachable"
        assert user.answers[-1] == 503

        # Back without a restart: the same update again is handled once, and the bot goes on.
        await until(lambda: healthy(client), "/healthz back to 200", every=0.2)
        await user.deliver(english)
        assert user.answers[-1] == 200
        await user.expect(before, "How can I help you? Choose one of the options.")
        await user.press("menu:about", "About the Initiative")
        assert bot.alive
        db = Database(db_url)
        try:
            await until(lambda: settled(db), "the broadcast finished", every=0.5)
            rows = await deliveries(db, bulletin_id)
        finally:
            await db.close()
    await bot.stop()
    menus = [m for m in fake.sent(user.chat) if "How can I help you?" in m["plain"]]
    assert len(menus) == 2  # after the language, and after "About"; not twice for one update
    assert bulletins_received(fake, people) == Counter(dict.fromkeys(people, 1))
    assert [status for _contact, status in rows] == ["sent"] * len(people)
