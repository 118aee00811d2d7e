"""A fake of Telegram's Bot API server on 127.0.0.1 for running the real python-telegram-bot.

It speaks the real wire format (form, multipart or JSON requests; ``{"ok": ..., "result": ...}``
answers), keeps the messages the bot sent, lets tests push updates for long polling, and injects
faults (errors, blocked users, flood control). It never contacts any other address.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import gc
import json
import math
import os
import random
import re
import socket
import stat
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Self
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

JSON_KEYS = frozenset(
    {
        "chat_id",
        "message_id",
        "reply_markup",
        "commands",
        "scope",
        "allowed_updates",
        "latitude",
        "longitude",
        "offset",
        "limit",
        "timeout",
        "show_alert",
        "drop_pending_updates",
        "max_connections",
        "entities",
        "caption_entities",
        "link_preview_options",
        "reply_parameters",
        "disable_notification",
        "protect_content",
        "cache_time",
        "horizontal_accuracy",
        "allow_paid_broadcast",
        "message_thread_id",
        "user_id",
        "from_chat_id",
        "message_ids",
        "menu_button",
        "reply_to_message_id",
        "allow_sending_without_reply",
        "disable_web_page_preview",
        "has_spoiler",
        "show_caption_above_media",
        "live_period",
        "heading",
        "proximity_alert_radius",
    }
)

BOT_USER: dict[str, Any] = {
    "id": 1000001,
    "is_bot": True,
    "first_name": "ICSSI test bot",
    "username": "icssi_test_bot",
}
GET_ME: dict[str, Any] = {
    **BOT_USER,
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
    "can_connect_to_business": False,
    "has_main_web_app": False,
}

SEND_METHODS = frozenset({"sendMessage", "sendPhoto", "sendDocument", "sendLocation"})
EDIT_METHODS = frozenset({"editMessageText", "editMessageReplyMarkup"})
FLOOD_METHODS = SEND_METHODS | EDIT_METHODS
PAID_LIMIT = 1000  # messages a second with allow_paid_broadcast
# What the fake answers a paid broadcast when the bot's Stars run out. The Bot API does not
# document it: MTProto's error for a Stars balance too low is BALANCE_TOO_LOW, which the Bot API
# passes on as a 400's description.
NO_STARS = "Bad Request: BALANCE_TOO_LOW"

BLOCKED = "Forbidden: bot was blocked by the user"
CHAT_NOT_FOUND = "Bad Request: chat not found"
# Telegram's limits to one chat (shared/reference/platforms.md): about a message a second to a
# person, short bursts tolerated (a bucket of 3, refilled at 1 a second; a tenth of a message of
# slack for the way here), and 20 messages a minute to a group (negative ids).
CHAT_RATE, CHAT_BURST, CHAT_SLACK = 1.0, 3, 0.1
GROUP_PER_MINUTE = 20
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
QUERY_INVALID = "Bad Request: query is too old and response timeout expired or query ID is invalid"
GET_UPDATES_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
POLL_CONFLICT = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)

MAX_TEXT = 4096
MAX_CAPTION = 1024
UPDATE_TYPES = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "callback_query",
        "inline_query",
        "chosen_inline_result",
        "my_chat_member",
        "chat_member",
        "chat_join_request",
        "poll",
        "poll_answer",
        "message_reaction",
        "message_reaction_count",
        "pre_checkout_query",
        "shipping_query",
        "business_message",
        "business_connection",
        "edited_business_message",
        "deleted_business_messages",
        "chat_boost",
        "removed_chat_boost",
        "purchased_paid_media",
    }
)

_LANGUAGE_RE = re.compile(r"[a-z]{2}")
_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")
_COMMAND_RE = re.compile(r"[a-z0-9_]{1,32}")
_TAG_RE = re.compile(
    r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)"
    r"((?:\s+[a-zA-Z_][a-zA-Z0-9_-]*(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s\"'>]+))?)*)"
    r"\s*(/?)>"
)
_ATTR_RE = re.compile(
    r"([a-zA-Z_][a-zA-Z0-9_-]*)(?:\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s\"'>]+)))?"
)
_ENTITY_RE = re.compile(r"&(?:(lt|gt|amp|quot)|#([0-9]{1,8})|#[xX]([0-9a-fA-F]{1,8}));")
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_TAG_ENTITY = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "span": "spoiler",
    "tg-spoiler": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}


@dataclass
class Call:
    """One request the bot made to the fake: the method, its decoded parameters and when."""

    method: str
    params: dict[str, Any]
    at: float


class ApiError(Exception):
    """An error answer of the Bot API: HTTP status, description and optional parameters."""

    def __init__(
        self, error_code: int, description: str, parameters: dict[str, Any] | None = None
    ) -> None:
        """Keep the parts of the error envelope."""
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.parameters = parameters

    def envelope(self) -> dict[str, Any]:
        """The JSON body Telegram answers with for this error."""
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.error_code,
            "description": self.description,
        }
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def _bad_request(detail: str) -> ApiError:
    """A 400 error with Telegram's "Bad Request: " prefix."""
    return ApiError(400, f"Bad Request: {detail}")


def _phrase(error_code: int) -> str:
    """The description Telegram gives with an HTTP error code of its own."""
    try:
        return HTTPStatus(error_code).phrase
    except ValueError:
        return "Error"


def _utf16_len(text: str) -> int:
    """Length of `text` in UTF-16 code units, the unit of Telegram's entity offsets."""
    return len(text.encode("utf-16-le")) // 2


def _utf16_slice(text: str, offset: int, length: int) -> str:
    """The part of `text` at a UTF-16 offset and length."""
    data = text.encode("utf-16-le")
    return data[2 * offset : 2 * (offset + length)].decode("utf-16-le", errors="replace")


