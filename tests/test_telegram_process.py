"""The real `icssi-bot` process with Telegram configured: polling, and webhook behind `serve`;
two of them on one database."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot.db import Database, upgrade_async
from bot.models import Contact
from tests.conftest import ON_POSTGRES, user_url
from tests.fake_telegram import FakeTelegram
from tests.net import free_port, healthy

SECRET = "process-test-secret-0123456789"


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


def environment(db_url: str, fake: FakeTelegram, **more: str) -> dict[str, str]:
    """The bot's environment: a fresh database and the fake as Telegram."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM", "PUBLIC_URL"))}
    env.update(
        DATABASE_URL=user_url(db_url),
        TELEGRAM_BOT_TOKEN=fake.token,
        TELEGRAM_API_BASE_URL=fake.base_url,
        TELEGRAM_FILE_BASE_URL=fake.base_file_url,
        TELEGRAM_CHAT_RATE="50",
        **more,
    )
    return env


def web_environment(db_url: str, fake: FakeTelegram, port: int) -> dict[str, str]:
    """A web process's environment, on `port`."""
    return environment(
        db_url,
        fake,
        PUBLIC_URL="https://bot.example.org",
        TELEGRAM_WEBHOOK_SECRET=SECRET,
        HOST="127.0.0.1",
        PORT=str(port),
    )


async def start(
    args: list[str], env: dict[str, str], *, migrate: bool = True
) -> asyncio.subprocess.Process:
    """Migrate the database, then start `icssi-bot` with `args`."""
    if migrate:
        upgrade = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "db", "upgrade", env=env
        )
        assert await asyncio.wait_for(upgrade.wait(), timeout=120) == 0
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def stop(process: asyncio.subprocess.Process) -> str:
    """SIGTERM, then wait for a clean exit; return what it wrote to stderr."""
    process.send_signal(signal.SIGTERM)
    _out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, err.decode()
    return err.decode()


async def test_run_polls_telegram_and_stops_cleanly(db_url: str, fake: FakeTelegram) -> None:
    process = await start(["run"], environment(db_url, fake))
    try:
        fake.push_update(fake.text_update(77, "/start", language_code="ar"))
        [picker] = await fake.wait_for_sent(1, chat_id=77, timeout=30)
        assert "العربية" in str(picker["reply_markup"])
        assert {"ar", "en", ""} <= set(fake.commands)
    finally:
        err = await stop(process)
    assert "Traceback" not in err


async def test_serve_takes_the_webhook(db_url: str, fake: FakeTelegram) -> None:
    port = free_port()
    process = await start(["serve"], web_environment(db_url, fake, port))
    try:
        await healthy(port)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert fake.webhook is not None
            assert fake.webhook["url"] == "https://bot.example.org/telegram"
            update = fake.text_update(78, "/start")
            refused = await client.post("/telegram", json=update)
            assert refused.status_code == 403
            accepted = await client.post(
                "/telegram", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
            )
            assert accepted.status_code == 200
            [picker] = await fake.wait_for_sent(1, chat_id=78, timeout=30)
            assert "English" in str(picker["reply_markup"])
    finally:
        err = await stop(process)
    assert "Traceback" not in err


@pytest.mark.skipif(not ON_POSTGRES, reason="SQLite serves one process; several need PostgreSQL")
async def test_two_web_processes_send_a_bulletin_once(
    db_url: str, fake: FakeTelegram, tmp_path: Path
) -> None:
    chats = list(range(501, 531))
    await upgrade_async(db_url)
    db = Database(db_url)
    try:
        async with db.transaction() as session:  # the subscribers
            session.add_all(
                Contact(address=f"telegram:{chat}", channel="telegram", subscribed=True)
                for chat in chats
            )
    finally:
        await db.close()
    ports = [free_port(), free_port()]
    processes = list(
        await asyncio.gather(
            *(start(["serve"], web_environment(db_url, fake, p), migrate=False) for p in ports)
        )
    )
    try:
        await asyncio.gather(*(healthy(port) for port in ports))
        text = tmp_path / "en.txt"
        for title, words in (("Water", "Water is back in Hay al-Amel."), ("Later", "Later.")):
            text.write_text(words, encoding="utf-8")
            created = await asyncio.create_subprocess_exec(
                sys.executable,
                *("-m", "bot.cli", "bulletin", "create", "--title-en", title),
                *("--text-en", str(text), "--now", "--yes"),
                env=web_environment(db_url, fake, ports[0]),
            )
            assert await asyncio.wait_for(created.wait(), timeout=120) == 0
            await fake.wait_for_sent(len(chats), timeout=60)
        # The later bulletin reached everyone: a second copy of the first would have by then.
        for chat in chats:
            await fake.wait_for_sent(2, chat_id=chat, timeout=60)
        firsts = [sum("Water is back" in m["plain"] for m in fake.sent(chat)) for chat in chats]
        assert firsts == [1] * len(chats)
        assert [len(fake.sent(chat)) for chat in chats] == [2] * len(chats)
    finally:
        errors = [await stop(process) for process in processes]
    assert not any("Traceback" in err for err in errors)


async def test_a_coordinator_gets_a_command_menu_of_their_own(
    db_url: str, fake: FakeTelegram
) -> None:
    env = environment(db_url, fake, COORDINATORS="telegram:1000")
    from tests.test_bulletin import run_cli

    for args in (["db", "upgrade"], ["people", "add", "telegram:1001", "editor"]):
        code, _out, err = await run_cli(args, db_url)
        assert code == 0, err
    process = await start(["run"], env)
    try:
        fake.push_update(fake.text_update(1000, "/start"))
        await fake.wait_for_sent(1, chat_id=1000, timeout=30)
    finally:
        err = await stop(process)
    assert "Traceback" not in err
    everyone = [c["command"] for c in fake.commands[""]]
    assert "reports" not in everyone
    menus = {
        json.loads(scope)["chat_id"]: {c["command"] for c in commands}
        for (scope, _language), commands in fake.scoped_commands.items()
        if "chat" in scope
    }
    assert set(menus) == {1000, 1001}
    assert {"reports", "report", "signatures", "bulletin", "export", "console", "start"} <= (
        menus[1000]
    )
    # An editor's menu: the bulletins and the console, not the reports.
    assert {"bulletin", "console", "start"} <= menus[1001]
    assert not {"reports", "report", "signatures", "export"} & menus[1001]
