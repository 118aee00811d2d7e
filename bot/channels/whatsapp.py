"""WhatsApp through Twilio: webhook forms become Inbounds, Outbounds become REST API messages.

A thin adapter: no flow logic here. Twilio posts each message to /twilio/whatsapp and each
delivery status to /twilio/status (bot/web.py checks the X-Twilio-Signature of both first);
replies and bulletins leave through the sender and Twilio's REST API (the async client).

WhatsApp has no buttons for us: options become a numbered list, and "2", "٢", "۲" or the
label pick option 2 (the engine resolves them). Outside the 24-hour window that opens when the
person writes, WhatsApp allows only approved templates: a bulletin then goes as its template
(its title as the variable) and the full text is held until the person writes again; other
messages are held until then.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from bot.config import Settings
from bot.engine import Engine
from bot.flows import NAV_PAYLOADS
from bot.i18n import RLM, _, use_locale
from bot.messages import Address, Inbound, Location, Media, Outbound
from bot.outcomes import (
    Held,
    OptedOut,
    Rejected,
    RetryLater,
    StatusEvent,
    Unreachable,
    Verdict,
    WindowClosed,
)
from bot.text import parse_command, split_text, strip_bidi

logger = logging.getLogger(__name__)

TEXT_LIMIT = 1600  # Twilio's limit for one message's body
CAPTION_LIMIT = 1024  # WhatsApp's limit for the text with a picture
MEDIA_LIMIT = 10  # Twilio sends at most ten media with one message
# One person: replies come in a short burst, then about one a second.
CHAT_RATE, CHAT_BURST = 1.0, 5

# Twilio's error codes (https://www.twilio.com/docs/api/errors).
OPTED_OUT = 21610  # the person opted out
OUTSIDE_WINDOW = 63016  # free-form text outside the 24-hour window
TIER_CAP = 63018  # over the number's limit of people a day
TOO_MANY_REQUESTS = 20429  # over the account's or the sender's pace (with HTTP 429)
NO_SUCH_RECIPIENT = frozenset({21211, 21614, 63003, 63024})
TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
BIDI_MARKS = "\u200e\u200f\u061c"


def to_inbound(form: Mapping[str, str]) -> Inbound | None:
    """Turn Twilio's webhook form into an Inbound; None for what is not a WhatsApp message."""
    sender = form.get("From", "")
    message_id = form.get("MessageSid") or form.get("SmsMessageSid") or ""
    if not sender.startswith("whatsapp:") or not message_id:
        return None
    common: dict[str, Any] = {
        "address": Address("whatsapp", sender.removeprefix("whatsapp:")),
        "message_id": message_id,
    }
    body = form.get("Body", "")
    latitude, longitude = form.get("Latitude"), form.get("Longitude")
    if latitude and longitude:
        try:
            point = Location(float(latitude), float(longitude), form.get("Label") or None)
        except ValueError:
            return Inbound(kind="other", **common)
        return Inbound(kind="location", location=point, **common)
    try:
        count = min(int(form.get("NumMedia") or 0), MEDIA_LIMIT)
    except ValueError:
        count = 0
    media = tuple(
        Media(
            "photo"
            if (kind := form.get(f"MediaContentType{i}") or "").startswith("image/")
            else "document",
            form[f"MediaUrl{i}"],
            kind or None,
        )
        for i in range(count)
        if form.get(f"MediaUrl{i}")
    )
    if media:
        return Inbound(kind=media[0].kind, text=body, media=media, **common)
    payload = form.get("ButtonPayload") or ""
    if payload in NAV_PAYLOADS:  # a template's quick reply set up as "Menu" (see README)
        return Inbound(kind="button", payload=payload, **common)
    if not body and (form.get("ButtonText") or payload):
        body = form.get("ButtonText") or payload  # another quick reply: its label, as typed
    command = parse_command(body)
    if command is not None:
        name, args = command
        return Inbound(kind="command", text=body, command=name, args=args, **common)
    if not body.strip():
        return Inbound(kind="other", **common)  # a sticker, a contact card, a reaction
    return Inbound(kind="text", text=body, **common)


def bold(text: str) -> str:
    """WhatsApp's bold, with a leading direction mark kept outside the asterisks."""
    core = text.strip().lstrip(BIDI_MARKS).strip()
    mark = text.lstrip()[:1] if text.lstrip()[:1] in BIDI_MARKS else ""
    return f"{mark}*{core}*" if core else ""


def body_of(message: Outbound) -> str:
    """The message as WhatsApp text: the title bold, the text, the options as a list."""
    lines = [bold(message.title)] if message.title else []
    lines.append(message.text)
    options = message.options()
    if options:
        mark = RLM if message.locale in ("ar", "ckb") else ""
        lines.append("")
        for number, button in enumerate(options, start=1):
            bullet = f"{number}." if message.numbered else "•"
            lines.append(f"{mark}{bullet} {button.label}")
    return "\n".join(lines)


