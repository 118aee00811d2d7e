"""The bot over WhatsApp, end to end: the real bot, its web app and sender, a fake Twilio.

Twilio's side is tests/fake_twilio.py on 127.0.0.1: it posts signed webhooks to the bot's web
app (served by uvicorn), takes the REST API calls of the real twilio client, and posts signed
status callbacks back. What a person reads is what the fake received.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select, update

from bot import bulletins, outbox
from bot.config import Settings
from bot.db import Database
from bot.i18n import use_locale
from bot.messages import Address
from bot.models import Bulletin, Contact, OutboxMessage, Report, Signature
from bot.runtime import Bot, running
from bot.web import create_app
from tests.fake_telegram import FakeTelegram
from tests.fake_twilio import FakeTwilio
from tests.helpers import t
from tests.net import free_port

FAMILY = "+9647701234567"
COORDINATOR = "+9647700000001"  # a WhatsApp coordinator in the test settings
INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
TEMPLATE_AR = "HX" + "a" * 32
TEMPLATE_EN = "HX" + "e" * 32
# A photo's address as Twilio gives it (MediaUrl0): it needs the account's credentials.
TWILIO_MEDIA = (
    "https://api.twilio.com/2010-04-01/Accounts/AC"
    + "0" * 32
    + "/Messages/MM"
    + "1" * 32
    + "/Media/ME"
    + "2" * 32
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as twilio:
        twilio.templates[TEMPLATE_AR] = "نشرة جديدة: {{1}}. اكتب لنا لقراءتها."
        twilio.templates[TEMPLATE_EN] = "New bulletin: {{1}}. Write to us to read it."
        yield twilio


@pytest.fixture
async def bot(fake: FakeTwilio, settings: Settings, db: Database) -> AsyncIterator[Bot]:
    """The whole bot with WhatsApp only, its web app listening on 127.0.0.1."""
    port = free_port()
    configured = with_twilio(
        settings,
        fake,
        port,
        twilio_template_bulletin_ar=TEMPLATE_AR,
        twilio_template_bulletin_en=TEMPLATE_EN,
    )
    async with listening(configured, port) as started:
        # A person's replies go at WhatsApp's pace of one a second after a burst of five: a
        # conversation of twenty steps waited a second at each (a minute and a half of this
        # file on each database). The pace itself is the sender's (tests/test_sender.py).
        assert started.whatsapp is not None
        started.whatsapp.transport.chat_rate = 50.0
        yield started


def with_twilio(settings: Settings, fake: FakeTwilio, port: int, **more: Any) -> Settings:
    """The test settings with the fake as Twilio and the web app on 127.0.0.1:`port`."""
    return dataclasses.replace(
        settings,
        public_url=f"http://127.0.0.1:{port}",
        twilio_account_sid=fake.account_sid,
        twilio_auth_token=fake.auth_token,
        twilio_whatsapp_from=fake.number,
        twilio_api_base_url=fake.base_url,
        **more,
    )


@contextlib.asynccontextmanager
async def listening(configured: Settings, port: int) -> AsyncIterator[Bot]:
    """The whole bot as configured, its web app listening on 127.0.0.1:`port`."""
    async with running(configured) as started:
        app = create_app(started.db, started.telegram, started.whatsapp)
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
        )
        serving = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for it
            await asyncio.sleep(0.01)
        yield started
        server.should_exit = True
        await serving


class WhatsAppUser:
    """Someone writing to the bot on WhatsApp, through Twilio's webhook."""

    def __init__(self, fake: FakeTwilio, bot: Bot, number: str = FAMILY) -> None:
        self.fake = fake
        self.bot = bot
        self.number = number
        self.address = f"whatsapp:{number}"
        self.read = 0  # messages already seen
        self.last = ""

    @property
    def webhook(self) -> str:
        return f"{self.bot.settings.public_url}/twilio/whatsapp"

    async def post(self, form: dict[str, str]) -> str:
        """Post one webhook form; return what the bot answered on WhatsApp."""
        response = await self.fake.post_inbound(self.webhook, form)
        assert response.status_code == 200, response.text
        return await self.receive()

    async def receive(self) -> str:
        """Everything the bot sent since the last look, as the person reads it."""
        await self.bot.sender.flush("whatsapp")
        new = self.fake.sent(self.address)[self.read :]
        self.read += len(new)
        self.last = "\n\n".join(m.body or "" for m in new)
        return self.last

    async def say(self, text: str) -> str:
        """Type a message."""
        return await self.post(self.fake.inbound_text(self.number, text))

    def number_of(self, label: str) -> int:
        """The number of an option in the last list the bot sent."""
        for line in self.last.splitlines():
            found = re.fullmatch(r"\u200f?(\d+)\. (.+)", line.strip())
            if found and found.group(2).strip() == label:
                return int(found.group(1))
        raise AssertionError(f"no option {label!r} in:\n{self.last}")

    async def pick(self, label: str) -> str:
        """Answer with an option's number, typed in Arabic-Indic digits."""
        return await self.say(str(self.number_of(label)).translate(INDIC))


