"""The bulletin: subscriptions, composing, sending now or later, fallbacks, integrity."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot import bulletins
from bot.config import Settings
from bot.db import Database
from bot.engine import Engine
from bot.messages import Address, Inbound, Media, Outbound
from bot.models import AuditEntry, Bulletin, Contact, OutboxMessage
from bot.scheduler import BulletinScheduler
from bot.sender import Sender
from handlers import build_registry
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


async def send_now(coordinator: Person, db: Database, settings: Settings) -> None:
    """Write an English bulletin in the chat, send it now, and let the scheduler queue it."""
    await compose(coordinator, {"en": EN})
    await coordinator.tap("Send now")
    await coordinator.press("send:yes")
    await BulletinScheduler(db, settings).sync()


async def open_newest(coordinator: Person, tab: str) -> None:
    """Open the newest bulletin of a list ("Scheduled" or "Sent") from /bulletin."""
    await coordinator.send("/bulletin")
    await coordinator.tap(tab)
    await coordinator.press(coordinator.options()[0].payload)


async def compose(coordinator: Person, texts: dict[str, dict[str, str]], ui: str = "en") -> None:
    """Write a bulletin in the chat, up to the preview (`ui`: the coordinator's language)."""
    await coordinator.send("/bulletin")
    await coordinator.tap(t(ui, "New bulletin"))
    for locale, text in texts.items():
        await coordinator.press(f"lang:{locale}")
        await coordinator.send(text["title"])
        await coordinator.send(text["text"])
    await coordinator.press("lang:done")
    await coordinator.tap(t(ui, "Skip"))


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
    # Nothing goes before the coordinator sees to whom: three subscribers, one of them
    # (Sorani) in another language.
    audience = coordinator.text()
    assert "goes to 3 subscribers" in audience
    assert "Telegram · کوردی (سۆرانی): 1" in audience
    assert "1 of them will get it in another language" in audience
    async with db.transaction() as session:
        assert await session.scalar(select(Bulletin)) is None
    await coordinator.tap("Yes, send it to 3 people")
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
    await coordinator.press("send:yes")
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
    scheduler.scheduler.shutdown(wait=False)
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
    await send_now(coordinator, db, settings)
    await open_newest(coordinator, "Sent")
    assert "Recipients 3 · sent 0 · not yet sent 3" in coordinator.text()
    await coordinator.tap("Stop sending")
    assert "3 messages not yet sent were cancelled" in coordinator.text()
    await coordinator.tap("Refresh")
    assert "Stopped before sending: 3" in coordinator.text()
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


async def test_reschedule_cancel_and_stop_are_audited(
    engine: Engine, db: Database, db_url: str, settings: Settings, coordinator: Person
) -> None:
    await subscribe(engine, "65", "en")
    await compose(coordinator, {"en": EN})
    await coordinator.tap("Schedule")
    await coordinator.send("tomorrow 9:00")
    await open_newest(coordinator, "Scheduled")
    await coordinator.tap("Change the time")
    await coordinator.send("2099-01-02 10:30")
    assert "Scheduled for" in coordinator.text()
    await open_newest(coordinator, "Scheduled")
    await coordinator.tap("Cancel it")
    assert "Cancelled." in coordinator.text()
    async with db.transaction() as session:
        bulletin = await session.scalar(select(Bulletin))
        assert bulletin is not None
        assert bulletin.status == "cancelled"
        assert bulletin.scheduled_at is not None
        assert bulletin.scheduled_at.year == 2099
        entries = (await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all()
    assert [e.action for e in entries] == ["bulletin:reschedule", "bulletin:cancel"]
    assert all(e.actor == str(coordinator.address) for e in entries)
    assert entries[0].detail["bulletin"] == bulletin.id
    assert entries[0].detail["after"].startswith("2099-01-02")
    assert entries[0].detail["before"] != entries[0].detail["after"]
    assert entries[1].detail == {"bulletin": bulletin.id, "was": "scheduled"}

    # A cancelled bulletin offers nothing more to change.
    await coordinator.send("/bulletin")
    await coordinator.tap("Scheduled")
    assert "Cancel it" not in [b.label for b in coordinator.options()]

    # A broadcast stopped on the server is audited with the count it cancelled.
    await send_now(coordinator, db, settings)
    async with db.transaction() as session:
        sending = await session.scalar(select(Bulletin).where(Bulletin.status == "sent"))
    assert sending is not None
    code, _out, err = await run_cli(["bulletin", "stop", str(sending.id)], db_url)
    assert (code, err) == (0, "icssi-bot: stopped; 1 unsent message cancelled\n")
    async with db.transaction() as session:
        entry = await session.scalar(
            select(AuditEntry).where(AuditEntry.action == "bulletin:stop")
        )
    assert entry is not None
    assert entry.actor.startswith("cli:")
    assert entry.detail == {"bulletin": sending.id, "cancelled": 1}


async def test_a_stop_reaches_the_deliveries_already_fetched(
    engine: Engine, db: Database, settings: Settings, coordinator: Person
) -> None:
    for n in range(2):
        await subscribe(engine, f"7{n}", "en")
    await send_now(coordinator, db, settings)
    async with db.transaction() as session:
        bulletin = await session.scalar(select(Bulletin))
    assert bulletin is not None
    render = bulletins.Renderer(db, settings.timezone)
    render.REFRESH = 0.0  # look at the status before every send (every second in production)
    body = {"bulletin": bulletin.id, "locale": "en"}
    first = await render(body, "telegram:70")
    second = await render(body, "telegram:71")
    assert first is not None
    assert second is not None
    assert EN["text"] in first.text
    assert first.text == second.text
    assert (first.address.id, second.address.id) == ("70", "71")
    # Stopped while the sender holds rows it has already read: those are not sent either.
    await open_newest(coordinator, "Sent")
    await coordinator.tap("Stop sending")
    assert await render(body, "telegram:71") is None


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
    await coordinator.press("send:yes")
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


async def test_a_bulletin_as_each_channel_delivered_it_is_genuine(
    engine: Engine, db: Database, settings: Settings, coordinator: Person
) -> None:
    """Pasted or forwarded whole, as Telegram, WhatsApp or the console showed it (title, text,
    footer, and the note of a language given in another), or named by its id: genuine. One word
    changed, even under the real footer: not."""
    from bot.channels.console import render as console_text
    from bot.channels.whatsapp import body_of

    await compose(coordinator, {"ar": AR, "en": EN})
    await coordinator.tap("Send now")
    await coordinator.press("send:yes")
    async with db.transaction() as session:
        bulletin = await session.scalar(select(Bulletin))
    assert bulletin is not None
    assert bulletin.public_id is not None
    reader = Person(engine, Address("telegram", "70"))
    await choose_language(reader, "ckb")  # no Kurdish text: the Arabic, with the note

    async def check(pasted: str) -> str:
        await reader.send("/menu")
        await reader.tap(t("ckb", "Bulletin"))
        await reader.tap(t("ckb", "Is this genuine?"))
        await reader.send(pasted)
        return reader.text()

    yes = t("ckb", "Yes: this text matches bulletin %(id)s, published on %(date)s.").split("%")[0]
    no = t(
        "ckb",
        "This text does not match any bulletin the Initiative published. It may have "
        "been changed, or it is not from us.",
    )
    for locale in ("ckb", "en"):
        for channel in ("telegram", "whatsapp", "console"):
            message = bulletins.render(bulletin, Address(channel, "x"), locale, settings.timezone)
            shown = {
                "telegram": f"{message.title}\n{message.text}",
                "whatsapp": body_of(message),
                "console": console_text(message),
            }[channel]
            reply = await check(shown)
            assert yes in reply, (locale, channel, shown)
            assert bulletin.public_id in reply
            changed = shown.replace("Sinjar", "Mosul").replace("سنجار", "الموصل")
            assert no in await check(changed), (locale, channel)
    by_id = await check(bulletin.public_id.lower().replace("2", "٢"))
    assert bulletin.public_id in by_id
    assert AR["title"] in by_id
    assert no in await check("B-ZZZZZZ")


async def test_latest_and_archive_with_hashes(
    engine: Engine, db: Database, coordinator: Person
) -> None:
    await compose(coordinator, {"ar": AR, "en": EN})
    await coordinator.tap("Send now")
    await coordinator.press("send:yes")
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
    await coordinator.press("send:yes")
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
        timeout=120,
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
    assert "\t2099-01-01 09:00+0300\t" in listed.stdout  # in TIMEZONE, as it was typed
    assert cli(["bulletin", "cancel", bulletin_id], env).returncode == 0
    assert "\tcancelled\t" in cli(["bulletin", "list"], env).stdout
    now = cli(
        [
            "bulletin",
            "create",
            "--title-en",
            EN["title"],
            "--text-en",
            str(text),
            "--now",
            "--yes",
        ],
        env,
    )
    assert now.stdout.strip().endswith("sending")
    # Without --yes it says to how many it goes, and sends only on "y".
    command = [sys.executable, "-m", "bot.cli", "bulletin", "create", "--title-ar", "X"]
    command += ["--text-ar", str(text), "--now"]
    for answer, code in (("n\n", 2), ("", 2), ("y\n", 0)):
        asked = subprocess.run(
            command, input=answer, env=env, capture_output=True, text=True, timeout=120
        )
        assert asked.returncode == code, asked.stderr
        assert "this bulletin goes to 0 subscribers" in asked.stderr
        assert ("nothing was sent" in asked.stderr) == (code == 2)
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
    assert "\tdraft\t" not in cli(["bulletin", "list"], env).stdout  # nothing stored
    long = tmp_path / "long.txt"
    long.write_text("x" * 3501, encoding="utf-8")
    too_long = cli(
        ["bulletin", "create", "--title-en", "X", "--text-en", str(long), "--now", "--yes"], env
    )
    assert (too_long.returncode, too_long.stderr) == (
        2,
        "icssi-bot: the en text has 3501 characters; at most 3500\n",
    )
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
            "--yes",
        ],
        env,
    )
    assert huge.returncode == 2
    assert "--image: at most 300 characters" in huge.stderr
    assert cli(["bulletin", "stats", "999"], env).returncode == 2


