"""Telegram end to end: the real python-telegram-bot Application against a fake Bot API server.

The fake (tests/fake_telegram.py) listens on 127.0.0.1 and speaks Telegram's JSON; everything
else is the bot's own code: runtime, adapter, engine, sender, SQLite file.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from telegram import Update

from bot import roles, runtime
from bot.channels.telegram import TelegramTransport, to_inbound
from bot.config import Settings
from bot.db import Database
from bot.i18n import LANGUAGE_NAMES
from bot.messages import SHARE_LOCATION, Address, Button, Inbound, Outbound
from bot.models import Contact, OutboxMessage, ProcessedInbound
from bot.runtime import Bot, running
from bot.text import split_text
from bot.web import create_app
from handlers.declaration import pages
from tests.fake_telegram import FakeTelegram
from tests.helpers import LANGS, count, menu_labels, t, until

USER = 4242
SECRET = "s3cret-webhook-token_0123456789"


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    """Telegram's servers, on loopback."""
    async with FakeTelegram() as server:
        yield server
        assert server.errors == []  # the fake itself never failed


def telegram_settings(settings: Settings, fake: FakeTelegram, **more: Any) -> Settings:
    """Settings pointing the bot at the fake; the per-chat pace lifted so tests run quickly."""
    return dataclasses.replace(
        settings,
        telegram_bot_token=fake.token,
        telegram_api_base_url=fake.base_url,
        telegram_file_base_url=fake.base_file_url,
        telegram_chat_rate=200.0,
        **more,
    )


@pytest.fixture
async def polling(settings: Settings, fake: FakeTelegram, db: Database) -> AsyncIterator[Bot]:
    """The bot polling the fake."""
    async with running(telegram_settings(settings, fake)) as bot:
        yield bot


def labels(message: dict[str, Any]) -> list[str]:
    """The labels of a sent message's keyboard, inline or reply."""
    markup = message.get("reply_markup") or {}
    rows = markup.get("inline_keyboard") or markup.get("keyboard") or []
    return [button["text"] for row in rows for button in row]


def payload(message: dict[str, Any], label: str) -> str:
    """The callback data of the button labelled `label`."""
    for row in (message.get("reply_markup") or {}).get("inline_keyboard", []):
        for button in row:
            if button["text"] == label:
                return str(button["callback_data"])
    raise AssertionError(f"no button {label!r} in {labels(message)}")


class TelegramUser:
    """A person in a private chat with the bot, through the fake's updates."""

    def __init__(self, fake: FakeTelegram, user_id: int = USER, language_code: str | None = None):
        self.fake = fake
        self.id = user_id
        self.language_code = language_code
        self.seen = 0

    async def say(self, text: str, expect: int = 1) -> list[dict[str, Any]]:
        """Send a text and wait for `expect` new messages from the bot."""
        self.fake.push_update(
            self.fake.text_update(self.id, text, language_code=self.language_code)
        )
        return await self.replies(expect)

    async def press(self, label: str, expect: int = 1) -> list[dict[str, Any]]:
        """Press the button `label` on the last message that had buttons."""
        message = self.last_with_buttons()
        data = payload(message, label)
        self.fake.push_update(
            self.fake.callback_update(self.id, data, message_id=message["message_id"])
        )
        return await self.replies(expect)

    async def replies(self, expect: int) -> list[dict[str, Any]]:
        """Wait for `expect` new messages to this chat."""
        sent = await self.fake.wait_for_sent(self.seen + expect, chat_id=self.id)
        new = sent[self.seen :]
        self.seen = len(sent)
        return new

    def last_with_buttons(self) -> dict[str, Any]:
        for message in reversed(self.fake.sent(self.id)):
            if message.get("reply_markup"):
                return dict(message)
        raise AssertionError("no message with buttons")