@pytest.fixture
def user(fake: FakeTwilio, bot: Bot) -> WhatsAppUser:
    return WhatsAppUser(fake, bot)


async def start_in(user: WhatsAppUser, locale: str) -> None:
    """First contact: hello, then the language by its number."""
    first = await user.say("مرحبا")
    assert "1. " in first  # the languages, as a numbered list
    names = {"ar": "العربية", "ckb": "کوردی (سۆرانی)", "en": "English"}
    await user.pick(names[locale])
    assert t(locale, "Report a displaced family") in user.last


@pytest.mark.timeout(300)  # a long conversation; slow on a busy CI machine
async def test_a_whole_report_in_arabic_with_arabic_indic_numbers(
    user: WhatsAppUser, fake: FakeTwilio, db: Database
) -> None:
    await start_in(user, "ar")
    await user.pick(t("ar", "Report a displaced family"))
    await user.pick(t("ar", "I agree"))
    await user.pick("دهوك")
    await user.pick("زاخو")
    await user.say("مخيم شاريا")
    await user.say("نينوى")
    await user.say("٣/٢٠٢٤")
    # The size of the family: numbers are the answer, and the options have no numbers.
    assert "1. " not in user.last.split("\n\n")[-1]
    await user.say("٦")
    await user.say("٢")
    await user.say("١")
    await user.say("٠")
    await user.say("١")
    await user.pick(t("ar", "No"))
    await user.pick(t("ar", "Camp"))
    await user.pick(t("ar", "Food"))
    await user.pick(t("ar", "Done"))  # one need: no question of which is most urgent
    await user.pick(t("ar", "Skip"))
    await user.pick(t("ar", "Yes"))
    # The WhatsApp number itself, by the words of the option.
    await user.say(t("ar", "Share my phone number"))
    # May the number go to a relief organization? The family's own word, in Arabic.
    assert t("ar", "May we give your number to a relief organization that can help you?") in (
        user.last
    )
    await user.pick(t("ar", "Yes"))
    assert t("ar", "Please check your answers:") in user.last
    assert "*" + t("ar", "Your report") in user.last or t("ar", "Your report") in user.last
    await user.pick(t("ar", "Send the report"))
    async with db.transaction() as session:
        [report] = (await session.scalars(select(Report))).all()
    assert report.reference in user.last
    assert (report.governorate, report.district, report.origin) == ("IQG09", "IQG09Q04", "IQG15")
    assert (report.people, report.children, report.elderly, report.disabled) == (6, 2, 1, 0)
    assert report.needs == ["food"]
    assert report.phone == FAMILY
    assert report.share_phone
    # Every message went to the family's WhatsApp, from the bot's number, within the limit.
    for message in fake.sent(user.address):
        assert message.from_ == fake.number
        assert len(message.body or "") <= 1600


@pytest.mark.timeout(300)  # a long conversation; slow on a busy CI machine
async def test_a_whole_signature_in_arabic(user: WhatsAppUser, db: Database) -> None:
    await start_in(user, "ar")
    await user.pick(t("ar", "Sign the declaration"))
    if t("ar", "I have read it") in user.last:
        await user.pick(t("ar", "I have read it"))
    await user.say("جمعية الأمل للتنمية")
    await user.pick(t("ar", "Skip"))
    await user.pick(t("ar", "Women's organization"))
    await user.pick("بغداد")
    await user.say("بغداد")
    await user.say("زينب حسن")
    await user.say("مديرة")
    await user.say("٠٧٩٠ ١٢٣ ٤٥٦٧")
    await user.pick(t("ar", "Skip"))
    await user.pick(t("ar", "I am authorized to sign for this organization"))
    await user.pick(t("ar", "Confirm and sign"))
    async with db.transaction() as session:
        [signature] = (await session.scalars(select(Signature))).all()
    assert signature.receipt in user.last
    assert (signature.name_ar, signature.governorate, signature.phone) == (
        "جمعية الأمل للتنمية",
        "IQG08",
        "+9647901234567",
    )