# Editing a bulletin before it goes out ---------------------------------------------------------

AR2 = {"title": "النشرة الأولى (مصححة)", "text": "عاد ثلاثة آلاف عائلة إلى سنجار هذا الأسبوع."}
EN2 = {"title": EN["title"], "text": "Three thousand families returned to Sinjar this week."}
CKB = {"title": "بڵاوکراوەی یەکەم", "text": "سێ هەزار خێزان ئەم هەفتەیە گەڕانەوە بۆ شنگال."}


class FakeTelegram:
    """Telegram's side of the sender: records what would reach each chat."""

    channel = "telegram"
    rate = 1000.0

    def __init__(self) -> None:
        self.sent: list[Outbound] = []

    def chat_limit(self, address: str) -> tuple[float, int]:
        return 1000.0, 100

    async def deliver(self, message: Outbound) -> str | None:
        self.sent.append(message)
        return f"m{len(self.sent)}"


async def deliver_all(db: Database, settings: Settings) -> dict[str, Outbound]:
    """Send every pending outbox row through the real sender; the bulletin each address got."""
    platform = FakeTelegram()
    sender = Sender(db, [platform], render=bulletins.Renderer(db, settings.timezone))
    sender.start()
    try:
        for _ in range(200):
            await sender.flush("telegram")
            async with db.transaction() as session:
                pending = await session.scalar(
                    select(func.count()).where(OutboxMessage.status == "pending")
                )
            if not pending:
                break
            await asyncio.sleep(0.05)
    finally:
        await sender.stop()
    return {str(m.address): m for m in platform.sent if m.priority == "broadcast"}


