"""Telegram through python-telegram-bot: updates become Inbounds, Outbounds become Bot API calls.

A thin adapter: no flow logic here. Polling when PUBLIC_URL is not set; otherwise the web app's
/telegram route receives the webhook (see bot/web.py) and this module registers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import mimetypes
import os
import warnings
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError
from telegram import (
    BotCommand,
    BotCommandScopeChat,
    BotCommandScopeDefault,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    Update,
)
from telegram.constants import ChatType, ParseMode
from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError
from telegram.ext import Application, ApplicationBuilder, ContextTypes, TypeHandler
from telegram.warnings import PTBUserWarning

from bot.channels.telegram_http import AiohttpRequest
from bot.config import Settings
from bot.engine import Engine
from bot.i18n import LOCALES, N_, translate_in
from bot.inflight import bound
from bot.messages import (
    SHARE_LOCATION,
    SHARE_PHONE,
    Address,
    Inbound,
    Location,
    Media,
    Outbound,
)
from bot.outcomes import Rejected, RetryLater, Unreachable
from bot.text import parse_command, split_text

logger = logging.getLogger(__name__)

# python-telegram-bot v22 gives time periods as timedelta only when asked (and warns otherwise);
# later versions always will.
os.environ.setdefault("PTB_TIMEDELTA", "1")

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
# Telegram: about 1 message a second to one chat (TELEGRAM_CHAT_RATE; short bursts tolerated),
# 20 a minute to a group: a burst of 2 and 18 a minute after it, since a token bucket lets its
# burst through on top of its rate in any minute (20 a minute with a burst of 2 sent 22).
CHAT_BURST = 3
GROUP_CHAT_LIMIT = (18 / 60, 2)
ALLOWED_UPDATES = ["message", "callback_query"]

# The command menu. Telegram gives a menu per two-letter language (ar, en); Sorani (ckb) has
# none, so the default menu carries all three languages.
COMMANDS: list[tuple[str, str]] = [
    ("start", N_("Start, or start again")),
    ("menu", N_("The main menu")),
    ("language", N_("Change the language")),
    ("help", N_("Help")),
    ("cancel", N_("Cancel what you are doing")),
]
MEMBER = "organization-member"  # in TelegramChannel.people: a member of an organization
# A chat of someone with a role lists these too (a menu of its own, BotCommandScopeChat),
# each where the role has the permission it names (bot.roles; None: any role).
COORDINATOR_COMMANDS: list[tuple[str, str, str | None]] = [
    ("reports", N_("Reports of displaced families"), "reports"),
    ("report", N_("One report, by its reference"), "reports"),
    ("signatures", N_("Signatures waiting for verification"), "signatures"),
    ("bulletin", N_("Write and follow bulletins"), "bulletins"),
    ("export", N_("The reports as a file"), "exports"),
    ("console", N_("Coordinators' console"), None),
    ("referrals", N_("Referrals to relief organizations: the figures"), "reports"),
    # Not a role's: the members of a signatory organization (bot.runtime.telegram_people).
    ("organization", N_("My organization: its relief and its requests"), MEMBER),
]
EVERY_PERMISSION = frozenset(p for _name, _text, p in COORDINATOR_COMMANDS if p and p != MEMBER)


def listed(name: str, text: str) -> BotCommand:
    """A command of a menu every language shares: its description in the three, joined."""
    return BotCommand(name, " · ".join(translate_in(loc, text) for loc in LOCALES)[:256])


def menu_of(permissions: frozenset[str]) -> list[BotCommand]:
    """The menu of a private chat with these permissions: everyone's commands, then theirs
    (in three languages: their choice of language is in the database, which this adapter does
    not read)."""
    return [listed(name, text) for name, text in COMMANDS] + [
        listed(name, text)
        for name, text, permission in COORDINATOR_COMMANDS
        if permission is None or permission in permissions
    ]


def to_inbound(update: Update) -> Inbound | None:
    """Turn an update into an Inbound; None for updates the bot does not act on."""
    chat = update.effective_chat
    user = update.effective_user
    if chat is None or user is None or user.is_bot:
        return None
    common: dict[str, Any] = {
        "address": Address("telegram", str(chat.id)),
        "message_id": f"u{update.update_id}",  # unique per bot, the same on a redelivery
        "language_hint": user.language_code,
        "is_private": chat.type == ChatType.PRIVATE,
    }
    query = update.callback_query
    if query is not None:
        return Inbound(kind="button", payload=query.data or "", **common)
    message = update.message
    if message is None:
        return None  # edits, channel posts, reactions: nothing to answer
    if message.text is not None:
        command = parse_command(message.text)
        if command is not None:
            name, args = command
            return Inbound(kind="command", text=message.text, command=name, args=args, **common)
        return Inbound(kind="text", text=message.text, **common)
    if message.location is not None:
        point = message.location
        return Inbound(
            kind="location", location=Location(point.latitude, point.longitude), **common
        )
    if message.contact is not None:
        # Only the person's own number, as the share button sends it; not someone else's card.
        own = message.contact.user_id == user.id
        phone = message.contact.phone_number if own else None
        return Inbound(kind="contact", phone=phone, **common)
    if message.photo:
        largest = message.photo[-1]
        return Inbound(
            kind="photo",
            text=message.caption or "",
            media=(Media("photo", largest.file_id, "image/jpeg"),),
            **common,
        )
    attachment = message.document or message.voice or message.audio or message.video
    if attachment is not None:
        return Inbound(
            kind="document",
            text=message.caption or "",
            media=(Media("document", attachment.file_id, attachment.mime_type),),
            **common,
        )
    return Inbound(kind="other", **common)  # stickers and the like get the hint


def keyboard(message: Outbound) -> InlineKeyboardMarkup | ReplyKeyboardMarkup | None:
    """Inline buttons; or a reply keyboard when a button asks to share location or phone."""
    if not message.buttons:
        return None
    if message.asks_to_share():
        rows = [
            [
                KeyboardButton(
                    b.label,
                    request_location=b.payload == SHARE_LOCATION,
                    request_contact=b.payload == SHARE_PHONE,
                )
                for b in row
            ]
            for row in message.buttons
        ]
        return ReplyKeyboardMarkup(rows, resize_keyboard=True, one_time_keyboard=True)
    return InlineKeyboardMarkup(
        [
            [InlineKeyboardButton(b.label, callback_data=b.payload) for b in row]
            for row in message.buttons
        ]
    )


# A text's answer is kept as JSON (do_api_request without a return type): the sender needs only
# the message's id, and building python-telegram-bot's Message from each answer cost 0.35 ms of
# CPU, a sixth of the bot's CPU at 100 updates a second (benchmarks/inbound.py). The library asks
# to use send_message and edit_message_reply_markup instead; for these two calls we decline.
warnings.filterwarnings(
    "ignore",
    message=r"Please use 'Bot\.(send_message|edit_message_reply_markup)' instead",
    category=PTBUserWarning,
)
# LinkPreviewOptions(is_disabled=True) as the Bot API takes it: python-telegram-bot turns the
# object into this dict again for every message (7 µs each, a hundredth of a broadcast's CPU).
NO_PREVIEW = {"is_disabled": True}


async def remove_keyboard(bot: Any, message: Message) -> None:
    """Remove the inline keyboard of a message the bot sent (its answer is not parsed)."""
    await bot.do_api_request(
        "edit_message_reply_markup",
        api_kwargs={"chat_id": message.chat_id, "message_id": message.message_id},
    )


def html_text(message: Outbound, body: str, with_title: bool) -> str:
    """The message as Telegram HTML: everything escaped, only our title made bold."""
    escaped = html.escape(body, quote=False)
    if with_title and message.title:
        return f"<b>{html.escape(message.title, quote=False)}</b>\n{escaped}"
    return escaped


def seconds(error: RetryAfter) -> float:
    """RetryAfter's wait in seconds, whichever type this version of the library gives."""
    value: int | float | timedelta = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


