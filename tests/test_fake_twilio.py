"""The fake Twilio against the real twilio client (sync and async), and its webhooks."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from tests.fake_twilio import ACCOUNT_SID, WHATSAPP_NUMBER, FakeTwilio
from tests.prism import SPEC_PATH, unavailable

ROOT = Path(__file__).resolve().parent.parent
USER = "whatsapp:+9647701234567"
OTHER = "whatsapp:+9647507654321"
TEMPLATE = "HX" + "ab" * 16


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as server:
        yield server


@pytest.fixture
async def client(fake: FakeTwilio) -> AsyncIterator[Client]:
    """The real twilio client on its async path, pointed at the fake."""
    http_client = AsyncTwilioHttpClient()
    twilio = Client(fake.account_sid, fake.auth_token, http_client=http_client)
    twilio.api.base_url = fake.base_url
    yield twilio
    await http_client.close()


@dataclass
class Received:
    """One request the stand-in for the bot received: URL, form, headers."""

    url: str
    form: dict[str, str]
    headers: dict[str, str]


@dataclass
class Receiver:
    """A stand-in for the bot's web app on 127.0.0.1 that keeps what Twilio posts to it."""

    port: int
    received: list[Received] = field(default_factory=list)
    answer: int = 200

    def url(self, path: str) -> str:
        """The full URL of a path on the receiver."""
        return f"http://127.0.0.1:{self.port}{path}"

    def valid(self, item: Received, token: str, url: str | None = None) -> bool:
        """Whether a request's X-Twilio-Signature is right for `url` (default: as received)."""
        signature = item.headers.get("x-twilio-signature", "")
        return bool(RequestValidator(token).validate(url or item.url, item.form, signature))


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    state = Receiver(int(sock.getsockname()[1]))

    async def keep(request: Request) -> Response:
        # Parsed by hand: Starlette's request.form() needs python-multipart, not installed.
        form = dict(parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True))
        state.received.append(Received(str(request.url), form, dict(request.headers)))
        return Response("", status_code=state.answer)

    app = Starlette(routes=[Route("/{path:path}", keep, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.005)
    yield state
    server.should_exit = True
    await task


async def send(client: Client, **params: Any) -> Any:
    """Create a message with the async client."""
    return await client.messages.create_async(**params)


# ----------------------------------------------------------------- the Message resource


async def test_a_text_message_is_kept_and_answered_like_twilio(
    fake: FakeTwilio, client: Client
) -> None:
    message = await send(client, to=USER, from_=WHATSAPP_NUMBER, body="مرحبا")
    assert re.fullmatch(r"SM[0-9a-f]{32}", message.sid)
    assert message.status == "queued"
    assert message.direction == "outbound-api"
    assert (message.to, message.from_, message.body) == (USER, WHATSAPP_NUMBER, "مرحبا")
    assert message.num_segments == "1"
    assert message.num_media == "0"
    assert message.error_code is None
    assert message.date_created is not None
    assert message.date_created.tzinfo is not None

    [kept] = fake.sent(USER)
    assert kept.sid == message.sid
    assert kept.params == {"To": USER, "From": WHATSAPP_NUMBER, "Body": "مرحبا"}
    assert fake.last_body(USER) == "مرحبا"


async def test_the_resource_has_the_fields_of_twilios_openapi_schema(
    fake: FakeTwilio, client: Client
) -> None:
    await send(client, to=USER, from_=WHATSAPP_NUMBER, body="Hello")
    resource = fake.sent()[0].resource
    if not SPEC_PATH.is_file():
        unavailable(f"Twilio's OpenAPI description is not at {SPEC_PATH}")
    spec = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    schema = spec["components"]["schemas"]["api.v2010.account.message"]
    assert set(resource) == set(schema["properties"])
    for key, rules in schema["properties"].items():
        if "pattern" in rules and resource[key] is not None:
            assert re.fullmatch(rules["pattern"].strip("^$"), resource[key]), key
    statuses = spec["components"]["schemas"]["message_enum_status"]["enum"]
    assert resource["status"] in statuses
    for key in ("date_created", "date_updated"):
        assert parsedate_to_datetime(resource[key]).utcoffset() is not None
    assert resource["uri"] == (
        f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{resource['sid']}.json"
    )


async def test_the_sync_client_works_too(fake: FakeTwilio) -> None:
    def create() -> Any:
        twilio = Client(fake.account_sid, fake.auth_token)
        twilio.api.base_url = fake.base_url
        return twilio.messages.create(to=USER, from_=WHATSAPP_NUMBER, body="sync")

    # The blocking client runs in a thread: the fake serves in this test's event loop.
    message = await asyncio.to_thread(create)
    assert message.status == "queued"
    assert fake.last_body(USER) == "sync"


async def test_media_urls_repeat_and_make_an_mm_message(fake: FakeTwilio, client: Client) -> None:
    urls = ["https://example.org/a.jpg", "https://example.org/b.jpg"]
    message = await send(client, to=USER, from_=WHATSAPP_NUMBER, media_url=urls)
    assert message.sid.startswith("MM")
    assert message.num_media == "2"
    assert message.body == ""
    assert fake.sent(USER)[0].media_urls == urls


async def test_a_template_is_rendered_from_its_variables(fake: FakeTwilio, client: Client) -> None:
    fake.templates[TEMPLATE] = "A new bulletin: {{1}}. Reply {{2}} to read it."
    message = await send(
        client,
        to=USER,
        from_=WHATSAPP_NUMBER,
        content_sid=TEMPLATE,
        content_variables=json.dumps({"1": "النشرة", "2": "1"}),
    )
    assert message.body == "A new bulletin: النشرة. Reply 1 to read it."
    kept = fake.sent(USER)[0]
    assert kept.content_sid == TEMPLATE
    assert kept.content_variables == {"1": "النشرة", "2": "1"}


async def test_a_messaging_service_picks_the_sender_later(
    fake: FakeTwilio, client: Client
) -> None:
    service = "MG" + "cd" * 16
    message = await send(client, to=USER, messaging_service_sid=service, body="hi")
    assert message.status == "accepted"
    assert message.messaging_service_sid == service
    assert message.from_ is None
    assert message.num_segments == "0"


async def test_a_message_can_be_fetched_with_its_current_status(
    fake: FakeTwilio, client: Client, receiver: Receiver
) -> None:
    callback = receiver.url("/twilio/status")
    created = await send(
        client, to=USER, from_=WHATSAPP_NUMBER, body="hi", status_callback=callback
    )
    await fake.wait_for_callbacks(2)
    fetched = await client.messages(created.sid).fetch_async()
    assert fetched.status == "delivered"
    assert fetched.date_sent is not None


# ----------------------------------------------------------------- errors


WA = {"to": USER, "from_": WHATSAPP_NUMBER}


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({**WA, "to": "", "body": "x"}, 21604),
        ({"to": USER, "body": "x"}, 21603),
        (WA, 21619),
        ({**WA, "body": "x" * 1601}, 21617),
        ({**WA, "to": "+9647701234567", "body": "x"}, 21910),
        ({**WA, "from_": "+14155238886", "body": "x"}, 21910),
        ({**WA, "content_sid": TEMPLATE, "content_variables": "{"}, 21656),
        ({**WA, "content_sid": TEMPLATE, "content_variables": '{"1": null}'}, 21656),
        ({**WA, "body": "x", "content_variables": "{}"}, 21654),
        ({**WA, "content_sid": "HX1"}, 21655),
        ({**WA, "media_url": ["not a url"]}, 21620),
        ({**WA, "body": "x", "status_callback": "nope"}, 21609),
    ],
)
async def test_invalid_requests_raise_twilios_errors(
    fake: FakeTwilio, client: Client, params: dict[str, Any], code: int
) -> None:
    with pytest.raises(TwilioRestException) as raised:
        await send(client, **params)
    assert (raised.value.status, raised.value.code) == (400, code)
    assert fake.sent() == []


