"""The referral loop (#22) across the real channels: the whole bot with its web app on
127.0.0.1, the family on WhatsApp (the fake Twilio posts its signed webhooks, the real twilio
client sends), the organization on Telegram (the fake Bot API; its button presses come through
the webhook), the coordinator in the web console over HTTP. What each reads is what the fakes
received."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from bot import organizations, roles
from bot.config import Settings
from bot.db import Database
from bot.messages import Address
from bot.models import Contact, Referral, Report, Signature
from bot.runtime import Bot, running, telegram_people
from bot.web import create_app
from tests.conftest import Person
from tests.fake_telegram import FakeTelegram
from tests.fake_twilio import FakeTwilio
from tests.helpers import LANGS, choose_language, t
from tests.net import free_port
from tests.test_console_web import CSRF, sign_in
from tests.test_referrals import family_report, plain
from tests.test_whatsapp import WhatsAppUser, fake, with_twilio

__all__ = ["fake"]  # the fake Twilio fixture, shared

SECRET = "referral-loop-secret-0123456789"
ORG_CHAT = 5001
COORDINATOR = "telegram:502"
FAMILY_NUMBER = "+9647501112222"


@pytest.fixture
async def both(
    fake: FakeTwilio, settings: Settings, db: Database
) -> AsyncIterator[tuple[Bot, FakeTelegram]]:
    """The whole bot with Telegram (by webhook) and WhatsApp, listening on 127.0.0.1."""
    port = free_port()
    async with FakeTelegram() as telegram:
        configured = with_twilio(
            dataclasses.replace(settings, coordinators=frozenset()),
            fake,
            port,
            telegram_bot_token=telegram.token,
            telegram_api_base_url=telegram.base_url,
            telegram_file_base_url=telegram.base_file_url,
            telegram_webhook_secret=SECRET,
            telegram_chat_rate=50.0,
        )
        async with running(configured) as started:
            # One a second to a person on WhatsApp (after five) and on Telegram: the loop
            # would wait most of its time for the pace (tests/test_sender.py keeps it).
            assert started.whatsapp is not None
            started.whatsapp.transport.chat_rate = 50.0
            # The app as `icssi-bot serve` makes it: webhooks and the console.
            app = create_app(
                started.db,
                started.telegram,
                started.whatsapp,
                settings=configured,
                wake=started.engine.queued,
            )
            server = uvicorn.Server(
                uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
            )
            serving = asyncio.create_task(server.serve())
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for it
                await asyncio.sleep(0.01)
            yield started, telegram
            server.should_exit = True
            await serving


async def an_organization_on_telegram(db: Database, locale: str) -> None:
    """A verified signatory organization whose representative writes from Telegram chat
    ORG_CHAT in `locale`; food and health in Duhok."""
    now = datetime.now(UTC)
    async with db.transaction() as session:
        contact = Contact(address=f"telegram:{ORG_CHAT}", channel="telegram", locale=locale)
        session.add(contact)
        await session.flush()
        signature = Signature(
            receipt="S-LOOP1",
            contact_id=contact.id,
            locale=locale,
            version="2014-07-11",
            text_sha256="0" * 64,
            name_ar="جمعية الأمل للتنمية",
            name_key="جمعيه الامل للتنميه",
            org_type="women",
            governorate="IQG08",
            city="Baghdad",
            representative="Zainab Hassan",
            role="Director",
            status="verified",
            decided_at=now,
        )
        session.add(signature)
        await session.flush()
        org = await organizations.ensure(session, signature, now)
        await organizations.set_capacity(
            session,
            org,
            "cli:test",
            now,
            needs=["food", "health"],
            governorates=["IQG09"],
            disclose_name=True,
        )
        await roles.set_role(session, COORDINATOR, "coordinator", "test")


class TelegramMember:
    """The organization's representative in their Telegram chat."""

    def __init__(self, bot: Bot, telegram: FakeTelegram, client: httpx.AsyncClient) -> None:
        self.bot, self.telegram, self.client = bot, telegram, client
        self.seen = 0

    async def receive(self, count: int = 1) -> list[dict[str, Any]]:
        """The next `count` messages the bot sends to the chat (waited for, with a deadline)."""
        messages = await self.telegram.wait_for_sent(
            self.seen + count, chat_id=ORG_CHAT, timeout=30
        )
        new = messages[self.seen : self.seen + count]
        self.seen += count
        return new

    def payload(self, message: dict[str, Any], label: str) -> str:
        """The data of the inline button labelled `label` under a message."""
        for row in (message.get("reply_markup") or {}).get("inline_keyboard", []):
            for button in row:
                if button["text"] == label:
                    return str(button["callback_data"])
        raise AssertionError(f"no button {label!r} under {message['plain']!r}")

    async def press(self, message: dict[str, Any], label: str) -> None:
        """Tap a button under a message: Telegram posts the update to the bot's webhook."""
        update = self.telegram.callback_update(
            ORG_CHAT, self.payload(message, label), message_id=message["message_id"]
        )
        response = await self.client.post(
            "/telegram", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
        )
        assert response.status_code == 200


