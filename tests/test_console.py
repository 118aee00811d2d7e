"""The console chat as a person uses it: the real command, driven through a pipe."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from handlers.declaration import pages
from tests.conftest import user_url
from tests.helpers import t


@pytest.fixture
def env(db_url: str) -> dict[str, str]:
    """The environment of a fresh installation with its own (not yet migrated) database."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM", "TWILIO"))}
    environment["DATABASE_URL"] = user_url(db_url)
    environment["PYTHONIOENCODING"] = "utf-8"
    return environment


def icssi_bot(args: list[str], env: dict[str, str], stdin: str = "") -> str:
    """Run `icssi-bot` with `stdin` piped in; return what it printed."""
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )
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