def _decode_param(key: str, value: Any) -> Any:
    """Decode one parameter the way python-telegram-bot encoded it (JSON for non-strings)."""
    if key in JSON_KEYS and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _parse_multipart(body: bytes, content_type: str) -> list[tuple[str, str | None, str, bytes]]:
    """Split a multipart/form-data body into (name, filename, content type, content) parts."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        raise _bad_request("can't parse multipart body: no boundary")
    delimiter = b"--" + match.group(1).encode("latin-1")
    parts: list[tuple[str, str | None, str, bytes]] = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk.removeprefix(b"\r\n")
        head, _, content = chunk.partition(b"\r\n\r\n")
        content = content.removesuffix(b"\r\n")
        headers: dict[str, str] = {}
        for line in head.decode("utf-8", errors="replace").split("\r\n"):
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        name = re.search(r'(?:^|;)\s*name="([^"]*)"', disposition)
        filename = re.search(r'(?:^|;)\s*filename="([^"]*)"', disposition)
        if name is None:
            continue
        parts.append(
            (
                name.group(1),
                filename.group(1) if filename else None,
                headers.get("content-type", "application/octet-stream"),
                content,
            )
        )
    return parts


def _decode_entity(match: re.Match[str]) -> str:
    """The character an HTML entity match stands for; raises ValueError when it is invalid."""
    named, decimal, hexadecimal = match.groups()
    if named:
        return _NAMED_ENTITIES[named]
    code = int(decimal) if decimal else int(hexadecimal, 16)
    if code <= 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        raise ValueError(code)
    return chr(code)


def _unescape_attribute(value: str) -> str:
    """Unescape the HTML entities in an attribute value."""

    def replace(match: re.Match[str]) -> str:
        """One entity, or the text as it is when it is not valid."""
        try:
            return _decode_entity(match)
        except ValueError:
            return match.group(0)

    return _ENTITY_RE.sub(replace, value)


@dataclass
class _OpenTag:
    """A start tag waiting for its end tag while parsing HTML."""

    name: str
    attrs: dict[str, str]
    start: int
    order: int
    byte_offset: int
    language: str | None = None


@dataclass
class ParsedText:
    """Text as a user sees it: plain text, Telegram entities and (tag, inner text) spans."""

    plain: str
    entities: list[dict[str, Any]]
    formatted: list[tuple[str, str]]


def parse_html(text: str) -> ParsedText:
    """Parse Telegram-flavoured HTML like the Bot API does, raising ApiError on bad markup."""
    allowed = set(_TAG_ENTITY)
    plain: list[str] = []
    stack: list[_OpenTag] = []
    spans: list[tuple[int, str, int, int]] = []  # (order, tag, start, end) in plain indices
    entities: list[dict[str, Any]] = []
    order = 0
    index = 0

    def byte_offset(position: int) -> int:
        """The UTF-8 byte offset of a position in `text`, as Telegram reports errors."""
        return len(text[:position].encode("utf-8"))

    def fail(detail: str) -> ApiError:
        """A "can't parse entities" error."""
        return _bad_request(f"can't parse entities: {detail}")

    while index < len(text):
        char = text[index]
        if char == "&":
            entity = _ENTITY_RE.match(text, index)
            if entity is None:
                raise fail(f"Can't parse HTML entity at byte offset {byte_offset(index)}")
            try:
                plain.append(_decode_entity(entity))
            except ValueError:
                raise fail(
                    f"Invalid character entity at byte offset {byte_offset(index)}"
                ) from None
            index = entity.end()
            continue
        if char != "<":
            plain.append(char)
            index += 1
            continue
        tag = _TAG_RE.match(text, index)
        if tag is None:
            if text.find(">", index) == -1:
                raise fail(f"Unclosed start tag at byte offset {byte_offset(index)}")
            bad = re.match(r"</?([^\s>/]*)", text[index:])
            name = bad.group(1) if bad else ""
            raise fail(f'Unsupported start tag "{name}" at byte offset {byte_offset(index)}')
        closing, name, attr_text, self_closing = tag.groups()
        name = name.lower()
        current = "".join(plain)
        if closing:
            if not stack:
                raise fail(f"Unexpected end tag at byte offset {byte_offset(index)}")
            top = stack[-1]
            if top.name != name:
                raise fail(
                    f"Unmatched end tag at byte offset {byte_offset(index)}, "
                    f'expected "</{top.name}>", found "</{name}>"'
                )
            stack.pop()
            spans.append((top.order, top.name, top.start, len(current)))
            entity_dict = _html_entity(top, current, stack)
            if entity_dict is not None:
                entities.append(entity_dict)
        else:
            if name not in allowed or self_closing:
                raise fail(f'Unsupported start tag "{name}" at byte offset {byte_offset(index)}')
            attrs: dict[str, str] = {}
            for attr in _ATTR_RE.finditer(attr_text):
                value = next((v for v in attr.groups()[1:] if v is not None), "")
                attrs[attr.group(1).lower()] = _unescape_attribute(value)
            if name == "span" and attrs.get("class") != "tg-spoiler":
                raise fail('Tag "span" must have class "tg-spoiler"')
            if name == "tg-emoji" and not attrs.get("emoji-id"):
                raise fail('Tag "tg-emoji" must have attribute "emoji-id"')
            stack.append(_OpenTag(name, attrs, len(current), order, byte_offset(index)))
            order += 1
        index = tag.end()
    if stack:
        raise fail(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    full = "".join(plain)
    formatted = [(tag_name, full[start:end]) for _, tag_name, start, end in sorted(spans)]
    return ParsedText(full, entities, formatted)


def _html_entity(tag: _OpenTag, current: str, stack: list[_OpenTag]) -> dict[str, Any] | None:
    """The MessageEntity dict a closed HTML tag makes, or None when it makes none."""
    kind = _TAG_ENTITY[tag.name]
    entity: dict[str, Any] = {
        "type": kind,
        "offset": _utf16_len(current[: tag.start]),
        "length": _utf16_len(current[tag.start :]),
    }
    if kind == "text_link":
        href = tag.attrs.get("href")
        if not href:
            return None
        if href.startswith("tg://user?id="):
            entity["type"] = "text_mention"
            entity["user"] = {"id": int(href.split("=", 1)[1] or 0), "is_bot": False}
            entity["user"]["first_name"] = "User"
        else:
            entity["url"] = href
    elif kind == "code":
        language = tag.attrs.get("class", "")
        if stack and stack[-1].name == "pre":
            if language.startswith("language-"):
                stack[-1].language = language.removeprefix("language-")
            return None
    elif kind == "pre" and tag.language:
        entity["language"] = tag.language
    elif kind == "blockquote" and "expandable" in tag.attrs:
        entity["type"] = "expandable_blockquote"
    elif kind == "custom_emoji":
        entity["custom_emoji_id"] = tag.attrs["emoji-id"]
    return entity


def _strip_parsed(parsed: ParsedText) -> ParsedText:
    """Strip surrounding whitespace as Telegram does and move the entities along."""
    stripped = parsed.plain.strip()
    lead = _utf16_len(parsed.plain[: len(parsed.plain) - len(parsed.plain.lstrip())])
    total = _utf16_len(stripped)
    entities: list[dict[str, Any]] = []
    for entity in parsed.entities:
        start = max(0, int(entity["offset"]) - lead)
        end = min(total, int(entity["offset"]) + int(entity["length"]) - lead)
        if end > start:
            entities.append({**entity, "offset": start, "length": end - start})
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return ParsedText(stripped, entities, parsed.formatted)


def format_text(
    text: str, parse_mode: str | None, entities: Any = None, *, limit: int = MAX_TEXT
) -> ParsedText:
    """Turn text as sent by the bot into what a user sees, validating it like Telegram."""
    mode = (parse_mode or "").strip()
    if mode.lower() == "html":
        parsed = parse_html(text)
    elif mode.lower() in ("markdown", "markdownv2"):
        raise _bad_request(f"can't parse entities: parse_mode {mode} is not supported by the fake")
    elif mode:
        raise _bad_request("unsupported parse_mode")
    else:
        given = [
            e
            for e in (entities if isinstance(entities, list) else [])
            if isinstance(e, dict)
            and isinstance(e.get("offset"), int)
            and isinstance(e.get("length"), int)
        ]
        formatted = [
            (str(e.get("type")), _utf16_slice(text, int(e["offset"]), int(e["length"])))
            for e in given
        ]
        parsed = ParsedText(text, given, formatted)
    parsed = _strip_parsed(parsed)
    if len(parsed.plain) > limit:
        raise _bad_request("message is too long")
    return parsed


def _inline_markup(markup: Any) -> dict[str, Any] | None:
    """The inline keyboard of a reply_markup, or None when it is absent, empty or not inline."""
    if isinstance(markup, dict) and markup.get("inline_keyboard"):
        return markup
    return None


def _validate_markup(markup: Any) -> None:
    """Check a reply_markup like Telegram: callback data of 1-64 bytes, buttons with an action."""
    if markup is None or markup == "":
        return
    if not isinstance(markup, dict):
        raise _bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" not in markup:
        return
    rows = markup["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise _bad_request('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array')
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise _bad_request("can't parse inline keyboard button: Text must be non-empty")
            if "callback_data" in button:
                data = str(button["callback_data"]).encode("utf-8")
                if not 1 <= len(data) <= 64:
                    raise _bad_request("BUTTON_DATA_INVALID")
            elif "url" in button:
                if not str(button["url"]).startswith(("http://", "https://", "tg://")):
                    raise _bad_request("BUTTON_URL_INVALID")
            elif len(button) == 1:
                raise _bad_request("text buttons are unallowed in the inline keyboard")


def _chat_of(chat_id: int) -> dict[str, Any]:
    """The Chat object of a chat id: private for positive ids, a group for negative ones."""
    if chat_id > 0:
        return {"id": chat_id, "type": "private", "first_name": "User"}
    return {"id": chat_id, "type": "group", "title": "Group"}


def _int_param(params: dict[str, Any], key: str, missing: str) -> int:
    """An integer parameter, or a 400 error with `missing` as its detail."""
    value = params.get(key)
    if isinstance(value, bool):
        raise _bad_request(missing)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    raise _bad_request(missing)


def _wire(stored: dict[str, Any]) -> dict[str, Any]:
    """The Message object Telegram would send for a stored message (no fake-only keys)."""
    message: dict[str, Any] = {
        "message_id": stored["message_id"],
        "from": dict(BOT_USER),
        "chat": dict(stored["chat"]),
        "date": stored["date"],
    }
    if "edit_date" in stored:
        message["edit_date"] = stored["edit_date"]
    if "photo" in stored:
        message["photo"] = copy.deepcopy(stored["photo"])
        if stored.get("caption") is not None:
            message["caption"] = stored["plain"]
            if stored["entities"]:
                message["caption_entities"] = copy.deepcopy(stored["entities"])
    elif "document" in stored:
        message["document"] = {k: v for k, v in stored["document"].items() if v is not None}
        if stored.get("caption") is not None:
            message["caption"] = stored["plain"]
            if stored["entities"]:
                message["caption_entities"] = copy.deepcopy(stored["entities"])
    elif "location" in stored:
        message["location"] = dict(stored["location"])
    else:
        message["text"] = stored["plain"]
        if stored["entities"]:
            message["entities"] = copy.deepcopy(stored["entities"])
    inline = _inline_markup(stored.get("reply_markup"))
    if inline is not None:
        message["reply_markup"] = copy.deepcopy(inline)
    return message


def _caption(params: dict[str, Any]) -> tuple[str | None, ParsedText]:
    """A media message's caption (None if none) and its parsed form."""
    caption = params.get("caption")
    if not (isinstance(caption, str) and caption):
        return None, ParsedText("", [], [])
    parsed = format_text(
        caption, params.get("parse_mode"), params.get("caption_entities"), limit=MAX_CAPTION
    )
    return caption, parsed