@pytest.mark.timeout(300)  # a long conversation on three channels; slow on a busy machine
@pytest.mark.parametrize("locale", LANGS)
async def test_refer_accept_help_and_the_family_confirms_across_channels(
    fake: FakeTwilio,
    both: tuple[Bot, FakeTelegram],
    db: Database,
    settings: Settings,
    locale: str,
) -> None:
    bot, telegram = both
    org_locale = {"ar": "ckb", "ckb": "en", "en": "ar"}[locale]
    await an_organization_on_telegram(db, org_locale)
    # The family's report, through the same engine the WhatsApp webhook feeds.
    family_chat = Person(bot.engine, Address("whatsapp", FAMILY_NUMBER))
    await choose_language(family_chat, locale)
    reference = await family_report(family_chat, locale)
    family = WhatsAppUser(fake, bot, FAMILY_NUMBER)
    await family.receive()  # what the report's conversation sent

    async with httpx.AsyncClient(base_url=bot.settings.public_url or "") as client:
        # The coordinator refers the report in the console.
        await sign_in(client, db, bot.settings, COORDINATOR)
        page = await client.get(f"/console/reports/{reference}/refer")
        assert "جمعية الأمل للتنمية" in page.text
        token = CSRF.search(page.text)
        assert token is not None
        organization = page.text.split('name="organization" value="')[1].split('"')[0]
        done = await client.post(
            f"/console/reports/{reference}/refer",
            data={"csrf": token.group(1), "organization": organization, "note": "Urgent"},
        )
        assert done.status_code == 303

        # The organization reads it on Telegram, in its language, and accepts.
        member = TelegramMember(bot, telegram, client)
        [request] = await member.receive()
        assert reference in request["plain"]
        assert "+9647501234567" in request["plain"]  # the family agreed
        assert "Urgent" in request["plain"]
        await member.press(request, t(org_locale, "Accept"))
        [accepted] = await member.receive()

        # The family reads on WhatsApp, in its language, that the organization has it.
        news = plain(await family.receive())
        assert reference in news
        assert "جمعية الأمل للتنمية" in news

        # "We helped" with health, no note: the family is asked, and answers 1 (Yes).
        await member.press(accepted, t(org_locale, "We helped"))
        [needs] = await member.receive()
        await member.press(needs, t(org_locale, "Health care and medicine"))
        [needs] = await member.receive()
        await member.press(needs, t(org_locale, "Done"))
        [note] = await member.receive()
        await member.press(note, t(org_locale, "Skip"))
        [thanks] = await member.receive()
        assert t(org_locale, "Thank you. The family will be asked whether the help came.") in (
            plain(thanks["plain"])
        )
        question = await family.receive()
        assert t(locale, "Did you receive this help?") in question
        answer = await family.say("١")  # typed in Arabic-Indic digits
        assert t(
            locale, "Thank you for telling us. We are glad the help reached your family."
        ) in plain(answer)

        # The console shows the report resolved, and the loop in its history.
        report_page = plain((await client.get(f"/console/reports/{reference}?lang=en")).text)
        assert "The family says the help came" in report_page
    async with db.transaction() as session:
        referral = await session.scalar(select(Referral))
        report = await session.scalar(select(Report).where(Report.reference == reference))
        assert referral is not None
        assert report is not None
        assert (referral.status, referral.confirmed, report.status) == (
            "helped",
            "yes",
            "resolved",
        )


async def test_the_command_menus_list_organization_and_referrals(
    both: tuple[Bot, FakeTelegram], db: Database
) -> None:
    bot, telegram = both
    await an_organization_on_telegram(db, "ar")
    assert bot.telegram is not None
    bot.telegram.people = await telegram_people(db)
    await bot.telegram.publish_commands()
    menus = {
        json.loads(scope)["chat_id"]: {c["command"] for c in commands}
        for (scope, _language), commands in telegram.scoped_commands.items()
        if "chat" in scope
    }
    # The representative: their organization, no coordinator's tool.
    assert "organization" in menus[ORG_CHAT]
    assert not {"reports", "referrals"} & menus[ORG_CHAT]
    # The coordinator: the referral figures, not an organization of their own.
    assert {"reports", "referrals"} <= menus[502]
    assert "organization" not in menus[502]