# Telegram's free limit, and the words of a refusal of a paid broadcast. The Bot API does not
# document that answer: a 400 whose description names the Stars, the balance or paid broadcasts
# (MTProto's error for a low Stars balance is BALANCE_TOO_LOW).
FREE_RATE = 30.0
PAID_REFUSED = ("star", "balance", "paid")


class TelegramTransport:
    """Sends Outbounds with the Bot API; turns its errors into the sender's."""

    channel = "telegram"

    def __init__(
        self,
        app: Application[Any, Any, Any, Any, Any, Any],
        rate: float,
        chat_rate: float,
        paid: bool = False,
    ) -> None:
        self.app = app
        self.rate = rate
        self.chat_rate = chat_rate
        self.paid = paid  # bulletins go as paid broadcasts (TELEGRAM_PAID_BROADCAST)

    def chat_limit(self, address: str) -> tuple[float, int]:
        """One message a second to a person; twenty a minute to a group (negative ids)."""
        chat = address.partition(":")[2]
        return GROUP_CHAT_LIMIT if chat.startswith("-") else (self.chat_rate, CHAT_BURST)

    async def deliver(self, message: Outbound) -> str | None:
        """Send one Outbound; a long text goes in several messages, buttons on the last."""
        chat = message.address.id
        chat_id: int | str = int(chat) if chat.lstrip("-").isdigit() else chat  # @channel
        markup = keyboard(message)
        bot = self.app.bot
        # Only a bulletin's deliveries are paid for: replies never reach the broadcast limit.
        paid = self.paid and message.priority == "broadcast"
        try:
            if message.document:
                return await self._send_document(chat_id, message, markup)
            if message.photo:
                caption_fits = len(message.text) + len(message.title or "") < CAPTION_LIMIT - 10
                sent: Message = await bot.send_photo(
                    chat_id,
                    message.photo,
                    caption=html_text(message, message.text, True) if caption_fits else None,
                    parse_mode=ParseMode.HTML,
                    reply_markup=markup if caption_fits else None,
                    allow_paid_broadcast=True if paid else None,
                )
                if caption_fits:
                    return str(sent.message_id)
            parts = split_text(message.text, TEXT_LIMIT - len(message.title or "") - 10)
            message_id = None
            for number, part in enumerate(parts):
                last = number == len(parts) - 1
                params: dict[str, Any] = {
                    "chat_id": chat_id,
                    "text": html_text(message, part, number == 0),
                    "parse_mode": ParseMode.HTML,
                    "link_preview_options": NO_PREVIEW,
                }
                if last and markup is not None:
                    params["reply_markup"] = markup
                if paid:
                    params["allow_paid_broadcast"] = True
                answer = await bot.do_api_request("send_message", api_kwargs=params)
                message_id = answer["message_id"] if isinstance(answer, dict) else None
            return None if message_id is None else str(message_id)
        except RetryAfter as exc:
            raise RetryLater(seconds(exc), "Telegram flood control") from exc
        except Forbidden as exc:
            raise Unreachable(exc.message) from exc
        except BadRequest as exc:
            if "chat not found" in exc.message.lower():
                raise Unreachable(exc.message) from exc
            if paid and any(word in exc.message.lower() for word in PAID_REFUSED):
                # The Stars ran out (or paid broadcasts are not allowed to this bot): the
                # broadcast goes on at the free limit rather than failing.
                self.paid = False
                self.rate = FREE_RATE
                logger.error("paid broadcasts refused (%s): back to %s a second", exc, FREE_RATE)
                raise RetryLater(1.0, "paid broadcasts refused", rate=FREE_RATE) from exc
            raise Rejected(exc.message) from exc

    async def _send_document(
        self, chat_id: int | str, message: Outbound, markup: Any
    ) -> str | None:
        """Send a file from this server with the text as its caption, then delete the file."""
        path = Path(message.document or "")
        try:
            content = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise Rejected("the file to send is gone") from exc
        sent = await self.app.bot.send_document(
            chat_id,
            content,
            filename=path.name,
            caption=html_text(message, message.text[: CAPTION_LIMIT - 100], True),
            parse_mode=ParseMode.HTML,
            reply_markup=markup,
        )
        await asyncio.to_thread(path.unlink, missing_ok=True)
        return str(sent.message_id)


