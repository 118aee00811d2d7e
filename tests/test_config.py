"""Settings: defaults, .env and the environment, and one clear line for every bad value."""

from __future__ import annotations

import os
import re
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


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LOG_FORMAT", "xml"),
        ("PORT", "0"),
        ("PUBLIC_URL", "bot.example.org"),
        ("PUBLIC_URL", "ftp://bot.example.org"),
        ("PUBLIC_URL", "https://bot example.org"),
        ("TELEGRAM_API_BASE_URL", "127.0.0.1:8081/bot"),
        ("TELEGRAM_FILE_BASE_URL", "file/bot"),
        ("TELEGRAM_RATE", "0"),
        ("TELEGRAM_RATE", "-1"),
        ("TELEGRAM_RATE", "fast"),
        ("TELEGRAM_RATE", "10001"),
        ("TELEGRAM_CHAT_RATE", "0"),
        ("REPORT_RETENTION_DAYS", "0"),
        ("REPORT_RETENTION_DAYS", "36501"),
        ("REPORT_RETENTION_DAYS", "a year"),
        ("REPORTS_PER_DAY", "0"),
        ("REPORTS_PER_DAY", "1001"),
        ("REPORT_ALERT_NEEDS", "food,cake"),
        ("BULLETIN_GRACE_MINUTES", "0"),
        ("TELEGRAM_CHANNEL_ID", "icssi_news"),
        ("TELEGRAM_CHANNEL_ID", "@abc"),
        ("TELEGRAM_CHANNEL_ID", "-12345"),
        ("TWILIO_ACCOUNT_SID", "AC123"),
        ("TWILIO_WHATSAPP_FROM", "07701234567"),
        ("TWILIO_WHATSAPP_FROM", "+0123456789"),
        ("TWILIO_API_BASE_URL", "localhost:4010"),
        ("TWILIO_RATE", "0"),
        ("TWILIO_TEMPLATE_BULLETIN_AR", "HX12"),
        ("TWILIO_TEMPLATE_BULLETIN_EN", "MG" + "0" * 32),
        ("TRUST_PROXY", "maybe"),
    ],
)
def test_every_check_names_its_variable_and_the_value(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({variable: value})
    assert raised.value.variable == variable
    assert str(raised.value).startswith(f"{variable}: expected ")
    assert f"(got {value!r})" in str(raised.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TELEGRAM_BOT_TOKEN", "not-a-token"),
        ("TELEGRAM_WEBHOOK_SECRET", "short"),
        ("TWILIO_AUTH_TOKEN", "x y"),
    ],
)
def test_a_bad_secret_is_named_but_never_shown(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({variable: value})
    assert raised.value.variable == variable
    assert value not in str(raised.value)
    assert raised.value.__cause__ is None  # nor in a chained traceback


TWILIO = {
    "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "TWILIO_AUTH_TOKEN": "a" * 32,
    "TWILIO_WHATSAPP_FROM": "whatsapp:+14155238886",
}


@pytest.mark.parametrize("left_out", sorted(TWILIO))
def test_whatsapp_needs_all_three_twilio_settings(left_out: str) -> None:
    env = {k: v for k, v in TWILIO.items() if k != left_out}
    env["PUBLIC_URL"] = "https://bot.example.org"
    with pytest.raises(ConfigError) as raised:
        load_settings(env)
    assert raised.value.variable == left_out
    assert "WhatsApp needs all of" in str(raised.value)


def test_whatsapp_needs_a_public_url() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(TWILIO)
    assert raised.value.variable == "PUBLIC_URL"
    env = {**TWILIO, "PUBLIC_URL": "https://bot.example.org"}
    assert load_settings(env).twilio_whatsapp_from == "whatsapp:+14155238886"


def test_a_telegram_webhook_needs_its_secret() -> None:
    env = {"TELEGRAM_BOT_TOKEN": "123456:" + "A" * 35, "PUBLIC_URL": "https://bot.example.org"}
    with pytest.raises(ConfigError) as raised:
        load_settings(env)
    assert raised.value.variable == "TELEGRAM_WEBHOOK_SECRET"
    settings = load_settings({**env, "TELEGRAM_WEBHOOK_SECRET": "s" * 16})
    assert settings.telegram_webhook_secret == "s" * 16


def test_the_edges_of_each_range_are_accepted() -> None:
    settings = load_settings(
        {
            "PORT": "65535",
            "TELEGRAM_RATE": "10000",
            "TELEGRAM_CHAT_RATE": "0.05",
            "REPORT_RETENTION_DAYS": "٣٦٥٠٠",  # in Arabic-Indic digits
            "REPORTS_PER_DAY": "۱۰۰۰",  # in Sorani's
            "BULLETIN_GRACE_MINUTES": "1",
            "REPORT_ALERT_NEEDS": " Food , health ",
            "TELEGRAM_CHANNEL_ID": "-1001234567890",
            "TWILIO_TEMPLATE_BULLETIN_AR": "HX" + "a" * 32,
            "TRUST_PROXY": "Yes",
            "LOG_FORMAT": "JSON",
        }
    )
    assert (settings.port, settings.telegram_rate, settings.telegram_chat_rate) == (
        65535,
        10000.0,
        0.05,
    )
    assert (settings.report_retention_days, settings.reports_per_day) == (36500, 1000)
    assert settings.bulletin_grace_minutes == 1
    assert settings.report_alert_needs == frozenset({"food", "health"})
    assert settings.telegram_channel_id == "-1001234567890"
    assert settings.twilio_template_bulletin_ar == "HX" + "a" * 32
    assert settings.trust_proxy is True
    assert settings.log_format == "json"
    assert load_settings({"PORT": "1", "REPORTS_PER_DAY": "1"}).port == 1


def test_every_setting_is_documented() -> None:
    """Each variable config.py reads is in README's table and in .env.example."""
    root = Path(__file__).parent.parent
    code = (root / "bot" / "config.py").read_text(encoding="utf-8")
    names = set(re.findall(r'take\(\s*f?"([A-Z_]+)', code)) - {"TWILIO_TEMPLATE_BULLETIN_"}
    names |= {"TWILIO_TEMPLATE_BULLETIN_AR", "TWILIO_TEMPLATE_BULLETIN_EN"}
    readme = (root / "README.md").read_text(encoding="utf-8")
    example = (root / ".env.example").read_text(encoding="utf-8")
    assert len(names) > 30
    assert not {n for n in names if f"| `{n}` |" not in readme}, "missing in README's table"
    assert not {n for n in names if not re.search(rf"^#? ?{n}=", example, re.M)}, ".env.example"