@pytest.mark.parametrize("locale", LANGS)
async def test_a_whole_conversation_by_buttons(
    polling: Bot, fake: FakeTelegram, db: Database, locale: str
) -> None:
    user = TelegramUser(fake)
    [picker] = await user.say("/start")
    assert labels(picker) == ["العربية", "کوردی (سۆرانی)", "English"]
    replies = await user.press(LANGUAGE_NAMES[locale], expect=3)
    assert t(locale, "Thank you. I will write to you in English.") in replies[0]["plain"]
    assert labels(replies[-1]) == menu_labels(locale)
    assert fake.answered_callbacks  # the button's spinner was stopped
    pressed = fake.message(USER, picker["message_id"])
    assert pressed is not None
    assert pressed["reply_markup"] is None  # the keyboard is gone: no second press

    [part] = await user.press(t(locale, "The declaration"))
    assert pages(locale)[0] in part["plain"]
    assert ("b", t(locale, "The declaration of the Civil Initiative")) in part["formatted"]
    [part] = await user.press(t(locale, "Next part"))
    assert pages(locale)[1] in part["plain"]
    [menu] = await user.press(t(locale, "Menu"))
    assert labels(menu) == menu_labels(locale)
    async with db.transaction() as session:
        contact = await session.scalar(
            select(Contact).where(Contact.address == f"telegram:{USER}")
        )
        assert contact is not None
        assert contact.locale == locale


@pytest.mark.parametrize(
    ("locale", "language", "declaration", "menu_word"),
    [
        ("ar", "١", "٢", "القائمة"),
        ("ckb", "۲", "۲", "مێنو"),
        ("en", "English", "the declaration", "menu"),
    ],
)
async def test_a_conversation_by_typing(
    polling: Bot, fake: FakeTelegram, locale: str, language: str, declaration: str, menu_word: str
) -> None:
    user = TelegramUser(fake)
    await user.say("/start")
    await user.say(language, expect=3)
    [part] = await user.say(declaration)
    assert pages(locale)[0] in part["plain"]
    if locale != "en":
        # Right to left from the first character, so Telegram lays the message out so.
        first = part["plain"][0]
        assert first == "\u200f" or unicodedata.bidirectional(first) in ("R", "AL")
    [menu] = await user.say(menu_word)
    assert labels(menu) == menu_labels(locale)


async def test_the_language_code_orders_the_picker(polling: Bot, fake: FakeTelegram) -> None:
    user = TelegramUser(fake, language_code="ckb")
    [picker] = await user.say("hello")
    assert labels(picker) == ["کوردی (سۆرانی)", "العربية", "English"]


async def test_a_deep_link_opens_its_flow_after_the_language(
    polling: Bot, fake: FakeTelegram, db: Database
) -> None:
    user = TelegramUser(fake)
    await user.say("/start report")
    [_thanks, consent] = await user.press("English", expect=2)
    assert "Before we start, please read this." in consent["plain"]
    assert labels(consent)[:2] == ["I agree", "No, thank you"]


async def test_an_expired_button(polling: Bot, fake: FakeTelegram) -> None:
    user = TelegramUser(fake)
    [picker] = await user.say("/start")
    replies = await user.press("English", expect=3)
    menu = replies[-1]
    await user.press("The declaration")
    # The old menu's keyboard was removed; a client that still shows it sends its data anyway.
    fake.push_update(
        fake.callback_update(
            USER, payload(menu, "About the Initiative"), message_id=menu["message_id"]
        )
    )
    [expired, current] = await user.replies(2)
    assert "This menu has expired" in expired["plain"]
    assert pages("en")[0] in current["plain"]
    fake.push_update(fake.callback_update(USER, "lang:ar", message_id=picker["message_id"]))
    [expired, _current] = await user.replies(2)
    assert "This menu has expired" in expired["plain"]


async def test_commands_menus_per_language(polling: Bot, fake: FakeTelegram) -> None:
    names = ["start", "menu", "language", "help", "cancel"]
    assert [c["command"] for c in fake.commands["ar"]] == names
    assert [c["command"] for c in fake.commands["en"]] == names
    assert fake.commands["ar"][1]["description"] == t("ar", "The main menu")
    default = fake.commands[""]
    # The default menu serves Sorani speakers too: it carries all three languages.
    for locale in LANGS:
        assert t(locale, "The main menu") in default[1]["description"]