async def test_a_location_and_a_photo(user: WhatsAppUser, fake: FakeTwilio) -> None:
    await start_in(user, "en")
    await user.pick("Report a displaced family")
    await user.pick("I agree")
    await user.pick("Duhok")
    await user.pick("Zakho")
    # A photo where a place was asked: a clear answer, nothing lost.
    answer = await user.post(fake.inbound_photo(FAMILY, caption=""))
    assert "Please type the name of the place, or share your location." in answer
    answer = await user.post(fake.inbound_location(FAMILY, 36.8679, 42.9887, label="Sharya"))
    assert "Shall we keep only the area" in answer
    await user.pick("Only the area")
    assert "From which governorate was the family displaced?" in user.last


async def test_a_long_text_is_split_and_bold_is_whatsapp_bold(
    user: WhatsAppUser, fake: FakeTwilio
) -> None:
    await start_in(user, "en")
    await user.pick("The declaration")
    parts = fake.sent(user.address)[-user.last.count("\n\n") - 1 :]
    assert all(len(m.body or "") <= 1600 for m in fake.sent(user.address))
    assert any((m.body or "").startswith("*") for m in parts)


async def test_opting_out_in_any_state(user: WhatsAppUser, db: Database) -> None:
    await start_in(user, "ar")
    await user.pick(t("ar", "Bulletin"))
    await user.pick(t("ar", "Subscribe"))
    await user.pick(t("ar", "Menu"))
    await user.pick(t("ar", "Report a displaced family"))
    await user.say("إيقاف")  # in the middle of the report's terms
    async with db.transaction() as session:
        contact = await session.scalar(select(Contact).where(Contact.address == user.address))
    assert contact is not None
    assert not contact.subscribed


async def test_a_coordinator_works_over_whatsapp(fake: FakeTwilio, bot: Bot) -> None:
    coordinator = WhatsAppUser(fake, bot, COORDINATOR)
    await start_in(coordinator, "en")
    answer = await coordinator.say("/reports")
    assert "No reports" in answer or "report" in answer.lower()
    answer = await coordinator.say("/bulletin")
    assert "1. " in answer  # the coordinators' bulletin menu, numbered


async def subscriber(db: Database, number: str, locale: str, wrote_ago: timedelta | None) -> None:
    """A WhatsApp subscriber who last wrote `wrote_ago` ago (None: never)."""
    now = datetime.now(UTC)
    async with db.transaction() as session:
        session.add(
            Contact(
                address=f"whatsapp:{number}",
                channel="whatsapp",
                locale=locale,
                subscribed=True,
                last_inbound_at=None if wrote_ago is None else now - wrote_ago,
            )
        )


async def publish(db: Database, texts: dict[str, dict[str, str]]) -> int:
    """Publish a bulletin now and queue its deliveries; its id."""
    now = datetime.now(UTC)
    async with db.transaction() as session:
        bulletin = Bulletin(texts=texts, created_by="whatsapp:" + COORDINATOR)
        session.add(bulletin)
        await session.flush()
        await bulletins.publish(session, bulletin, now)
        bulletin_id = bulletin.id
    await bulletins.queue_deliveries(db, bulletin_id, now)
    return bulletin_id


TEXTS = {
    "ar": {"title": "توزيع البطانيات", "text": "يبدأ توزيع البطانيات في مخيم شاريا يوم الأحد."},
    "en": {"title": "Blanket distribution", "text": "Blankets are given out at Sharya on Sunday."},
}


async def delivery(db: Database, number: str) -> OutboxMessage:
    async with db.transaction() as session:
        row = await session.scalar(
            select(OutboxMessage).where(
                OutboxMessage.address == f"whatsapp:{number}",
                OutboxMessage.bulletin_id.is_not(None),
            )
        )
    assert row is not None
    return row


