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
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from bot.config import Settings
from bot.db import Database
from bot.engine import Engine, enqueue
from bot.flows import NAV_PAYLOADS, coordinators
from bot.i18n import N_, RLM, _, translate_in, use_locale
from bot.messages import Address, Inbound, Location, Media, Outbound
from bot.models import AuditEntry, Contact, OutboxMessage, ProcessedInbound, quotes_content
from bot.sender import Held, Rejected, RetryLater, Unreachable
from bot.text import parse_command, split_text, strip_bidi

logger = logging.getLogger(__name__)

TEXT_LIMIT = 1600  # Twilio's limit for one message's body
CAPTION_LIMIT = 1024  # WhatsApp's limit for the text with a picture
WINDOW = timedelta(hours=24)
MEDIA_LIMIT = 10  # Twilio sends at most ten media with one message
# One person: replies come in a short burst, then about one a second.
CHAT_RATE, CHAT_BURST = 1.0, 5

# Twilio's error codes (https://www.twilio.com/docs/api/errors).
OPTED_OUT = 21610  # the person opted out
OUTSIDE_WINDOW = 63016  # free-form text outside the 24-hour window
TIER_CAP = 63018  # over the number's limit of people a day
TOO_MANY_REQUESTS = 20429  # over the account's or the sender's pace (with HTTP 429)
STATUS_EVENTS = "whatsapp-status"  # ProcessedInbound's channel for the callbacks applied
NO_SUCH_RECIPIENT = frozenset({21211, 21614, 63003, 63024})
TIER_CAP_PAUSE = timedelta(hours=1)

TIER_CAP_NOTICE = N_(
    "WhatsApp's limit of people a day has been reached (Twilio error 63018). WhatsApp "
    "bulletins wait an hour and then go on; the limit grows as the number is used well."
)
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
    """Sends Outbounds with Twilio's REST API; keeps to WhatsApp's 24-hour window."""

    channel = "whatsapp"

    def __init__(
        self,
        settings: Settings,
        db: Database,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        http_client: Callable[[], AsyncTwilioHttpClient] | None = None,
    ) -> None:
        assert settings.twilio_account_sid, "the channel needs TWILIO_ACCOUNT_SID"
        self.http_client = http_client or (lambda: AsyncTwilioHttpClient(timeout=20))
        self.settings = settings
        self.db = db
        self.clock = clock
        self.rate = settings.twilio_rate
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
        return CHAT_RATE, CHAT_BURST

    async def window_open(self, address: Address) -> bool:
        """Whether the person wrote in the last 24 hours (so free text may go)."""
        async with self.db.transaction() as session:
            last = await session.scalar(
                select(Contact.last_inbound_at).where(Contact.address == str(address))
            )
        return last is not None and self.clock() - last < WINDOW

    async def deliver(self, message: Outbound) -> str | None:
        """Send one Outbound (in parts when long); a template or nothing outside the window."""
        # The goodbye to a forgotten person answers the message just received, so the window
        # is open; the contact that recorded when they wrote is gone with their data.
        if not message.ephemeral and not await self.window_open(message.address):
            return await self._outside_window(message)
        try:
            return await self._send_full(message)
        except TwilioRestException as exc:
            if exc.code == OUTSIDE_WINDOW:  # WhatsApp counts the window its own way
                await self.close_window(message.address)
                return await self._outside_window(message)
            raise await self._error(exc, message.address) from exc

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

    async def _outside_window(self, message: Outbound) -> str | None:
        """A bulletin goes as its template, its text held; anything else is held."""
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
                    raise await self._error(exc, message.address) from exc
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

    async def close_window(self, address: Address) -> None:
        """WhatsApp says the window is closed: forget when the person last wrote."""
        async with self.db.transaction() as session:
            await session.execute(
                update(Contact).where(Contact.address == str(address)).values(last_inbound_at=None)
            )

    async def _error(self, exc: TwilioRestException, address: Address) -> Exception:
        """The sender's error for a refusal of Twilio's."""
        if exc.status == 429 or exc.code == TOO_MANY_REQUESTS:
            # Held like Telegram's RetryAfter: the whole channel waits, the message goes again.
            return RetryLater(1.0, "Twilio rate limit")
        if exc.status >= 500:
            return ConnectionError(f"Twilio answered {exc.status}")  # the sender tries again
        if exc.code == OPTED_OUT:
            await unsubscribe(self.db, str(address))
            return Unreachable(f"opted out ({OPTED_OUT})")
        if exc.code in NO_SUCH_RECIPIENT:
            return Unreachable(f"not on WhatsApp ({exc.code})")
        return Rejected(f"Twilio {exc.code}: {exc.msg}")


async def unsubscribe(db: Database, address: str) -> None:
    """The person opted out on WhatsApp: no more bulletins, nothing more waiting for them."""
    async with db.transaction() as session:
        await session.execute(
            update(Contact)
            .where(Contact.address == address)
            .values(subscribed=False, unreachable=True, unreachable_reason="opted out")
        )
        await session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.address == address,
                OutboxMessage.status.in_(("pending", "held")),
            )
            .values(status="unreachable", error=f"opted out ({OPTED_OUT})")
        )


def error_code(form: Mapping[str, str]) -> int | None:
    """The status callback's ErrorCode, if any."""
    try:
        return int(form.get("ErrorCode") or 0) or None
    except ValueError:
        return None


