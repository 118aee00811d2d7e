"""python-telegram-bot over aiohttp: errors as with httpx, and the proxy of the environment."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from telegram import Bot
from telegram.error import NetworkError, TimedOut

from bot.channels.telegram_http import AiohttpRequest
from tests.fake_telegram import GET_ME, FakeTelegram
from tests.net import free_port

TOKEN = "123456:TEST-token"


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(TOKEN) as server:
        yield server


def bot(base_url: str, **timeouts: float) -> Bot:
    """A python-telegram-bot Bot that makes its requests with aiohttp."""
    return Bot(TOKEN, base_url=base_url, request=AiohttpRequest(4, **timeouts))


async def test_requests_reach_the_bot_api(fake: FakeTelegram) -> None:
    async with bot(fake.base_url) as telegram:
        sent = await telegram.send_message(77, "<b>Hello</b> &amp; welcome", parse_mode="HTML")
        assert telegram.username == GET_ME["username"]
    assert sent.text == "Hello & welcome"
    assert fake.last_text(77) == "Hello & welcome"


async def test_no_server_is_a_network_error() -> None:
    with pytest.raises(NetworkError, match="aiohttp"):
        async with bot(f"http://127.0.0.1:{free_port()}/bot"):  # initialize() asks getMe
            pass


async def test_a_server_that_does_not_answer_is_a_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(TimedOut):
            async with bot(f"http://127.0.0.1:{port}/bot", read_timeout=0.3):
                pass
    finally:
        server.close()
        await server.wait_closed()


async def test_the_proxy_of_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    targets: list[str] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """An HTTP proxy that answers getMe itself (nothing leaves 127.0.0.1)."""
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:  # the client closed the connection
                break
            lines = head.decode().split("\r\n")
            targets.append(lines[0])
            sizes = [
                line.split(":")[1] for line in lines if line.lower().startswith("content-length")
            ]
            await reader.readexactly(int(sizes[0]) if sizes else 0)
            body = json.dumps({"ok": True, "result": GET_ME}).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    for name in ("http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    try:
        async with bot("http://api.telegram.invalid/bot") as telegram:
            me = await telegram.get_me()
    finally:
        server.close()
        await server.wait_closed()
    assert me.username == GET_ME["username"]
    assert targets == [f"POST http://api.telegram.invalid/bot{TOKEN}/getMe HTTP/1.1"] * 2


async def test_no_proxy_hosts_are_reached_directly(
    fake: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # nothing listens
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    async with bot(fake.base_url) as telegram:
        await telegram.send_message(78, "direct")
    assert fake.last_text(78) == "direct"