async def test_the_24_hour_window(fake: FakeTwilio, bot: Bot, db: Database) -> None:
    inside, outside_ar, outside_ckb, outside_en = (
        "+9647701110001",
        "+9647701110002",
        "+9647701110003",
        "+9647701110004",
    )
    await subscriber(db, inside, "ar", timedelta(hours=23))
    await subscriber(db, outside_ar, "ar", timedelta(hours=25))
    await subscriber(db, outside_ckb, "ckb", None)
    await subscriber(db, outside_en, "en", timedelta(days=3))
    await publish(db, TEXTS)
    bot.sender.wake("whatsapp")
    await bot.sender.flush("whatsapp")
    # Inside the window: the bulletin in full.
    [full] = fake.sent(f"whatsapp:{inside}")
    assert full.content_sid is None
    assert "يبدأ توزيع البطانيات" in (full.body or "")
    # Outside: the template of the language (Arabic for Kurdish), the title as its variable.
    for number, template in (
        (outside_ar, TEMPLATE_AR),
        (outside_ckb, TEMPLATE_AR),
        (outside_en, TEMPLATE_EN),
    ):
        [sent] = fake.sent(f"whatsapp:{number}")
        assert sent.content_sid == template
        title = "Blanket distribution" if number == outside_en else "توزيع البطانيات"
        assert sent.content_variables == {"1": title}
        assert (await delivery(db, number)).status == "held"
    assert (await delivery(db, inside)).status == "sent"
    # The Kurdish subscriber writes: the full text follows (Arabic: there is no Kurdish text).
    kurdish = WhatsAppUser(fake, bot, outside_ckb)
    kurdish.read = 1
    answer = await kurdish.say("سڵاو")
    assert "يبدأ توزيع البطانيات" in answer
    assert (await delivery(db, outside_ckb)).status == "sent"


async def test_the_window_with_a_frozen_clock(bot: Bot, db: Database) -> None:
    frozen = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    window = outbox.Window(db, lambda: frozen)
    await subscriber(db, "+9647702220001", "ar", None)
    async with db.transaction() as session:
        await session.execute(
            update(Contact)
            .where(Contact.address == "whatsapp:+9647702220001")
            .values(last_inbound_at=frozen - timedelta(hours=24) + timedelta(seconds=1))
        )
    address = "whatsapp:+9647702220001"
    assert await window.open(address)
    window.clock = lambda: frozen + timedelta(seconds=1)
    assert not await window.open(address)


async def test_without_a_template_the_bulletin_waits_for_the_subscriber(
    fake: FakeTwilio, bot: Bot, db: Database
) -> None:
    assert bot.whatsapp is not None
    bot.whatsapp.transport.templates = {"ar": None, "en": None}
    await subscriber(db, "+9647703330001", "ar", timedelta(days=2))
    await publish(db, TEXTS)
    bot.sender.wake("whatsapp")
    await bot.sender.flush("whatsapp")
    assert fake.sent("whatsapp:+9647703330001") == []
    row = await delivery(db, "+9647703330001")
    assert (row.status, row.platform_message_id) == ("held", None)


async def status_case(
    fake: FakeTwilio, bot: Bot, db: Database, number: str, *outcome: str | tuple[str, int]
) -> OutboxMessage:
    """A subscriber inside the window whose bulletin gets `outcome` from Twilio."""
    await subscriber(db, number, "ar", timedelta(hours=1))
    fake.set_outcome(f"whatsapp:{number}", *outcome)
    await publish(db, TEXTS)
    bot.sender.wake("whatsapp")
    await bot.sender.flush("whatsapp")
    await fake.wait_for_callbacks()
    await bot.sender.flush("whatsapp")
    await fake.wait_for_callbacks()
    return await delivery(db, number)


async def test_status_delivered_and_read(fake: FakeTwilio, bot: Bot, db: Database) -> None:
    row = await status_case(fake, bot, db, "+9647704440001", "sent", "delivered", "read")
    assert row.status == "sent"
    assert row.delivered_at is not None
    callbacks = [c for c in fake.callbacks if c.status_code is not None]
    assert callbacks
    assert all(c.status_code == 204 for c in callbacks)


async def test_status_21610_unsubscribes(fake: FakeTwilio, bot: Bot, db: Database) -> None:
    row = await status_case(fake, bot, db, "+9647704440002", "sent", ("failed", 21610))
    assert row.status == "unreachable"
    async with db.transaction() as session:
        contact = await session.scalar(
            select(Contact).where(Contact.address == "whatsapp:+9647704440002")
        )
    assert contact is not None
    assert not contact.subscribed


async def test_status_63016_sends_the_template(fake: FakeTwilio, bot: Bot, db: Database) -> None:
    number = "+9647704440003"
    await subscriber(db, number, "ar", timedelta(hours=1))  # inside the window, we think
    fake.set_outcome(f"whatsapp:{number}", "sent", ("failed", 63016))
    await publish(db, TEXTS)
    bot.sender.wake("whatsapp")
    await bot.sender.flush("whatsapp")
    fake.set_outcome(f"whatsapp:{number}")  # the template then goes through
    await fake.wait_for_callbacks()
    await fake.wait_for_sent(2, f"whatsapp:{number}")
    await bot.sender.flush("whatsapp")
    first, second = fake.sent(f"whatsapp:{number}")
    assert first.content_sid is None  # the full text, refused by WhatsApp
    assert second.content_sid == TEMPLATE_AR  # then the template
    assert (await delivery(db, number)).status == "held"  # the text waits for the window


