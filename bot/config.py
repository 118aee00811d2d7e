"""One Settings object from the environment and `.env`; a bad value is a clear error."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values
from sqlalchemy.engine import make_url

from bot.crypto import parse_keys
from bot.i18n import LOCALES
from bot.messages import Address
from bot.text import ascii_digits

T = TypeVar("T")

PROJECT_DIR = Path(__file__).resolve().parent.parent
# Humanitarian sectors a family can name as needs (../shared/reference/humanitarian.md).
NEEDS = (
    "food",
    "water",
    "shelter",
    "health",
    "wash",
    "legal",
    "protection",
    "education",
    "cash",
    "psychosocial",
)
DEFAULT_DATABASE_URL = f"sqlite+aiosqlite:///{PROJECT_DIR / 'data' / 'icssi.db'}"


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the variable and what it expects."""

    def __init__(self, variable: str, expected: str, value: str | None = None) -> None:
        shown = "" if value is None else f" (got {value!r})"
        super().__init__(f"{variable}: expected {expected}{shown}")
        self.variable = variable


@dataclass(frozen=True)
class Settings:
    """Every setting of the bot, read once at start-up."""

    database_url: str = DEFAULT_DATABASE_URL
    default_locale: str = "ar"
    timezone: str = "Asia/Baghdad"
    coordinators: frozenset[Address] = field(default_factory=frozenset)
    log_level: str = "INFO"
    log_format: str = "text"
    host: str = "0.0.0.0"
    port: int = 8080
    public_url: str | None = None
    telegram_bot_token: str | None = None
    telegram_api_base_url: str | None = None
    telegram_file_base_url: str | None = None
    telegram_webhook_secret: str | None = None
    telegram_rate: float = 30.0
    # Bulletins sent with allow_paid_broadcast (Telegram charges Stars for each): past 30/s.
    telegram_paid_broadcast: bool = False
    telegram_chat_rate: float = 1.0
    inbound_per_minute: int = 20  # messages one person may send a minute; past it, dropped
    telegram_max_body: int = 1_048_576  # bytes of a webhook request's body, at most
    twilio_max_body: int = 65_536
    data_encryption_keys: tuple[str, ...] = ()
    report_retention_days: int = 365
    reports_per_day: int = 3
    conversation_idle_days: int = 7
    console_session_hours: int = 12  # how long a console sign-in lasts
    referral_answer_hours: int = 72  # how long an organization has to answer a referral
    # The console map's background: a tile URL template ("" for none) and its credit line.
    map_tiles_url: str = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    map_tiles_attribution: str = "© OpenStreetMap contributors"
    # How families reach a coordinator when it is urgent (a phone number, a place), if any.
    urgent_contact: str | None = None
    report_alert_needs: frozenset[str] = frozenset({"protection", "health"})
    bulletin_grace_minutes: int = 60
    telegram_channel_id: str | None = None
    # The bot's @username without the @: the public home page's t.me link and QR code.
    telegram_bot_username: str | None = None
    # Requests one partner API token may make in a minute (per web process); past it, 429.
    api_requests_per_minute: int = 120
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_whatsapp_from: str | None = None  # "whatsapp:+E164"
    twilio_api_base_url: str | None = None
    twilio_rate: float = 80.0
    # Approved WhatsApp templates (Content SIDs) for a bulletin outside the 24-hour window.
    twilio_template_bulletin_ar: str | None = None
    twilio_template_bulletin_en: str | None = None
    trust_proxy: bool = False

    @property
    def channels(self) -> list[str]:
        """The platform channels that are configured (the console needs no setting)."""
        found = ["telegram"] if self.telegram_bot_token else []
        if self.twilio_account_sid:
            found.append("whatsapp")
        return found

    def is_coordinator(self, address: Address) -> bool:
        """Whether an address belongs to a coordinator."""
        return address in self.coordinators


