"""A fake of Twilio's REST API (Messages) and of its WhatsApp webhooks, on 127.0.0.1.

It speaks the real wire format: form-encoded requests with HTTP Basic auth, the Message resource
as JSON, Twilio's error JSON (`{"code", "message", "more_info", "status"}`) and error codes. It
keeps the messages the bot sent, posts signed status callbacks, builds and posts signed inbound
webhooks, serves inbound media, and injects faults (429, 5xx, refused recipients, failed
deliveries). It never contacts any address but 127.0.0.1.

Pointing the real twilio client at it (twilio-python 9): set the base URL of the `api` domain,
which every request of `client.messages` is built from at send time::

    client = Client(fake.account_sid, fake.auth_token, http_client=AsyncTwilioHttpClient())
    client.api.base_url = fake.base_url          # "http://127.0.0.1:PORT", no trailing path
    await client.messages.create_async(to=..., from_=..., body=...)

Leave `edge` and `region` (and TWILIO_EDGE, TWILIO_REGION) unset: with either, the client
rewrites the host as `api.<edge>.<region>.twilio.com` and the base URL is lost. Other domains
(`client.content`, `client.messaging`) have their own `base_url`.

Run on its own for benchmarks: `python -m tests.fake_twilio [--port N] [--rate-limit N]`; it
prints its base URL, account SID and auth token on one line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import copy
import gc
import hmac
import json
import random
import re
import socket
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

API_VERSION = "2010-04-01"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "fake-twilio-auth-token-0123456789"
# Twilio's public WhatsApp sandbox number stands in for the bot's WhatsApp sender.
WHATSAPP_NUMBER = "whatsapp:+14155238886"
DEFAULT_OUTCOME: tuple[str, ...] = ("sent", "delivered")
MAX_BODY = 1600
MAX_MEDIA = 10
# Status callbacks and inbound webhooks go to loopback only: a test must never reach out.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

# Twilio's messages for the error codes the fake answers (https://www.twilio.com/docs/errors).
ERROR_MESSAGES: dict[int, str] = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
    20503: "Service Unavailable",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21609: "Invalid StatusCallback url",
    21610: "Attempt to send to unsubscribed recipient",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    21619: "A text message body or media urls must be specified.",
    21620: "Invalid media URL(s)",
    21623: "Number of media files exceeds allowed limit",
    21654: "ContentSid Required",
    21655: "The ContentSid is Invalid",
    21656: "The ContentVariables Parameter is invalid.",
    21910: "Invalid 'From' and 'To' pair. 'From' and 'To' should be of the same channel",
    63016: (
        "Failed to send freeform message because you are outside the allowed window. "
        "If you are using WhatsApp, please use a Message Template."
    ),
    63018: "Rate limit exceeded for Channel",
    63024: "Invalid message recipient",
}
STATUS_CODES = {429: 20429, 500: 20500, 503: 20503}
# Status callbacks of WhatsApp messages carry an EventType for these statuses.
EVENT_TYPES = {
    "delivered": "DELIVERED",
    "read": "READ",
    "undelivered": "UNDELIVERED",
    "failed": "FAILED",
}
MESSAGE_STATUSES = frozenset(
    {"queued", "sending", "sent", "failed", "delivered", "undelivered", "read", "canceled"}
)

_CONTENT_SID_RE = re.compile(r"HX[0-9a-fA-F]{32}")
_GSM_CHARS = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€"
)


class TwilioError(Exception):
    """An error answer of Twilio's REST API: HTTP status, Twilio error code and message."""

    def __init__(self, status: int, code: int, message: str | None = None) -> None:
        """Keep the parts of the error JSON (the message defaults to Twilio's for the code)."""
        text = message or ERROR_MESSAGES.get(code, "Error")
        super().__init__(text)
        self.status = status
        self.code = code
        self.message = text

    def body(self) -> dict[str, Any]:
        """The JSON body Twilio answers with for this error."""
        return {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }


def _error_response(error: TwilioError) -> JSONResponse:
    """The HTTP response of an error."""
    return JSONResponse(error.body(), status_code=error.status)


@dataclass
class Call:
    """One request made to the fake's REST API: method, path, decoded form, when, answer."""

    method: str
    path: str
    params: dict[str, str | list[str]]
    at: float
    status: int = 0
    answered_at: float = 0.0  # when its answer left (after the delay)


