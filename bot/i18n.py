"""Translations (Babel/gettext), the current locale, number and date formatting, bidi helpers."""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date as _babel_date
from babel.dates import format_datetime as _babel_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import NullTranslations, Translations

LOCALES: tuple[str, ...] = ("ar", "ckb", "en")
RTL_LOCALES = frozenset({"ar", "ckb"})

FSI, PDI, RLM = "\u2068", "\u2069", "\u200f"

_current: ContextVar[str] = ContextVar("locale", default="ar")


def locales_dir() -> Path:
    """The folder holding messages.pot, the catalogs and the long texts."""
    return Path(__file__).resolve().parent.parent / "locales"


# A left-to-right run inside right-to-left text: placeholders, /commands, Latin words, numbers,
# dates, times, phone numbers and addresses, with the spaces and punctuation inside them
# ("0770 123 4567", "2026-12-01 09:00", "icssi-bot export").
_LTR_TOKEN = r"(?:%\(\w+\)s|/[a-z]\w*|[A-Za-z0-9](?:[A-Za-z0-9._:/@+,-]*[A-Za-z0-9])?)"
# An isolate already there (LRI or FSI ... PDI) is kept as it is: isolating twice changes nothing.
_ISOLATED = r"([\u2066\u2068][^\u2066\u2068\u2069]*\u2069)"
# Not a token glued to the end of another (or of an isolate: "/a/a" is isolated once as
# "⁨/a⁩/a", and its second "/a" must stay as it is when isolated again).
_LTR_RUN = re.compile(rf"{_ISOLATED}|(?<![/A-Za-z0-9_\u2069]){_LTR_TOKEN}(?: {_LTR_TOKEN})*")


def isolate_runs(text: str) -> str:
    """Wrap each left-to-right run of a right-to-left text in FSI ... PDI.

    Unisolated, the bidi algorithm reorders such runs: "0770 123 4567" is drawn "4567 123 0770",
    "/mydata" "mydata/". A placeholder is isolated too, whatever fills it.
    """
    return _LTR_RUN.sub(lambda m: m.group(1) or f"{FSI}{m.group(0)}{PDI}", text)


@cache
def catalog(locale: str) -> NullTranslations:
    """The gettext catalog of a locale, compiled from its .po in memory (so never stale).

    In right-to-left locales every left-to-right run of a translation is isolated here, once,
    so that translators need not type invisible marks and no new text can forget them.
    """
    po_path = locales_dir() / locale / "LC_MESSAGES" / "messages.po"
    if not po_path.exists():
        return NullTranslations()
    with po_path.open("rb") as fh:
        parsed = read_po(fh, locale=locale)
    if locale in RTL_LOCALES:
        for message in parsed:
            if not message.id:
                continue
            if isinstance(message.string, str):
                message.string = isolate_runs(message.string)
            elif message.string:
                message.string = tuple(isolate_runs(str(s or "")) for s in message.string)
    buffer = io.BytesIO()
    write_mo(buffer, parsed, use_fuzzy=False)
    buffer.seek(0)
    return Translations(buffer)


def current_locale() -> str:
    """The locale of the message being handled."""
    return _current.get()


@contextmanager
def use_locale(locale: str) -> Iterator[None]:
    """Translate in `locale` inside the block."""
    token = _current.set(locale if locale in LOCALES else LOCALES[0])
    try:
        yield
    finally:
        _current.reset(token)


def switch_locale(locale: str) -> None:
    """Change the locale for the rest of the message being handled (inside `use_locale`)."""
    _current.set(locale if locale in LOCALES else LOCALES[0])


