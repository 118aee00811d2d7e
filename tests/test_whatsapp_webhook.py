"""Twilio's WhatsApp webhooks: signatures checked over the real form, messages decoded."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import httpx
import pytest
from twilio.request_validator import RequestValidator

from bot.channels.whatsapp import WhatsAppChannel, body_of, to_inbound
from bot.config import Settings
from bot.db import Database
from bot.engine import Engine
from bot.messages import Address, Button, Location, Media, Outbound
from bot.models import OutboxMessage, ProcessedInbound
from bot.web import create_app
from tests.helpers import count

PUBLIC = "https://bot.example.org"
TOKEN = "0123456789abcdef0123456789abcdef"
ACCOUNT = "AC" + "1" * 32
BOT_NUMBER = "whatsapp:+14155238886"
FAMILY = "+9647701234567"


def whatsapp_settings(settings: Settings, **more: Any) -> Settings:
    """The test settings with WhatsApp configured."""
    values: dict[str, Any] = {
        "public_url": PUBLIC,
        "twilio_account_sid": ACCOUNT,
        "twilio_auth_token": TOKEN,
        "twilio_whatsapp_from": BOT_NUMBER,
    }
    return dataclasses.replace(settings, **{**values, **more})


def twilio_form(body: str = "hello", sender: str = FAMILY, **fields: str) -> dict[str, str]:
    """The form Twilio posts for a WhatsApp text message (the fields it really sends)."""
    sid = "SM" + uuid.uuid4().hex
    form = {
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ProfileName": "Umm Ahmed",
        "MessageType": "text",
        "SmsSid": sid,
        "WaId": sender.lstrip("+"),
        "SmsStatus": "received",
        "Body": body,
        "To": BOT_NUMBER,
        "NumSegments": "1",
        "ReferralNumMedia": "0",
        "MessageSid": sid,
        "AccountSid": ACCOUNT,
        "From": f"whatsapp:{sender}",
        "ApiVersion": "2010-04-01",
    }
    form.update(fields)
    return form


def sign(url: str, form: dict[str, str], token: str = TOKEN) -> str:
    """X-Twilio-Signature as Twilio computes it."""
    return str(RequestValidator(token).compute_signature(url, form))


@pytest.fixture
def wa_settings(settings: Settings) -> Settings:
    return whatsapp_settings(settings)


@pytest.fixture
async def client(db: Database, wa_settings: Settings) -> Any:
    from handlers import build_registry

    engine = Engine(db, wa_settings, build_registry())
    app = create_app(db, whatsapp=WhatsAppChannel(wa_settings, engine))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://10.0.0.5:8080") as http:
        yield http


URL = f"{PUBLIC}/twilio/whatsapp"
SAME = twilio_form("/start")


@pytest.mark.parametrize(
    ("case", "signed_url", "signed_form", "sent_form", "headers", "expected"),
    [
        ("valid", URL, SAME, SAME, {}, 200),
        ("tampered body", URL, SAME, {**SAME, "Body": "/forget"}, {}, 403),
        ("added field", URL, SAME, {**SAME, "Extra": "1"}, {}, 403),
        ("missing signature", None, SAME, SAME, {}, 403),
        ("wrong URL", f"{PUBLIC}/telegram", SAME, SAME, {}, 403),
        ("http instead of https", URL.replace("https:", "http:"), SAME, SAME, {}, 403),
        ("another token", URL, SAME, SAME, {"token": "f" * 32}, 403),
    ],
)
async def test_signatures(
    client: httpx.AsyncClient,
    db: Database,
    case: str,
    signed_url: str | None,
    signed_form: dict[str, str],
    sent_form: dict[str, str],
    headers: dict[str, str],
    expected: int,
) -> None:
    token = headers.pop("token", TOKEN)
    if signed_url is not None:
        headers["X-Twilio-Signature"] = sign(signed_url, signed_form, token)
    response = await client.post("/twilio/whatsapp", data=sent_form, headers=headers)
    assert response.status_code == expected, case
    if expected == 200:
        assert response.headers["content-type"].startswith("text/xml")
        assert response.text.endswith("<Response></Response>")
        assert await count(db, ProcessedInbound) == 1
        assert await count(db, OutboxMessage) == 1  # the language question
    else:
        assert await count(db, ProcessedInbound) == 0  # nothing stored
        assert await count(db, OutboxMessage) == 0


async def test_a_duplicate_message_sid_is_handled_once(
    client: httpx.AsyncClient, db: Database
) -> None:
    form = twilio_form("/start")
    for _attempt in range(2):
        response = await client.post(
            "/twilio/whatsapp", data=form, headers={"X-Twilio-Signature": sign(URL, form)}
        )
        assert response.status_code == 200
    assert await count(db, ProcessedInbound) == 1
    assert await count(db, OutboxMessage) == 1


@pytest.mark.parametrize("trust", [True, False])
async def test_behind_a_proxy_the_forwarded_url_counts_only_when_trusted(
    db: Database, settings: Settings, trust: bool
) -> None:
    from handlers import build_registry

    wa = whatsapp_settings(settings, public_url="https://old.example.org", trust_proxy=trust)
    engine = Engine(db, wa, build_registry())
    app = create_app(db, whatsapp=WhatsAppChannel(wa, engine))
    form = twilio_form("/start")
    called = "https://relief.example.net/twilio/whatsapp"
    headers = {
        "X-Twilio-Signature": sign(called, form),
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "relief.example.net",
    }
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://10.0.0.5:8080") as http:
        response = await http.post("/twilio/whatsapp", data=form, headers=headers)
    assert response.status_code == (200 if trust else 403)


async def test_the_status_route_is_signed_too(client: httpx.AsyncClient) -> None:
    form = {"MessageSid": "SM" + "0" * 32, "MessageStatus": "delivered", "AccountSid": ACCOUNT}
    bad = await client.post("/twilio/status", data=form, headers={"X-Twilio-Signature": "x"})
    assert bad.status_code == 403
    good = await client.post(
        "/twilio/status",
        data=form,
        headers={"X-Twilio-Signature": sign(f"{PUBLIC}/twilio/status", form)},
    )
    assert good.status_code == 204


def test_a_text_with_a_command() -> None:
    inbound = to_inbound(twilio_form("/start report"))
    assert inbound is not None
    assert (inbound.kind, inbound.command, inbound.args) == ("command", "start", ("report",))
    assert inbound.address == Address("whatsapp", FAMILY)


def test_a_shared_location() -> None:
    form = twilio_form(
        "",
        MessageType="location",
        Latitude="36.8679",
        Longitude="42.9887",
        Address="Zakho",
        Label="Camp gate",
    )
    inbound = to_inbound(form)
    assert inbound is not None
    assert inbound.kind == "location"
    assert inbound.location == Location(36.8679, 42.9887, "Camp gate")


def test_a_photo_and_a_document() -> None:
    photo = twilio_form(
        "our tent",
        MessageType="image",
        NumMedia="1",
        MediaUrl0="https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
        MediaContentType0="image/jpeg",
    )
    inbound = to_inbound(photo)
    assert inbound is not None
    assert (inbound.kind, inbound.text) == ("photo", "our tent")
    assert inbound.media == (Media("photo", photo["MediaUrl0"], "image/jpeg"),)
    pdf = twilio_form("", NumMedia="1", MediaUrl0="https://x.test/f", MediaContentType0="a/pdf")
    found = to_inbound(pdf)
    assert found is not None
    assert found.kind == "document"


def test_a_quick_reply_button_is_its_label_or_the_menu() -> None:
    inbound = to_inbound(twilio_form("", ButtonText="إيقاف", ButtonPayload="stop"))
    assert inbound is not None
    assert (inbound.kind, inbound.text) == ("text", "إيقاف")
    menu = to_inbound(twilio_form("", ButtonText="القائمة", ButtonPayload="nav:menu"))
    assert menu is not None
    assert (menu.kind, menu.payload) == ("button", "nav:menu")


@pytest.mark.parametrize(
    "form",
    [
        {"From": "+9647701234567", "MessageSid": "SM1", "Body": "sms, not whatsapp"},
        {"From": "whatsapp:+9647701234567", "Body": "no sid"},
    ],
)
def test_what_is_not_a_whatsapp_message_is_dropped(form: dict[str, str]) -> None:
    assert to_inbound(form) is None


def test_a_sticker_or_a_bad_number_of_media_is_other() -> None:
    sticker = to_inbound(twilio_form("", NumMedia="x"))
    assert sticker is not None
    assert sticker.kind == "other"


def test_options_become_a_numbered_list_and_the_title_bold() -> None:
    message = Outbound(
        Address("whatsapp", FAMILY),
        "\u200fاختر",
        title="\u200fالقائمة",
        buttons=((Button("نعم", "y"), Button("لا", "n")), (Button("رجوع", "nav:back"),)),
        locale="ar",
    )
    assert (
        body_of(message)
        == "\u200f*القائمة*\n\u200fاختر\n\n\u200f1. نعم\n\u200f2. لا\n\u200f3. رجوع"
    )
    unnumbered = dataclasses.replace(message, numbered=False, locale="en", title=None)
    assert body_of(unnumbered).splitlines()[-3:] == ["• نعم", "• لا", "• رجوع"]