class TelegramChannel:
    """The Telegram channel: the python-telegram-bot Application, its updates and its transport."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        assert settings.telegram_bot_token, "the channel needs TELEGRAM_BOT_TOKEN"
        self.settings = settings
        self.engine = engine
        self.webhook = settings.public_url is not None
        builder = ApplicationBuilder().token(settings.telegram_bot_token)
        if settings.telegram_api_base_url:
            builder = builder.base_url(settings.telegram_api_base_url)
        if settings.telegram_file_base_url:
            builder = builder.base_file_url(settings.telegram_file_base_url)
        if self.webhook:
            builder = builder.updater(None)  # the web app receives the updates
        # Updates of different people run side by side; the engine keeps each person's in order.
        # The pool need not exceed the sender's sends in flight and the courtesy calls of the
        # updates in hand. aiohttp, not httpx: see bot/channels/telegram_http.py.
        # At paid broadcasts' rates the sends in flight grow past 32 (bot/inflight.py).
        pool = max(32, bound(settings.telegram_rate) + 8)
        builder = builder.request(AiohttpRequest(pool)).get_updates_request(AiohttpRequest(1))
        self.app = builder.concurrent_updates(64).build()
        self.app.add_handler(TypeHandler(Update, self._on_update))
        self.app.add_error_handler(self._on_error)
        self.transport = TelegramTransport(
            self.app,
            settings.telegram_rate,
            settings.telegram_chat_rate,
            settings.telegram_paid_broadcast,
        )
        # The Telegram chats of the people with a role, with their permissions: the runtime
        # sets it from the database (bot.roles); until then, COORDINATORS' with every one.
        self.people: dict[str, frozenset[str]] = {
            address.id: EVERY_PERMISSION
            for address in settings.coordinators
            if address.channel == "telegram"
        }
        # The chats' own menus as Telegram has them (chat -> permissions), and the chats whose
        # last call was refused (said once in the log).
        self.menus: dict[str, frozenset[str]] = {}
        self.unmenued: set[str] = set()
        # The sender's pace for calls outside the outbox (Sender.paced), when a sender runs in
        # this process: the runtime sets it.
        self.paced: Callable[[str], AbstractAsyncContextManager[None]] | None = None

    @property
    def webhook_url(self) -> str:
        """Where Telegram posts updates in webhook mode."""
        return f"{self.settings.public_url}/telegram"

    async def start(self) -> None:
        """Connect, publish the command menus, and start receiving (webhook or polling)."""
        await self.app.initialize()
        await self.publish_commands()
        if self.webhook:
            await self.app.bot.set_webhook(
                self.webhook_url,
                secret_token=self.settings.telegram_webhook_secret,
                allowed_updates=ALLOWED_UPDATES,
            )
        else:
            await self.app.bot.delete_webhook()
            assert self.app.updater is not None
            await self.app.updater.start_polling(allowed_updates=ALLOWED_UPDATES)
        await self.app.start()
        logger.info(
            "telegram: @%s %s", self.app.bot.username, "webhook" if self.webhook else "polling"
        )

    async def connect(self) -> None:
        """Connect for sending only (a worker process: another process receives)."""
        await self.app.initialize()

    async def stop(self) -> None:
        """Stop receiving and finish the updates in hand (sending still works)."""
        if self.app.updater is not None and self.app.updater.running:
            await self.app.updater.stop()
        if self.app.running:
            await self.app.stop()

    async def close(self) -> None:
        """Disconnect from the Bot API, once nothing is being sent any more."""
        await self.app.shutdown()

    async def publish_commands(self) -> None:
        """setMyCommands for ar and en, a three-language default menu, and each role's menu."""
        bot = self.app.bot
        for locale in ("ar", "en"):
            commands = [BotCommand(name, translate_in(locale, text)) for name, text in COMMANDS]
            await bot.set_my_commands(commands, language_code=locale)
        everyone = [listed(name, text) for name, text in COMMANDS]
        await bot.set_my_commands(everyone, scope=BotCommandScopeDefault())
        self.menus.clear()
        await self.follow_people(self.people)

    async def follow_people(self, people: dict[str, frozenset[str]]) -> None:
        """Make the chats' own menus follow `people` (chat -> permissions): a new or changed
        chat gets its menu, a chat no longer there loses it (back to the default menu).

        Only what differs from the menus already published is sent; a chat whose call failed
        is tried again at the next call.
        """
        self.people = people
        changed = {
            chat: permissions
            for chat, permissions in sorted(people.items())
            if self.menus.get(chat) != permissions and chat.lstrip("-").isdigit()
        }
        gone = sorted(chat for chat in self.menus if chat not in people)
        for chat, permissions in changed.items():
            if await self._menu_call(chat, permissions):
                self.menus[chat] = permissions
        for chat in gone:
            if await self._menu_call(chat, None):
                del self.menus[chat]

    async def _menu_call(self, chat: str, permissions: frozenset[str] | None) -> bool:
        """Set one private chat's menu (its permissions' commands), or delete it (None);
        whether Telegram took it. A refusal is logged, never raised: the others go on."""
        scope = BotCommandScopeChat(int(chat))
        try:
            if permissions is None:
                await self.app.bot.delete_my_commands(scope=scope)
            else:
                await self.app.bot.set_my_commands(menu_of(permissions), scope=scope)
        except TelegramError as exc:  # someone who has never written to the bot, a flood wait
            # Said once a chat, not at every try: the next rounds try again quietly.
            level = logging.DEBUG if chat in self.unmenued else logging.WARNING
            logger.log(level, "no command menu for a chat with a role: %s", exc)
            self.unmenued.add(chat)
            return False
        self.unmenued.discard(chat)
        return True

    @staticmethod
    def answer_in_response(update: Update) -> dict[str, str] | None:
        """The answer to a pressed button as a webhook's response makes it (Telegram calls it)."""
        query = update.callback_query
        if query is None:
            return None
        return {"method": "answerCallbackQuery", "callback_query_id": query.id}

    async def picture(self, file_id: str) -> tuple[bytes, str]:
        """A photo sent to the bot, by its file id: its bytes and content type."""
        file = await self.app.bot.get_file(file_id)
        content = bytes(await file.download_as_bytearray())
        return content, mimetypes.guess_type(file.file_path or "")[0] or "image/jpeg"

    async def handle_update(self, update: Update, *, answered: bool = False) -> None:
        """Hand one update to the engine; raises when the database is away (the caller retries).

        `answered`: a pressed button is answered otherwise (in the webhook's response).
        """
        query = None if answered else update.callback_query
        # The button's spinner stops at once, while the engine works: the reply does not wait.
        answering = asyncio.ensure_future(self._quietly(query.answer())) if query else None
        try:
            inbound = to_inbound(update)
            if inbound is None:
                return
            await self.engine.handle(inbound)
            pressed = update.callback_query
            message = pressed.message if pressed is not None else None
            if isinstance(message, Message) and message.reply_markup:
                # The pressed keyboard goes: an old button cannot repeat an action. An edit
                # counts in Telegram's limit: it takes its turn in the sender's pace (when the
                # sender runs in this process).
                paced = self.paced
                async with paced("telegram") if paced else contextlib.nullcontext():
                    await self._quietly(remove_keyboard(self.app.bot, message))
        finally:
            if answering is not None:
                await answering

    async def _on_update(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        """Polling: handle an update, waiting out a database that is briefly away."""
        for attempt in range(6):
            try:
                await self.handle_update(update)
                return
            except DBAPIError:
                if attempt == 5:
                    raise
                logger.warning("database unavailable; update %s waits", update.update_id)
                await asyncio.sleep(2**attempt)

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log what python-telegram-bot caught (never the message text)."""
        logger.error("telegram update failed", exc_info=context.error)

    @staticmethod
    async def _quietly(call: Awaitable[Any]) -> None:
        """Make a courtesy call (answer a button, drop a keyboard) whose failure is harmless."""
        try:
            await call
        except TelegramError as exc:
            logger.info("telegram courtesy call failed: %s", exc)