async def test_a_body_of_1600_characters_is_accepted(fake: FakeTwilio, client: Client) -> None:
    await send(client, to=USER, from_=WHATSAPP_NUMBER, body="ب" * 1600)
    assert len(fake.last_body(USER)) == 1600


async def test_wrong_credentials_get_401_with_code_20003(fake: FakeTwilio) -> None:
    http_client = AsyncTwilioHttpClient()
    twilio = Client(fake.account_sid, "not-the-token", http_client=http_client)
    twilio.api.base_url = fake.base_url
    try:
        with pytest.raises(TwilioRestException) as raised:
            await send(twilio, to=USER, from_=WHATSAPP_NUMBER, body="x")
    finally:
        await http_client.close()
    assert (raised.value.status, raised.value.code) == (401, 20003)


async def test_the_error_json_has_twilios_shape(fake: FakeTwilio) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{fake.base_url}/2010-04-01/Accounts/{fake.account_sid}/Messages.json",
            data={"From": WHATSAPP_NUMBER, "Body": "x"},
            auth=(fake.account_sid, fake.auth_token),
        )
    assert response.status_code == 400
    assert response.json() == {
        "code": 21604,
        "message": "A 'To' phone number is required.",
        "more_info": "https://www.twilio.com/docs/errors/21604",
        "status": 400,
    }