@dataclass
class Message:
    """A message the fake accepted: the decoded form, when, and its Message resource."""

    sid: str
    params: dict[str, str | list[str]]
    at: float
    resource: dict[str, Any]
    outcome: tuple[tuple[str, int | None], ...] = ()

    def _param(self, key: str) -> str | None:
        """One single-valued parameter, or None."""
        value = self.params.get(key)
        return value if isinstance(value, str) else None

    @property
    def to(self) -> str:
        """The `To` address, e.g. whatsapp:+9647701234567."""
        return self._param("To") or ""

    @property
    def from_(self) -> str | None:
        """The `From` address, or None when sent through a Messaging Service."""
        return self._param("From")

    @property
    def body(self) -> str | None:
        """The `Body` sent, or None."""
        return self._param("Body")

    @property
    def media_urls(self) -> list[str]:
        """The `MediaUrl` values, in order."""
        value = self.params.get("MediaUrl", [])
        return [value] if isinstance(value, str) else list(value)

    @property
    def content_sid(self) -> str | None:
        """The template's `ContentSid`, or None."""
        return self._param("ContentSid")

    @property
    def content_variables(self) -> dict[str, str]:
        """The template's `ContentVariables`, decoded (empty when none)."""
        raw = self._param("ContentVariables")
        return {str(k): str(v) for k, v in json.loads(raw).items()} if raw else {}

    @property
    def status_callback(self) -> str | None:
        """The `StatusCallback` URL, or None."""
        return self._param("StatusCallback")

    @property
    def status(self) -> str:
        """The message's current status (queued, then what the callbacks reported)."""
        return str(self.resource["status"])


@dataclass
class Callback:
    """One status callback the fake posted (or tried to): URL, form, signature and answer."""

    url: str
    params: dict[str, str]
    signature: str
    at: float
    status_code: int | None = None
    error: str | None = None


@dataclass
class _Fault:
    """An injected failure: HTTP status and Twilio code, for a number of requests or a time."""

    status: int
    code: int
    message: str | None = None
    until: float | None = None


@dataclass
class _Media:
    """An inbound media file the fake serves, as Twilio serves MediaUrl0."""

    content_type: str
    data: bytes
    fetches: list[float] = field(default_factory=list)


def _rfc2822(moment: datetime) -> str:
    """A time as Twilio writes it in resources: RFC 2822, in UTC."""
    return format_datetime(moment.astimezone(UTC))


def _sid(prefix: str) -> str:
    """A new Twilio SID: two letters and 32 hex digits."""
    return prefix + uuid.uuid4().hex


def _channel(address: str) -> str:
    """The channel of an address: "whatsapp" for whatsapp:+..., else "sms"."""
    prefix, colon, _ = address.partition(":")
    return prefix.lower() if colon and not prefix.startswith("+") else "sms"