class StatusRecorder:
    """Applies Twilio's status callbacks to the delivery rows."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        wait: float = 0.5,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.wake = wake
        self.settings = settings
        self.clock = clock
        self.wait = wait  # between looks for a row whose send is not recorded yet

    async def __call__(self, form: Mapping[str, str]) -> str:
        """Record one status callback; returns what was done (for logs and tests)."""
        sid = form.get("MessageSid") or form.get("SmsSid") or ""
        status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
        if not sid or status not in ("delivered", "read", "failed", "undelivered"):
            return "ignored"  # queued, sent, ...: the sender knows already
        # The sender writes outcomes in batches: a fast callback may come before the row
        # has its message SID. Look again for a moment before giving up on it.
        for attempt in range(6):
            done = await self._apply(sid, status, error_code(form))
            if done is not None:
                return done
            if attempt < 5:
                await asyncio.sleep(self.wait)
        return "unknown message"  # a later part of a long message, or a message deleted since

    async def _apply(self, sid: str, status: str, code: int | None) -> str | None:
        now = self.clock()
        async with self.db.transaction() as session:
            row = await session.scalar(
                select(OutboxMessage).where(
                    OutboxMessage.channel == "whatsapp", OutboxMessage.platform_message_id == sid
                )
            )
            if row is None:
                return None
            if status in ("delivered", "read"):  # applied once by itself: the first time kept
                row.delivered_at = row.delivered_at or now
                if quotes_content(row.body):
                    row.body = {}  # it will not be sent again: nothing of what it said stays
                return status
            if not await self._first_time(session, sid, status, now):
                # A replayed callback (Twilio's signature stays valid for ever): a second 21610
                # would unsubscribe again someone who subscribed since, a 63018 hold the
                # bulletins another hour.
                return "repeated"
            row.error = f"{status} ({code or 'no code'})"
            if row.status == "held":  # the template that stood in failed: nothing else to try
                row.status = "failed"
                outcome = "failed"
            elif code == OPTED_OUT:
                row.status = "unreachable"
                outcome = "opted out"
            elif code == OUTSIDE_WINDOW:
                await session.execute(
                    update(Contact)
                    .where(Contact.address == row.address)
                    .values(last_inbound_at=None)
                )
                # Sent again: a bulletin as its template, anything else when the person writes.
                row.status = "pending" if row.bulletin_id is not None else "held"
                row.not_before = None
                outcome = "outside the window"
            elif code == TIER_CAP:
                row.status = "pending"
                row.not_before = now + TIER_CAP_PAUSE
                await session.execute(
                    update(OutboxMessage)
                    .where(
                        OutboxMessage.channel == "whatsapp",
                        OutboxMessage.status == "pending",
                        OutboxMessage.bulletin_id.is_not(None),
                    )
                    .values(not_before=now + TIER_CAP_PAUSE)
                )
                await self._tell_coordinators(session, now)
                outcome = "over the daily limit"
            else:
                row.status = "failed"
                outcome = "failed"
            if row.status in ("failed", "unreachable") and quotes_content(row.body):
                row.body = {}  # it will not be sent again
        if code == OPTED_OUT:
            await unsubscribe(self.db, row.address)
        if self.wake is not None and code == OUTSIDE_WINDOW:
            self.wake()  # the bulletin goes again, as its template
        return outcome

    async def _first_time(self, session: Any, sid: str, status: str, now: datetime) -> bool:
        """Record that (sid, status) is applied, in the transaction applying it; False if it
        was before. Kept with the handled messages' ids (and purged with them)."""
        upsert = postgresql_insert if not self.db.is_sqlite else sqlite_insert
        result = await session.execute(
            upsert(ProcessedInbound)
            .values(channel=STATUS_EVENTS, message_id=f"{sid}:{status}"[:100], processed_at=now)
            .on_conflict_do_nothing(index_elements=["channel", "message_id"])
        )
        return bool(result.rowcount)

    async def _tell_coordinators(self, session: Any, now: datetime) -> None:
        """Tell the coordinators once an hour that WhatsApp's daily limit holds bulletins back."""
        recent = await session.scalar(
            select(AuditEntry.id).where(
                AuditEntry.action == "whatsapp_tier_cap", AuditEntry.at > now - TIER_CAP_PAUSE
            )
        )
        if recent is not None:
            return
        session.add(AuditEntry(actor="twilio", action="whatsapp_tier_cap", detail={}))
        notices = []
        for address, locale in await coordinators(session, self.settings):
            text = translate_in(locale, TIER_CAP_NOTICE)
            notices.append(Outbound(address, text, priority="notice", locale=locale))
        await enqueue(session, notices, None)


class WhatsAppChannel:
    """The WhatsApp channel: checks Twilio's signatures, hands messages to the engine."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        assert settings.twilio_auth_token
        self.settings = settings
        self.engine = engine
        self.validator = RequestValidator(settings.twilio_auth_token)
        self.transport = WhatsAppTransport(settings, engine.db)
        self.record_status = StatusRecorder(engine.db, settings, wake=self.wake_sender)

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

    def wake_sender(self) -> None:
        """Tell the sender that WhatsApp rows are due (when it runs in this process)."""
        if self.engine.sender is not None:
            self.engine.sender.wake("whatsapp")

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