# ----------------------------------------------------------------- faults


async def test_the_next_requests_can_be_refused_with_429(fake: FakeTwilio, client: Client) -> None:
    fake.fail_next(2)
    for _ in range(2):
        with pytest.raises(TwilioRestException) as raised:
            await send(client, to=USER, from_=WHATSAPP_NUMBER, body="x")
        assert (raised.value.status, raised.value.code) == (429, 20429)
    await send(client, to=USER, from_=WHATSAPP_NUMBER, body="x")
    assert len(fake.sent()) == 1


@pytest.mark.parametrize(("status", "code"), [(500, 20500), (503, 20503)])
async def test_server_errors_for_the_next_requests(
    fake: FakeTwilio, client: Client, status: int, code: int
) -> None:
    fake.fail_next(1, status=status)
    with pytest.raises(TwilioRestException) as raised:
        await send(client, to=USER, from_=WHATSAPP_NUMBER, body="x")
    assert (raised.value.status, raised.value.code) == (status, code)


async def test_an_outage_lasts_its_duration(fake: FakeTwilio, client: Client) -> None:
    # A whole second: ample for one request on a busy machine.
    ends = time.monotonic() + 1.0
    fake.fail_for(1.0)
    with pytest.raises(TwilioRestException) as raised:
        await send(client, to=USER, from_=WHATSAPP_NUMBER, body="x")
    assert (raised.value.status, raised.value.code) == (503, 20503)
    await asyncio.sleep(max(0.0, ends - time.monotonic()) + 0.05)
    await send(client, to=USER, from_=WHATSAPP_NUMBER, body="x")
    assert len(fake.sent()) == 1


async def test_more_than_the_rate_limit_in_a_second_gets_429(
    fake: FakeTwilio, client: Client
) -> None:
    fake.rate_limit = 2
    results = await asyncio.gather(
        *(send(client, to=USER, from_=WHATSAPP_NUMBER, body=str(n)) for n in range(6)),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, TwilioRestException)]
    assert refused
    assert all(r.code == 20429 for r in refused)
    assert fake.rate_limited == len(refused)
    assert len(fake.sent()) == 6 - len(refused)


@pytest.mark.parametrize("code", [21610, 63016])
async def test_a_recipient_can_be_refused(fake: FakeTwilio, client: Client, code: int) -> None:
    fake.reject(USER, code)
    with pytest.raises(TwilioRestException) as raised:
        await send(client, to=USER, from_=WHATSAPP_NUMBER, body="x")
    assert (raised.value.status, raised.value.code) == (400, code)
    await send(client, to=OTHER, from_=WHATSAPP_NUMBER, body="x")
    fake.unreject(USER)
    await send(client, to=USER, from_=WHATSAPP_NUMBER, body="x")
    assert [m.to for m in fake.sent()] == [OTHER, USER]


# ----------------------------------------------------------------- status callbacks