Handler = Callable[[dict[str, Any]], Awaitable[Any]]

# When the request being answered reached the fake (time.monotonic(), one clock for every process
# on the machine): a benchmark in another process measures from an update to the reply's request.
_ARRIVED: contextvars.ContextVar[float] = contextvars.ContextVar("arrived")


class FakeTelegram:
    """Telegram's Bot API servers, faked on 127.0.0.1 inside the test's event loop."""

    def __init__(
        self,
        token: str = "123456:TEST-token",
        *,
        flood_limit: int | None = None,
        chat_limits: bool = False,
        delay: float = 0.0,
        jitter: float = 0.0,
        stars: float | None = None,
    ) -> None:
        """Set up an empty fake; call start() (or use `async with`) to serve it.

        Each call is answered `delay` ± `jitter` / 2 seconds after it arrived (when the fake
        counts it): the platform's time and the way back. `stars`: the bot's balance for paid
        broadcasts (0.1 a message; None: unlimited).
        """
        self.token = token
        self.delay = delay
        self.jitter = jitter
        self._rng = random.Random(20)
        self.stars = stars
        self.paid_sent = 0  # messages accepted with allow_paid_broadcast
        self.paid_refused = 0  # ... refused for want of Stars
        self._paid_window: deque[float] = deque()
        self.flood_limit = flood_limit
        self.flood_hits = 0
        self.chat_limits = chat_limits  # Telegram's per-chat limits (429 past them)
        self.chat_flood_hits = 0  # messages refused for going past a chat's limit
        self._chat_buckets: dict[int, tuple[float, float]] = {}  # chat -> (tokens, when)
        self._group_sends: dict[int, deque[float]] = {}
        self._gone: set[int] = set()
        self.outage_answers = 0  # calls answered with the outage's error
        self._outage_until = 0.0
        self._outage_error = 500
        self.faults_answered = 0  # errors injected with fail_next() and answered
        self.calls: list[Call] = []
        self.edits: list[Call] = []
        self.answered_callbacks: list[str] = []
        self.commands: dict[str, list[dict[str, str]]] = {}
        self.scoped_commands: dict[tuple[str, str], list[dict[str, str]]] = {}
        self.descriptions: dict[str, str] = {}
        self.short_descriptions: dict[str, str] = {}
        self.webhook: dict[str, str | None] | None = None
        self.deleted: list[tuple[int, int]] = []
        self.errors: list[BaseException] = []
        self.updates: list[dict[str, Any]] = []
        self._webhook_options: dict[str, Any] = {}
        self._allowed_updates: list[str] | None = None
        self._sent: list[dict[str, Any]] = []
        # (time.monotonic(), chat id) of each message sent, in order: for benchmarks
        self.accepted: list[tuple[float, int]] = []
        self.download_delay = 0.0  # seconds each file download takes (a slow file server)
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._message_counters: dict[int, int] = {}
        self._user_message_counters: dict[int, int] = {}
        self._next_update_id = 1
        self._next_callback = 1
        self._next_file = 1
        self._issued_callbacks: set[str] = set()
        self._blocked: set[int] = set()
        self._faults: dict[str, deque[ApiError]] = {}
        self._flood_window: deque[float] = deque()
        self._poll_generation = 0
        self._updates_event = asyncio.Event()
        self._sent_event = asyncio.Event()
        self._closing = False
        self._port: int | None = None
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._methods: dict[str, tuple[str, Handler]] = {
            name.lower(): (name, handler)
            for name, handler in {
                "getMe": self._get_me,
                "getUpdates": self._get_updates,
                "sendMessage": self._send_message,
                "sendPhoto": self._send_photo,
                "sendDocument": self._send_document,
                "sendLocation": self._send_location,
                "sendChatAction": self._send_chat_action,
                "getFile": self._get_file,
                "editMessageText": self._edit_message_text,
                "editMessageReplyMarkup": self._edit_message_reply_markup,
                "deleteMessage": self._delete_message,
                "answerCallbackQuery": self._answer_callback_query,
                "setMyCommands": self._set_my_commands,
                "getMyCommands": self._get_my_commands,
                "deleteMyCommands": self._delete_my_commands,
                "setMyDescription": self._set_my_description,
                "getMyDescription": self._get_my_description,
                "setMyShortDescription": self._set_my_short_description,
                "getMyShortDescription": self._get_my_short_description,
                "setWebhook": self._set_webhook,
                "deleteWebhook": self._delete_webhook,
                "getWebhookInfo": self._get_webhook_info,
            }.items()
        }
        self.app = Starlette(
            routes=[
                Route("/bot{token}/{method}", self._endpoint, methods=["GET", "POST"]),
                Route("/file/bot{token}/{path:path}", self._download, methods=["GET"]),
                Route("/_fake/stats", self._stats, methods=["GET"]),
                Route("/_fake/accepted", self._accepted, methods=["GET"]),
                Route("/_fake/retry_after", self._inject_retry_after, methods=["POST"]),
                Route("/_fake/sent", self._sent_feed, methods=["GET"]),
                Route("/_fake/callbacks", self._issue_callbacks, methods=["POST"]),
                Route("/{path:path}", self._not_found, methods=["GET", "POST", "PUT", "DELETE"]),
            ]
        )

    # ----------------------------------------------------------------- server lifecycle

    @property
    def port(self) -> int:
        """The port the fake listens on (after start())."""
        if self._port is None:
            raise RuntimeError("FakeTelegram is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """The Bot API base URL for ApplicationBuilder().base_url(...)."""
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        """The file base URL for ApplicationBuilder().base_file_url(...)."""
        return f"http://127.0.0.1:{self.port}/file/bot"

    async def _stats(self, _request: Request) -> JSONResponse:
        """Counts for a benchmark that runs the fake in another process (not Telegram's API)."""
        # Counted without copying: a benchmark polls this while thousands of messages arrive.
        return JSONResponse(
            {
                "sent": len(self._sent),
                "flood_hits": self.flood_hits,
                "chat_flood_hits": self.chat_flood_hits,
                "faults_answered": self.faults_answered,
                "paid_sent": self.paid_sent,
                "paid_refused": self.paid_refused,
            }
        )

    async def _accepted(self, request: Request) -> JSONResponse:
        """When, and to which chat, the messages from the `start`-th on were sent (benchmarks)."""
        return JSONResponse(self.accepted[int(request.query_params.get("start", 0)) :])

    async def _inject_retry_after(self, request: Request) -> JSONResponse:
        """Answer the next sendMessage with 429 and retry_after=`seconds` (benchmarks)."""
        self.fail_next("sendMessage", retry_after=int(request.query_params["seconds"]))
        return JSONResponse({"ok": True})

    async def _sent_feed(self, request: Request) -> JSONResponse:
        """The messages sent from number `after` on, each as Telegram's Message and its arrival.

        For a benchmark in another process (not Telegram's API): {"next": N, "messages":
        [{"at": monotonic seconds, "message": Message, "reply_markup": as sent}, ...]} (the
        Message carries only an inline keyboard); with `wait`, waits up to that many seconds for
        a first one.
        """
        after = max(0, int(request.query_params.get("after", "0")))
        wait = min(30.0, float(request.query_params.get("wait", "0")))
        deadline = time.monotonic() + wait
        while len(self._sent) <= after and not self._closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._sent_event.clear()
            try:
                await asyncio.wait_for(self._sent_event.wait(), remaining)
            except TimeoutError:
                break
        sent = self._sent[after:]
        messages = [
            {
                "at": stored["received_at"],
                "message": _wire(stored),
                "reply_markup": stored["reply_markup"],
            }
            for stored in sent
        ]
        return JSONResponse({"next": after + len(sent), "messages": messages})

    async def _issue_callbacks(self, request: Request) -> JSONResponse:
        """Accept callback query ids a benchmark made for its button presses (not Telegram's API).

        Updates posted straight to the bot's webhook carry ids the fake did not issue; this makes
        answerCallbackQuery accept them as it accepts those of callback_update().
        """
        ids = (await request.json()).get("ids", [])
        self._issued_callbacks.update(str(query_id) for query_id in ids)
        return JSONResponse({"issued": len(ids)})

    async def start(self) -> None:
        """Serve the fake on 127.0.0.1 on a free port, returning once it accepts requests."""
        if self._server is not None:
            raise RuntimeError("FakeTelegram is already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # No Nagle delay: a response written in two parts would wait for a delayed ACK (40 ms).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        self._closing = False
        self._server = server
        self._task = asyncio.create_task(server.serve(sockets=[sock]), name="fake-telegram")
        deadline = time.monotonic() + 10
        while not server.started:
            if self._task.done():
                self._server = None
                sock.close()
                await self._task
                raise RuntimeError("the fake Telegram server exited while starting")
            if time.monotonic() > deadline:
                await self.stop()
                raise TimeoutError("the fake Telegram server did not start within 10 s")
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        """Stop serving: wake pending long polls and shut uvicorn down."""
        server, task = self._server, self._task
        if server is None or task is None:
            return
        self._closing = True
        self._updates_event.set()
        self._sent_event.set()
        server.should_exit = True
        done, _ = await asyncio.wait({task}, timeout=10)
        if not done:
            server.force_exit = True
            await asyncio.wait({task}, timeout=5)
        self._server = None
        self._task = None
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise RuntimeError("the fake Telegram server failed") from task.exception()

    async def __aenter__(self) -> Self:
        """Start the fake for an `async with` block."""
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop the fake at the end of an `async with` block."""
        await self.stop()

    # ----------------------------------------------------------------- HTTP handling

    async def _not_found(self, request: Request) -> JSONResponse:
        """Any other path: Telegram's 404."""
        return JSONResponse(ApiError(404, "Not Found").envelope(), status_code=404)

    async def _endpoint(self, request: Request) -> JSONResponse:
        """Answer one Bot API call: /bot{token}/{method}."""
        _ARRIVED.set(time.monotonic())
        try:
            if request.path_params["token"] != self.token:
                raise ApiError(401, "Unauthorized")
            entry = self._methods.get(str(request.path_params["method"]).lower())
            if entry is None:
                raise ApiError(404, "Not Found")
            name, handler = entry
            params = await self._read_params(request)
            call = Call(name, params, time.monotonic())
            self.calls.append(call)
            self._check_faults(name, bool(params.get("allow_paid_broadcast")))
            result = await handler(params)
            if name in EDIT_METHODS:
                self.edits.append(call)
        except ApiError as error:
            await self._answer_delay()
            return JSONResponse(error.envelope(), status_code=error.error_code)
        except Exception as error:  # a bug in the fake: answer 500 and keep it for the test
            self.errors.append(error)
            body = ApiError(500, f"Internal Server Error: fake_telegram: {error!r}").envelope()
            return JSONResponse(body, status_code=500)
        await self._answer_delay()
        return JSONResponse({"ok": True, "result": result})

    async def _answer_delay(self) -> None:
        """Wait as the platform does before its answer comes back (`delay`, `jitter`)."""
        if self.delay or self.jitter:
            spread = self._rng.uniform(-self.jitter / 2, self.jitter / 2)
            await asyncio.sleep(max(0.0, self.delay + spread))

    async def _read_params(self, request: Request) -> dict[str, Any]:
        """The parameters of a request from its query string and form, multipart or JSON body."""
        params: dict[str, Any] = {
            key: _decode_param(key, value) for key, value in request.query_params.multi_items()
        }
        body = await request.body()
        if not body:
            return params
        content_type = request.headers.get("content-type", "")
        mime = content_type.split(";")[0].strip().lower()
        if mime == "application/json":
            try:
                data = json.loads(body)
            except ValueError:
                raise _bad_request("can't parse JSON object") from None
            if not isinstance(data, dict):
                raise _bad_request("JSON object expected")
            params.update({key: _decode_param(key, value) for key, value in data.items()})
        elif mime == "multipart/form-data":
            for name, filename, part_type, content in _parse_multipart(body, content_type):
                if filename is None:
                    params[name] = _decode_param(name, content.decode("utf-8"))
                else:
                    params[name] = {
                        "filename": filename,
                        "mime_type": part_type,
                        "size": len(content),
                        "data": content,
                    }
        else:
            text = body.decode("utf-8")
            for key, value in parse_qsl(text, keep_blank_values=True):
                params[key] = _decode_param(key, value)
        return params

    def _check_faults(self, method: str, paid: bool = False) -> None:
        """Raise an outage's error, an injected error or a flood-control 429, if any is due.

        A paid broadcast counts in its own limit (1,000 a second), and costs 0.1 Star.
        """
        if time.monotonic() < self._outage_until:
            self.outage_answers += 1
            raise ApiError(self._outage_error, _phrase(self._outage_error))
        faults = self._faults.get(method)
        if faults:
            self.faults_answered += 1
            raise faults.popleft()
        if paid and method in SEND_METHODS:
            if self.stars is not None and self.stars < 0.1:
                self.paid_refused += 1
                raise ApiError(400, NO_STARS)
            now = time.monotonic()
            while self._paid_window and now - self._paid_window[0] >= 1.0:
                self._paid_window.popleft()
            if len(self._paid_window) >= PAID_LIMIT:
                self.flood_hits += 1
                raise ApiError(429, "Too Many Requests: retry after 1", {"retry_after": 1})
            self._paid_window.append(now)
            self.paid_sent += 1
            if self.stars is not None:
                self.stars = round(self.stars - 0.1, 1)
            return
        if self.flood_limit is not None and method in FLOOD_METHODS:
            now = time.monotonic()
            while self._flood_window and now - self._flood_window[0] >= 1.0:
                self._flood_window.popleft()
            if len(self._flood_window) >= self.flood_limit:
                self.flood_hits += 1
                raise ApiError(429, "Too Many Requests: retry after 1", {"retry_after": 1})
            self._flood_window.append(now)

    def _check_blocked(self, chat_id: int) -> None:
        """403 when the user of this chat blocked the bot; 400 when the chat is gone."""
        if chat_id in self._blocked:
            raise ApiError(403, BLOCKED)
        if chat_id in self._gone:
            raise ApiError(400, CHAT_NOT_FOUND)

    def _check_chat_pace(self, chat_id: int) -> None:
        """429 when a new message would go past the chat's limit, as Telegram answers."""
        if not self.chat_limits:
            return
        now = time.monotonic()
        if chat_id < 0:
            window = self._group_sends.setdefault(chat_id, deque())
            while window and now - window[0] >= 60.0:
                window.popleft()
            if len(window) >= GROUP_PER_MINUTE:
                self._refuse_for_chat(60.0 - (now - window[0]))
            window.append(now)
            return
        tokens, stamp = self._chat_buckets.get(chat_id, (float(CHAT_BURST), now))
        tokens = min(float(CHAT_BURST), tokens + (now - stamp) * CHAT_RATE)
        if tokens < 1.0 - CHAT_SLACK:
            self._chat_buckets[chat_id] = (tokens, now)
            self._refuse_for_chat((1.0 - tokens) / CHAT_RATE)
        self._chat_buckets[chat_id] = (tokens - 1.0, now)

    def _refuse_for_chat(self, wait: float) -> None:
        """Answer 429 for one chat's limit, with the whole seconds to wait."""
        self.chat_flood_hits += 1
        seconds = max(1, math.ceil(wait))
        raise ApiError(429, f"Too Many Requests: retry after {seconds}", {"retry_after": seconds})

    def _chat_id(self, params: dict[str, Any]) -> int:
        """The chat_id parameter as an int (400 when missing or not a number)."""
        if params.get("chat_id") in (None, ""):
            raise _bad_request("chat_id is empty")
        return _int_param(params, "chat_id", "chat not found")

    # ----------------------------------------------------------------- methods

    async def _get_me(self, params: dict[str, Any]) -> Any:
        """getMe: the bot's User."""
        return dict(GET_ME)

    async def _get_updates(self, params: dict[str, Any]) -> Any:
        """getUpdates: long polling over the queue of pushed updates."""
        if self.webhook is not None:
            raise ApiError(409, GET_UPDATES_CONFLICT)
        offset = _int_param(params, "offset", "bad offset") if "offset" in params else None
        limit = _int_param(params, "limit", "bad limit") if "limit" in params else 100
        limit = min(max(limit, 1), 100)
        try:
            timeout = float(params.get("timeout") or 0)
        except (TypeError, ValueError):
            raise _bad_request("bad timeout") from None
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = [str(kind) for kind in allowed] or None
        if offset is not None:
            if offset < 0:
                self.updates = self.updates[offset:]
            else:
                self.updates = [u for u in self.updates if int(u["update_id"]) >= offset]
        self._poll_generation += 1
        generation = self._poll_generation
        self._updates_event.set()  # an older long poll ends with 409, as on Telegram
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            if generation != self._poll_generation:
                raise ApiError(409, POLL_CONFLICT)
            if self._allowed_updates is not None:
                kinds = set(self._allowed_updates)
                self.updates = [u for u in self.updates if kinds & set(u)]
            if self._closing:
                return []
            if self.updates:
                return copy.deepcopy(self.updates[:limit])
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            self._updates_event.clear()
            try:
                await asyncio.wait_for(self._updates_event.wait(), remaining)
            except TimeoutError:
                return []

    def _new_message(
        self, chat_id: int, params: dict[str, Any], content: dict[str, Any]
    ) -> dict[str, Any]:
        """Store a message the bot sent, keep a snapshot, wake waiters; return the wire form."""
        self._check_chat_pace(chat_id)
        number = self._message_counters.get(chat_id, 0) + 1
        self._message_counters[chat_id] = number
        stored: dict[str, Any] = {
            "message_id": number,
            "date": int(time.time()),
            "chat": _chat_of(chat_id),
            "from": dict(BOT_USER),
            **content,
            "reply_markup": params.get("reply_markup") or None,
            "received_at": _ARRIVED.get(time.monotonic()),
        }
        self._messages[(chat_id, number)] = stored
        self._sent.append(copy.deepcopy(stored))
        self.accepted.append((time.monotonic(), chat_id))
        self._sent_event.set()
        return _wire(stored)

    async def _send_message(self, params: dict[str, Any]) -> Any:
        """sendMessage: store and return a text Message."""
        chat_id = self._chat_id(params)
        self._check_blocked(chat_id)
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _bad_request("message text is empty")
        parsed = format_text(text, params.get("parse_mode"), params.get("entities"))
        if not parsed.plain:
            raise _bad_request("message text is empty")
        _validate_markup(params.get("reply_markup"))
        content = {
            "text": text,
            "plain": parsed.plain,
            "entities": parsed.entities,
            "formatted": parsed.formatted,
            "parse_mode": params.get("parse_mode"),
            "link_preview_options": params.get("link_preview_options"),
        }
        return self._new_message(chat_id, params, content)

    def _media(
        self, params: dict[str, Any], key: str
    ) -> tuple[int, Any, str | None, ParsedText, int]:
        """What sendPhoto and sendDocument share: chat, the file, caption, a new file number."""
        chat_id = self._chat_id(params)
        self._check_blocked(chat_id)
        media = params.get(key)
        if media in (None, ""):
            raise _bad_request(f"there is no {key} in the request")
        caption, parsed = _caption(params)
        _validate_markup(params.get("reply_markup"))
        number = self._next_file
        self._next_file += 1
        return chat_id, media, caption, parsed, number

    async def _send_photo(self, params: dict[str, Any]) -> Any:
        """sendPhoto: store and return a photo Message (file id, URL or upload)."""
        chat_id, photo, caption, parsed, number = self._media(params, "photo")
        sizes = [
            {
                "file_id": f"photo-{number}",
                "file_unique_id": f"u{number}",
                "width": 90,
                "height": 90,
            }
        ]
        sent_as = photo if isinstance(photo, str) else {k: photo[k] for k in photo if k != "data"}
        content = {
            "photo": sizes,
            "photo_input": sent_as,
            "caption": caption,
            "plain": parsed.plain,
            "entities": parsed.entities,
            "formatted": parsed.formatted,
            "parse_mode": params.get("parse_mode"),
        }
        return self._new_message(chat_id, params, content)

    async def _send_document(self, params: dict[str, Any]) -> Any:
        """sendDocument: store and return a document Message; an upload keeps its bytes."""
        chat_id, document, caption, parsed, number = self._media(params, "document")
        upload = document if isinstance(document, dict) else {}
        content = {
            "document": {
                "file_id": f"document-{number}",
                "file_unique_id": f"d{number}",
                "file_name": upload.get("filename") or params.get("filename"),
                "mime_type": upload.get("mime_type"),
                "file_size": upload.get("size"),
            },
            "document_bytes": upload.get("data"),
            "caption": caption,
            "plain": parsed.plain,
            "entities": parsed.entities,
            "formatted": parsed.formatted,
            "parse_mode": params.get("parse_mode"),
        }
        return self._new_message(chat_id, params, content)

    async def _send_location(self, params: dict[str, Any]) -> Any:
        """sendLocation: store and return a location Message."""
        chat_id = self._chat_id(params)
        self._check_blocked(chat_id)
        try:
            latitude = float(params["latitude"])
            longitude = float(params["longitude"])
        except (KeyError, TypeError, ValueError):
            raise _bad_request("wrong latitude or longitude") from None
        if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
            raise _bad_request("wrong latitude or longitude")
        location: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
        if params.get("horizontal_accuracy") is not None:
            location["horizontal_accuracy"] = params["horizontal_accuracy"]
        _validate_markup(params.get("reply_markup"))
        content: dict[str, Any] = {
            "location": location,
            "plain": "",
            "entities": [],
            "formatted": [],
            "parse_mode": None,
        }
        return self._new_message(chat_id, params, content)

    @staticmethod
    def file_bytes(file_id: str) -> bytes:
        """The content the fake serves for a file id it issued (a JPEG's first bytes, and more)."""
        return b"\xff\xd8\xff\xe0" + f"fake telegram file {file_id}".encode() * 64

    async def _get_file(self, params: dict[str, Any]) -> Any:
        """getFile: a File with its path under /file/bot<token>/ (400 for ids never issued)."""
        file_id = str(params.get("file_id", ""))
        if not re.fullmatch(r"(user-)?(photo|document)-[\d-]+", file_id):
            raise _bad_request("invalid file_id")
        folder = "photos" if "photo" in file_id else "documents"
        extension = "jpg" if folder == "photos" else "pdf"
        return {
            "file_id": file_id,
            "file_unique_id": f"f{file_id}",
            "file_size": len(self.file_bytes(file_id)),
            "file_path": f"{folder}/{file_id}.{extension}",
        }

    async def _download(self, request: Request) -> Response:
        """A file's content at /file/bot<token>/<file_path>, as Telegram serves it."""
        if request.path_params["token"] != self.token:
            return Response(status_code=401)
        path = str(request.path_params["path"])
        found = re.fullmatch(r"(?:photos|documents)/(.+)\.(?:jpg|pdf)", path)
        if found is None:
            return Response(status_code=404)
        await asyncio.sleep(self.download_delay)
        return Response(self.file_bytes(found.group(1)), media_type="application/octet-stream")

    async def _send_chat_action(self, params: dict[str, Any]) -> Any:
        """sendChatAction: true (403 when blocked)."""
        self._check_blocked(self._chat_id(params))
        return True

    def _message_to_edit(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The stored message an edit call points at (400 when there is none)."""
        if params.get("inline_message_id"):
            raise _bad_request("message to edit not found")
        chat_id = self._chat_id(params)
        self._check_blocked(chat_id)
        message_id = _int_param(params, "message_id", "message to edit not found")
        stored = self._messages.get((chat_id, message_id))
        if stored is None:
            raise _bad_request("message to edit not found")
        return chat_id, stored

    def _record_edit(self, stored: dict[str, Any]) -> dict[str, Any]:
        """Stamp an edited message with its edit date and return the edited Message."""
        stored["edit_date"] = int(time.time())
        return _wire(stored)

    async def _edit_message_text(self, params: dict[str, Any]) -> Any:
        """editMessageText: change the text (and keyboard) of a stored message."""
        _, stored = self._message_to_edit(params)
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _bad_request("message text is empty")
        if "photo" in stored or "location" in stored:
            raise _bad_request("there is no text in the message to edit")
        parsed = format_text(text, params.get("parse_mode"), params.get("entities"))
        if not parsed.plain:
            raise _bad_request("message text is empty")
        markup = params.get("reply_markup") or None
        _validate_markup(markup)
        if (
            parsed.plain == stored["plain"]
            and parsed.entities == stored["entities"]
            and _inline_markup(markup) == _inline_markup(stored.get("reply_markup"))
        ):
            raise ApiError(400, NOT_MODIFIED)
        stored.update(
            {
                "text": text,
                "plain": parsed.plain,
                "entities": parsed.entities,
                "formatted": parsed.formatted,
                "parse_mode": params.get("parse_mode"),
                "reply_markup": markup,
            }
        )
        return self._record_edit(stored)

    async def _edit_message_reply_markup(self, params: dict[str, Any]) -> Any:
        """editMessageReplyMarkup: change or remove the inline keyboard of a stored message."""
        _, stored = self._message_to_edit(params)
        markup = params.get("reply_markup") or None
        _validate_markup(markup)
        if _inline_markup(markup) == _inline_markup(stored.get("reply_markup")):
            raise ApiError(400, NOT_MODIFIED)
        stored["reply_markup"] = markup
        return self._record_edit(stored)

    async def _delete_message(self, params: dict[str, Any]) -> Any:
        """deleteMessage: forget a stored message."""
        chat_id = self._chat_id(params)
        message_id = _int_param(params, "message_id", "message to delete not found")
        if self._messages.pop((chat_id, message_id), None) is None:
            raise _bad_request("message to delete not found")
        self.deleted.append((chat_id, message_id))
        return True

    async def _answer_callback_query(self, params: dict[str, Any]) -> Any:
        """answerCallbackQuery: accept each issued query id once."""
        query_id = str(params.get("callback_query_id") or "")
        if query_id not in self._issued_callbacks or query_id in self.answered_callbacks:
            raise ApiError(400, QUERY_INVALID)
        text = params.get("text")
        if isinstance(text, str) and len(text) > 200:
            raise _bad_request("MESSAGE_TOO_LONG")
        self.answered_callbacks.append(query_id)
        return True

    @staticmethod
    def _language(params: dict[str, Any]) -> str:
        """The language_code parameter: "" or two lowercase letters (400 otherwise)."""
        language = params.get("language_code") or ""
        if not isinstance(language, str) or (language and not _LANGUAGE_RE.fullmatch(language)):
            raise _bad_request("invalid language code specified")
        return language

    def _scope_key(self, params: dict[str, Any]) -> str | None:
        """None for the default command scope, else a stable key of the scope.

        A chat's scope names a chat Telegram knows: one that is gone (or was never opened,
        `forget`) gets "chat not found".
        """
        scope = params.get("scope")
        if scope in (None, "") or (isinstance(scope, dict) and scope.get("type") == "default"):
            return None
        if not isinstance(scope, dict) or not isinstance(scope.get("type"), str):
            raise _bad_request("can't parse BotCommandScope JSON object")
        if scope["type"] in ("chat", "chat_administrators", "chat_member"):
            chat_id = scope.get("chat_id")
            if not isinstance(chat_id, int | str) or chat_id == "":
                raise _bad_request("can't parse BotCommandScope JSON object")
            if chat_id in self._gone:
                raise ApiError(400, CHAT_NOT_FOUND)
        return json.dumps(scope, sort_keys=True)

    async def _set_my_commands(self, params: dict[str, Any]) -> Any:
        """setMyCommands: store the list per language (and scope)."""
        language = self._language(params)
        scope = self._scope_key(params)
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _bad_request("can't parse commands JSON object")
        if len(commands) > 100:
            raise _bad_request("too many commands specified")
        cleaned: list[dict[str, str]] = []
        for command in commands:
            if not isinstance(command, dict):
                raise _bad_request("can't parse BotCommand JSON object")
            name = str(command.get("command", ""))
            description = str(command.get("description", ""))
            if not _COMMAND_RE.fullmatch(name):
                raise _bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(description.strip()) <= 256:
                raise _bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
            cleaned.append({"command": name, "description": description})
        if scope is None:
            self.commands[language] = cleaned
        else:
            self.scoped_commands[(scope, language)] = cleaned
        return True

    async def _get_my_commands(self, params: dict[str, Any]) -> Any:
        """getMyCommands: the stored list for the language (and scope)."""
        language = self._language(params)
        scope = self._scope_key(params)
        if scope is None:
            return copy.deepcopy(self.commands.get(language, []))
        return copy.deepcopy(self.scoped_commands.get((scope, language), []))

    async def _delete_my_commands(self, params: dict[str, Any]) -> Any:
        """deleteMyCommands: forget the list for the language (and scope)."""
        language = self._language(params)
        scope = self._scope_key(params)
        if scope is None:
            self.commands.pop(language, None)
        else:
            self.scoped_commands.pop((scope, language), None)
        return True

    async def _set_my_description(self, params: dict[str, Any]) -> Any:
        """setMyDescription: store the description per language."""
        language = self._language(params)
        description = str(params.get("description") or "")
        if len(description) > 512:
            raise _bad_request("description is too long")
        self.descriptions[language] = description
        return True

    async def _get_my_description(self, params: dict[str, Any]) -> Any:
        """getMyDescription: the stored description for the language."""
        return {"description": self.descriptions.get(self._language(params), "")}

    async def _set_my_short_description(self, params: dict[str, Any]) -> Any:
        """setMyShortDescription: store the short description per language."""
        language = self._language(params)
        description = str(params.get("short_description") or "")
        if len(description) > 120:
            raise _bad_request("short description is too long")
        self.short_descriptions[language] = description
        return True

    async def _get_my_short_description(self, params: dict[str, Any]) -> Any:
        """getMyShortDescription: the stored short description for the language."""
        return {"short_description": self.short_descriptions.get(self._language(params), "")}

    async def _set_webhook(self, params: dict[str, Any]) -> Any:
        """setWebhook: store url and secret (an empty url removes the webhook)."""
        url = str(params.get("url") or "")
        secret = params.get("secret_token") or None
        if secret is not None and not (isinstance(secret, str) and _SECRET_RE.fullmatch(secret)):
            raise _bad_request("secret token contains unallowed characters")
        if params.get("drop_pending_updates") is True:
            self.updates.clear()
        if not url:
            self.webhook = None
            self._webhook_options = {}
            return True
        self.webhook = {"url": url, "secret": secret}
        self._webhook_options = {"max_connections": params.get("max_connections") or 40}
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list) and allowed:
            self._webhook_options["allowed_updates"] = allowed
        self._updates_event.set()
        return True

    async def _delete_webhook(self, params: dict[str, Any]) -> Any:
        """deleteWebhook: remove the webhook (optionally dropping pending updates)."""
        self.webhook = None
        self._webhook_options = {}
        if params.get("drop_pending_updates") is True:
            self.updates.clear()
        return True

    async def _get_webhook_info(self, params: dict[str, Any]) -> Any:
        """getWebhookInfo: url, certificate flag and pending update count."""
        info: dict[str, Any] = {
            "url": self.webhook["url"] if self.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self.updates),
        }
        info.update(self._webhook_options)
        return info

    # ----------------------------------------------------------------- users' side

    def push_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update for getUpdates, numbering it when it has no update_id; return it."""
        if "update_id" not in update:
            update["update_id"] = self._next_update_id
        self._next_update_id = max(self._next_update_id, int(update["update_id"]) + 1)
        self.updates.append(update)
        self._updates_event.set()
        return update

    def _numbered(self, body: dict[str, Any]) -> dict[str, Any]:
        """An update with the next update_id (so it can also be posted to a webhook)."""
        update = {"update_id": self._next_update_id, **body}
        self._next_update_id += 1
        return update

    @staticmethod
    def _user(user_id: int, language_code: str | None = None) -> dict[str, Any]:
        """A (human) User object."""
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": "User"}
        if language_code is not None:
            user["language_code"] = language_code
        return user

    def _user_message(
        self,
        user_id: int,
        content: dict[str, Any],
        *,
        language_code: str | None = None,
        chat_id: int | None = None,
        chat_type: str = "private",
    ) -> dict[str, Any]:
        """A "message" update from a user; its ids do not collide with the bot's messages."""
        if chat_id is None:
            chat_id = user_id if chat_type == "private" else -abs(user_id)
        if chat_type == "private" and chat_id < 0:
            chat_type = "group"
        chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            chat["first_name"] = "User"
        else:
            chat["title"] = "Group"
        number = self._user_message_counters.get(chat_id, 1_000_000) + 1
        self._user_message_counters[chat_id] = number
        message = {
            "message_id": number,
            "from": self._user(user_id, language_code),
            "chat": chat,
            "date": int(time.time()),
            **content,
        }
        return self._numbered({"message": message})

    def text_update(
        self,
        user_id: int,
        text: str,
        *,
        language_code: str | None = None,
        chat_id: int | None = None,
        chat_type: str = "private",
    ) -> dict[str, Any]:
        """A text message from a user (with a bot_command entity when it starts with "/")."""
        content: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            first = text.split(maxsplit=1)[0] if text.strip() else text
            content["entities"] = [
                {"type": "bot_command", "offset": 0, "length": _utf16_len(first)}
            ]
        return self._user_message(
            user_id, content, language_code=language_code, chat_id=chat_id, chat_type=chat_type
        )

    def callback_update(
        self, user_id: int, data: str, *, message_id: int, language_code: str | None = None
    ) -> dict[str, Any]:
        """A tap on an inline button of the bot's message `message_id` in the user's chat."""
        query_id = str(5_000_000_000_000_000_000 + self._next_callback)
        self._next_callback += 1
        self._issued_callbacks.add(query_id)
        stored = self._messages.get((user_id, message_id))
        if stored is not None:
            message = _wire(stored)
        else:
            message = {
                "message_id": message_id,
                "date": int(time.time()),
                "chat": _chat_of(user_id),
            }
        query = {
            "id": query_id,
            "from": self._user(user_id, language_code),
            "message": message,
            "chat_instance": str(8_000_000_000_000_000_000 + abs(user_id)),
            "data": data,
        }
        return self._numbered({"callback_query": query})

    def location_update(self, user_id: int, latitude: float, longitude: float) -> dict[str, Any]:
        """A location shared by a user in the private chat."""
        return self._user_message(
            user_id, {"location": {"latitude": latitude, "longitude": longitude}}
        )

    def contact_update(
        self, user_id: int, phone_number: str, *, contact_user_id: int | None = None
    ) -> dict[str, Any]:
        """A contact shared by a user; contact_user_id defaults to the user's own id."""
        contact = {
            "phone_number": phone_number,
            "first_name": "User",
            "user_id": user_id if contact_user_id is None else contact_user_id,
        }
        return self._user_message(user_id, {"contact": contact})

    def photo_update(self, user_id: int, *, caption: str | None = None) -> dict[str, Any]:
        """A photo sent by a user, in three sizes like Telegram's."""
        number = self._next_file
        self._next_file += 1
        sizes = [
            {
                "file_id": f"user-photo-{number}-{index}",
                "file_unique_id": f"up{number}{index}",
                "width": side,
                "height": side,
                "file_size": side * side // 10,
            }
            for index, side in enumerate((90, 320, 800))
        ]
        content: dict[str, Any] = {"photo": sizes}
        if caption is not None:
            content["caption"] = caption
        return self._user_message(user_id, content)

    def document_update(
        self, user_id: int, *, file_name: str = "report.pdf", mime_type: str = "application/pdf"
    ) -> dict[str, Any]:
        """A document (file) sent by a user."""
        number = self._next_file
        self._next_file += 1
        document = {
            "file_id": f"user-document-{number}",
            "file_unique_id": f"ud{number}",
            "file_name": file_name,
            "mime_type": mime_type,
            "file_size": 12345,
        }
        return self._user_message(user_id, {"document": document})

    # ----------------------------------------------------------------- faults

    def fail_next(
        self,
        method: str,
        count: int = 1,
        *,
        error_code: int = 429,
        retry_after: int | None = 1,
        description: str | None = None,
    ) -> None:
        """Make the next `count` calls of `method` answer an error instead."""
        entry = self._methods.get(method.lower())
        if entry is None:
            raise ValueError(f"the fake does not know the method {method!r}")
        parameters: dict[str, Any] | None = None
        if error_code == 429:
            if retry_after is not None:
                parameters = {"retry_after": retry_after}
                default = f"Too Many Requests: retry after {retry_after}"
            else:
                default = "Too Many Requests"
        elif error_code == 403:
            default = BLOCKED
        elif error_code == 400:
            default = "Bad Request"
        else:
            default = _phrase(error_code)
        faults = self._faults.setdefault(entry[0], deque())
        for _ in range(count):
            faults.append(ApiError(error_code, description or default, parameters))

    def outage(self, seconds: float, *, error_code: int = 500) -> None:
        """For the next `seconds`, every method answers `error_code` (Telegram's servers down)."""
        self._outage_error = error_code
        self._outage_until = time.monotonic() + seconds

    @property
    def in_outage(self) -> bool:
        """Whether an outage set by outage() is still going on."""
        return time.monotonic() < self._outage_until

    def block(self, chat_id: int) -> None:
        """From now on the user of `chat_id` has blocked the bot: sends and edits get 403."""
        self._blocked.add(chat_id)

    def unblock(self, chat_id: int) -> None:
        """The user of `chat_id` unblocked the bot."""
        self._blocked.discard(chat_id)

    def forget(self, chat_id: int) -> None:
        """The chat is gone (an account deleted, a group removed): sends get "chat not found"."""
        self._gone.add(chat_id)

    # ----------------------------------------------------------------- inspection

    def menu_calls(self, chat_id: int) -> list[tuple[str, list[str]]]:
        """The setMyCommands and deleteMyCommands calls for `chat_id`'s own scope, in order, as
        (method, command names; none for a deletion), refused ones included."""
        found = []
        for call in self.calls:
            scope = call.params.get("scope")
            if call.method in ("setMyCommands", "deleteMyCommands") and scope == {
                "type": "chat",
                "chat_id": chat_id,
            }:
                commands = call.params.get("commands") or []
                found.append((call.method, [c["command"] for c in commands]))
        return found

    def sent(self, chat_id: int | None = None) -> list[dict[str, Any]]:
        """Messages sent successfully, as they were when sent, in order (optionally to a chat)."""
        # Each dict has the Message keys, but "text"/"caption" hold what the bot sent (raw HTML);
        # "plain" is what the user sees, "entities" Telegram's entities, "formatted" the
        # (tag, inner plain text) pairs, "parse_mode", "link_preview_options" (texts), the
        # "reply_markup" sent (any kind, or None; the wire Message carries only an inline
        # keyboard), and "received_at" when the request reached the fake (time.monotonic()).
        return [
            copy.deepcopy(message)
            for message in self._sent
            if chat_id is None or message["chat"]["id"] == chat_id
        ]

    @property
    def sent_count(self) -> int:
        """How many messages were sent successfully (without copying them)."""
        return len(self._sent)

    def message(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        """The current state of a stored bot message (after edits), or None."""
        stored = self._messages.get((chat_id, message_id))
        return copy.deepcopy(stored) if stored is not None else None

    def last_text(self, chat_id: int) -> str:
        """The plain text (what the user sees) of the last message sent to `chat_id`."""
        messages = self.sent(chat_id)
        if not messages:
            raise LookupError(f"the bot sent nothing to chat {chat_id}")
        return str(messages[-1]["plain"])

    async def wait_for_sent(
        self,
        count: int,
        chat_id: int | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 - the deadline is part of the helper's API
    ) -> list[dict[str, Any]]:
        """Wait until at least `count` messages were sent (to `chat_id`); return them all."""
        deadline = time.monotonic() + timeout
        while True:
            messages = self.sent(chat_id)
            if len(messages) >= count:
                return messages
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closing:
                where = "in all" if chat_id is None else f"to chat {chat_id}"
                texts = [m["plain"] for m in messages]
                recent = [(c.method, c.params.get("chat_id")) for c in self.calls[-10:]]
                raise TimeoutError(
                    f"expected at least {count} message(s) sent {where} within {timeout} s, "
                    f"got {len(messages)}: {texts!r}; last calls: {recent!r}; "
                    f"fake errors: {self.errors!r}"
                )
            self._sent_event.clear()
            try:
                await asyncio.wait_for(self._sent_event.wait(), remaining)
            except TimeoutError:
                continue


async def _serve_forever(
    flood_limit: int | None, delay: float = 0.0, jitter: float = 0.0, stars: float | None = None
) -> None:
    """Run the fake, printing its base URL (for benchmarks in another process), until killed
    or, when its standard input is a pipe, until that closes (its parent has gone)."""
    fake = FakeTelegram(flood_limit=flood_limit, delay=delay, jitter=jitter, stars=stars)
    await fake.start()
    print(f"{fake.base_url} {fake.token}", flush=True)
    if stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode):
        await asyncio.to_thread(sys.stdin.read)
        await fake.stop()
    else:
        await asyncio.Event().wait()


if __name__ == "__main__":
    # The platform's servers do not stop to collect their garbage. This process keeps every
    # message it receives, and its full collections grew with them: each held arrivals back
    # and let them in together, past the flood limit, in bursts of 429s the platform would not
    # send. At 1,000 a second to 100,000 subscribers: 0.71 of the rate and 182 to 328 429s
    # with them, 0.916 and none without (benchmarks/broadcast.py; the bot's own collections
    # made no difference). Only this process, which benchmarks start; the tests' fakes collect.
    gc.set_threshold(700, 10, 1_000_000)
    # python -m tests.fake_telegram [FLOOD_LIMIT|none [DELAY JITTER [STARS]]]
    limit = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] != "none" else None
    delay, jitter = (float(value) for value in (sys.argv[2:4] if len(sys.argv) > 3 else (0, 0)))
    stars = float(sys.argv[4]) if len(sys.argv) > 4 else None
    asyncio.run(_serve_forever(limit, delay, jitter, stars))