async def test_a_failed_template_is_not_tried_again(
    fake: FakeTwilio, bot: Bot, db: Database
) -> None:
    number = "+9647704440005"
    await subscriber(db, number, "ar", None)  # outside the window: the template goes
    fake.set_outcome(f"whatsapp:{number}", ("failed", 63016))
    await publish(db, TEXTS)
    bot.sender.wake("whatsapp")
    await bot.sender.flush("whatsapp")
    await fake.wait_for_callbacks()
    await bot.sender.flush("whatsapp")
    [template] = fake.sent(f"whatsapp:{number}")
    assert template.content_sid == TEMPLATE_AR
    row = await delivery(db, number)
    assert (row.status, row.error) == ("failed", "failed (63016)")


async def test_status_63018_backs_off_and_tells_the_coordinators(
    fake: FakeTwilio, bot: Bot, db: Database
) -> None:
    row = await status_case(fake, bot, db, "+9647704440004", "sent", ("undelivered", 63018))
    assert row.status == "pending"
    assert row.not_before is not None
    assert row.not_before > datetime.now(UTC) + timedelta(minutes=50)
    async with db.transaction() as session:
        notices = (
            await session.scalars(
                select(OutboxMessage).where(OutboxMessage.address == "telegram:1000")
            )
        ).all()
    assert len(notices) == 1
    assert "63018" in notices[0].body["text"]


async def test_create_refused_as_opted_out(fake: FakeTwilio, bot: Bot, db: Database) -> None:
    number = "+9647705550001"
    fake.reject(f"whatsapp:{number}", 21610)
    await subscriber(db, number, "ar", timedelta(hours=1))
    await publish(db, TEXTS)
    bot.sender.wake("whatsapp")
    await bot.sender.flush("whatsapp")
    assert (await delivery(db, number)).status == "unreachable"
    # In the transaction of that outcome: no more bulletins for them.
    async with db.transaction() as session:
        contact = await session.scalar(
            select(Contact).where(Contact.address == f"whatsapp:{number}")
        )
    assert contact is not None
    assert (contact.subscribed, contact.unreachable) == (False, True)


async def test_twilio_429_and_500_are_retried(fake: FakeTwilio, bot: Bot, db: Database) -> None:
    number = "+9647705550002"
    await subscriber(db, number, "en", timedelta(hours=1))
    fake.fail_next(1, status=429)
    fake.fail_next(1, status=500)
    bot.sender.workers["whatsapp"].backoff = 0.1
    await publish(db, TEXTS)
    bot.sender.wake("whatsapp")
    for _attempt in range(50):
        await bot.sender.flush("whatsapp")
        if fake.sent(f"whatsapp:{number}"):
            break
        await asyncio.sleep(0.2)
    [sent] = fake.sent(f"whatsapp:{number}")
    assert "Blankets are given out" in (sent.body or "")
    assert (await delivery(db, number)).status == "sent"


async def test_twilio_503_is_tried_again_until_it_answers(
    fake: FakeTwilio, bot: Bot, db: Database
) -> None:
    number = "+9647705550003"
    await subscriber(db, number, "en", timedelta(hours=1))
    fake.fail_next(2, status=503)  # Service Unavailable, twice
    bot.sender.workers["whatsapp"].backoff = 0.1
    await publish(db, TEXTS)
    bot.sender.wake("whatsapp")
    for _attempt in range(100):  # 20 s at most
        await bot.sender.flush("whatsapp")
        if (await delivery(db, number)).status != "pending":
            break
        await asyncio.sleep(0.2)
    [sent] = fake.sent(f"whatsapp:{number}")  # once, though asked three times
    assert "Blankets are given out" in (sent.body or "")
    row = await delivery(db, number)
    assert (row.status, row.attempts, row.error) == ("sent", 3, None)