async def test_status_callbacks_are_posted_signed_in_order(
    fake: FakeTwilio, client: Client, receiver: Receiver
) -> None:
    url = receiver.url("/twilio/status")
    message = await send(client, to=USER, from_=WHATSAPP_NUMBER, body="x", status_callback=url)
    callbacks = await fake.wait_for_callbacks(2)
    assert [c.status_code for c in callbacks] == [200, 200]
    assert [r.form["MessageStatus"] for r in receiver.received] == ["sent", "delivered"]
    for item in receiver.received:
        assert receiver.valid(item, fake.auth_token)
        assert not receiver.valid(item, "another-token")
        assert item.form["MessageSid"] == item.form["SmsSid"] == message.sid
        assert item.form["SmsStatus"] == item.form["MessageStatus"]
        assert item.form["AccountSid"] == fake.account_sid
        assert (item.form["To"], item.form["From"]) == (USER, WHATSAPP_NUMBER)
        assert item.form["ApiVersion"] == "2010-04-01"
        assert item.form["ChannelPrefix"] == "whatsapp"
        assert item.form["ChannelToAddress"] == "+964770123XXXX"
        assert "ErrorCode" not in item.form
    assert receiver.received[1].form["EventType"] == "DELIVERED"
    assert fake.message(message.sid).status == "delivered"


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        ((("failed", 63016),), [("failed", "63016")]),
        (("sent", ("undelivered", 63018)), [("sent", None), ("undelivered", "63018")]),
        ((("failed", 21610),), [("failed", "21610")]),
        (("sent", "delivered", "read"), [("sent", None), ("delivered", None), ("read", None)]),
    ],
)
async def test_delivery_outcomes_per_recipient(
    fake: FakeTwilio,
    client: Client,
    receiver: Receiver,
    outcome: tuple[Any, ...],
    expected: list[tuple[str, str | None]],
) -> None:
    fake.set_outcome(USER, *outcome)
    url = receiver.url("/twilio/status")
    await send(client, to=USER, from_=WHATSAPP_NUMBER, body="x", status_callback=url)
    await send(client, to=OTHER, from_=WHATSAPP_NUMBER, body="x", status_callback=url)
    await fake.wait_for_callbacks(len(expected) + 2)
    to_user = [
        (r.form["MessageStatus"], r.form.get("ErrorCode"))
        for r in receiver.received
        if r.form["To"] == USER
    ]
    to_other = [r.form["MessageStatus"] for r in receiver.received if r.form["To"] == OTHER]
    assert to_user == expected
    assert to_other == ["sent", "delivered"]
    last = fake.sent(USER)[0].resource
    assert last["status"] == expected[-1][0]
    assert last["error_code"] == (int(expected[-1][1]) if expected[-1][1] else None)


async def test_no_callback_without_a_status_callback_url(fake: FakeTwilio, client: Client) -> None:
    await send(client, to=USER, from_=WHATSAPP_NUMBER, body="x")
    assert await fake.wait_for_callbacks() == []


async def test_a_failed_callback_is_recorded_not_retried(
    fake: FakeTwilio, client: Client, receiver: Receiver
) -> None:
    receiver.answer = 500
    url = receiver.url("/twilio/status")
    await send(client, to=USER, from_=WHATSAPP_NUMBER, body="x", status_callback=url)
    callbacks = await fake.wait_for_callbacks(2)
    assert [c.status_code for c in callbacks] == [500, 500]
    assert len(receiver.received) == 2


async def test_callbacks_never_leave_loopback(fake: FakeTwilio, client: Client) -> None:
    url = "https://bot.example.org/twilio/status"
    await send(client, to=USER, from_=WHATSAPP_NUMBER, body="x", status_callback=url)
    callbacks = await fake.wait_for_callbacks(2)
    assert all(c.status_code is None and c.error for c in callbacks)


# ----------------------------------------------------------------- inbound webhooks


async def test_an_inbound_text_is_posted_signed(fake: FakeTwilio, receiver: Receiver) -> None:
    form = fake.inbound_text("+9647701234567", "السلام عليكم", profile_name="Ali")
    url = receiver.url("/twilio/whatsapp")
    response = await fake.post_inbound(url, form)
    assert response.status_code == 200
    [item] = receiver.received
    assert item.form == form
    assert receiver.valid(item, fake.auth_token)
    assert form["From"] == USER
    assert form["WaId"] == "9647701234567"
    assert form["To"] == WHATSAPP_NUMBER
    assert form["MessageSid"] == form["SmsSid"] == form["SmsMessageSid"]
    assert re.fullmatch(r"SM[0-9a-f]{32}", form["MessageSid"])
    assert (form["SmsStatus"], form["MessageType"], form["NumMedia"]) == ("received", "text", "0")
    assert (form["ProfileName"], form["Body"]) == ("Ali", "السلام عليكم")
    assert form["AccountSid"] == fake.account_sid
    assert form["ApiVersion"] == "2010-04-01"


async def test_wrong_and_missing_signatures(fake: FakeTwilio, receiver: Receiver) -> None:
    form = fake.inbound_text(USER, "hi")
    url = receiver.url("/twilio/whatsapp")
    await fake.post_inbound(url, form, signature=fake.sign(url, form, token="wrong"))
    await fake.post_inbound(url, form, signed=False)
    await fake.post_inbound(url, {**form, "Body": "tampered"}, signature=fake.sign(url, form))
    wrong, unsigned, tampered = receiver.received
    assert not receiver.valid(wrong, fake.auth_token)
    assert "x-twilio-signature" not in unsigned.headers
    assert not receiver.valid(tampered, fake.auth_token)