def template_variable(text: str) -> str:
    """A text fit for a template's variable: one line, no marks, not too long."""
    return re.sub(r"\s+", " ", strip_bidi(text)).strip()[:200] or "-"


def public_media(reference: str | None) -> str | None:
    """A picture that Twilio can fetch: an https address (not a Telegram file id)."""
    if reference and re.match(r"https?://", reference):
        return reference
    return None


class WhatsAppTransport:
    """Sends Outbounds with Twilio's REST API; what goes outside the 24-hour window.

    It only sends: whether a person's window is open is the outbox's to know (bot/outbox.py).
    """

    channel = "whatsapp"

    def __init__(
        self,
        settings: Settings,
        http_client: Callable[[], AsyncTwilioHttpClient] | None = None,
    ) -> None:
        assert settings.twilio_account_sid, "the channel needs TWILIO_ACCOUNT_SID"
        self.http_client = http_client or (lambda: AsyncTwilioHttpClient(timeout=20))
        self.settings = settings
        self.rate = settings.twilio_rate
        self.chat_rate, self.chat_burst = CHAT_RATE, CHAT_BURST  # one person's pace
        self.sender_number = settings.twilio_whatsapp_from or ""
        self.templates = {
            "ar": settings.twilio_template_bulletin_ar,
            "en": settings.twilio_template_bulletin_en,
        }
        self.status_url = f"{settings.public_url}/twilio/status" if settings.public_url else None
        self.client: Client | None = None

    async def start(self) -> None:
        """Open the HTTP session (inside the running loop, as aiohttp wants)."""
        http = self.http_client()
        client = Client(
            self.settings.twilio_account_sid, self.settings.twilio_auth_token, http_client=http
        )
        if self.settings.twilio_api_base_url:
            # Every Messages request goes through the Api domain: its base URL is the one place
            # that names Twilio's host (tests and Prism mocks use their own).
            client.api.base_url = self.settings.twilio_api_base_url
        self.client = client

    async def close(self) -> None:
        """Close the HTTP session."""
        if self.client is not None:
            http = self.client.http_client
            if isinstance(http, AsyncTwilioHttpClient):
                await http.close()
            self.client = None

    def chat_limit(self, address: str) -> tuple[float, int]:
        """A short burst of replies to one person, then about one a second."""
        return self.chat_rate, self.chat_burst

    async def deliver(self, message: Outbound) -> str | None:
        """Send one Outbound (in parts when long), the window being open; WindowClosed if
        WhatsApp says it is not."""
        try:
            return await self._send_full(message)
        except TwilioRestException as exc:
            if exc.code == OUTSIDE_WINDOW:  # WhatsApp counts the window its own way
                raise WindowClosed(f"Twilio {OUTSIDE_WINDOW}") from exc
            raise _error(exc) from exc

    async def _send_full(self, message: Outbound) -> str | None:
        """The whole message: a picture with the first part as caption, then the rest."""
        text = body_of(message)
        if message.document:
            text = self._without_file(message, text)
        parts = split_text(text, TEXT_LIMIT)
        first_id: str | None = None
        picture = public_media(message.photo)
        if picture:
            caption = parts.pop(0) if parts and len(parts[0]) <= CAPTION_LIMIT else None
            first_id = await self._create(message.address, body=caption, media_url=[picture])
        for part in parts:
            sid = await self._create(message.address, body=part)
            first_id = first_id or sid
        if message.document:  # an export made for this message: it must not stay on disk
            await asyncio.to_thread(Path(message.document).unlink, missing_ok=True)
        return first_id

    def _without_file(self, message: Outbound, text: str) -> str:
        """An export's text, saying that files come on Telegram or from the server."""
        with use_locale(message.locale or self.settings.default_locale):
            note = _(
                "Files cannot be sent on WhatsApp. Ask for this file on Telegram, "
                "or take it on the server with: icssi-bot export"
            )
        return f"{text}\n\n{note}"

    async def outside_window(self, message: Outbound) -> str | None:
        """Outside the window: a bulletin goes as its template, its text held (Held with the
        template's id); anything else is held."""
        if message.priority == "broadcast":
            locale = "en" if message.locale == "en" else "ar"  # no Kurdish template language
            other = "ar" if locale == "en" else "en"
            content_sid = self.templates[locale] or self.templates[other]
            if content_sid:
                variables = json.dumps({"1": template_variable(message.title or message.text)})
                try:
                    sid = await self._create(
                        message.address, content_sid=content_sid, content_variables=variables
                    )
                except TwilioRestException as exc:
                    raise _error(exc) from exc
                raise Held("outside the 24-hour window: the template went", sid)
        raise Held("outside the 24-hour window")

    async def _create(self, to: Address, **fields: Any) -> str:
        """One Messages.create call; returns the message's SID."""
        assert self.client is not None, "start() first"
        options: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
        if self.status_url:
            options["status_callback"] = self.status_url
        created = await self.client.messages.create_async(
            to=f"whatsapp:{to.id}", from_=self.sender_number, **options
        )
        return str(created.sid)