def _segments(body: str) -> int:
    """How many SMS segments a body takes (GSM-7 160/153, else UCS-2 70/67)."""
    if not body:
        return 1
    gsm = all(char in _GSM_CHARS for char in body)
    single, multi = (160, 153) if gsm else (70, 67)
    length = len(body) if gsm else len(body.encode("utf-16-le")) // 2
    return 1 if length <= single else -(-length // multi)


def _is_url(value: str) -> bool:
    """Whether a value is an absolute http(s) URL with a host, as Twilio requires."""
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _is_loopback(url: str) -> bool:
    """Whether a URL points at this machine's loopback interface."""
    return urlsplit(url).hostname in LOOPBACK_HOSTS


def _decode_form(body: bytes) -> dict[str, str | list[str]]:
    """A form-encoded body; keys that repeat (MediaUrl) become lists, MediaUrl always is one."""
    params: dict[str, str | list[str]] = {}
    for key, value in parse_qsl(body.decode("utf-8"), keep_blank_values=True):
        if key in params or key == "MediaUrl":
            previous = params.get(key, [])
            listed = [previous] if isinstance(previous, str) else list(previous)
            params[key] = [*listed, value]
        else:
            params[key] = value
    return params


def _mask(number: str) -> str:
    """A phone number with its last four digits hidden, as ChannelToAddress shows it."""
    return number[:-4] + "XXXX" if len(number) > 4 else number


class FakeTwilio:
    """Twilio's REST API and WhatsApp webhooks, faked on 127.0.0.1 inside the test's event loop."""

    def __init__(
        self,
        account_sid: str = ACCOUNT_SID,
        auth_token: str = AUTH_TOKEN,
        *,
        rate_limit: int | None = None,
        number: str = WHATSAPP_NUMBER,
        delay: float = 0.0,
        jitter: float = 0.0,
    ) -> None:
        """Set up an empty fake; call start() (or use `async with`) to serve it.

        A create request is answered `delay` ± `jitter` / 2 seconds after it was counted.
        """
        self.delay = delay
        self.jitter = jitter
        self._rng = random.Random(20)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.number = number
        # More than `rate_limit` messages accepted in any one second: 429, code 20429.
        self.rate_limit = rate_limit
        self.rate_limited = 0
        self.callbacks_delivered = 0
        # Seconds before the first status callback of a message (0 to race the 201 answer).
        self.callback_delay = 0.05
        self.calls: list[Call] = []
        self.messages: list[Message] = []
        self.callbacks: list[Callback] = []
        self.errors: list[BaseException] = []
        self.templates: dict[str, str] = {}
        self.media: dict[str, _Media] = {}
        self.channel_install_sid = _sid("XE")
        self._by_sid: dict[str, Message] = {}
        self._faults: deque[_Fault] = deque()
        self._outage: _Fault | None = None
        self._rejected: dict[str, TwilioError] = {}
        self._outcomes: dict[str, tuple[tuple[str, int | None], ...]] = {}
        self._window: deque[float] = deque()
        self._pending: set[asyncio.Task[None]] = set()
        self._sent_event = asyncio.Event()
        self._callback_event = asyncio.Event()
        self._client: httpx.AsyncClient | None = None
        self._closing = False
        self._port: int | None = None
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        prefix = f"/{API_VERSION}/Accounts/{{account}}"
        self.app = Starlette(
            routes=[
                Route(f"{prefix}/Messages.json", self._create_message, methods=["POST"]),
                Route(f"{prefix}/Messages/{{sid}}.json", self._fetch_message, methods=["GET"]),
                Route(
                    f"{prefix}/Messages/{{message}}/Media/{{sid}}",
                    self._fetch_media,
                    methods=["GET"],
                ),
                Route("/_fake/stats", self._stats, methods=["GET"]),
                Route("/_fake/accepted", self._accepted, methods=["GET"]),
                Route("/{path:path}", self._not_found, methods=["GET", "POST", "PUT", "DELETE"]),
            ]
        )

    # ----------------------------------------------------------------- server lifecycle

    @property
    def port(self) -> int:
        """The port the fake listens on (after start())."""
        if self._port is None:
            raise RuntimeError("FakeTwilio is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """The API base URL, for `client.api.base_url` (Twilio's is https://api.twilio.com)."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> None:
        """Serve the fake on 127.0.0.1 (on a free port by default), once it accepts requests."""
        if self._server is not None:
            raise RuntimeError("FakeTwilio is already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # No Nagle delay: a response written in two parts would wait for a delayed ACK (40 ms).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", port))
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
        self._client = httpx.AsyncClient(timeout=10, trust_env=False)
        self._task = asyncio.create_task(server.serve(sockets=[sock]), name="fake-twilio")
        deadline = time.monotonic() + 10
        while not server.started:
            if self._task.done():
                self._server = None
                sock.close()
                await self._task
                raise RuntimeError("the fake Twilio server exited while starting")
            if time.monotonic() > deadline:
                await self.stop()
                raise TimeoutError("the fake Twilio server did not start within 10 s")
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        """Stop serving: cancel the callbacks not yet posted and shut uvicorn down."""
        server, task = self._server, self._task
        if server is None or task is None:
            return
        self._closing = True
        self._sent_event.set()
        self._callback_event.set()
        for pending in list(self._pending):
            pending.cancel()
        if self._pending:
            await asyncio.wait(self._pending, timeout=5)
        server.should_exit = True
        done, _ = await asyncio.wait({task}, timeout=10)
        if not done:
            server.force_exit = True
            await asyncio.wait({task}, timeout=5)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self._server = None
        self._task = None
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise RuntimeError("the fake Twilio server failed") from task.exception()

    async def __aenter__(self) -> Self:
        """Start the fake for an `async with` block."""
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop the fake at the end of an `async with` block."""
        await self.stop()

    # ----------------------------------------------------------------- HTTP handling

    async def _stats(self, _request: Request) -> JSONResponse:
        """Counts for a benchmark that runs the fake in another process (not Twilio's API)."""
        # Counted as they happen: a benchmark polls this while thousands of messages arrive.
        return JSONResponse(
            {
                "messages": len(self.messages),
                "rate_limited": self.rate_limited,
                "callbacks": self.callbacks_delivered,
            }
        )

    async def _accepted(self, request: Request) -> JSONResponse:
        """When (time.monotonic, shared by processes) the messages from `start` on arrived, for a
        benchmark in another process (not Twilio's API)."""
        start = max(0, int(request.query_params.get("start", "0")))
        return JSONResponse([message.at for message in self.messages[start:]])

    async def _not_found(self, request: Request) -> JSONResponse:
        """Any other path: Twilio's 404."""
        return _error_response(TwilioError(404, 20404))

    def _check_auth(self, request: Request) -> None:
        """HTTP Basic auth with AccountSid:AuthToken for the account in the path, or 401."""
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        user, _, password = decoded.partition(":")
        valid = (
            scheme.lower() == "basic"
            and hmac.compare_digest(user.encode(), self.account_sid.encode())
            and hmac.compare_digest(password.encode(), self.auth_token.encode())
            and request.path_params.get("account") == self.account_sid
        )
        if not valid:
            raise TwilioError(401, 20003)

    def _check_faults(self) -> None:
        """Raise an injected error, an outage's error or a 429 of the rate limit, if one is due."""
        now = time.monotonic()
        if self._faults:
            raise self._error_of(self._faults.popleft())
        if self._outage is not None:
            if self._outage.until is not None and now < self._outage.until:
                raise self._error_of(self._outage)
            self._outage = None
        if self.rate_limit is not None:
            while self._window and now - self._window[0] >= 1.0:
                self._window.popleft()
            if len(self._window) >= self.rate_limit:
                self.rate_limited += 1
                raise TwilioError(429, 20429)
            self._window.append(now)

    @staticmethod
    def _error_of(fault: _Fault) -> TwilioError:
        """The error an injected fault answers with."""
        return TwilioError(fault.status, fault.code, fault.message)

    async def _create_message(self, request: Request) -> Response:
        """POST .../Messages.json: validate like Twilio, keep the message, answer 201."""
        call = Call("POST", request.url.path, {}, time.monotonic())
        self.calls.append(call)
        try:
            self._check_auth(request)
            content_type = request.headers.get("content-type", "").split(";")[0].strip()
            body = await request.body()
            if content_type != "application/x-www-form-urlencoded" and body:
                # The API takes form bodies only: another kind counts here as no parameter.
                body = b""
            call.params = _decode_form(body)
            self._check_faults()
            message = self._accept(call.params, call.at)
        except TwilioError as error:
            call.status = error.status
            await self._answer_delay()
            call.answered_at = time.monotonic()
            return _error_response(error)
        except Exception as error:  # a bug in the fake: answer 500 and keep it for the test
            self.errors.append(error)
            call.status = 500
            return _error_response(TwilioError(500, 20500, f"fake_twilio: {error!r}"))
        call.status = 201
        resource = copy.deepcopy(message.resource)
        await self._answer_delay()
        call.answered_at = time.monotonic()
        return JSONResponse(resource, status_code=201)

    async def _answer_delay(self) -> None:
        """Wait as Twilio does before its answer comes back (`delay`, `jitter`)."""
        if self.delay or self.jitter:
            spread = self._rng.uniform(-self.jitter / 2, self.jitter / 2)
            await asyncio.sleep(max(0.0, self.delay + spread))

    async def _fetch_message(self, request: Request) -> Response:
        """GET .../Messages/{sid}.json: the resource as it is now (status after callbacks)."""
        try:
            self._check_auth(request)
            message = self._by_sid.get(str(request.path_params["sid"]))
            if message is None:
                raise TwilioError(404, 20404)
        except TwilioError as error:
            return _error_response(error)
        return JSONResponse(copy.deepcopy(message.resource))

    async def _fetch_media(self, request: Request) -> Response:
        """GET an inbound media URL: the file, behind the same Basic auth as the API."""
        try:
            self._check_auth(request)
            media = self.media.get(str(request.path_params["sid"]))
            if media is None:
                raise TwilioError(404, 20404)
        except TwilioError as error:
            return _error_response(error)
        media.fetches.append(time.monotonic())
        return Response(media.data, media_type=media.content_type)

    # ----------------------------------------------------------------- sending

    def _validate(self, params: Mapping[str, str | list[str]]) -> None:
        """Check a create request like Twilio does, raising its 400 errors in its order."""

        def single(key: str) -> str:
            value = params.get(key, "")
            return value if isinstance(value, str) else value[-1]

        to, sender = single("To"), single("From")
        service = single("MessagingServiceSid")
        body, content_sid = single("Body"), single("ContentSid")
        variables = single("ContentVariables")
        media = [url for url in params.get("MediaUrl", []) if url]
        callback = single("StatusCallback")
        if not to:
            raise TwilioError(400, 21604)
        if not sender and not service:
            raise TwilioError(400, 21603)
        if variables and not content_sid:
            raise TwilioError(400, 21654)
        if content_sid and not _CONTENT_SID_RE.fullmatch(content_sid):
            raise TwilioError(400, 21655)
        if variables:
            try:
                decoded = json.loads(variables)
            except ValueError:
                raise TwilioError(400, 21656) from None
            if not isinstance(decoded, dict) or any(
                value is None or value == "" or isinstance(value, dict | list)
                for value in decoded.values()
            ):
                raise TwilioError(400, 21656)
        if not body and not media and not content_sid:
            raise TwilioError(400, 21619)
        if len(body) > MAX_BODY:
            raise TwilioError(400, 21617)
        if len(media) > MAX_MEDIA:
            raise TwilioError(400, 21623)
        if any(not _is_url(url) for url in media):
            raise TwilioError(400, 21620)
        if sender and _channel(sender) != _channel(to):
            raise TwilioError(400, 21910)
        if callback and not _is_url(callback):
            raise TwilioError(400, 21609)

    def _accept(self, params: dict[str, str | list[str]], at: float) -> Message:
        """Validate, refuse a rejected recipient, store the message, schedule its callbacks."""
        self._validate(params)
        to = str(params["To"])
        rejected = self._rejected.get(to)
        if rejected is not None:
            raise rejected
        message = Message("", params, at, {}, self._outcomes.get(to, _steps(DEFAULT_OUTCOME)))
        message.sid = _sid("MM" if message.media_urls else "SM")
        message.resource = self._resource(message)
        self.messages.append(message)
        self._by_sid[message.sid] = message
        self._sent_event.set()
        if message.status_callback:
            task = asyncio.create_task(self._post_callbacks(message), name="fake-twilio-callbacks")
            self._pending.add(task)
            task.add_done_callback(self._callback_done)
        return message

    def _resource(self, message: Message) -> dict[str, Any]:
        """The Message resource Twilio answers a create with (api.v2010.account.message)."""
        now = _rfc2822(datetime.now(UTC))
        service = message.params.get("MessagingServiceSid")
        body = message.body or ""
        if message.content_sid:
            body = self._render(message.content_sid, message.content_variables)
        whatsapp = _channel(message.to) == "whatsapp"
        # Through a Messaging Service the sender is picked later: no segments counted yet.
        segments = "0" if service else "1" if whatsapp else str(_segments(body))
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{message.sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": message.from_,
            "messaging_service_sid": service or None,
            "num_media": str(len(message.media_urls)),
            "num_segments": segments,
            "price": None,
            "price_unit": "USD",
            "sid": message.sid,
            "status": "accepted" if service and not message.from_ else "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": message.to,
            "uri": f"{uri}.json",
        }

    def _render(self, content_sid: str, variables: Mapping[str, str]) -> str:
        """A registered template's text with its {{n}} placeholders filled ("" if unknown)."""
        template = self.templates.get(content_sid, "")
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: variables.get(m.group(1), ""), template)

    # ----------------------------------------------------------------- status callbacks

    def _callback_done(self, task: asyncio.Task[None]) -> None:
        """Forget a finished callback task and wake those waiting for callbacks."""
        self._pending.discard(task)
        self._callback_event.set()
        if not task.cancelled() and task.exception() is not None:
            self.errors.append(task.exception())  # type: ignore[arg-type]

    def callback_form(
        self, message: Message, status: str, error_code: int | None = None
    ) -> dict[str, str]:
        """The form Twilio posts to a message's StatusCallback for one status."""
        form = {
            "SmsSid": message.sid,
            "SmsStatus": status,
            "MessageStatus": status,
            "To": message.to,
            "MessageSid": message.sid,
            "AccountSid": self.account_sid,
            "From": message.from_ or self.number,
            "ApiVersion": API_VERSION,
        }
        service = message.params.get("MessagingServiceSid")
        if isinstance(service, str) and service:
            form["MessagingServiceSid"] = service
        if _channel(message.to) == "whatsapp":
            form["ChannelPrefix"] = "whatsapp"
            form["ChannelInstallSid"] = self.channel_install_sid
            form["ChannelToAddress"] = _mask(message.to.partition(":")[2])
            if status == "sent":
                form["StructuredMessage"] = "true" if message.content_sid else "false"
            if status in EVENT_TYPES:
                form["EventType"] = EVENT_TYPES[status]
        if error_code is not None:
            form["ErrorCode"] = str(error_code)
        return form

    async def _post_callbacks(self, message: Message) -> None:
        """Post the message's status sequence to its StatusCallback, signed, one after another."""
        url = message.status_callback or ""
        await asyncio.sleep(self.callback_delay)
        for status, error_code in message.outcome:
            form = self.callback_form(message, status, error_code)
            signature = self.sign(url, form)
            callback = Callback(url, form, signature, time.monotonic())
            self.callbacks.append(callback)
            message.resource.update(
                status=status,
                date_updated=_rfc2822(datetime.now(UTC)),
                error_code=error_code,
                error_message=ERROR_MESSAGES.get(error_code) if error_code else None,
            )
            if status == "sent":
                message.resource["date_sent"] = message.resource["date_updated"]
            if not _is_loopback(url):
                callback.error = "not posted: the fake posts only to 127.0.0.1"
                continue
            try:
                response = await self._post(url, form, signature)
            except httpx.HTTPError as error:
                # Twilio does not retry a status callback that fails.
                callback.error = repr(error)
            else:
                callback.status_code = response.status_code
                self.callbacks_delivered += 1
            self._callback_event.set()

    async def wait_for_callbacks(
        self,
        count: int = 0,
        timeout: float = 10.0,  # noqa: ASYNC109 - the deadline is part of the helper's API
    ) -> list[Callback]:
        """Wait until every scheduled callback was posted (and at least `count`); return all."""
        deadline = time.monotonic() + timeout
        while True:
            if not self._pending and len(self.callbacks) >= count:
                return list(self.callbacks)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closing:
                raise TimeoutError(
                    f"callbacks not all posted within {timeout} s: {len(self.callbacks)} posted, "
                    f"{len(self._pending)} message(s) pending, at least {count} expected; "
                    f"fake errors: {self.errors!r}"
                )
            self._callback_event.clear()
            try:
                await asyncio.wait_for(self._callback_event.wait(), min(remaining, 0.5))
            except TimeoutError:
                continue

    # ----------------------------------------------------------------- faults

    def fail_next(
        self, count: int = 1, *, status: int = 429, code: int | None = None, message: str = ""
    ) -> None:
        """Make the next `count` create requests answer an error (429 code 20429 by default)."""
        fault = _Fault(status, code or STATUS_CODES.get(status, 20500), message or None)
        self._faults.extend(fault for _ in range(count))

    def fail_for(
        self, seconds: float, *, status: int = 503, code: int | None = None, message: str = ""
    ) -> None:
        """Answer every create request with an error for `seconds` (503 by default): an outage."""
        code = code or STATUS_CODES.get(status, 20500)
        self._outage = _Fault(status, code, message or None, time.monotonic() + seconds)

    def reject(self, to: str, code: int = 21610, *, status: int = 400, message: str = "") -> None:
        """From now on creating a message to `to` fails (21610 opted out, 63016, 63024, ...)."""
        self._rejected[to] = TwilioError(status, code, message or None)

    def unreject(self, to: str) -> None:
        """Messages to `to` are accepted again."""
        self._rejected.pop(to, None)

    def set_outcome(self, to: str, *statuses: str | tuple[str, int]) -> None:
        """What the status callbacks report for messages to `to`: statuses, with error codes.

        `set_outcome(to, "sent", ("failed", 63016))`, `set_outcome(to, "sent", "delivered",
        "read")`; with no status, back to the default ("sent", "delivered").
        """
        self._outcomes[to] = _steps(statuses or DEFAULT_OUTCOME)

    # ----------------------------------------------------------------- inspection

    def sent(self, to: str | None = None) -> list[Message]:
        """Messages accepted, in order (optionally only those to `to`)."""
        return [m for m in self.messages if to is None or m.to == to]

    def message(self, sid: str) -> Message:
        """The message with this SID."""
        return self._by_sid[sid]

    def last_body(self, to: str) -> str:
        """The body (template text for a template) of the last message to `to`."""
        messages = self.sent(to)
        if not messages:
            raise LookupError(f"nothing was sent to {to}")
        return str(messages[-1].resource["body"])

    async def wait_for_sent(
        self,
        count: int,
        to: str | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 - the deadline is part of the helper's API
    ) -> list[Message]:
        """Wait until at least `count` messages were accepted (to `to`); return them all."""
        deadline = time.monotonic() + timeout
        while True:
            messages = self.sent(to)
            if len(messages) >= count:
                return messages
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closing:
                where = "in all" if to is None else f"to {to}"
                recent = [(c.status, c.params.get("To")) for c in self.calls[-10:]]
                raise TimeoutError(
                    f"expected at least {count} message(s) {where} within {timeout} s, got "
                    f"{len(messages)}; last calls: {recent!r}; fake errors: {self.errors!r}"
                )
            self._sent_event.clear()
            try:
                await asyncio.wait_for(self._sent_event.wait(), remaining)
            except TimeoutError:
                continue

    # ----------------------------------------------------------------- inbound webhooks

    def sign(self, url: str, form: Mapping[str, str], token: str | None = None) -> str:
        """The X-Twilio-Signature of a form posted to `url` (with another token: a bad one)."""
        validator = RequestValidator(token if token is not None else self.auth_token)
        return str(validator.compute_signature(url, dict(form)))

    def _inbound(
        self,
        sender: str,
        body: str,
        message_type: str,
        *,
        profile_name: str,
        sid: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """The form Twilio posts to the WhatsApp webhook for one incoming message."""
        address = sender if sender.startswith("whatsapp:") else f"whatsapp:{sender}"
        sid = sid or _sid("SM")
        form = {
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "ProfileName": profile_name,
            "MessageType": message_type,
            "SmsSid": sid,
            "WaId": address.removeprefix("whatsapp:").removeprefix("+"),
            "SmsStatus": "received",
            "Body": body,
            "To": self.number,
            "NumSegments": "1",
            "ReferralNumMedia": "0",
            "MessageSid": sid,
            "AccountSid": self.account_sid,
            "From": address,
            "ApiVersion": API_VERSION,
        }
        form.update(extra or {})
        return form

    def inbound_text(
        self, sender: str, body: str, *, profile_name: str = "User"
    ) -> dict[str, str]:
        """A text message from `sender` (+964..., or whatsapp:+964...)."""
        return self._inbound(sender, body, "text", profile_name=profile_name)

    def inbound_location(
        self,
        sender: str,
        latitude: float,
        longitude: float,
        *,
        address: str | None = None,
        label: str | None = None,
        profile_name: str = "User",
    ) -> dict[str, str]:
        """A shared location (a place from the map has an Address and a Label)."""
        extra = {"Latitude": str(latitude), "Longitude": str(longitude)}
        if address is not None:
            extra["Address"] = address
        if label is not None:
            extra["Label"] = label
        return self._inbound(sender, "", "location", profile_name=profile_name, extra=extra)

    def inbound_photo(
        self,
        sender: str,
        *,
        caption: str = "",
        content_type: str = "image/jpeg",
        data: bytes = b"\xff\xd8\xff\xe0fake-jpeg\xff\xd9",
        profile_name: str = "User",
    ) -> dict[str, str]:
        """A photo with an optional caption; the fake serves it at MediaUrl0 (Basic auth)."""
        sid = _sid("MM")
        media_sid = _sid("ME")
        self.media[media_sid] = _Media(content_type, data)
        url = f"{self.base_url}/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        extra = {
            "NumMedia": "1",
            "MediaContentType0": content_type,
            "MediaUrl0": f"{url}/Media/{media_sid}",
        }
        message_type = content_type.split("/")[0] if "/" in content_type else "document"
        if message_type not in ("image", "video", "audio"):
            message_type = "document"
        return self._inbound(
            sender, caption, message_type, profile_name=profile_name, sid=sid, extra=extra
        )

    def inbound_button(
        self,
        sender: str,
        text: str,
        payload: str,
        *,
        replied_to: str | None = None,
        profile_name: str = "User",
    ) -> dict[str, str]:
        """A tap on a quick-reply button of a template (replied_to: the template's SID)."""
        extra = {"ButtonText": text, "ButtonPayload": payload}
        if replied_to is not None:
            extra["OriginalRepliedMessageSid"] = replied_to
            extra["OriginalRepliedMessageSender"] = self.number
        return self._inbound(sender, text, "button", profile_name=profile_name, extra=extra)

    async def _post(
        self, url: str, form: Mapping[str, str], signature: str | None
    ) -> httpx.Response:
        """POST a form to `url` as Twilio's webhook client does (signature header if given)."""
        if not _is_loopback(url):
            raise ValueError(f"the fake posts only to 127.0.0.1, not to {url}")
        if self._client is None:
            raise RuntimeError("FakeTwilio is not started")
        headers = {
            "User-Agent": "TwilioProxy/1.1",
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
        }
        if signature is not None:
            headers["X-Twilio-Signature"] = signature
        return await self._client.post(url, data=dict(form), headers=headers)

    async def post_inbound(
        self,
        url: str,
        form: Mapping[str, str],
        *,
        public_url: str | None = None,
        signature: str | None = None,
        signed: bool = True,
    ) -> httpx.Response:
        """Post an inbound form to the bot's webhook at `url` (on 127.0.0.1); the response.

        Signed for `public_url` (the address Twilio called, e.g. the bot's https PUBLIC_URL
        behind a proxy; default `url`); `signature` sends that header value instead;
        `signed=False` sends no signature header at all.
        """
        if signature is None and signed:
            signature = self.sign(public_url or url, form)
        return await self._post(url, form, signature if signed else None)


def _steps(statuses: Iterable[str | tuple[str, int]]) -> tuple[tuple[str, int | None], ...]:
    """Normalize an outcome to (status, error code or None) pairs, checking the statuses."""
    steps: list[tuple[str, int | None]] = []
    for item in statuses:
        status, code = (item, None) if isinstance(item, str) else (item[0], int(item[1]))
        if status not in MESSAGE_STATUSES:
            raise ValueError(f"not a message status: {status!r}")
        steps.append((status, code))
    return tuple(steps)


async def _serve_forever(
    port: int, rate_limit: int | None, delay: float = 0.0, jitter: float = 0.0
) -> None:
    """Run the fake until killed, printing its base URL and credentials (for benchmarks)."""
    fake = FakeTwilio(rate_limit=rate_limit, delay=delay, jitter=jitter)
    await fake.start(port)
    print(f"{fake.base_url} {fake.account_sid} {fake.auth_token}", flush=True)
    await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m tests.fake_twilio [--port N] [--rate-limit N] [--delay S] [--jitter S]`."""
    parser = argparse.ArgumentParser(description="A fake of Twilio's REST API on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument(
        "--rate-limit", type=int, default=None, help="answer 429 past N messages in a second"
    )
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--jitter", type=float, default=0.0, help="... give or take half this")
    args = parser.parse_args(argv)
    asyncio.run(_serve_forever(args.port, args.rate_limit, args.delay, args.jitter))


if __name__ == "__main__":
    # The platform's servers do not stop to collect their garbage. This process keeps every
    # message it receives, and its full collections grew with them: each held arrivals back
    # and let them in together, past the flood limit, in bursts of 429s the platform would not
    # send. At 1,000 a second to 100,000 subscribers: 0.71 of the rate and 182 to 328 429s
    # with them, 0.916 and none without (benchmarks/broadcast.py; the bot's own collections
    # made no difference). Only this process, which benchmarks start; the tests' fakes collect.
    gc.set_threshold(700, 10, 1_000_000)
    main()
