"""What an attacker tries on the web app: bodies too large, malformed bodies, pictures asked for
at random. Through the real web app, with the real channels and the fakes of the platforms."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from bot import bulletins, roles
from bot.db import Database
from bot.engine import enqueue as engine_enqueue
from bot.limits import InboundLimit
from bot.messages import Address, Outbound
from bot.models import Bulletin, OutboxMessage, ProcessedInbound
from bot.runtime import Bot, running
from bot.web import create_app
from tests.fake_telegram import FakeTelegram
from tests.helpers import count, t
from tests.net import free_port, healthy
from tests.test_telegram import SECRET, telegram_settings
from tests.test_telegram_process import SECRET as PROCESS_SECRET
from tests.test_telegram_process import start, stop, web_environment
from tests.test_whatsapp import TEXTS
from tests.test_whatsapp_webhook import URL, sign, twilio_form, whatsapp_settings

USER = 4321
HEADERS = {"X-Telegram-Bot-Api-Secret-Token": SECRET}


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
async def webhook(
    settings: Any, fake: FakeTelegram, db: Database
) -> AsyncIterator[tuple[Bot, httpx.AsyncClient]]:
    """The bot in webhook mode (Telegram and WhatsApp), and an HTTP client for its web app."""
    configured = whatsapp_settings(
        telegram_settings(settings, fake, telegram_webhook_secret=SECRET),
        inbound_per_minute=20,  # the default (the other tests lift it)
    )
    async with running(configured) as bot:
        app = create_app(bot.db, bot.telegram, bot.whatsapp)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bot.test") as client:
            yield bot, client


def nested(depth: int) -> bytes:
    """An update whose text is a list nested `depth` deep."""
    return b'{"update_id": 1, "message": {"text": ' + b"[" * depth + b"]" * depth + b"}}"


def with_text(text: object) -> bytes:
    """A private text update whose text is `text`, of whatever type."""
    person = {"id": USER, "is_bot": False, "first_name": "Sara"}
    update = {
        "update_id": 1001,
        "message": {
            "message_id": 1,
            "date": 1_700_000_000,
            "chat": {"id": USER, "type": "private", "first_name": "Sara"},
            "from": person,
            "text": text,
        },
    }
    return json.dumps(update).encode()


MALFORMED = {
    "not JSON": b"{not json",
    "a list": b"[1, 2, 3]",
    "a number": b"42",
    "a string": b'"update"',
    "null": b"null",
    "no update_id": b'{"message": {}}',
    "update_id a string": b'{"update_id": "7"}',
    "text a number": with_text(123),
    "text an object": with_text({"a": 1}),
    "100,000 levels deep": nested(100_000),
    "not UTF-8": b'{"update_id": 1, "message": "\xff\xfe"}',
    "message a list": b'{"update_id": 1, "message": [1]}',
}


@pytest.mark.parametrize("case", MALFORMED)
async def test_a_malformed_update_gets_400_and_nothing_is_stored(
    webhook: tuple[Bot, httpx.AsyncClient],
    fake: FakeTelegram,
    db: Database,
    case: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot, client = webhook
    with caplog.at_level("WARNING"):
        response = await client.post(
            "/telegram",
            content=MALFORMED[case],
            headers={**HEADERS, "Content-Type": "application/json"},
        )
    assert response.status_code == 400, case
    assert await count(db, ProcessedInbound) == 0
    await bot.sender.flush("telegram")
    assert fake.sent(USER) == []
    # Logged, without the content.
    assert "malformed update" in caplog.text
    assert "123" not in caplog.text
    assert "[[[" not in caplog.text


async def test_a_well_formed_update_still_goes_through(
    webhook: tuple[Bot, httpx.AsyncClient], fake: FakeTelegram
) -> None:
    _bot, client = webhook
    response = await client.post("/telegram", content=with_text("/start"), headers=HEADERS)
    assert response.status_code == 200
    [picker] = await fake.wait_for_sent(1, chat_id=USER)
    assert "English" in str(picker["reply_markup"])


async def chunks(total: int, size: int = 65_536) -> AsyncIterator[bytes]:
    """A body of `total` bytes in pieces, sent chunked (no Content-Length)."""
    for offset in range(0, total, size):
        yield b" " * min(size, total - offset)


async def test_bodies_over_the_limit_get_413(
    webhook: tuple[Bot, httpx.AsyncClient], db: Database
) -> None:
    bot, client = webhook
    limit, twilio_limit = bot.settings.telegram_max_body, bot.settings.twilio_max_body
    assert (limit, twilio_limit) == (1_048_576, 65_536)  # the defaults
    update = with_text("/start")
    padded = update[:-1] + b" " * (limit - len(update)) + b"}"  # exactly at the limit: taken
    assert (await client.post("/telegram", content=padded, headers=HEADERS)).status_code == 200
    over = padded + b" "
    assert (await client.post("/telegram", content=over, headers=HEADERS)).status_code == 413
    # Without Content-Length the bytes are counted as they come.
    streamed = await client.post("/telegram", content=chunks(limit + 1), headers=HEADERS)
    assert streamed.status_code == 413
    assert "content-length" not in streamed.request.headers
    # A Content-Length that is not a number.
    lying = await client.post(
        "/telegram", content=b"{}", headers={**HEADERS, "Content-Length": "x"}
    )
    assert lying.status_code in (400, 413)
    form = twilio_form("/start", Extra="x" * twilio_limit)
    signed = {"X-Twilio-Signature": sign(URL, form)}
    for path in ("/twilio/whatsapp", "/twilio/status"):
        assert (await client.post(path, data=form, headers=signed)).status_code == 413
        piecemeal = await client.post(path, content=chunks(twilio_limit + 1), headers=signed)
        assert piecemeal.status_code == 413
    assert await count(db, ProcessedInbound) == 1  # the update at the limit, only


@pytest.mark.parametrize(
    "body",
    [b"just words", b"a=1&&b=2", b"Body=\xff\xfe&From=whatsapp%3A%2B9647701234567"],
    ids=["not a form", "an empty field", "not UTF-8"],
)
async def test_a_body_that_is_not_a_form_gets_400(
    webhook: tuple[Bot, httpx.AsyncClient], db: Database, body: bytes
) -> None:
    _bot, client = webhook
    for path in ("/twilio/whatsapp", "/twilio/status"):
        response = await client.post(
            path,
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 400
    assert await count(db, ProcessedInbound) == 0


async def test_an_unknown_picture_is_404_without_waiting_for_the_write_lock(
    webhook: tuple[Bot, httpx.AsyncClient], db: Database
) -> None:
    bot, client = webhook
    # Someone holds the database's write lock (a long transaction): a picture that does not
    # exist is still answered at once, from a read.
    async with bot.db.transaction():
        started = time.monotonic()
        answers = await asyncio.wait_for(
            asyncio.gather(*(client.get(f"/media/bulletin/B-NONE{i:02}") for i in range(20))),
            timeout=3.0,
        )
        took = time.monotonic() - started
    assert [a.status_code for a in answers] == [404] * 20
    assert took < 2.0


async def test_a_slow_picture_holds_up_no_other_request(
    webhook: tuple[Bot, httpx.AsyncClient], fake: FakeTelegram
) -> None:
    bot, client = webhook
    now = datetime.now(UTC)
    async with bot.db.transaction() as session:
        bulletin = Bulletin(texts=TEXTS, image="user-photo-9-1", created_by="telegram:1")
        session.add(bulletin)
        await session.flush()
        await bulletins.publish(session, bulletin, now)
        public_id = bulletin.public_id
    fake.download_delay = 1.5  # Telegram's file server is slow today
    slow = [asyncio.ensure_future(client.get(f"/media/bulletin/{public_id}")) for _ in range(5)]
    await asyncio.sleep(0.2)  # the fetch is under way
    started = time.monotonic()
    unknown = await client.get("/media/bulletin/B-NONE77")
    assert unknown.status_code == 404
    assert time.monotonic() - started < 1.0  # not behind the fetch of another picture
    answers = await asyncio.wait_for(asyncio.gather(*slow), timeout=10)
    assert [a.status_code for a in answers] == [200] * 5
    assert all(a.content == FakeTelegram.file_bytes("user-photo-9-1") for a in answers)
    # Five asked at once, one fetch from the platform.
    assert len([c for c in fake.calls if c.method == "getFile"]) == 1


def peak_memory(pid: int) -> int:
    """The process's peak resident memory so far, in bytes (Linux)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


