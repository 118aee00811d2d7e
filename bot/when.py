"""Reading dates as people type them: a time ("2026-12-01 09:00", "tomorrow 9:00") and a
past month ("3/2024")."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.text import ascii_digits, match_key

TOMORROW = {"tomorrow", "غدا", "غدًا", "باچر", "باكر", "سبەی", "سبەینێ", "بەیانی"}
TODAY = {"today", "اليوم", "ئەمڕۆ"}
_TIME = r"(\d{1,2})(?::(\d{2}))?\s*(am|pm|ص|م)?"


def parse_time(text: str) -> time | None:
    """'9', '9:30', '21:05', '9 pm', '9 م' -> a time of day."""
    match = re.fullmatch(_TIME, ascii_digits(text).strip().lower(), re.ASCII | re.IGNORECASE)
    if not match:
        match = re.fullmatch(_TIME, ascii_digits(text).strip().lower())
    if not match:
        return None
    hour, minute = int(match.group(1)), int(match.group(2) or 0)
    marker = match.group(3)
    if marker in ("pm", "م") and hour < 12:
        hour += 12
    if marker in ("am", "ص") and hour == 12:
        hour = 0
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        return None
    return time(hour, minute)


def parse_when(text: str, now: datetime, timezone: str) -> datetime | None:
    """A future moment typed in `timezone`, as UTC; None if it cannot be read or is past."""
    zone = ZoneInfo(timezone)
    local_now = now.astimezone(zone)
    cleaned = " ".join(ascii_digits(text).replace("،", " ").split())
    day: date | None = None
    rest = cleaned
    match = re.match(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})\s*(.*)", cleaned)
    match_dmy = re.match(r"(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})\s*(.*)", cleaned)
    try:
        if match:
            day = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
            rest = match.group(4)
        elif match_dmy:  # day first, as written in Iraq
            day = date(int(match_dmy.group(3)), int(match_dmy.group(2)), int(match_dmy.group(1)))
            rest = match_dmy.group(4)
    except ValueError:
        return None
    if day is None:
        first, _sep, tail = cleaned.partition(" ")
        word = match_key(first)
        if word in {match_key(w) for w in TOMORROW}:
            day, rest = local_now.date() + timedelta(days=1), tail
        elif word in {match_key(w) for w in TODAY}:
            day, rest = local_now.date(), tail
        else:
            return None
    moment = parse_time(rest) if rest.strip() else time(9, 0)
    if moment is None:
        return None
    local = datetime.combine(day, moment, tzinfo=zone)
    if local <= local_now:
        return None
    return local.astimezone(UTC)


def parse_month(text: str, now: datetime) -> str | None:
    """'3/2024', '2024-03', '٠٣/٢٠٢٤' -> '2024-03'; None if not a past month since 2003."""
    cleaned = ascii_digits(text).strip()
    match = re.fullmatch(r"(\d{1,2})\s*[/\-.]\s*(\d{4})", cleaned, re.ASCII)
    if match:
        month, year = int(match.group(1)), int(match.group(2))
    else:
        match = re.fullmatch(r"(\d{4})\s*[/\-.]\s*(\d{1,2})", cleaned, re.ASCII)
        if not match:
            return None
        year, month = int(match.group(1)), int(match.group(2))
    if not 1 <= month <= 12 or not 2003 <= year <= now.year:
        return None
    if (year, month) > (now.year, now.month):
        return None
    return f"{year:04d}-{month:02d}"