def _(message: str) -> str:
    """Translate `message` into the current locale."""
    return catalog(current_locale()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """Translate a message with a count, using the locale's plural rules."""
    return catalog(current_locale()).ngettext(singular, plural, n)


def pgettext(context: str, message: str) -> str:
    """Translate `message` in a context, for one English text that needs two translations."""
    return str(catalog(current_locale()).pgettext(context, message))


def N_(message: str) -> str:
    """Mark a message for extraction without translating it yet (translate with `_` later)."""
    return message


# The names of the languages, for the chat, the console and the public pages alike: the one
# table of them (a new language adds its line to each).
# In its own script, as the chat's language picker says it; Kurdish says which Kurdish
# (Sorani), so that Badini (Kurmanji) speakers are not surprised.
LANGUAGE_NAMES: dict[str, str] = {"ar": "العربية", "ckb": "کوردی (سۆرانی)", "en": "English"}
# In its own script, where room is short: the web pages' language switch, a text's label.
SHORT_LANGUAGE_NAMES: dict[str, str] = {"ar": "العربية", "ckb": "کوردی", "en": "English"}
# In the reader's language (translate with `_`): "here it is in Arabic".
LANGUAGE_NAMES_TRANSLATED: dict[str, str] = {
    "ar": N_("Arabic"),
    "ckb": N_("Kurdish"),
    "en": N_("English"),
}


def translate_in(locale: str, message: str) -> str:
    """Translate `message` into a given locale, whatever the current one."""
    return catalog(locale).gettext(message)


def babel_locale(locale: str | None = None) -> Locale:
    """The Babel Locale for one of ours (Iraqi conventions where CLDR has them)."""
    code = locale or current_locale()
    return Locale.parse({"ar": "ar_IQ", "ckb": "ckb_IQ"}.get(code, code))


def format_number(number: int | float) -> str:
    """A number in the current locale's format (Latin digits, as Babel writes them)."""
    return format_decimal(number, locale=babel_locale())


# CLDR's medium Sorani pattern reads "2026 کانونی یەکەم 6 7:05:00 د.ن" (year first, then a
# morning or afternoon sign); Sorani writers put the day first, with the izafe:
# "6ی کانونی یەکەمی 2026، 19:05".
_DATETIME_PATTERNS: dict[str, str] = {"ckb": "d'ی' MMMM'ی' y، HH:mm"}


def format_datetime(moment: datetime, timezone: str = "Asia/Baghdad") -> str:
    """A moment in time, shown in `timezone` in the current locale."""
    return _babel_datetime(
        moment,
        format=_DATETIME_PATTERNS.get(current_locale(), "medium"),
        tzinfo=ZoneInfo(timezone),
        locale=babel_locale(),
    )


# The day alone, the same way: "6ی کانونی یەکەمی 2026".
_DATE_PATTERNS: dict[str, str] = {"ckb": "d'ی' MMMM'ی' y"}


def format_date(moment: datetime, timezone: str = "Asia/Baghdad") -> str:
    """The day of a moment, in `timezone`, in the current locale."""
    day = moment.astimezone(ZoneInfo(timezone)).date()
    pattern = _DATE_PATTERNS.get(current_locale(), "medium")
    return _babel_date(day, format=pattern, locale=babel_locale())


def is_rtl(locale: str | None = None) -> bool:
    """Whether a locale is written right to left."""
    return (locale or current_locale()) in RTL_LOCALES


def isolate(text: str) -> str:
    """Wrap Latin text, numbers or codes so they keep their order inside right-to-left text."""
    return f"{FSI}{text}{PDI}" if is_rtl() else text


def direct(text: str, locale: str | None = None) -> str:
    """Make a right-to-left message start with a right-to-left character (RLM if need be).

    Clients guess a message's direction from how it begins; a number, a quote mark or an
    isolated code first would turn the whole message left to right.
    """
    if is_rtl(locale) and text and unicodedata.bidirectional(text[0]) not in ("R", "AL"):
        return RLM + text
    return text


def order_by_hint(hint: str | None) -> list[str]:
    """The language picker's order: ar* or ckb*/sdh first when hinted, else the default order.

    Kurdish users often report `en`, `ar` or nothing (localization.md), so it is only an order.
    """
    first: str | None = None
    code = (hint or "").lower().replace("_", "-")
    if code.startswith("ar"):
        first = "ar"
    elif code.startswith(("ckb", "sdh")):
        first = "ckb"
    rest = [loc for loc in LOCALES if loc != first]
    return [first, *rest] if first else rest


def long_text(name: str, locale: str) -> str:
    """A long text (such as the declaration) in a locale, from locales/<locale>/<name>.txt."""
    path = locales_dir() / locale / f"{name}.txt"
    return path.read_text(encoding="utf-8")