def _database_url(value: str) -> str:
    """Accept the usual spellings and pick the async driver for each database."""
    url = value.strip()
    for prefix, driver in (
        ("sqlite:///", "sqlite+aiosqlite:///"),
        ("postgres://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
    ):
        if url.startswith(prefix):
            url = driver + url[len(prefix) :]
    if not url.startswith(("sqlite+aiosqlite:///", "postgresql+asyncpg://")):
        raise ValueError(value)
    parsed = make_url(url)
    if "sslmode" in parsed.query:
        # Hosting platforms write libpq's sslmode=require; asyncpg calls it ssl=require.
        query = {k: v for k, v in parsed.query.items() if k != "sslmode"}
        query.setdefault("ssl", parsed.query["sslmode"])
        url = parsed.set(query=query).render_as_string(hide_password=False)
    return url


def _locale(value: str) -> str:
    code = value.strip().lower()
    if code not in LOCALES:
        raise ValueError(value)
    return code


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(value) from exc
    return value.strip()


def _addresses(value: str) -> frozenset[Address]:
    return frozenset(Address.parse(part) for part in value.split(",") if part.strip())


def _level(value: str) -> str:
    level = value.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError(value)
    return level


def _log_format(value: str) -> str:
    form = value.strip().lower()
    if form not in ("text", "json"):
        raise ValueError(value)
    return form


def _port(value: str) -> int:
    port = int(value)
    if not 0 < port < 65536:
        raise ValueError(value)
    return port


def _url(value: str) -> str:
    url = value.strip().rstrip("/")
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
        raise ValueError(value)
    return url


def _rate(value: str) -> float:
    rate = float(value)
    if not 0 < rate <= 10_000:
        raise ValueError(value)
    return rate


def _token(value: str) -> str:
    token = value.strip()
    if not re.fullmatch(r"[0-9]{3,15}:[A-Za-z0-9_-]{10,100}", token):
        raise ValueError("not a bot token")
    return token


def _secret(value: str) -> str:
    secret = value.strip()
    if not re.fullmatch(r"[A-Za-z0-9_-]{16,256}", secret):
        raise ValueError("not a webhook secret")
    return secret


def _days(value: str) -> int:
    days = int(ascii_digits(value.strip()))
    if not 1 <= days <= 36500:
        raise ValueError(value)
    return days


def _tiles(value: str) -> str:
    url = value.strip()
    if url.lower() == "none":
        return ""
    if not (
        re.fullmatch(r"https?://[^\s/]+/\S*", url) and all(k in url for k in ["{z}", "{x}", "{y}"])
    ):
        raise ValueError(value)
    return url


def _hours(value: str) -> int:
    hours = int(ascii_digits(value.strip()))
    if not 1 <= hours <= 168:
        raise ValueError(value)
    return hours


def _count(value: str) -> int:
    count = int(ascii_digits(value.strip()))
    if not 1 <= count <= 1000:
        raise ValueError(value)
    return count


def _body_size(value: str) -> int:
    size = int(ascii_digits(value.strip()))
    if not 1024 <= size <= 100 * 1_048_576:
        raise ValueError(value)
    return size


def _needs(value: str) -> frozenset[str]:
    needs = frozenset(part.strip().lower() for part in value.split(",") if part.strip())
    if not needs <= set(NEEDS):
        raise ValueError(value)
    return needs


def _channel(value: str) -> str:
    channel = value.strip()
    if not re.fullmatch(r"@[A-Za-z][A-Za-z0-9_]{4,31}|-100[0-9]{5,15}", channel):
        raise ValueError(value)
    return channel


def _bot_username(value: str) -> str:
    name = value.strip().removeprefix("@")
    # Telegram's rule for a bot's username: 5 to 32 letters, digits and _, ending in "bot".
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{3,30}[Bb][Oo][Tt]", name):
        raise ValueError(value)
    return name


def _per_minute(value: str) -> int:
    count = int(ascii_digits(value.strip()))
    if not 1 <= count <= 100_000:
        raise ValueError(value)
    return count


def _account_sid(value: str) -> str:
    sid = value.strip()
    if not re.fullmatch(r"AC[0-9a-fA-F]{32}", sid):
        raise ValueError(value)
    return sid


def _auth_token(value: str) -> str:
    token = value.strip()
    if not re.fullmatch(r"[A-Za-z0-9_-]{16,128}", token):
        raise ValueError("not an auth token")
    return token


def _whatsapp_number(value: str) -> str:
    number = ascii_digits(value.strip()).removeprefix("whatsapp:").replace(" ", "")
    if not re.fullmatch(r"\+[1-9][0-9]{6,14}", number):
        raise ValueError(value)
    return f"whatsapp:{number}"


def _content_sid(value: str) -> str:
    sid = value.strip()
    if not re.fullmatch(r"HX[0-9a-fA-F]{32}", sid):
        raise ValueError(value)
    return sid


def _flag(value: str) -> bool:
    word = value.strip().lower()
    if word not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
        raise ValueError(value)
    return word in ("1", "true", "yes", "on")


def _text(value: str) -> str:
    if not value.strip():
        raise ValueError(value)
    return value.strip()


def read_environment(env_file: str | Path | None = ".env") -> dict[str, str]:
    """The settings' sources merged: the `.env` file, then the environment, which wins."""
    merged: dict[str, str] = {}
    if env_file and Path(env_file).exists():
        merged.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    merged.update(os.environ)
    return merged


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from `env` (default: `.env` and the environment); raise ConfigError."""
    source = read_environment() if env is None else env
    values: dict[str, object] = {}

    def take(
        name: str, attr: str, parse: Callable[[str], T], expected: str, secret: bool = False
    ) -> None:
        raw = source.get(name)
        if raw is None or raw.strip() == "":
            return  # unset or empty: the default stands
        try:
            values[attr] = parse(raw)
        except (ValueError, TypeError) as exc:
            raise ConfigError(name, expected, None if secret else raw) from None if secret else exc

    take(
        "DATABASE_URL",
        "database_url",
        _database_url,
        "a database URL such as sqlite:///data/icssi.db or postgresql://user:pass@host/db",
    )
    take("DEFAULT_LOCALE", "default_locale", _locale, "one of " + ", ".join(LOCALES))
    take("TIMEZONE", "timezone", _timezone, "an IANA time zone such as Asia/Baghdad")
    take(
        "COORDINATORS",
        "coordinators",
        _addresses,
        "comma-separated addresses such as telegram:12345,whatsapp:+9647701234567",
    )
    take("LOG_LEVEL", "log_level", _level, "DEBUG, INFO, WARNING or ERROR")
    take("LOG_FORMAT", "log_format", _log_format, "text or json")
    take("HOST", "host", _text, "an interface address such as 0.0.0.0")
    take("PORT", "port", _port, "a port number from 1 to 65535")
    take(
        "PUBLIC_URL",
        "public_url",
        _url,
        "the bot's public https URL, e.g. https://bot.example.org",
    )
    take(
        "TELEGRAM_BOT_TOKEN",
        "telegram_bot_token",
        _token,
        "the token @BotFather gave, such as 123456789:AAF...",
        secret=True,
    )
    take(
        "TELEGRAM_API_BASE_URL",
        "telegram_api_base_url",
        _url,
        "the Bot API address ending in /bot, e.g. http://127.0.0.1:8081/bot",
    )
    take(
        "TELEGRAM_FILE_BASE_URL",
        "telegram_file_base_url",
        _url,
        "the Bot API file address ending in /file/bot",
    )
    take(
        "TELEGRAM_WEBHOOK_SECRET",
        "telegram_webhook_secret",
        _secret,
        "16 to 256 characters of A-Z, a-z, 0-9, _ and -",
        secret=True,
    )
    take("TELEGRAM_RATE", "telegram_rate", _rate, "messages per second, above 0")
    take("TELEGRAM_CHAT_RATE", "telegram_chat_rate", _rate, "messages per second, above 0")
    take("TELEGRAM_PAID_BROADCAST", "telegram_paid_broadcast", _flag, "true or false")
    take("INBOUND_PER_MINUTE", "inbound_per_minute", _count, "a number from 1 to 1000")
    take(
        "TELEGRAM_MAX_BODY",
        "telegram_max_body",
        _body_size,
        "bytes, from 1024 to 104857600: the largest webhook body taken",
    )
    take(
        "TWILIO_MAX_BODY",
        "twilio_max_body",
        _body_size,
        "bytes, from 1024 to 104857600: the largest webhook body taken",
    )
    take(
        "DATA_ENCRYPTION_KEY",
        "data_encryption_keys",
        parse_keys,
        "one or more Fernet keys, newest first, comma-separated (see README: icssi-bot keygen)",
        secret=True,
    )
    take("REPORT_RETENTION_DAYS", "report_retention_days", _days, "a number of days, 1 or more")
    take("REPORTS_PER_DAY", "reports_per_day", _count, "a number from 1 to 1000")
    take("URGENT_CONTACT", "urgent_contact", _text, "a phone number or a short text")
    take(
        "CONVERSATION_IDLE_DAYS",
        "conversation_idle_days",
        _days,
        "a number of days, 1 or more",
    )
    take(
        "CONSOLE_SESSION_HOURS",
        "console_session_hours",
        _hours,
        "hours from 1 to 168: how long a console sign-in lasts",
    )
    take(
        "REFERRAL_ANSWER_HOURS",
        "referral_answer_hours",
        _hours,
        "hours from 1 to 168: how long an organization has to answer a referral",
    )
    take(
        "MAP_TILES_URL",
        "map_tiles_url",
        _tiles,
        "a tile URL template with {z}, {x} and {y}, or none for no background",
    )
    take("MAP_TILES_ATTRIBUTION", "map_tiles_attribution", _text, "the tiles' credit line")
    take(
        "REPORT_ALERT_NEEDS",
        "report_alert_needs",
        _needs,
        "comma-separated needs among " + ", ".join(NEEDS),
    )
    take(
        "BULLETIN_GRACE_MINUTES",
        "bulletin_grace_minutes",
        _days,
        "minutes, 1 or more: how late a scheduled bulletin may still go out",
    )
    take(
        "TELEGRAM_CHANNEL_ID",
        "telegram_channel_id",
        _channel,
        "a channel's @username or numeric id (-100...)",
    )
    take(
        "TELEGRAM_BOT_USERNAME",
        "telegram_bot_username",
        _bot_username,
        "the bot's username from @BotFather, e.g. icssi_bot (it ends in bot)",
    )
    take(
        "API_REQUESTS_PER_MINUTE",
        "api_requests_per_minute",
        _per_minute,
        "a number from 1 to 100000: requests one partner API token may make a minute",
    )
    take(
        "TWILIO_ACCOUNT_SID",
        "twilio_account_sid",
        _account_sid,
        "the Account SID from Twilio's console: AC and 32 hexadecimal characters",
    )
    take(
        "TWILIO_AUTH_TOKEN",
        "twilio_auth_token",
        _auth_token,
        "the Auth Token from Twilio's console",
        secret=True,
    )
    take(
        "TWILIO_WHATSAPP_FROM",
        "twilio_whatsapp_from",
        _whatsapp_number,
        "the bot's WhatsApp number in international form, e.g. whatsapp:+14155238886",
    )
    take(
        "TWILIO_API_BASE_URL",
        "twilio_api_base_url",
        _url,
        "the REST API address, e.g. http://127.0.0.1:4010 (default: Twilio's)",
    )
    take("TWILIO_RATE", "twilio_rate", _rate, "messages per second, above 0")
    for language in ("AR", "EN"):
        take(
            f"TWILIO_TEMPLATE_BULLETIN_{language}",
            f"twilio_template_bulletin_{language.lower()}",
            _content_sid,
            "an approved template's Content SID: HX and 32 hexadecimal characters",
        )
    take("TRUST_PROXY", "trust_proxy", _flag, "true or false")
    twilio = ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_WHATSAPP_FROM")
    given = [name for name in twilio if values.get(name.lower())]
    if given and len(given) < len(twilio):
        missing = next(name for name in twilio if name not in given)
        raise ConfigError(missing, "a value: WhatsApp needs all of " + ", ".join(twilio))
    if given and not values.get("public_url"):
        raise ConfigError(
            "PUBLIC_URL", "the bot's public https URL: Twilio reaches WhatsApp's bot by webhook"
        )
    rate = values.get("telegram_rate", Settings.telegram_rate)
    if values.get("telegram_paid_broadcast") and isinstance(rate, float) and rate <= 30:
        # Paid broadcasts cost Stars for what the free limit sends anyway.
        raise ConfigError(
            "TELEGRAM_RATE",
            "more than 30 messages a second when TELEGRAM_PAID_BROADCAST is on",
            str(rate),
        )
    webhook = values.get("telegram_bot_token") and values.get("public_url")
    if webhook and not values.get("telegram_webhook_secret"):
        raise ConfigError(
            "TELEGRAM_WEBHOOK_SECRET",
            "a secret of 16 to 256 characters (A-Z, a-z, 0-9, _ and -) when PUBLIC_URL is set",
        )
    return Settings(**values)  # type: ignore[arg-type]