async def test_an_export_on_whatsapp_says_where_to_take_the_file(
    fake: FakeTwilio, bot: Bot
) -> None:
    from handlers.coordinator import EXPORT_DIR

    before = set(EXPORT_DIR.glob("*")) if EXPORT_DIR.exists() else set()
    coordinator = WhatsAppUser(fake, bot, COORDINATOR)
    await start_in(coordinator, "en")
    await coordinator.say("/export")
    answer = await coordinator.pick("CSV")
    assert "0 reports" in answer
    assert "Files cannot be sent on WhatsApp" in answer
    assert set(EXPORT_DIR.glob("*")) <= before  # the file made for it is gone


async def test_the_figures_count_delivered_held_and_why_others_failed(
    fake: FakeTwilio, bot: Bot, db: Database
) -> None:
    from handlers.bulletin_admin import describe_figures

    await subscriber(db, "+9647706660001", "ar", timedelta(hours=2))  # delivered
    await subscriber(db, "+9647706660002", "ar", timedelta(days=2))  # the template; text held
    await subscriber(db, "+9647706660003", "ar", timedelta(hours=2))  # opted out
    fake.reject("whatsapp:+9647706660003", 21610)
    bulletin_id = await publish(db, TEXTS)
    bot.sender.wake("whatsapp")
    await bot.sender.flush("whatsapp")
    await fake.wait_for_callbacks()
    async with db.transaction() as session:
        [item] = await bulletins.figures(session, bulletin_id)
    assert (item.channel, item.locale, item.recipients) == ("whatsapp", "ar", 3)
    assert (item.sent, item.delivered, item.held, item.unreachable) == (1, 1, 1, 1)
    assert item.reasons == {"opted out (21610)": 1}
    with use_locale("en"):
        shown = "\n".join(describe_figures(item))
    assert "Recipients 3 · sent 1 · not yet sent 0" in shown
    assert "Delivered: 1" in shown
    assert "(WhatsApp's 24-hour window): 1" in shown
    assert "opted out (21610): 1" in shown


@pytest.fixture
async def both(
    fake: FakeTwilio, settings: Settings, db: Database
) -> AsyncIterator[tuple[Bot, FakeTelegram]]:
    """The whole bot with Telegram and WhatsApp, its web app listening on 127.0.0.1."""
    port = free_port()
    async with FakeTelegram() as telegram:
        configured = with_twilio(
            settings,
            fake,
            port,
            telegram_bot_token=telegram.token,
            telegram_api_base_url=telegram.base_url,
            telegram_file_base_url=telegram.base_file_url,
            telegram_webhook_secret="picture-test-secret-0123456789",
        )
        async with listening(configured, port) as started:
            yield started, telegram


async def test_a_picture_composed_on_telegram_reaches_whatsapp(
    fake: FakeTwilio, both: tuple[Bot, FakeTelegram], db: Database
) -> None:
    bot, telegram = both
    photo = "user-photo-7-2"  # a file id, as a coordinator's photo on Telegram gives
    await subscriber(db, FAMILY, "ar", timedelta(hours=1))
    now = datetime.now(UTC)
    async with db.transaction() as session:
        session.add(
            Contact(address="telegram:4242", channel="telegram", locale="en", subscribed=True)
        )
        bulletin = Bulletin(texts=TEXTS, image=photo, created_by="telegram:1")
        draft = Bulletin(texts=TEXTS, image=photo, created_by="telegram:1", status="scheduled")
        session.add_all([bulletin, draft])
        await session.flush()
        await bulletins.publish(session, bulletin, now)
        public_id, draft.public_id = bulletin.public_id, "B-DRAFT1"
    assert public_id is not None
    await bulletins.queue_deliveries(db, bulletin.id, now)
    bot.sender.wake("whatsapp")
    bot.sender.wake("telegram")
    await bot.sender.flush("whatsapp")
    await bot.sender.flush("telegram")

    # WhatsApp: the picture by its address on this bot, the text as its caption.
    [sent] = fake.sent(f"whatsapp:{FAMILY}")
    address = f"{bot.settings.public_url}/media/bulletin/{public_id}"
    assert sent.media_urls == [address]
    assert "يبدأ توزيع البطانيات" in (sent.body or "")
    # Telegram: the file id itself, as before.
    [on_telegram] = [c for c in telegram.calls if c.method == "sendPhoto"]
    assert on_telegram.params["photo"] == photo
    assert len(telegram.sent(4242)) == 1

    # Twilio fetches the address: the picture's bytes, taken from Telegram once.
    async with httpx.AsyncClient() as client:
        first = await client.get(address)
        again = await client.get(address)
        assert first.status_code == 200
        assert first.headers["content-type"] == "image/jpeg"
        assert first.content == FakeTelegram.file_bytes(photo)
        assert again.content == first.content
        assert len([c for c in telegram.calls if c.method == "getFile"]) == 1
        # A draft's picture, and a bulletin that does not exist, are not served.
        for other in ("B-DRAFT1", "B-NONE99"):
            refused = await client.get(f"{bot.settings.public_url}/media/bulletin/{other}")
            assert refused.status_code == 404