async def post_huge(
    port: int, path: str, headers: dict[str, str], total: int, *, announced: bool
) -> tuple[int, float, int]:
    """POST a body of `total` bytes (announced by Content-Length, or chunked) until the answer
    comes; return its status, the seconds it took and the bytes sent by then."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    framing = f"Content-Length: {total}" if announced else "Transfer-Encoding: chunked"
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", framing]
    lines += [f"{key}: {value}" for key, value in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    piece = b"x" * 1_048_576
    sent = 0

    async def send() -> None:
        nonlocal sent
        with contextlib.suppress(ConnectionError):
            while sent < total:
                writer.write(piece if announced else b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
                sent += len(piece)
            if not announced:
                writer.write(b"0\r\n\r\n")
                await writer.drain()

    started = time.monotonic()
    sending = asyncio.ensure_future(send())
    try:
        status_line = await asyncio.wait_for(reader.readline(), timeout=30)
        took = time.monotonic() - started
    finally:
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return int(status_line.split()[1]), took, sent


async def test_100_mb_bodies_to_the_real_serve_process(db_url: str, fake: FakeTelegram) -> None:
    port = free_port()
    env = web_environment(db_url, fake, port)
    env.update(  # WhatsApp on too; Twilio's API is never called in this test
        TWILIO_ACCOUNT_SID="AC" + "1" * 32,
        TWILIO_AUTH_TOKEN="0123456789abcdef0123456789abcdef",
        TWILIO_WHATSAPP_FROM="whatsapp:+14155238886",
        TWILIO_API_BASE_URL="http://127.0.0.1:9",
    )
    process = await start(["serve"], env)
    hundred_mb = 100 * 1_048_576
    try:
        await healthy(port)
        before = peak_memory(process.pid)
        cases = [
            ("/telegram", {"X-Telegram-Bot-Api-Secret-Token": PROCESS_SECRET}),
            ("/twilio/whatsapp", {"X-Twilio-Signature": "forged"}),
            ("/twilio/status", {}),
        ]
        for path, headers in cases:
            for announced in (True, False):
                status, took, _sent = await post_huge(
                    port, path, headers, hundred_mb, announced=announced
                )
                # Answered long before 100 MB could be read (uvicorn may still take in and drop
                # the rest, to keep the connection: what counts is the answer and the memory).
                assert status == 413, (path, announced)
                assert took < 5.0, (path, announced, took)
        # Four at once, unannounced: still refused, and the process stays small.
        answers = await asyncio.gather(
            *(post_huge(port, "/twilio/whatsapp", {}, hundred_mb, announced=False) for _ in "1234")
        )
        assert [status for status, _took, _sent in answers] == [413] * 4
        grown = peak_memory(process.pid) - before
        assert grown < 30 * 1_048_576, f"peak memory grew by {grown / 1_048_576:.0f} MB"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/healthz")).status_code == 200
    finally:
        err = await stop(process)
    assert "Traceback" not in err


SLOW_DOWN = (
    "You are sending messages faster than I can read them. "
    "I will read your messages again in a minute."
)


async def test_past_the_inbound_limit_one_notice_then_nothing(
    webhook: tuple[Bot, httpx.AsyncClient], fake: FakeTelegram, db: Database
) -> None:
    bot, client = webhook
    notice = t("ar", SLOW_DOWN)
    assert notice != SLOW_DOWN  # in Arabic

    async def post(update: dict[str, Any]) -> None:
        response = await client.post("/telegram", json=update, headers=HEADERS)
        assert response.status_code == 200

    await post(fake.text_update(USER, "/start"))  # 1
    [picker] = await fake.wait_for_sent(1, chat_id=USER)
    await post(fake.callback_update(USER, "lang:ar", message_id=picker["message_id"]))  # 2
    await bot.sender.flush("telegram")
    before = len(fake.sent(USER))
    for number in range(40):  # messages 3 to 42: 18 read, one notice, 21 dropped
        await post(fake.text_update(USER, f"مرحبا {number}"))
    await post(fake.text_update(USER + 1, "/start"))  # someone else is read all the same
    await bot.sender.flush("telegram")
    sent = [message["plain"] for message in fake.sent(USER)[before:]]
    assert sent.count(notice) == 1
    assert sent[-1] == notice  # nothing after it: the rest were dropped, no reply queued
    assert len(fake.sent(USER + 1)) == 1
    assert await count(db, ProcessedInbound) == 43  # every message recorded as handled
    async with db.transaction() as session:
        rows = await session.scalar(
            select(func.count()).where(OutboxMessage.address == f"telegram:{USER}")
        )
    assert rows == len(fake.sent(USER))  # nothing else queued for them

    # A minute later they are read again.
    real = bot.engine.limit.clock
    bot.engine.limit.clock = lambda: real() + 61
    await post(fake.text_update(USER, "/menu"))
    await bot.sender.flush("telegram")
    later = [message["plain"] for message in fake.sent(USER)[before + len(sent) :]]
    assert later
    assert notice not in later


async def test_a_role_in_the_database_lifts_the_inbound_limit_for_one_read_a_minute(
    webhook: tuple[Bot, httpx.AsyncClient],
    fake: FakeTelegram,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bot, client = webhook
    notice = t("ar", SLOW_DOWN)
    staff, stranger = USER + 10, USER + 11
    async with db.transaction() as session:  # given on the People page, not in COORDINATORS
        await roles.set_role(session, f"telegram:{staff}", "viewer", "telegram:1000")
    assert not bot.settings.is_coordinator(Address("telegram", str(staff)))
    asked: list[str] = []
    has_role = bot.engine._has_role

    async def counted(address: str) -> bool:
        asked.append(address)  # the read is the engine's own; only counted here
        return await has_role(address)

    monkeypatch.setattr(bot.engine, "_has_role", counted)

    async def post(update: dict[str, Any]) -> None:
        response = await client.post("/telegram", json=update, headers=HEADERS)
        assert response.status_code == 200

    for person in (staff, stranger):
        await post(fake.text_update(person, "/start"))
        [picker] = await fake.wait_for_sent(1, chat_id=person)
        await post(fake.callback_update(person, "lang:ar", message_id=picker["message_id"]))
    await bot.sender.flush("telegram")
    before = {person: len(fake.sent(person)) for person in (staff, stranger)}
    assert asked == []  # under the limit nobody's role is read
    for number in range(40):  # 18 within the limit, 22 past it
        for person in (staff, stranger):
            await post(fake.text_update(person, f"/menu {number}"))
    await bot.sender.flush("telegram")
    answered = [m["plain"] for m in fake.sent(staff)[before[staff] :]]
    limited = [m["plain"] for m in fake.sent(stranger)[before[stranger] :]]
    # The viewer is answered to the last message; the stranger is told once, then dropped.
    assert notice not in answered
    assert len(answered) >= 40
    assert limited.count(notice) == 1
    assert limited[-1] == notice
    assert len(limited) == 19
    # One read each for 22 messages past the limit: the answer holds for the minute.
    assert sorted(asked) == [f"telegram:{staff}", f"telegram:{stranger}"]


def test_the_inbound_limit_counts_each_person_over_the_last_minute() -> None:
    now = [0.0]
    limit = InboundLimit(3, clock=lambda: now[0])
    said = []
    for at in (0, 10, 20, 30, 40):
        now[0] = at
        said.append(limit.check("telegram:1"))
    assert said == ["read", "read", "read", "tell", "drop"]
    assert limit.check("telegram:2") == "read"  # another person is counted apart
    now[0] = 59.9
    assert limit.check("telegram:1") == "drop"
    now[0] = 60.1  # the message read at 0 is a minute old: room for one
    assert limit.check("telegram:1") == "read"
    assert limit.check("telegram:1") == "tell"  # full again: told again, once
    assert limit.check("telegram:1") == "drop"


async def test_the_inbound_limit_asks_for_a_role_only_past_it_once_a_minute() -> None:
    now = [50.0]
    limit = InboundLimit(2, clock=lambda: now[0])
    role = {"telegram:1": True}
    asked: list[str] = []

    async def has_role(address: str) -> bool:
        asked.append(address)
        return role.get(address, False)

    said = [await limit.verdict("telegram:1", has_role) for _ in range(5)]
    assert said == ["read"] * 5
    assert asked == ["telegram:1"]  # past the limit, one question for the minute
    assert [await limit.verdict("telegram:2", has_role) for _ in range(4)] == [
        "read",
        "read",
        "tell",
        "drop",
    ]
    assert asked == ["telegram:1", "telegram:2"]
    role["telegram:1"] = False  # the role is taken away
    now[0] = 109.0
    assert await limit.verdict("telegram:1", has_role) == "read"  # the answer holds a minute
    now[0] = 110.5
    said = [await limit.verdict("telegram:1", has_role) for _ in range(4)]
    assert said == ["read", "read", "tell", "drop"]  # asked again: now limited like anyone
    assert asked == ["telegram:1", "telegram:2", "telegram:1"]


async def test_after_a_restart_the_first_send_goes_out_at_once(
    settings: Any, fake: FakeTelegram, db: Database
) -> None:
    async with db.transaction() as session:  # a reply left unsent by the last run
        await engine_enqueue(
            session, [Outbound(Address("telegram", str(USER)), "Still here")], None
        )
    async with running(telegram_settings(settings, fake)) as bot:
        await fake.wait_for_sent(1, chat_id=USER)
        await bot.sender.flush("telegram")
    async with db.transaction() as session:
        row = await session.scalar(select(OutboxMessage))
    assert row is not None
    assert (row.status, row.attempts, row.error) == ("sent", 1, None)


async def test_one_persons_backlog_does_not_hold_up_anothers_reply(
    settings: Any, fake: FakeTelegram, db: Database
) -> None:
    """More replies queued for one chat than the sender reads at once (its batch is 500), at
    Telegram's pace of one a second to a chat: a newcomer's reply still goes out at once."""
    configured = dataclasses.replace(
        telegram_settings(
            settings, fake, public_url="https://bot.example.org", telegram_webhook_secret=SECRET
        ),
        telegram_chat_rate=1.0,
    )
    flooder, newcomer = 5001, 5002
    async with running(configured) as bot:
        transport = httpx.ASGITransport(app=create_app(bot.db, bot.telegram))
        async with httpx.AsyncClient(transport=transport, base_url="http://bot.test") as client:

            async def waiting_for(chat: int) -> int:
                async with db.transaction() as session:
                    found = await session.scalar(
                        select(func.count()).where(
                            OutboxMessage.address == f"telegram:{chat}",
                            OutboxMessage.status == "pending",
                        )
                    )
                return int(found or 0)

            number = 0
            while await waiting_for(flooder) <= 600:
                for _ in range(50):
                    number += 1
                    update = fake.text_update(flooder, f"hello {number}")
                    response = await client.post("/telegram", json=update, headers=HEADERS)
                    assert response.status_code == 200
            started = time.monotonic()
            update = fake.text_update(newcomer, "/start")
            assert (
                await client.post("/telegram", json=update, headers=HEADERS)
            ).status_code == 200
            [picker] = await fake.wait_for_sent(1, chat_id=newcomer, timeout=10)
            took = time.monotonic() - started
            assert "English" in str(picker["reply_markup"])
            assert took < 2.0, f"the newcomer waited {took:.1f} s"
            assert await waiting_for(flooder) > 500  # the backlog is still there
