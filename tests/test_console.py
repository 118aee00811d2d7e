"""The console chat as a person uses it: the real command, driven through a pipe."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys

import pytest

from handlers.declaration import pages
from tests.conftest import ON_POSTGRES, user_url
from tests.helpers import t


@pytest.fixture
def env(db_url: str) -> dict[str, str]:
    """The environment of a fresh installation with its own (not yet migrated) database."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM", "TWILIO"))}
    environment["DATABASE_URL"] = user_url(db_url)
    environment["PYTHONIOENCODING"] = "utf-8"
    return environment


def run_icssi_bot(
    args: list[str], env: dict[str, str], stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run `icssi-bot` with `stdin` piped in, and let it finish."""
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )


def icssi_bot(args: list[str], env: dict[str, str], stdin: str = "") -> str:
    """Run `icssi-bot` with `stdin` piped in; return what it printed (it must succeed)."""
    result = run_icssi_bot(args, env, stdin)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def test_a_whole_conversation_through_a_pipe_then_a_restart(env: dict[str, str]) -> None:
    icssi_bot(["db", "upgrade"], env)
    out = icssi_bot(["chat", "--user", "layla"], env, "٢\n٢\n١\n")
    # Printed in order: the picker, the confirmation and menu, the declaration's parts.
    picker = out.index("1. العربية")
    assert out.index("2. کوردی") > picker
    confirm = out.index(t("ckb", "Thank you. I will write to you in English."))
    first = out.index(pages("ckb")[0])
    second = out.index(pages("ckb")[1])
    assert picker < confirm < first < second
    assert f"1. {t('ckb', 'Previous part')}" in out[second:]

    # Started again: the same place, and the numbers still mean what was shown.
    again = icssi_bot(["chat", "--user", "layla"], env, "1\n")
    assert again.index(pages("ckb")[1]) < again.index(pages("ckb")[0])
    assert "العربية" not in again  # no language question the second time


def test_end_of_input_at_once_exits_cleanly(env: dict[str, str]) -> None:
    icssi_bot(["db", "upgrade"], env)
    out = icssi_bot(["chat"], env, "")
    assert "English" in out


def test_a_user_name_too_long_for_an_address_is_refused(env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "chat", "--user", "x" * 51],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "--user: expected a name of 1 to 50 characters" in result.stderr


def test_make_run_without_token_is_the_console(env: dict[str, str]) -> None:
    icssi_bot(["db", "upgrade"], env)
    out = icssi_bot(["run"], env, "3\n/menu\n")
    assert "Main menu" in out


def test_the_chat_on_a_new_database_makes_it(env: dict[str, str]) -> None:
    """No `db upgrade` first: SQLite, the embedded default, is made at start; PostgreSQL says in
    one line what to run."""
    result = run_icssi_bot(["chat", "--user", "new"], env, "3\n")
    if ON_POSTGRES:
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            "icssi-bot: the database is not at this version: run `icssi-bot db upgrade` first"
        ]
        return
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert t("en", "Thank you. I will write to you in English.") in result.stdout


class Terminal:
    """`icssi-bot` in a terminal of its own: lines typed in, what it printed read back."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.printed = ""

    @classmethod
    async def open(cls, args: list[str], env: dict[str, str]) -> Terminal:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.cli",
            *args,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def type(self, *lines: str) -> None:
        assert self.process.stdin is not None
        for line in lines:
            self.process.stdin.write(f"{line}\n".encode())
        await self.process.stdin.drain()

    async def expect(self, text: str, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Read until `text` has been printed, or fail after `timeout` seconds."""
        await self.expect_match(re.compile(re.escape(text)), timeout)

    async def expect_match(
        self,
        pattern: re.Pattern[str],
        timeout: float = 30.0,  # noqa: ASYNC109
    ) -> re.Match[str]:
        """Read until `pattern` matches what was printed, or fail after `timeout` seconds."""
        assert self.process.stdout is not None
        deadline = asyncio.get_running_loop().time() + timeout
        text = pattern.pattern
        while (found := pattern.search(self.printed)) is None:
            left = deadline - asyncio.get_running_loop().time()
            assert left > 0, f"{text!r} not printed; printed so far:\n{self.printed[-2000:]}"
            try:
                chunk = await asyncio.wait_for(self.process.stdout.read(4096), left)
            except TimeoutError:
                continue
            if not chunk:
                raise AssertionError(f"{text!r} not printed before the end:\n{self.printed}")
            self.printed += chunk.decode("utf-8")
        return found

    async def close(self) -> str:
        """End of input (Ctrl-D); what it wrote to stderr."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        out, err = await asyncio.wait_for(self.process.communicate(), timeout=60)
        self.printed += out.decode("utf-8")
        assert self.process.returncode == 0, err.decode()
        return err.decode()


@pytest.mark.skipif(ON_POSTGRES, reason="`make run` with no token: the embedded SQLite file")
async def test_make_run_sends_a_bulletin_written_in_another_console(env: dict[str, str]) -> None:
    """`make run` (no token) runs the whole bot: a bulletin sent now from a coordinator's own
    console session reaches the subscriber in the first terminal, rendered in their language;
    each terminal shows only its own person's messages."""
    env = {**env, "COORDINATORS": "console:coord"}
    # Dana subscribed earlier, and has no terminal open now.
    icssi_bot(["db", "upgrade"], env)
    icssi_bot(["chat", "--user", "dana"], env, "3\nBulletin\nSubscribe\n")
    subscriber = await Terminal.open(["run"], env)
    try:
        await subscriber.type("3")  # English
        await subscriber.expect("Main menu")
        await subscriber.type("Bulletin", "Subscribe")
        await subscriber.expect(t("en", "Unsubscribe"))
        coordinator = await Terminal.open(["chat", "--user", "coord"], env)
        await coordinator.type("3", "/bulletin", "New bulletin", "English")
        await coordinator.type("Water is back", "Water is back in Hay al-Amel since this morning.")
        await coordinator.type("Done writing", "Skip", "Send now")
        await coordinator.expect("goes to 2 subscribers")
        await coordinator.type("1")
        await coordinator.expect("Sending has started")
        await subscriber.expect("Water is back in Hay al-Amel since this morning.")
        await subscriber.expect("Bulletin B-")  # the footer, as rendered for this person
        err = await coordinator.close()
        assert "Traceback" not in err
    finally:
        err = await subscriber.close()
    assert "Traceback" not in err
    assert "KeyError" not in err
    # One terminal, one person: none of the coordinator's screens reached the subscriber's.
    assert "New bulletin" not in subscriber.printed
    assert "Sending has started" not in subscriber.printed
    assert "Unsubscribe" not in coordinator.printed
    assert subscriber.printed.count("Water is back in Hay al-Amel") == 1  # not Dana's copy too
    # Dana's copy waited for Dana's own terminal.
    dana = icssi_bot(["chat", "--user", "dana"], env, "")
    assert "Water is back in Hay al-Amel since this morning." in dana


@pytest.mark.skipif(ON_POSTGRES, reason="`make run` with no token: the embedded SQLite file")
async def test_make_run_serves_the_web_console_beside_the_chat(env: dict[str, str]) -> None:
    """With no token, the console chat serves the web console on PORT too; /console in the
    chat gives a coordinator a link that signs them in there."""
    import httpx

    from tests.net import free_port, healthy

    port = free_port()
    env = {**env, "COORDINATORS": "console:me", "PORT": str(port)}
    icssi_bot(["db", "upgrade"], env)
    terminal = await Terminal.open(["run"], env)
    try:
        await terminal.type("3")
        await terminal.expect("Main menu")
        await healthy(port)
        await terminal.type("/console")
        await terminal.expect("do not pass it on")
        found = await terminal.expect_match(
            re.compile(rf"http://127\.0\.0\.1:{port}(/console/sign-in/[\w-]+)\W")
        )
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            signed = await client.post(found.group(1))
            assert signed.status_code == 303
            overview = await client.get("/console/", params={"lang": "en"})
            assert "Overview" in overview.text
    finally:
        err = await terminal.close()
    assert f"the coordinators' console is at http://127.0.0.1:{port}/console/" in err