async def test_a_preview_on_whatsapp_goes_without_a_telegram_picture() -> None:
    draft = Bulletin(texts=TEXTS, image="user-photo-1-2", public_id="B-PREVIEW", status="draft")
    draft.published_at = datetime.now(UTC)
    address = Address("whatsapp", FAMILY)
    shown = bulletins.render(draft, address, "ar", "Asia/Baghdad", "https://bot.example.org")
    assert shown.photo is None
    assert "يبدأ توزيع البطانيات" in shown.text
    on_telegram = bulletins.render(draft, Address("telegram", "1"), "ar", "Asia/Baghdad")
    assert on_telegram.photo == "user-photo-1-2"
    # A picture given as an address is sent as it is on both.
    draft.image = "https://example.org/p.jpg"
    assert bulletins.render(draft, address, "ar", "Asia/Baghdad").photo == draft.image
    # A preview of a photo sent on WhatsApp: to WhatsApp as it is, to Telegram the text alone.
    draft.image = TWILIO_MEDIA
    assert bulletins.render(draft, address, "ar", "Asia/Baghdad").photo == draft.image
    telegram = Address("telegram", "1")
    assert bulletins.render(draft, telegram, "ar", "Asia/Baghdad", "https://b.org").photo is None


async def test_a_picture_sent_on_whatsapp_reaches_telegram(
    fake: FakeTwilio, both: tuple[Bot, FakeTelegram], db: Database
) -> None:
    bot, telegram = both
    form = fake.inbound_photo(COORDINATOR, data=b"\xff\xd8\xff\xe0a-photo-from-whatsapp\xff\xd9")
    media = form["MediaUrl0"]  # as a coordinator's photo on WhatsApp gives it
    assert bulletins.picture_source(media) == "whatsapp"
    await subscriber(db, FAMILY, "ar", timedelta(hours=1))
    now = datetime.now(UTC)
    async with db.transaction() as session:
        session.add(
            Contact(address="telegram:4343", channel="telegram", locale="en", subscribed=True)
        )
        bulletin = Bulletin(texts=TEXTS, image=media, created_by="whatsapp:" + COORDINATOR)
        session.add(bulletin)
        await session.flush()
        await bulletins.publish(session, bulletin, now)
        public_id = bulletin.public_id
    await bulletins.queue_deliveries(db, bulletin.id, now)
    for channel in ("telegram", "whatsapp"):
        bot.sender.wake(channel)
        await bot.sender.flush(channel)

    # Both platforms get it from this bot: Twilio's address may need the account's credentials.
    address = f"{bot.settings.public_url}/media/bulletin/{public_id}"
    [on_telegram] = [c for c in telegram.calls if c.method == "sendPhoto"]
    assert on_telegram.params["photo"] == address
    [on_whatsapp] = fake.sent(f"whatsapp:{FAMILY}")
    assert on_whatsapp.media_urls == [address]
    async with httpx.AsyncClient() as client:
        served = await client.get(address)
    assert served.status_code == 200
    assert served.headers["content-type"] == "image/jpeg"
    assert served.content == b"\xff\xd8\xff\xe0a-photo-from-whatsapp\xff\xd9"


def test_where_a_picture_came_from() -> None:
    twilio = TWILIO_MEDIA
    assert bulletins.picture_source(twilio) == "whatsapp"
    assert bulletins.picture_source(twilio + "?x=1") == "whatsapp"
    assert bulletins.picture_source("https://example.org/p.jpg") == "public"
    assert bulletins.picture_source("AgACAgIAAxkBAAI") == "telegram"
    assert bulletins.picture_source(None) is None
    assert bulletins.picture_source("") is None


async def replay(callback: Any) -> int:
    """Post a status callback again, exactly as Twilio signed it (as anyone who saw it could)."""
    async with httpx.AsyncClient() as client:
        response = await client.post(
            callback.url, data=callback.params, headers={"X-Twilio-Signature": callback.signature}
        )
    return response.status_code


def failed_callback(fake: FakeTwilio, code: int) -> Any:
    """The callback that reported `code`."""
    [callback] = [c for c in fake.callbacks if c.params.get("ErrorCode") == str(code)]
    return callback