def _error(exc: TwilioRestException) -> Exception:
    """The sender's error for a refusal of Twilio's."""
    if exc.status == 429 or exc.code == TOO_MANY_REQUESTS:
        # Held like Telegram's RetryAfter: the whole channel waits, the message goes again.
        return RetryLater(1.0, "Twilio rate limit")
    if exc.status >= 500:
        return ConnectionError(f"Twilio answered {exc.status}")  # the sender tries again
    if exc.code == OPTED_OUT:
        return OptedOut(f"opted out ({OPTED_OUT})")
    if exc.code in NO_SUCH_RECIPIENT:
        return Unreachable(f"not on WhatsApp ({exc.code})")
    return Rejected(f"Twilio {exc.code}: {exc.msg}")


def error_code(form: Mapping[str, str]) -> int | None:
    """The status callback's ErrorCode, if any."""
    try:
        return int(form.get("ErrorCode") or 0) or None
    except ValueError:
        return None


def verdict(status: str, code: int | None) -> Verdict:
    """What a failed or delivered message's status and error code mean for the outbox."""
    if status in ("delivered", "read"):
        return "delivered"
    if code == OPTED_OUT:
        return "opted out"
    if code == OUTSIDE_WINDOW:
        return "outside the window"
    if code == TIER_CAP:
        return "over the daily limit"
    return "failed"


def status_event(form: Mapping[str, str]) -> StatusEvent | None:
    """Twilio's status callback as an event for the outbox; None for the statuses that change
    nothing (queued, sent: the sender knows already)."""
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
    if not sid or status not in ("delivered", "read", "failed", "undelivered"):
        return None
    code = error_code(form)
    return StatusEvent(
        "whatsapp", sid, status, verdict(status, code), str(code) if code is not None else None
    )


class WhatsAppChannel:
    """The WhatsApp channel: checks Twilio's signatures, hands messages to the engine."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        statuses: Callable[[StatusEvent], Awaitable[str]] | None = None,
    ) -> None:
        assert settings.twilio_auth_token
        self.settings = settings
        self.engine = engine
        self.validator = RequestValidator(settings.twilio_auth_token)
        self.transport = WhatsAppTransport(settings)
        # Where the status callbacks go, as events: the outbox's StatusRecorder (bot/runtime.py).
        self.statuses = statuses

    async def record_status(self, form: Mapping[str, str]) -> str:
        """Hand one status callback to the outbox; returns what was done (for logs and tests)."""
        event = status_event(form)
        if event is None or self.statuses is None:
            return "ignored"
        return await self.statuses(event)

    async def picture(self, url: str) -> tuple[bytes, str]:
        """A message's media from Twilio, with the account's credentials: bytes and type.

        Only from Twilio's own host: the credentials never go anywhere else (httpx also drops
        them on the redirect to where Twilio keeps the file).
        """
        api = urlsplit(self.settings.twilio_api_base_url or "https://api.twilio.com")
        if urlsplit(url).netloc != api.netloc:
            raise ValueError("not an address of Twilio's")
        credentials = (
            self.settings.twilio_account_sid or "",
            self.settings.twilio_auth_token or "",
        )
        async with httpx.AsyncClient(timeout=20.0, follow_redirects=True) as client:
            answer = await client.get(url, auth=credentials)
            answer.raise_for_status()
        kind = answer.headers.get("content-type", "image/jpeg").split(";")[0].strip()
        return answer.content, kind or "image/jpeg"

    def public_url(self, path: str, query: str, headers: Mapping[str, str], scheme: str) -> str:
        """The URL Twilio called: PUBLIC_URL and the path, or the proxy's when trusted."""
        suffix = f"{path}?{query}" if query else path
        if self.settings.trust_proxy:
            proto = headers.get("x-forwarded-proto", scheme).split(",")[0].strip()
            host = headers.get("x-forwarded-host") or headers.get("host", "")
            return f"{proto}://{host.split(',')[0].strip()}{suffix}"
        return f"{self.settings.public_url}{suffix}"

    def signed(self, url: str, form: Any, signature: str | None) -> bool:
        """Whether Twilio signed this request (over every parameter and the URL)."""
        return bool(signature) and self.validator.validate(url, form, signature or "")

    async def handle(self, form: Mapping[str, str]) -> None:
        """Hand one message to the engine (raises when the database is away; Twilio retries)."""
        inbound = to_inbound(form)
        if inbound is not None:
            await self.engine.handle(inbound)