async def test_signed_for_the_public_url_behind_a_proxy(
    fake: FakeTwilio, receiver: Receiver
) -> None:
    form = fake.inbound_text(USER, "hi")
    public = "https://bot.example.org/twilio/whatsapp"
    await fake.post_inbound(receiver.url("/twilio/whatsapp"), form, public_url=public)
    [item] = receiver.received
    assert receiver.valid(item, fake.auth_token, public)
    assert not receiver.valid(item, fake.auth_token)


async def test_a_shared_location(fake: FakeTwilio) -> None:
    form = fake.inbound_location(USER, 36.19, 44.01, address="Erbil", label="Camp")
    assert form["MessageType"] == "location"
    assert (form["Latitude"], form["Longitude"]) == ("36.19", "44.01")
    assert (form["Address"], form["Label"], form["Body"]) == ("Erbil", "Camp", "")
    plain = fake.inbound_location(USER, 36.19, 44.01)
    assert "Address" not in plain
    assert "Label" not in plain


async def test_a_photo_and_its_media_behind_basic_auth(fake: FakeTwilio) -> None:
    form = fake.inbound_photo(USER, caption="our tent", data=b"jpeg-bytes")
    assert (form["NumMedia"], form["MediaContentType0"]) == ("1", "image/jpeg")
    assert (form["MessageType"], form["Body"]) == ("image", "our tent")
    assert form["MessageSid"].startswith("MM")
    assert form["MediaUrl0"].startswith(
        f"{fake.base_url}/2010-04-01/Accounts/{fake.account_sid}/Messages/{form['MessageSid']}"
        "/Media/ME"
    )
    async with httpx.AsyncClient() as http:
        anonymous = await http.get(form["MediaUrl0"])
        fetched = await http.get(form["MediaUrl0"], auth=(fake.account_sid, fake.auth_token))
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == 20003
    assert fetched.status_code == 200
    assert fetched.content == b"jpeg-bytes"
    assert fetched.headers["content-type"] == "image/jpeg"


async def test_a_quick_reply_button(fake: FakeTwilio) -> None:
    form = fake.inbound_button(USER, "Subscribe", "bulletin:subscribe", replied_to="SM" + "0" * 32)
    assert form["MessageType"] == "button"
    assert (form["ButtonText"], form["ButtonPayload"]) == ("Subscribe", "bulletin:subscribe")
    assert form["Body"] == "Subscribe"
    assert form["OriginalRepliedMessageSid"] == "SM" + "0" * 32


async def test_inbound_posts_stay_on_loopback(fake: FakeTwilio) -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        await fake.post_inbound("https://bot.example.org/twilio/whatsapp", {"Body": "x"})


# ----------------------------------------------------------------- standalone


@pytest.fixture
def standalone() -> Iterator[tuple[str, str, str]]:
    """`python -m tests.fake_twilio` in its own process: base URL, account SID, token."""
    import select
    import subprocess

    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_twilio", "--rate-limit", "1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    try:
        # A fake that never starts must fail the test, not hang it on the read.
        readable, _w, _x = select.select([process.stdout], [], [], 60)
        assert readable, "the fake printed no address in 60 s"
        base_url, account_sid, token = process.stdout.readline().split()
        yield base_url, account_sid, token
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_runs_standalone_and_counts(standalone: tuple[str, str, str]) -> None:
    base_url, account_sid, token = standalone
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base_url)
    url = f"{base_url}/2010-04-01/Accounts/{account_sid}/Messages.json"
    form = {"To": USER, "From": WHATSAPP_NUMBER, "Body": "x"}
    async with httpx.AsyncClient(auth=(account_sid, token)) as http:
        started = time.monotonic()
        codes = [(await http.post(url, data=form)).status_code for _ in range(2)]
        stats = (await http.get(f"{base_url}/_fake/stats")).json()
    if time.monotonic() - started < 1:  # the two requests fell in one second
        assert codes == [201, 429]
        assert stats == {"messages": 1, "rate_limited": 1, "callbacks": 0}
    else:
        assert stats["messages"] + stats["rate_limited"] == 2
