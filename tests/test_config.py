"""Settings: defaults, .env and the environment, and one clear line for every bad value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import DEFAULT_DATABASE_URL, ConfigError, load_settings, read_environment
from bot.messages import Address


def test_defaults() -> None:
    settings = load_settings({})
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    assert settings.database_url.endswith("/data/icssi.db")
    assert settings.default_locale == "ar"
    assert settings.timezone == "Asia/Baghdad"
    assert settings.coordinators == frozenset()


def test_values_are_read() -> None:
    settings = load_settings(
        {
            "DATABASE_URL": "postgresql://bot:secret@db.internal/icssi",
            "DEFAULT_LOCALE": "CKB",
            "TIMEZONE": "Europe/Rome",
            "COORDINATORS": " telegram:12345, whatsapp:+9647701234567 ,",
            "PORT": "9000",
        }
    )
    assert settings.database_url == "postgresql+asyncpg://bot:secret@db.internal/icssi"
    assert settings.default_locale == "ckb"
    assert settings.timezone == "Europe/Rome"
    assert settings.coordinators == {
        Address("telegram", "12345"),
        Address("whatsapp", "+9647701234567"),
    }
    assert settings.is_coordinator(Address("telegram", "12345"))
    assert not settings.is_coordinator(Address("telegram", "54321"))
    assert settings.port == 9000


def test_sqlite_urls_get_the_async_driver() -> None:
    assert (
        load_settings({"DATABASE_URL": "sqlite:///data/x.db"}).database_url
        == "sqlite+aiosqlite:///data/x.db"
    )


def test_postgresql_urls_get_the_async_driver_and_its_ssl_spelling() -> None:
    def url(value: str) -> str:
        return load_settings({"DATABASE_URL": value}).database_url

    assert url("postgres://u:p%40ss@db.example.org:5432/icssi") == (
        "postgresql+asyncpg://u:p%40ss@db.example.org:5432/icssi"
    )
    assert url("postgresql://u:pw@db.example.org/icssi?sslmode=require") == (
        "postgresql+asyncpg://u:pw@db.example.org/icssi?ssl=require"
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "mysql://x/y"),
        ("DATABASE_URL", "data/icssi.db"),
        ("DEFAULT_LOCALE", "fr"),
        ("DEFAULT_LOCALE", "ku"),
        ("TIMEZONE", "Baghdad"),
        ("TIMEZONE", "Asia/Nowhere"),
        ("COORDINATORS", "12345"),
        ("COORDINATORS", "telegram:1,sms:+9647700000000"),
        ("COORDINATORS", "telegram:"),
        ("LOG_LEVEL", "LOUD"),
        ("PORT", "eighty"),
        ("PORT", "70000"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({variable: value})
    assert raised.value.variable == variable
    assert str(raised.value).startswith(f"{variable}: expected ")
    assert value in str(raised.value)


def test_the_environment_wins_over_the_env_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("TIMEZONE=Europe/Rome\nDEFAULT_LOCALE=en\n", encoding="utf-8")
    monkeypatch.setenv("DEFAULT_LOCALE", "ckb")
    merged = read_environment(env_file)
    assert merged["TIMEZONE"] == "Europe/Rome"
    assert merged["DEFAULT_LOCALE"] == "ckb"
    settings = load_settings(merged)
    assert (settings.timezone, settings.default_locale) == ("Europe/Rome", "ckb")


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the installed `icssi-bot` command."""
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [("TIMEZONE", "Mars/Olympus"), ("DATABASE_URL", "oracle://x"), ("COORDINATORS", "bob")],
)
def test_start_up_stops_with_one_line_and_no_traceback(
    tmp_path: Path, variable: str, value: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "COORDINATORS")}
    env[variable] = value
    result = run_cli(["chat"], env, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"icssi-bot: configuration error: {variable}: expected ")
    assert "Traceback" not in result.stderr


def test_a_bad_value_in_the_env_file_is_reported_too(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DEFAULT_LOCALE=klingon\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "DEFAULT_LOCALE"}
    result = run_cli(["db", "upgrade"], env, tmp_path)
    assert result.returncode == 2
    assert "DEFAULT_LOCALE: expected one of ar, ckb, en" in result.stderr