async def test_a_replayed_21610_does_not_unsubscribe_again(
    fake: FakeTwilio, bot: Bot, db: Database
) -> None:
    number = "+9647704440006"
    row = await status_case(fake, bot, db, number, "sent", ("failed", 21610))
    assert row.status == "unreachable"
    async with db.transaction() as session:  # they wrote "subscribe" since
        await session.execute(
            update(Contact)
            .where(Contact.address == f"whatsapp:{number}")
            .values(subscribed=True, unreachable=False)
        )
    assert await replay(failed_callback(fake, 21610)) == 204
    async with db.transaction() as session:
        contact = await session.scalar(
            select(Contact).where(Contact.address == f"whatsapp:{number}")
        )
    assert contact is not None
    assert contact.subscribed


async def test_a_replayed_63018_does_not_hold_the_bulletins_again(
    fake: FakeTwilio, bot: Bot, db: Database
) -> None:
    number = "+9647704440007"
    first = await status_case(fake, bot, db, number, "sent", ("undelivered", 63018))
    assert first.not_before is not None
    for _time in range(3):
        assert await replay(failed_callback(fake, 63018)) == 204
    again = await delivery(db, number)
    assert (again.status, again.not_before) == ("pending", first.not_before)  # not moved


async def test_forgetting_on_whatsapp_leaves_neither_the_text_nor_the_address(
    user: WhatsAppUser, fake: FakeTwilio, db: Database
) -> None:
    """A reply keeps its text until Twilio says it was delivered (a failed delivery sends it
    again); the goodbye to a forgotten person goes, then its row goes too."""
    await start_in(user, "en")
    await user.pick("Report a displaced family")
    await user.pick("I agree")
    await user.pick("Duhok")
    await user.pick("Zakho")
    await user.say("Sharya camp, tent 12")
    async with db.transaction() as session:
        rows = (await session.scalars(select(OutboxMessage))).all()
    assert any(row.body for row in rows if row.status == "sent")  # not confirmed yet
    await fake.wait_for_callbacks()  # "delivered", from the fake Twilio
    async with db.transaction() as session:
        rows = (await session.scalars(select(OutboxMessage))).all()
    assert [row.body for row in rows if row.status == "sent"] == [{}] * len(rows)
    await user.say("/forget")
    await user.pick("Yes, delete my data")
    assert "Your data has been deleted" in user.last
    await fake.wait_for_callbacks()
    async with db.transaction() as session:
        left = (await session.scalars(select(OutboxMessage))).all()
    assert [row.address for row in left if row.address == user.address] == []


async def test_past_the_inbound_limit_a_whatsapp_flood_costs_one_notice(
    user: WhatsAppUser, bot: Bot, fake: FakeTwilio, db: Database
) -> None:
    # Low, so that the replies read take little time at WhatsApp's pace of one a second to a
    # person (the default 20 is tested on Telegram); the test settings lift it.
    bot.engine.limit.per_minute = 4
    await start_in(user, "ckb")  # 2 messages so far
    before = len(fake.sent(user.address))
    for number in range(10):  # 2 read, then one notice, then 7 dropped
        response = await fake.post_inbound(
            user.webhook, fake.inbound_text(user.number, f"سڵاو {number}")
        )
        assert response.status_code == 200
    await bot.sender.flush("whatsapp")
    bodies = [m.body or "" for m in fake.sent(user.address)[before:]]
    notice = t(
        "ckb",
        "You are sending messages faster than I can read them. "
        "I will read your messages again in a minute.",
    )
    assert [body for body in bodies if notice in body] == [bodies[-1]]  # once, and the last
    async with db.transaction() as session:
        queued = await session.scalar(
            select(func.count()).where(
                OutboxMessage.address == user.address, OutboxMessage.status == "pending"
            )
        )
    assert queued == 0  # nothing waits to be paid for


async def test_share_my_location_on_whatsapp_says_how_and_takes_it(
    user: WhatsAppUser, fake: FakeTwilio, db: Database
) -> None:
    """WhatsApp has no share button: picking "Share my location" says how to attach one
    (📎, Location), and the location then sent is taken."""
    await start_in(user, "en")
    await user.pick("Report a displaced family")
    await user.pick("I agree")
    await user.pick("Duhok")
    await user.pick("Zakho")
    await user.pick("Share my location")
    assert "📎" in user.last
    assert "Location" in user.last
    await user.post(fake.inbound_location(user.number, 37.14321, 42.68765))
    assert "Only the area" in user.last  # the point was taken: the precision question
