"""Outbound requests checked against Twilio's own OpenAPI description, served by Prism."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from bot.channels.whatsapp import WhatsAppTransport
from bot.config import Settings
from bot.messages import Address, Button, Outbound
from bot.sender import Held
from tests.prism import Prism, RecordingHttpClient, prism, violations  # noqa: F401 - fixture

USER = "whatsapp:+9647701234567"
SENDER = "whatsapp:+14155238886"
TEMPLATE = "HX" + "ab" * 16
STATUS_URL = "https://bot.example.org/twilio/status"  # Prism never calls it


@dataclass
class Twilio:
    """The real twilio client on its async path, pointed at Prism, and what it received."""

    client: Client
    http: RecordingHttpClient


@pytest.fixture
async def twilio(prism: Prism) -> AsyncIterator[Twilio]:  # noqa: F811 - the fixture
    http = RecordingHttpClient()
    client = Client(prism.account_sid, prism.auth_token, http_client=http)
    client.api.base_url = prism.base_url
    yield Twilio(client, http)
    await http.close()


async def test_a_whatsapp_text_keeps_to_the_contract(twilio: Twilio) -> None:
    message = await twilio.client.messages.create_async(
        to=USER, from_=SENDER, body="مرحبا، هذه نشرة المبادرة."
    )
    assert twilio.http.responses[-1].status_code == 201
    assert twilio.http.last_violations() == []
    assert message.sid.startswith("SM")  # the spec's example, not an echo


async def test_a_message_with_a_media_url_keeps_to_the_contract(twilio: Twilio) -> None:
    await twilio.client.messages.create_async(
        to=USER, from_=SENDER, body="A photo", media_url=["https://bot.example.org/media/1.jpg"]
    )
    assert twilio.http.responses[-1].status_code == 201
    assert twilio.http.last_violations() == []


async def test_a_template_with_a_status_callback_keeps_to_the_contract(twilio: Twilio) -> None:
    await twilio.client.messages.create_async(
        to=USER,
        from_=SENDER,
        content_sid=TEMPLATE,
        content_variables=json.dumps({"1": "النشرة", "2": "2026-12-01"}),
        status_callback=STATUS_URL,
    )
    assert twilio.http.responses[-1].status_code == 201
    assert twilio.http.last_violations() == []


async def test_a_request_without_to_is_reported_as_a_violation(twilio: Twilio) -> None:
    with pytest.raises(TwilioRestException) as raised:
        await twilio.client.messages.create_async(to=None, from_=SENDER, body="x")
    assert raised.value.status == 422
    assert twilio.http.last_violations() == ["body: Request body must have required property 'To'"]


async def test_a_malformed_content_sid_is_reported_as_a_violation(twilio: Twilio) -> None:
    with pytest.raises(TwilioRestException):
        await twilio.client.messages.create_async(to=USER, from_=SENDER, content_sid="HX1")
    found = twilio.http.last_violations()
    assert any(v.startswith("body.ContentSid:") for v in found), found


# The bot's own transport, as the sender uses it -----------------------------------------------


@pytest.fixture
async def transport(
    prism: Prism,  # noqa: F811 - the fixture
    settings: Settings,
) -> AsyncIterator[tuple[WhatsAppTransport, RecordingHttpClient]]:
    http = RecordingHttpClient()
    configured = dataclasses.replace(
        settings,
        public_url="https://bot.example.org",
        twilio_account_sid=prism.account_sid,
        twilio_auth_token=prism.auth_token,
        twilio_whatsapp_from=SENDER,
        twilio_api_base_url=prism.base_url,
        twilio_template_bulletin_ar=TEMPLATE,
    )
    sender = WhatsAppTransport(configured, http_client=lambda: http)
    await sender.start()
    yield sender, http
    await sender.close()


async def test_the_bots_own_messages_keep_to_the_contract(
    transport: tuple[WhatsAppTransport, RecordingHttpClient],
) -> None:
    whatsapp, http = transport  # the person wrote a moment ago: the outbox sends free text
    person = Address("whatsapp", USER.removeprefix("whatsapp:"))
    question = Outbound(
        person,
        "\u200fكم شخصاً في العائلة؟ " * 120,  # longer than 1,600: sent in parts
        title="\u200fطلب مساعدة",
        buttons=((Button("رجوع", "nav:back"), Button("القائمة", "nav:menu")),),
        locale="ar",
    )
    assert await whatsapp.deliver(question)
    with_photo = Outbound(person, "A photo", photo="https://bot.example.org/media/1.jpg")
    assert await whatsapp.deliver(with_photo)
    assert len(http.responses) >= 3
    for response in http.responses:
        assert response.status_code == 201
        assert violations(response.status_code, dict(response.headers or {}), response.text) == []


async def test_a_bulletins_template_keeps_to_the_contract(
    transport: tuple[WhatsAppTransport, RecordingHttpClient],
) -> None:
    whatsapp, http = transport
    never_wrote = Address("whatsapp", "+9647709999999")
    bulletin = Outbound(
        never_wrote, "النص", title="توزيع البطانيات", priority="broadcast", locale="ckb"
    )
    with pytest.raises(Held) as held:  # the outbox found the person's window closed
        await whatsapp.outside_window(bulletin)
    assert held.value.message_id is not None  # the template went; the text waits
    assert http.responses[-1].status_code == 201
    assert http.last_violations() == []