async def schedule(
    coordinator: Person, db: Database, texts: dict[str, dict[str, str]], ui: str = "en"
) -> Bulletin:
    """Write a bulletin in the chat and schedule it for tomorrow at 9:00."""
    await compose(coordinator, texts, ui)
    await coordinator.tap(t(ui, "Schedule"))
    await coordinator.send("tomorrow 9:00")
    async with db.transaction() as session:
        bulletin = await session.scalar(select(Bulletin).order_by(Bulletin.id.desc()))
    assert bulletin is not None
    assert bulletin.status == "scheduled"
    return bulletin


async def open_edit(coordinator: Person, ui: str) -> None:
    """/bulletin, Scheduled, the newest one, Edit."""
    await open_newest(coordinator, t(ui, "Scheduled"))
    await coordinator.tap(t(ui, "Edit the text or photo"))


async def audits(db: Database) -> list[AuditEntry]:
    async with db.transaction() as session:
        return list((await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all())


@pytest.mark.parametrize("ui", ["ar", "en"])
async def test_edit_in_the_chat_then_the_scheduled_send_delivers_the_new_text(
    engine: Engine, db: Database, settings: Settings, ui: str
) -> None:
    readers = {loc: await subscribe(engine, f"8{n}", loc) for n, loc in enumerate(LANGS)}
    coordinator = Person(engine, COORDINATOR)
    await choose_language(coordinator, ui)
    scheduled = await schedule(coordinator, db, {"ar": AR, "en": EN}, ui)

    await open_edit(coordinator, ui)
    # Arabic: the text as it stands is shown, then a new title and text.
    await coordinator.press("lang:ar")
    assert AR["text"] in coordinator.text()
    await coordinator.tap(t(ui, "Change the title or text"))
    await coordinator.send(AR2["title"])
    await coordinator.send(AR2["text"])
    # English: the same title, a new text.
    await coordinator.press("lang:en")
    await coordinator.tap(t(ui, "Change the title or text"))
    await coordinator.tap(t(ui, "Keep the title"))
    await coordinator.send(EN2["text"])
    # Sorani, not written before: added.
    await coordinator.press("lang:ckb")
    await coordinator.send(CKB["title"])
    await coordinator.send(CKB["text"])
    await coordinator.press("lang:done")
    await coordinator.tap(t(ui, "Skip"))

    # The preview: each language's readers see the new text, as they will receive it.
    previews = {m.title: m.text for m in coordinator.replies if m.title}
    assert AR2["text"] in previews[AR2["title"]]
    assert EN2["text"] in previews[EN2["title"]]
    assert CKB["text"] in previews[CKB["title"]]
    assert AR["text"] not in coordinator.text()
    assert EN["text"] not in coordinator.text()
    assert t(ui, "Send now") not in coordinator.labels()
    await coordinator.tap(t(ui, "Save the changes"))
    assert t(ui, "Saved. The bulletin keeps its schedule.") in coordinator.text()

    async with db.transaction() as session:
        edited = await session.get(Bulletin, scheduled.id)
    assert edited is not None
    assert (edited.status, edited.scheduled_at) == ("scheduled", scheduled.scheduled_at)
    assert edited.texts == {"ar": AR2, "ckb": CKB, "en": EN2}
    assert edited.hashes == {}  # computed when it is published
    [entry] = await audits(db)
    assert (entry.actor, entry.action) == (str(COORDINATOR), "bulletin:edit")
    assert entry.detail["added"] == ["ckb"]
    assert entry.detail["changed"] == ["ar", "en"]
    assert entry.detail["before"]["ar"] == bulletins.sha256(bulletins.plain(AR))
    assert entry.detail["after"]["ar"] == bulletins.sha256(bulletins.plain(AR2))

    # The time comes: each subscriber receives the new text, in their language.
    assert scheduled.scheduled_at is not None
    when = scheduled.scheduled_at
    await BulletinScheduler(db, settings, clock=lambda: when + timedelta(minutes=1)).sync()
    received = await deliver_all(db, settings)
    for locale, new in (("ar", AR2), ("ckb", CKB), ("en", EN2)):
        message = received[str(readers[locale].address)]
        assert message.title == new["title"]
        assert new["text"] in message.text
    assert AR["text"] not in received["telegram:80"].text
    async with db.transaction() as session:
        sent = await session.get(Bulletin, scheduled.id)
        assert sent is not None
        assert sent.status == "sent"
        assert sent.hashes == {
            loc: bulletins.sha256(bulletins.plain(text))
            for loc, text in (("ar", AR2), ("ckb", CKB), ("en", EN2))
        }
        assert await bulletins.find_genuine(session, EN2["text"]) is not None
        assert await bulletins.find_genuine(session, EN["text"]) is None


async def test_edit_a_recurring_bulletin_its_photo_and_languages(
    engine: Engine, db: Database, settings: Settings, coordinator: Person
) -> None:
    await subscribe(engine, "90", "en")
    await compose(coordinator, {"ar": AR, "en": EN})
    await coordinator.tap("Every day")
    await coordinator.send("09:30")
    await open_edit(coordinator, "en")
    await coordinator.press("lang:ar")
    await coordinator.tap("Remove this language")
    assert "The العربية text was removed." in coordinator.text()
    await coordinator.press("lang:en")
    # The last language left cannot be removed.
    assert "Remove this language" not in coordinator.labels()
    await coordinator.tap("Back")
    await coordinator.press("lang:done")
    await coordinator.deliver(
        Inbound(
            coordinator.address,
            uuid.uuid4().hex,
            kind="photo",
            media=(Media("photo", "photo-2"),),
        )
    )
    assert any(m.photo == "photo-2" and EN["text"] in m.text for m in coordinator.replies)
    await coordinator.tap("Save the changes")
    assert "Every day at 09:30" in coordinator.text()
    async with db.transaction() as session:
        template = await session.scalar(select(Bulletin))
    assert template is not None
    assert (template.status, template.time_of_day) == ("recurring", "09:30")
    assert (template.texts, template.image) == ({"en": EN}, "photo-2")

    # A second edit: the photo removed, then the changes discarded; nothing moves.
    await open_edit(coordinator, "en")
    await coordinator.press("lang:done")
    await coordinator.tap("Remove the photo")
    await coordinator.tap("Discard the changes")
    assert "The changes were discarded." in coordinator.text()

    await BulletinScheduler(db, settings).fire(template.id)
    received = await deliver_all(db, settings)
    assert received["telegram:90"].photo == "photo-2"
    assert EN["text"] in received["telegram:90"].text
    assert [a.detail.get("image") for a in await audits(db)] == ["added"]


async def test_a_bulletin_sent_meanwhile_cannot_be_edited(
    engine: Engine, db: Database, settings: Settings, coordinator: Person
) -> None:
    scheduled = await schedule(coordinator, db, {"en": EN})
    assert scheduled.scheduled_at is not None
    due = scheduled.scheduled_at + timedelta(minutes=1)
    await open_edit(coordinator, "en")
    await coordinator.press("lang:en")
    await coordinator.tap("Change the title or text")
    await coordinator.tap("Keep the title")
    await coordinator.send(EN2["text"])
    await coordinator.press("lang:done")
    await coordinator.tap("Skip")
    assert "Save the changes" in coordinator.labels()

    await BulletinScheduler(db, settings, clock=lambda: due).sync()  # it goes out meanwhile
    await coordinator.tap("Save the changes")
    assert "already being sent or has been sent: it can no longer be changed" in (
        coordinator.text()
    )
    async with db.transaction() as session:
        sent = await session.get(Bulletin, scheduled.id)
    assert sent is not None
    assert sent.status == "sent"
    assert sent.texts == {"en": EN}
    assert sent.hashes == {"en": bulletins.sha256(bulletins.plain(EN))}
    assert await audits(db) == []

    # A sent bulletin offers no Edit; a view shown before it went out answers the same.
    await open_newest(coordinator, "Sent")
    assert "Edit the text or photo" not in coordinator.labels()
    other = await schedule(coordinator, db, {"en": EN})
    assert other.scheduled_at is not None
    other_due = other.scheduled_at + timedelta(minutes=1)
    await coordinator.send("/bulletin")
    await coordinator.tap("Scheduled")
    await coordinator.press(f"item:{other.id}")
    await BulletinScheduler(db, settings, clock=lambda: other_due).sync()
    await coordinator.tap("Edit the text or photo")
    assert "it can no longer be changed" in coordinator.text()


async def test_only_coordinators_can_edit(
    engine: Engine, db: Database, settings: Settings, coordinator: Person
) -> None:
    scheduled = await schedule(coordinator, db, {"en": EN})
    stranger = Person(engine, Address("telegram", "556"))
    await choose_language(stranger, "en")
    await stranger.send("/bulletin")
    assert "I do not know that command" in stranger.text()
    await stranger.press("it:edit")
    await stranger.press("go:save")
    assert "This menu has expired" in stranger.text()

    # A coordinator taken off COORDINATORS in the middle of an edit cannot save it.
    await open_edit(coordinator, "en")
    await coordinator.press("lang:en")
    await coordinator.tap("Change the title or text")
    await coordinator.tap("Keep the title")
    await coordinator.send(EN2["text"])
    await coordinator.press("lang:done")
    await coordinator.tap("Skip")
    demoted = Person(
        Engine(db, dataclasses.replace(settings, coordinators=frozenset()), build_registry()),
        COORDINATOR,
    )
    await demoted.press("go:save")
    assert "only for the Initiative's coordinators. Nothing was changed." in demoted.text()
    async with db.transaction() as session:
        unchanged = await session.get(Bulletin, scheduled.id)
    assert unchanged is not None
    assert unchanged.texts == {"en": EN}
    assert await audits(db) == []


async def run_cli(args: list[str], db_url: str) -> tuple[int, str, str]:
    """Run `icssi-bot` with `args` on the test database: exit status, stdout, stderr."""
    env = {**os.environ, "DATABASE_URL": user_url(db_url)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        *args,
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
    return int(process.returncode or 0), out.decode(), err.decode()


async def test_the_bulletin_edit_command(tmp_path: Path, db: Database, db_url: str) -> None:
    text = tmp_path / "ar.txt"
    text.write_text(AR["text"], encoding="utf-8")
    code, out, err = await run_cli(
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
        db_url,
    )
    assert code == 0, err
    bulletin_id = out.split("\t")[0]

    # English added inline, then the Arabic text replaced from a file.
    code, out, err = await run_cli(
        [
            "bulletin",
            "edit",
            bulletin_id,
            "--lang",
            "en",
            "--title",
            EN["title"],
            "--text",
            EN2["text"],
        ],
        db_url,
    )
    assert (code, out) == (0, f"{bulletin_id}\t-\tscheduled\tar,en\n"), err
    text.write_text(AR2["text"], encoding="utf-8")
    code, out, err = await run_cli(
        ["bulletin", "edit", bulletin_id, "--lang", "ar", "--text-file", str(text)], db_url
    )
    assert code == 0, err
    async with db.transaction() as session:
        edited = await session.get(Bulletin, int(bulletin_id))
    assert edited is not None
    assert edited.texts == {"ar": {"title": AR["title"], "text": AR2["text"]}, "en": EN2}
    assert (edited.status, edited.hashes) == ("scheduled", {})

    # Arabic removed; English, the last language, cannot be.
    code, out, err = await run_cli(
        ["bulletin", "edit", bulletin_id, "--lang", "ar", "--remove"], db_url
    )
    assert out.endswith("\ten\n"), err
    code, out, err = await run_cli(
        ["bulletin", "edit", bulletin_id, "--lang", "en", "--remove"], db_url
    )
    assert code == 2
    assert "a bulletin needs at least one language" in err
    code, out, err = await run_cli(
        ["bulletin", "edit", bulletin_id, "--lang", "ckb", "--title", "بڵاوکراوە"], db_url
    )
    assert code == 2
    assert "give both --title and --text" in err

    # An unknown id, and a bulletin already sent.
    code, out, err = await run_cli(
        ["bulletin", "edit", "999", "--lang", "en", "--text", "x"], db_url
    )
    assert (code, err) == (2, "icssi-bot: no bulletin 999\n")
    code, out, err = await run_cli(
        [
            "bulletin",
            "create",
            "--title-en",
            EN["title"],
            "--text-en",
            str(text),
            "--now",
            "--yes",
        ],
        db_url,
    )
    sent_id = out.split("\t")[0]
    code, out, err = await run_cli(
        ["bulletin", "edit", sent_id, "--lang", "en", "--text", "x"], db_url
    )
    assert code == 2
    assert f"bulletin {sent_id} is sending: only a scheduled or recurring" in err

    async with db.transaction() as session:
        still = await session.get(Bulletin, int(bulletin_id))
        untouched = await session.get(Bulletin, int(sent_id))
    assert still is not None
    assert still.texts == {"en": EN2}
    assert untouched is not None
    assert untouched.texts["en"]["text"] == AR2["text"]
    entries = await audits(db)
    assert [e.action for e in entries] == ["bulletin:edit"] * 3
    assert all(e.actor.startswith("cli:") for e in entries)
    assert [e.detail["removed"] for e in entries] == [[], [], ["ar"]]