async def test_a_chats_menu_follows_its_role_without_a_restart(
    settings: Settings,
    fake: FakeTelegram,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(runtime, "MENUS_EVERY", 0.05)
    async with db.transaction() as session:
        await roles.set_role(session, "telegram:500", "admin", "test")
    fake.forget(1000)  # someone who never wrote to the bot: Telegram knows no such chat
    async with running(telegram_settings(settings, fake)):
        assert [method for method, _names in fake.menu_calls(500)] == ["setMyCommands"]
        # The People page (or `icssi-bot people add`) gives two people a role.
        async with db.transaction() as session:
            await roles.set_role(session, "telegram:1000", "viewer", "telegram:500")
            await roles.set_role(session, "telegram:1001", "editor", "telegram:500")
        await until(lambda: fake.menu_calls(1001) != [], "the editor's menu")
        [(method, names)] = fake.menu_calls(1001)
        assert method == "setMyCommands"
        assert {"start", "menu", "console", "bulletin"} <= set(names)
        assert not {"reports", "report", "signatures", "export"} & set(names)
        # The chat Telegram refused was tried and said in the log, and held nobody up.
        assert fake.menu_calls(1000)[0][0] == "setMyCommands"
        assert "no command menu for a chat with a role" in caplog.text
        # A new role: a new menu, with the reports.
        async with db.transaction() as session:
            await roles.set_role(session, "telegram:1001", "coordinator", "telegram:500")
        await until(lambda: len(fake.menu_calls(1001)) == 2, "the promoted menu")
        assert {"reports", "report", "signatures", "console"} <= set(fake.menu_calls(1001)[1][1])
        # The role taken away: the chat's own menu is deleted (the default one shows again).
        async with db.transaction() as session:
            await roles.remove(session, "telegram:1001", "telegram:500")
        await until(lambda: len(fake.menu_calls(1001)) == 3, "the menu deleted")
        assert fake.menu_calls(1001)[2] == ("deleteMyCommands", [])
        assert not [scope for scope, _lang in fake.scoped_commands if '"chat_id": 1001' in scope]
        refused = len(fake.menu_calls(1000))
        await until(
            lambda: len(fake.menu_calls(1000)) > refused + 2, "the refused chat tried again"
        )
    # Only what changed was sent: the admin's menu once, at start; the editor's three calls.
    assert [method for method, _names in fake.menu_calls(500)] == ["setMyCommands"]
    assert len(fake.menu_calls(1001)) == 3
    # The refused chat is tried again each round, but said in the log once.
    said = [r for r in caplog.records if "no command menu" in r.getMessage()]
    assert [r.levelno for r in said if r.levelno >= logging.WARNING] == [logging.WARNING]


async def test_a_group_gets_one_short_invitation(polling: Bot, fake: FakeTelegram) -> None:
    fake.push_update(fake.text_update(USER, "/start", chat_id=-100777, chat_type="group"))
    [message] = await fake.wait_for_sent(1, chat_id=-100777)
    assert not labels(message)
    assert "private" in message["plain"] or "خاص" in message["plain"]


async def test_a_user_who_blocked_the_bot(polling: Bot, fake: FakeTelegram, db: Database) -> None:
    user = TelegramUser(fake)
    await user.say("/start")
    await user.press("English", expect=3)
    fake.block(USER)
    fake.push_update(fake.text_update(USER, "/help"))
    for _ in range(200):
        async with db.transaction() as session:
            contact = await session.scalar(
                select(Contact).where(Contact.address == f"telegram:{USER}")
            )
            if contact is not None and contact.unreachable:
                break
        await polling.sender.flush("telegram")
    assert contact is not None
    assert contact.unreachable
    assert "blocked" in (contact.unreachable_reason or "")
    async with db.transaction() as session:
        statuses = set((await session.scalars(select(OutboxMessage.status))).all())
    assert "unreachable" in statuses
    assert "pending" not in statuses


async def test_a_429_storm_delays_but_loses_and_repeats_nothing(
    polling: Bot, fake: FakeTelegram
) -> None:
    user = TelegramUser(fake)
    fake.fail_next("sendMessage", 4, error_code=429, retry_after=1)
    [picker] = await user.say("/start")
    replies = await user.press("English", expect=3)
    assert labels(picker) == ["العربية", "کوردی (سۆرانی)", "English"]
    assert [labels(r) for r in replies][-1] == menu_labels("en")
    texts = [m["plain"] for m in fake.sent(USER)]
    assert len(texts) == len(set(texts)) == 4  # each once
    assert sum(1 for c in fake.calls if c.method == "sendMessage") == 8  # 4 refused + 4 sent


async def test_the_same_update_twice_is_handled_once(
    polling: Bot, fake: FakeTelegram, db: Database
) -> None:
    update = fake.text_update(USER, "/start")
    fake.push_update(update)
    await fake.wait_for_sent(1, chat_id=USER)
    fake.push_update(dict(update))  # the same update_id again
    fake.push_update(fake.text_update(USER, "3"))
    await fake.wait_for_sent(4, chat_id=USER)
    await polling.sender.flush("telegram")
    assert len(fake.sent(USER)) == 4  # picker once, then thanks, welcome, menu
    assert await count(db, ProcessedInbound) == 2


async def test_text_from_users_cannot_inject_formatting(
    fake: FakeTelegram, settings: Settings, db: Database
) -> None:
    async with running(telegram_settings(settings, fake)) as bot:
        assert bot.telegram is not None
        transport: TelegramTransport = bot.telegram.transport
        typed = "<b>Um Ali</b> & sons *_[x](http://evil.example)`"
        await transport.deliver(
            Outbound(Address("telegram", str(USER)), f"Name: {typed}", title="Your report <i>")
        )
    [message] = fake.sent(USER)
    assert message["plain"] == f"Your report <i>\nName: {typed}"
    assert message["formatted"] == [("b", "Your report <i>")]
    assert message["link_preview_options"] == {"is_disabled": True}  # nor a preview of the link


async def test_a_long_text_is_split_with_the_buttons_on_the_last_part(
    fake: FakeTelegram, settings: Settings, db: Database
) -> None:
    text = "\n\n".join(f"Paragraph {n}: " + "word " * 150 for n in range(12))
    assert len(text) > 8000
    async with running(telegram_settings(settings, fake)) as bot:
        assert bot.telegram is not None
        await bot.telegram.transport.deliver(
            Outbound(Address("telegram", str(USER)), text, buttons=((Button("OK", "ok"),),))
        )
    sent = fake.sent(USER)
    assert len(sent) >= 2
    assert all(len(m["plain"]) <= 4096 for m in sent)
    assert [bool(m.get("reply_markup")) for m in sent] == [False] * (len(sent) - 1) + [True]
    assert re.sub(r"\s+", "", "".join(m["plain"] for m in sent)) == re.sub(r"\s+", "", text)


def test_split_text_keeps_paragraphs() -> None:
    assert split_text("a\n\nb", 3) == ["a", "b"]
    assert split_text("x" * 10, 4) == ["xxxx", "xxxx", "xx"]


async def test_share_buttons_become_a_reply_keyboard(
    fake: FakeTelegram, settings: Settings, db: Database
) -> None:
    async with running(telegram_settings(settings, fake)) as bot:
        assert bot.telegram is not None
        await bot.telegram.transport.deliver(
            Outbound(
                Address("telegram", str(USER)),
                "Where are you?",
                buttons=(
                    (Button("Send my location", SHARE_LOCATION),),
                    (Button("Menu", "nav:menu"),),
                ),
            )
        )
    [message] = fake.sent(USER)
    keyboard = message["reply_markup"]["keyboard"]
    assert keyboard[0][0] == {"text": "Send my location", "request_location": True} or (
        keyboard[0][0]["request_location"] is True
    )
    assert message["reply_markup"].get("one_time_keyboard") is True


async def test_updates_become_inbounds(fake: FakeTelegram, polling: Bot) -> None:
    bot = polling.telegram
    assert bot is not None

    def decode(data: dict[str, Any]) -> Inbound | None:
        return to_inbound(Update.de_json(data, bot.app.bot))

    location = decode(fake.location_update(USER, 36.86, 42.99))
    assert location is not None
    assert location.kind == "location"
    assert location.location is not None
    assert (location.location.latitude, location.location.longitude) == (36.86, 42.99)

    own = decode(fake.contact_update(USER, "+9647501234567"))
    other = decode(fake.contact_update(USER, "+9647509999999", contact_user_id=999))
    assert own is not None and own.phone == "+9647501234567"  # noqa: PT018
    assert other is not None and other.phone is None  # noqa: PT018

    photo = decode(fake.photo_update(USER, caption="our tent"))
    assert photo is not None
    assert photo.kind == "photo"
    assert photo.text == "our tent"
    assert photo.media[0].ref

    document = decode(fake.document_update(USER))
    assert document is not None
    assert document.kind == "document"
    assert document.media[0].content_type == "application/pdf"

    command = decode(fake.text_update(USER, "/start sign", language_code="ar"))
    assert command is not None
    assert (command.command, command.args, command.language_hint) == ("start", ("sign",), "ar")
    assert command.message_id.startswith("u")

    group = decode(fake.text_update(USER, "hi", chat_id=-5, chat_type="group"))
    assert group is not None
    assert not group.is_private
    assert group.address == Address("telegram", "-5")


async def test_a_photo_where_a_choice_is_expected(polling: Bot, fake: FakeTelegram) -> None:
    user = TelegramUser(fake)
    await user.say("/start")
    await user.press("English", expect=3)
    fake.push_update(fake.photo_update(USER))
    [hint, menu] = await user.replies(2)
    assert "cannot use a photo" in hint["plain"]
    assert labels(menu) == menu_labels("en")


# Webhook mode ---------------------------------------------------------------------------------


@pytest.fixture
async def webhook(
    settings: Settings, fake: FakeTelegram, db: Database
) -> AsyncIterator[tuple[Bot, httpx.AsyncClient]]:
    """The bot in webhook mode, and an HTTP client for its web app."""
    configured = telegram_settings(
        settings, fake, public_url="https://bot.example.org", telegram_webhook_secret=SECRET
    )
    async with running(configured) as bot:
        app = create_app(bot.db, bot.telegram)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bot.test") as client:
            yield bot, client


async def test_webhook_is_registered_with_its_secret(
    webhook: tuple[Bot, httpx.AsyncClient], fake: FakeTelegram
) -> None:
    assert fake.webhook is not None
    assert fake.webhook["url"] == "https://bot.example.org/telegram"
    assert fake.webhook["secret"] == SECRET


async def test_webhook_with_the_right_secret(
    webhook: tuple[Bot, httpx.AsyncClient], fake: FakeTelegram, db: Database
) -> None:
    bot, client = webhook
    update = fake.text_update(USER, "/start")
    response = await client.post(
        "/telegram", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
    )
    assert response.status_code == 200
    [picker] = await fake.wait_for_sent(1, chat_id=USER)
    assert labels(picker) == ["العربية", "کوردی (سۆرانی)", "English"]
    # Telegram delivers the same update again: answered 200, handled once.
    again = await client.post(
        "/telegram", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
    )
    assert again.status_code == 200
    await bot.sender.flush("telegram")
    assert len(fake.sent(USER)) == 1
    assert await count(db, ProcessedInbound) == 1


async def test_a_button_pressed_through_the_webhook_is_answered_in_the_response(
    webhook: tuple[Bot, httpx.AsyncClient], fake: FakeTelegram
) -> None:
    _bot, client = webhook
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    await client.post("/telegram", json=fake.text_update(USER, "/start"), headers=headers)
    [picker] = await fake.wait_for_sent(1, chat_id=USER)
    press = fake.callback_update(USER, "lang:en", message_id=picker["message_id"])
    response = await client.post("/telegram", json=press, headers=headers)
    # Telegram makes the call given in the answer: the spinner stops with no request of ours.
    assert response.status_code == 200
    assert response.json() == {
        "method": "answerCallbackQuery",
        "callback_query_id": press["callback_query"]["id"],
    }
    assert fake.answered_callbacks == []
    replies = await fake.wait_for_sent(4, chat_id=USER)
    assert labels(replies[-1]) == menu_labels("en")
    pressed = fake.message(USER, picker["message_id"])
    assert pressed is not None
    assert pressed["reply_markup"] is None  # the keyboard is gone: no second press


@pytest.mark.parametrize("secret", [None, "", "wrong-secret-0123456789", SECRET + "x"])
async def test_webhook_with_a_wrong_or_missing_secret(
    webhook: tuple[Bot, httpx.AsyncClient], fake: FakeTelegram, db: Database, secret: str | None
) -> None:
    bot, client = webhook
    headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
    response = await client.post(
        "/telegram", json=fake.text_update(USER, "/start"), headers=headers
    )
    assert response.status_code == 403
    await bot.sender.flush("telegram")
    assert fake.sent(USER) == []
    assert await count(db, ProcessedInbound) == 0


async def test_webhook_rejects_garbage(webhook: tuple[Bot, httpx.AsyncClient]) -> None:
    _bot, client = webhook
    response = await client.post(
        "/telegram", content=b"{not json", headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
    )
    assert response.status_code == 400


async def test_webhook_health(webhook: tuple[Bot, httpx.AsyncClient]) -> None:
    _bot, client = webhook
    assert (await client.get("/healthz")).status_code == 200


async def test_a_file_is_sent_and_then_deleted(
    fake: FakeTelegram, settings: Settings, db: Database, tmp_path: Path
) -> None:
    export = tmp_path / "reports.csv"
    export.write_text("reference,people\nR-AAAAA,4\n", encoding="utf-8")
    async with running(telegram_settings(settings, fake)) as bot:
        assert bot.telegram is not None
        await bot.telegram.transport.deliver(
            Outbound(Address("telegram", str(USER)), "1 report", document=str(export))
        )
    [message] = fake.sent(USER)
    assert message["document"]["file_name"] == "reports.csv"
    assert message["document_bytes"] == b"reference,people\nR-AAAAA,4\n"
    assert message["plain"] == "1 report"
    assert not export.exists()


async def test_the_fake_keeps_telegrams_limits_to_one_chat(fake: FakeTelegram) -> None:
    fake.chat_limits = True
    url = f"http://127.0.0.1:{fake.port}/bot{fake.token}/sendMessage"
    async with httpx.AsyncClient() as client:
        person = [await client.post(url, json={"chat_id": 77, "text": f"m{n}"}) for n in range(4)]
        group = [
            await client.post(url, json={"chat_id": -100777, "text": f"g{n}"}) for n in range(21)
        ]
    # A burst of three to a person, then one a second; twenty a minute to a group.
    assert [r.status_code for r in person] == [200, 200, 200, 429]
    assert person[3].json()["parameters"]["retry_after"] == 1
    assert [r.status_code for r in group] == [200] * 20 + [429]
    assert group[20].json()["parameters"]["retry_after"] >= 59
    assert fake.chat_flood_hits == 2
    assert [m["plain"] for m in fake.sent(77)] == ["m0", "m1", "m2"]


async def test_replies_keep_to_the_limit_of_one_chat(
    settings: Settings, fake: FakeTelegram, db: Database
) -> None:
    fake.chat_limits = True
    paced = dataclasses.replace(telegram_settings(settings, fake), telegram_chat_rate=1.0)
    async with running(paced) as bot:
        user = TelegramUser(fake)
        await user.say("/start")
        await user.press("English", expect=3)  # a burst of three after the first
        for command in ("/help", "/menu", "/help"):  # each at once: the sender spaces them
            await user.say(command, expect=1)
        await bot.sender.flush("telegram")
    assert fake.chat_flood_hits == 0
    sent = [at for at, chat in fake.accepted if chat == USER]
    assert len(sent) >= 7
    assert sent[-1] - sent[0] >= len(sent) - 3 - 0.1  # after a burst of three, one a second


async def test_a_chat_not_found_stops_its_messages_and_not_the_others(
    polling: Bot, fake: FakeTelegram, db: Database
) -> None:
    gone, other = TelegramUser(fake), TelegramUser(fake, user_id=5151)
    await gone.say("/start")
    await gone.press("English", expect=3)
    fake.forget(USER)  # the account was deleted
    fake.push_update(fake.text_update(USER, "/help"))
    await other.say("/start")  # answered meanwhile
    contact = None
    for _ in range(300):  # 30 s at most
        async with db.transaction() as session:
            contact = await session.scalar(
                select(Contact).where(Contact.address == f"telegram:{USER}")
            )
        if contact is not None and contact.unreachable:
            break
        await asyncio.sleep(0.1)
    assert contact is not None
    assert contact.unreachable
    assert "chat not found" in (contact.unreachable_reason or "").lower()
    async with db.transaction() as session:
        rows = (
            await session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.address == f"telegram:{USER}")
                .order_by(OutboxMessage.id)
            )
        ).all()
    statuses = [row.status for row in rows]
    assert statuses[-1] == "unreachable"
    assert "pending" not in statuses
    assert all(row.attempts <= 1 for row in rows)  # not tried again
    assert len(fake.sent(USER)) == 4
    assert len(fake.sent(5151)) == 1
