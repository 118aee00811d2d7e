"""Logs: text or JSON lines, and never a person's address, phone number or e-mail."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot import logs
from tests.conftest import user_url


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("sending to whatsapp:+9647701234567 failed", "sending to whatsapp:*** failed"),
        ("chat telegram:123456789 blocked", "chat telegram:*** blocked"),
        ("The 'To' number +964 770 123 4567 is not valid", "The 'To' number *** is not valid"),
        ("call 07701234567 please", "call *** please"),
        ("write to zainab@amal.example.org", "write to ***@***"),
        ("outbox message 42 sent after 3 tries", "outbox message 42 sent after 3 tries"),
        ("retry in 2.5 s", "retry in 2.5 s"),
        ("scheduled for 2026-12-01 09:00", "scheduled for 2026-12-01 09:00"),
        ("local 0770 123 4567 and 0770-123-4567", "local *** and ***"),
        ("bulletin B-7KQ2MX: 1000 deliveries queued", "bulletin B-7KQ2MX: 1000 deliveries queued"),
    ],
)
def test_personal_data_is_masked(line: str, expected: str) -> None:
    assert logs.redact(line) == expected


def test_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup("INFO", "json")
    try:
        logging.getLogger("bot.test").warning("could not reach %s", "whatsapp:+9647701234567")
        try:
            raise ValueError("bad number +9647701234567")
        except ValueError:
            logging.getLogger("bot.test").exception("step failed")
    finally:
        logging.getLogger().handlers.clear()
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert first["level"] == "WARNING"
    assert first["logger"] == "bot.test"
    assert first["message"] == "could not reach whatsapp:***"
    assert second["message"] == "step failed"
    assert "ValueError: bad number ***" in second["exception"]
    assert "9647701234567" not in json.dumps([first, second])


def test_text_lines_keep_their_time(capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup("INFO", "text")
    try:
        logging.getLogger("bot.test").info("sent to %s", "telegram:123456789")
    finally:
        logging.getLogger().handlers.clear()
    line = capsys.readouterr().err.strip()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO bot.test: sent to telegram:\*\*\*", line
    )


def test_the_real_command_logs_json(tmp_path: Path, db_url: str) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": user_url(db_url),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
    }
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "db", "upgrade"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert lines, "expected at least one log line"
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)


def test_a_bad_log_format_is_refused() -> None:
    from bot.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        load_settings({"LOG_FORMAT": "xml"})


async def test_no_message_text_is_logged_even_at_debug(db_url: str) -> None:
    """The real bot at LOG_LEVEL=DEBUG, a family's answers through Telegram (the fake): neither
    our code nor a library (python-telegram-bot logs each request's parameters at DEBUG,
    SQLAlchemy each statement's) writes what the family said."""
    from tests.fake_telegram import FakeTelegram
    from tests.test_telegram_process import environment, start, stop

    place = "Khanke camp, tent 7 behind the clinic"
    async with FakeTelegram() as fake:
        process = await start(["run"], environment(db_url, fake, LOG_LEVEL="DEBUG"))
        try:

            async def press(data: str, count: int) -> None:
                last = fake.sent(88)[-1]
                fake.push_update(fake.callback_update(88, data, message_id=last["message_id"]))
                await fake.wait_for_sent(count, chat_id=88, timeout=30)

            fake.push_update(fake.text_update(88, "/start"))
            await fake.wait_for_sent(1, chat_id=88, timeout=30)
            sent = 1
            for data in ("lang:en", "menu:report", "r:agree", "gov:IQG09", "dist:IQG09Q04"):
                sent = len(fake.sent(88)) + 1
                await press(data, sent)
            fake.push_update(fake.text_update(88, place))
            await fake.wait_for_sent(len(fake.sent(88)) + 1, chat_id=88, timeout=30)
            before = len(fake.sent(88))
            await press("nav:back", before + 1)  # "Your answer now: <place>"
            deadline = asyncio.get_running_loop().time() + 30
            while not any(place in str(m.get("text")) for m in fake.sent(88)[before:]):
                assert asyncio.get_running_loop().time() < deadline, fake.sent(88)[before:]
                await asyncio.sleep(0.05)
        finally:
            err = await stop(process)
    assert "DEBUG" in err or "INFO" in err  # it did log
    assert place not in err
    assert "tent 7" not in err
