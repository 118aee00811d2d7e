"""Reading a bulletin's time as coordinators type it: every form bot/when.py reads, in the three
digit scripts (Western, Arabic-Indic, Eastern Arabic-Indic as Sorani writes them)."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from bot.when import parse_month, parse_time, parse_when

# 1 December 2026, 10:00 in Baghdad (UTC+3).
NOW = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
ZONE = "Asia/Baghdad"
ARABIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
SORANI = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")


def scripts(text: str) -> list[str]:
    """`text` with its digits in each of the three scripts."""
    return [text, text.translate(ARABIC), text.translate(SORANI)]


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("9", time(9, 0)),
        ("9:30", time(9, 30)),
        ("21:05", time(21, 5)),
        ("0:00", time(0, 0)),
        ("23:59", time(23, 59)),
        ("9 pm", time(21, 0)),
        ("9PM", time(21, 0)),
        ("9:15 am", time(9, 15)),
        ("12 am", time(0, 0)),
        ("12 pm", time(12, 0)),
        ("9 م", time(21, 0)),
        ("9:30 ص", time(9, 30)),
        ("12 ص", time(0, 0)),
        ("  7  ", time(7, 0)),
    ],
)
def test_a_time_of_day_in_every_script(typed: str, expected: time) -> None:
    for text in scripts(typed):
        assert parse_time(text) == expected, text


@pytest.mark.parametrize("typed", ["24", "24:00", "9:60", "25 pm", "nine", "9:5", "", "9 pmm"])
def test_what_is_not_a_time(typed: str) -> None:
    for text in scripts(typed):
        assert parse_time(text) is None, text


@pytest.mark.parametrize(
    ("typed", "local"),
    [
        ("2026-12-05 09:00", datetime(2026, 12, 5, 9, 0)),
        ("2026/12/05 21:30", datetime(2026, 12, 5, 21, 30)),
        ("2026.12.5 9 pm", datetime(2026, 12, 5, 21, 0)),
        ("2026-12-05", datetime(2026, 12, 5, 9, 0)),  # no time: nine in the morning
        ("05/12/2026 8:15", datetime(2026, 12, 5, 8, 15)),  # day first, as written in Iraq
        ("5-12-2026", datetime(2026, 12, 5, 9, 0)),
        ("5.12.2026 9 م", datetime(2026, 12, 5, 21, 0)),
        ("2026-12-05، 10:00", datetime(2026, 12, 5, 10, 0)),  # the Arabic comma
        ("tomorrow 9:00", datetime(2026, 12, 2, 9, 0)),
        ("Tomorrow", datetime(2026, 12, 2, 9, 0)),
        ("غدا 8 م", datetime(2026, 12, 2, 20, 0)),
        ("غدًا 7:30", datetime(2026, 12, 2, 7, 30)),
        ("باچر 6", datetime(2026, 12, 2, 6, 0)),
        ("سبەی 9", datetime(2026, 12, 2, 9, 0)),
        ("سبەینێ 10:45", datetime(2026, 12, 2, 10, 45)),
        ("today 18:00", datetime(2026, 12, 1, 18, 0)),
        ("اليوم 9 م", datetime(2026, 12, 1, 21, 0)),
        ("ئەمڕۆ 11", datetime(2026, 12, 1, 11, 0)),
    ],
)
def test_a_moment_in_every_script(typed: str, local: datetime) -> None:
    expected = local.replace(tzinfo=None) - (datetime(2026, 1, 1, 3) - datetime(2026, 1, 1))
    for text in scripts(typed):
        moment = parse_when(text, NOW, ZONE)
        assert moment is not None, text
        assert moment.tzinfo is not None
        assert moment.replace(tzinfo=None) == expected, text


@pytest.mark.parametrize(
    "typed",
    [
        "today 9:00",  # an hour ago in Baghdad
        "today 10:00",  # now is not in the future
        "today",  # nine this morning: past
        "2026-11-30 12:00",
        "2026-02-30 09:00",  # no such day
        "31/04/2026",  # nor this one
        "2026-13-01",
        "tomorrow 25:00",
        "tomorrow at nine",
        "next week",
        "",
        "9:00",  # a time alone is not a day
    ],
)
def test_what_is_not_a_future_moment(typed: str) -> None:
    for text in scripts(typed):
        assert parse_when(text, NOW, ZONE) is None, text


def test_the_zone_decides_the_moment() -> None:
    assert parse_when("2026-12-05 09:00", NOW, "UTC") == datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
    assert parse_when("2026-12-05 09:00", NOW, ZONE) == datetime(2026, 12, 5, 6, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("typed", "month"),
    [
        ("3/2024", "2024-03"),
        ("2024-03", "2024-03"),
        ("٠٣/٢٠٢٤", "2024-03"),
        ("۳ / ۲۰۲۴", "2024-03"),
        ("12.2003", "2003-12"),
        ("11/2026", "2026-11"),
        ("12/2026", "2026-12"),  # this month
        ("1/2027", None),  # to come
        ("13/2024", None),
        ("0/2024", None),
        ("3/2002", None),  # before 2003
        ("March 2024", None),
        ("", None),
    ],
)
def test_a_past_month_as_families_type_it(typed: str, month: str | None) -> None:
    assert parse_month(typed, datetime(2026, 12, 7, 9, tzinfo=UTC)) == month
