"""The bulletin: subscriptions, composing, sending now or later, fallbacks, integrity."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot import bulletins
from bot.config import Settings
from bot.db import Database
from bot.engine import Engine
from bot.messages import Address
from bot.models import Bulletin, Contact, OutboxMessage
from bot.scheduler import BulletinScheduler
from tests.conftest import Person, user_url
from tests.helpers import LANGS, choose_language, t

COORDINATOR = Address("telegram", "1000")
AR = {"title": "النشرة الأولى", "text": "عاد ألفا عائلة إلى سنجار هذا الأسبوع."}
EN = {"title": "First bulletin", "text": "Two thousand families returned to Sinjar this week."}


async def subscribe(engine: Engine, ident: str, locale: str) -> Person:
    person = Person(engine, Address("telegram", ident))
    await choose_language(person, locale)
    await person.tap(t(locale, "Bulletin"))
    await person.tap(t(locale, "Subscribe"))
    return person


async def compose(coordinator: Person, texts: dict[str, dict[str, str]]) -> None:
    """Write a bulletin in the chat, up to the preview."""
    await coordinator.send("/bulletin")
    await coordinator.tap("New bulletin")
    for locale, text in texts.items():
        await coordinator.press(f"lang:{locale}")
        await coordinator.send(text["title"])
        await coordinator.send(text["text"])
    await coordinator.press("lang:done")
    await coordinator.tap("Skip")


@pytest.fixture
async def coordinator(engine: Engine) -> Person:
    person = Person(engine, COORDINATOR)
    await choose_language(person, "en")
    return person


async def contact(db: Database, ident: str) -> Contact:
    async with db.transaction() as session:
        found = await session.scalar(select(Contact).where(Contact.address == f"telegram:{ident}"))
        assert found is not None
        return found


@pytest.mark.parametrize("locale", LANGS)
async def test_subscribe_and_unsubscribe(engine: Engine, db: Database, locale: str) -> None:
    person = await subscribe(engine, "7", locale)
    assert (await contact(db, "7")).subscribed
    assert t(locale, "Unsubscribe") in person.labels()
    await person.tap(t(locale, "Unsubscribe"))
    assert not (await contact(db, "7")).subscribed


@pytest.mark.parametrize(
    ("locale", "word"),
    [("ar", "إيقاف"), ("ar", "توقف"), ("ckb", "وەستان"), ("en", "STOP"), ("en", "unsubscribe")],
)
async def test_stop_words_work_in_any_state(
    engine: Engine, db: Database, locale: str, word: str
) -> None:
    person = await subscribe(engine, "8", locale)
    await person.tap(t(locale, "Menu"))
    await person.tap(t(locale, "Report a displaced family"))
    await person.send(word)
    assert not (await contact(db, "8")).subscribed
    assert t(locale, "You are unsubscribed. You will not receive the bulletin any more.") in (
        person.text()
    )
    assert t(locale, "I agree") in person.labels()  # still where they were


async def test_compose_preview_and_send_now_in_each_language(
    engine: Engine, db: Database, settings: Settings, coordinator: Person
) -> None:
    readers = {loc: await subscribe(engine, f"2{n}", loc) for n, loc in enumerate(LANGS)}
    await compose(coordinator, {"ar": AR, "en": EN})
    previews = [m for m in coordinator.replies if m.title in (AR["title"], EN["title"])]
    assert len(previews) == 3  # one per language of the readers
    assert "Send now" in coordinator.labels()
    await coordinator.tap("Send now")
    async with db.transaction() as session:
        [bulletin] = (await session.scalars(select(Bulletin))).all()
    assert bulletin.status == "sending"
    assert bulletin.public_id is not None
    assert bulletin.public_id in coordinator.text()
    assert bulletin.hashes["ar"] == bulletins.sha256(bulletins.plain(AR))

    await BulletinScheduler(db, settings).sync()  # queues the deliveries
    async with db.transaction() as session:
        rows = (
            await session.scalars(
                select(OutboxMessage).where(OutboxMessage.bulletin_id == bulletin.id)
            )
        ).all()
        after = await session.get(Bulletin, bulletin.id)
    assert after is not None
    assert after.status == "sent"
    assert sorted((r.address, r.locale) for r in rows) == [
        ("telegram:20", "ar"),
        ("telegram:21", "ar"),  # no Kurdish text: Arabic first
        ("telegram:22", "en"),
    ]
    render = bulletins.Renderer(db, settings.timezone)
    kurdish = await render(
        dict(rows[[r.address for r in rows].index("telegram:21")].body), "telegram:21"
    )
    assert kurdish is not None
    assert AR["text"] in kurdish.text
    assert (
        t("ckb", "This bulletin is not available in your language; here it is in %(language)s.")[
            :6
        ]
        in kurdish.text
    )
    english = await render({"bulletin": bulletin.id, "locale": "en"}, "telegram:22")
    assert english is not None
    assert english.title == EN["title"]
    assert str(bulletin.public_id) in english.text
    assert readers["en"].address.id == "22"


async def test_queueing_again_sends_nobody_twice(
    engine: Engine, db: Database, settings: Settings, coordinator: Person
) -> None:
    for n in range(5):
        await subscribe(engine, f"3{n}", "ar")
    await compose(coordinator, {"ar": AR})
    await coordinator.tap("Send now")
    async with db.transaction() as session:
        bulletin_id = int(await session.scalar(select(Bulletin.id)) or 0)
        (await session.get(Bulletin, bulletin_id)).status = "sending"  # type: ignore[union-attr]
    now = datetime.now(UTC)
    assert await bulletins.queue_deliveries(db, bulletin_id, now) == 5
    async with db.transaction() as session:
        (await session.get(Bulletin, bulletin_id)).status = "sending"  # type: ignore[union-attr]
    assert await bulletins.queue_deliveries(db, bulletin_id, now) == 0  # a restart: nothing new
    async with db.transaction() as session:
        total = await session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.bulletin_id == bulletin_id)
        )
    assert total == 5


async def test_schedule_survive_restart_fire_and_miss(
    engine: Engine, db: Database, settings: Settings, coordinator: Person
) -> None:
    await subscribe(engine, "40", "en")
    await compose(coordinator, {"en": EN})
    await coordinator.tap("Schedule")
    await coordinator.send("tomorrow 9:00")
    assert "Scheduled for" in coordinator.text()
    async with db.transaction() as session:
        bulletin = await session.scalar(select(Bulletin))
    assert bulletin is not None
    assert bulletin.status == "scheduled"
    when = bulletin.scheduled_at
    assert when is not None

    # A restart before the time: the job is rebuilt from the table.
    first = BulletinScheduler(db, settings, clock=lambda: when - timedelta(hours=1))
    first.scheduler.start()
    await first.sync()
    assert first.scheduler.get_job(f"bulletin-{bulletin.id}") is not None
    first.scheduler.shutdown(wait=False)

    # The bot was down at the time but is back within the grace period: it goes out.
    late = BulletinScheduler(db, settings, clock=lambda: when + timedelta(minutes=10))
    await late.sync()
    async with db.transaction() as session:
        sent = await session.get(Bulletin, bulletin.id)
        queued = await session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.bulletin_id == bulletin.id)
        )
    assert sent is not None
    assert sent.status == "sent"
    assert queued == 1


async def test_a_missed_bulletin_is_marked_and_its_author_told(
    engine: Engine, db: Database, settings: Settings, coordinator: Person
) -> None:
    await compose(coordinator, {"en": EN})
    await coordinator.tap("Schedule")
    await coordinator.send("tomorrow 9:00")
    async with db.transaction() as session:
        bulletin = await session.scalar(select(Bulletin))
    assert bulletin is not None
    assert bulletin.scheduled_at is not None
    too_late = bulletin.scheduled_at + timedelta(hours=5)
    await BulletinScheduler(db, settings, clock=lambda: too_late).sync()
    async with db.transaction() as session:
        missed = await session.get(Bulletin, bulletin.id)
        notices = (
            await session.scalars(
                select(OutboxMessage).where(OutboxMessage.address == str(COORDINATOR))
            )
        ).all()
    assert missed is not None
    assert missed.status == "missed"
    assert any("was not sent" in n.body["text"] for n in notices)


async def test_a_recurring_bulletin_sends_a_copy_each_time(
    engine: Engine, db: Database, settings: Settings, coordinator: Person
) -> None:
    await subscribe(engine, "50", "ar")
    await compose(coordinator, {"ar": AR})
    await coordinator.tap("Every week")
    await coordinator.send("٠٩:٣٠")
    await coordinator.press("day:4")  # Friday
    async with db.transaction() as session:
        template = await session.scalar(select(Bulletin))
    assert template is not None
    assert (template.status, template.recurrence, template.weekday, template.time_of_day) == (
        "recurring",
        "weekly",
        4,
        "09:30",
    )
    scheduler = BulletinScheduler(db, settings)
    scheduler.scheduler.start()
    await scheduler.sync()
    job = scheduler.scheduler.get_job(f"bulletin-{template.id}")
    assert job is not None
    assert job.next_run_time.weekday() == 4
    await scheduler.fire(template.id)
    await scheduler.fire(template.id)
    await scheduler.stop()  # frees its lock (PostgreSQL)
    async with db.transaction() as session:
        copies = (
            await session.scalars(select(Bulletin).where(Bulletin.parent_id == template.id))
        ).all()
    assert [c.status for c in copies] == ["sent", "sent"]
    assert len({c.public_id for c in copies}) == 2


async def test_cancel_and_stop(
    engine: Engine, db: Database, settings: Settings, coordinator: Person
) -> None:
    for n in range(3):
        await subscribe(engine, f"6{n}", "en")
    await compose(coordinator, {"en": EN})
    await coordinator.tap("Send now")
    await BulletinScheduler(db, settings).sync()
    await coordinator.send("/bulletin")
    await coordinator.tap("Sent")
    await coordinator.press(coordinator.options()[0].payload)
    assert "pending: 3" in coordinator.text()
    await coordinator.tap("Stop sending")
    assert "3 messages not yet sent were cancelled" in coordinator.text()
    async with db.transaction() as session:
        statuses = set(
            (
                await session.scalars(
                    select(OutboxMessage.status).where(OutboxMessage.bulletin_id.is_not(None))
                )
            ).all()
        )
        bulletin = await session.scalar(select(Bulletin))
    assert statuses == {"cancelled"}
    assert bulletin is not None
    render = bulletins.Renderer(db, settings.timezone)
    assert await render({"bulletin": bulletin.id, "locale": "en"}, "telegram:60") is None


@pytest.mark.parametrize(
    ("pasted", "genuine"),
    [
        (f"{EN['title']}\n\n{EN['text']}", True),
        (f"  {EN['title']}   {EN['text']}\u200f ", True),
        (EN["text"], True),
        ("عاد الفا عائلة الى سنجار هذا الاسبوع.", True),  # alef forms, as phones change them
        (EN["text"].replace("Two thousand", "Twenty thousand"), False),
        ("Something nobody published at all, long enough.", False),
    ],
)
async def test_is_this_genuine(
    engine: Engine,
    db: Database,
    settings: Settings,
    coordinator: Person,
    pasted: str,
    genuine: bool,
) -> None:
    await compose(coordinator, {"ar": AR, "en": EN})
    await coordinator.tap("Send now")
    reader = Person(engine, Address("telegram", "70"))
    await choose_language(reader, "en")
    await reader.tap("Bulletin")
    await reader.tap("Is this genuine?")
    await reader.send(pasted)
    async with db.transaction() as session:
        bulletin = await session.scalar(select(Bulletin))
    assert bulletin is not None
    if genuine:
        assert "matches bulletin" in reader.text()
        assert bulletin.public_id in reader.text()
    else:
        assert "does not match any bulletin" in reader.text()


async def test_latest_and_archive_with_hashes(
    engine: Engine, db: Database, coordinator: Person
) -> None:
    await compose(coordinator, {"ar": AR, "en": EN})
    await coordinator.tap("Send now")
    reader = Person(engine, Address("telegram", "71"))
    await choose_language(reader, "ar")
    await reader.tap(t("ar", "Bulletin"))
    await reader.tap(t("ar", "Latest bulletin"))
    assert AR["text"] in reader.text()
    await reader.tap(t("ar", "Archive"))
    async with db.transaction() as session:
        bulletin = await session.scalar(select(Bulletin))
    assert bulletin is not None
    assert bulletin.public_id in reader.text()
    assert bulletins.sha256(bulletins.plain(AR)) in reader.text()
    assert bulletins.sha256(bulletins.plain(EN)) in reader.text()


async def test_the_telegram_channel_gets_it_too(
    engine: Engine, db: Database, settings: Settings, coordinator: Person
) -> None:
    await compose(coordinator, {"ar": AR})
    await coordinator.tap("Send now")
    await BulletinScheduler(
        db, dataclasses.replace(settings, telegram_channel_id="@icssi_news")
    ).sync()
    async with db.transaction() as session:
        addresses = (
            await session.scalars(
                select(OutboxMessage.address).where(OutboxMessage.bulletin_id.is_not(None))
            )
        ).all()
    assert addresses == ["telegram:@icssi_news"]


async def test_others_cannot_write_bulletins(engine: Engine) -> None:
    stranger = Person(engine, Address("telegram", "555"))
    await choose_language(stranger, "en")
    await stranger.send("/bulletin")
    assert "I do not know that command" in stranger.text()


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `icssi-bot` with `args`."""
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_bulletin_command(tmp_path: Path, db_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": user_url(db_url)}
    assert cli(["db", "upgrade"], env).returncode == 0
    text = tmp_path / "ar.txt"
    text.write_text(AR["text"], encoding="utf-8")
    made = cli(
        [
            "bulletin",
            "create",
            "--title-ar",
            AR["title"],
            "--text-ar",
            str(text),
            "--at",
            "2099-01-01 09:00",
        ],
        env,
    )
    assert made.returncode == 0, made.stderr
    bulletin_id = made.stdout.split("\t")[0]
    assert made.stdout.strip().endswith("scheduled")
    listed = cli(["bulletin", "list"], env)
    assert f"{bulletin_id}\t-\tscheduled" in listed.stdout
    assert cli(["bulletin", "cancel", bulletin_id], env).returncode == 0
    assert "\tcancelled\t" in cli(["bulletin", "list"], env).stdout
    now = cli(
        ["bulletin", "create", "--title-en", EN["title"], "--text-en", str(text), "--now"], env
    )
    assert now.stdout.strip().endswith("sending")
    weekly = cli(
        [
            "bulletin",
            "create",
            "--title-en",
            "W",
            "--text-en",
            str(text),
            "--weekly",
            "friday",
            "9:00",
        ],
        env,
    )
    assert weekly.stdout.strip().endswith("recurring")
    bad = cli(
        ["bulletin", "create", "--title-en", "X", "--text-en", str(text), "--at", "yesterday"], env
    )
    assert bad.returncode == 2
    assert "--at: expected a future date" in bad.stderr
    image = "https://example.org/" + "x" * 300
    huge = cli(
        [
            "bulletin",
            "create",
            "--title-en",
            "X",
            "--text-en",
            str(text),
            "--image",
            image,
            "--now",
        ],
        env,
    )
    assert huge.returncode == 2
    assert "--image: at most 300 characters" in huge.stderr
    assert cli(["bulletin", "stats", "999"], env).returncode == 2
