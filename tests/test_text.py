"""What people type: digits of three scripts, bidi marks, control characters, commands."""

from __future__ import annotations

import pytest

from bot.flows import resolve_choice
from bot.text import ascii_digits, clean_input, fold, match_key, parse_command, parse_int


@pytest.mark.parametrize(
    ("typed", "number"),
    [("2", 2), ("٢", 2), ("۲", 2), ("١٢", 12), ("۱۲", 12), (" 7 ", 7), ("\u200f٣", 3)],
)
def test_numbers_in_every_digit_script(typed: str, number: int) -> None:
    assert parse_int(typed) == number


@pytest.mark.parametrize("typed", ["", "two", "2.5", "-1", "٢a", "🙂", "1234567890"])
def test_not_numbers(typed: str) -> None:
    assert parse_int(typed) is None


def test_arabic_decimal_sign() -> None:
    assert ascii_digits("١٢٣٫٥") == "123.5"


def test_clean_input_drops_controls_and_bidi_marks_and_keeps_lines() -> None:
    assert clean_input("\u202bمرحبا\u202c\x00\x07 ok\nnext\u200e") == "مرحبا   ok\nnext"


def test_clean_input_caps_length() -> None:
    assert len(clean_input("x" * 5000)) == 4096


def test_fold_arabic_forms() -> None:
    assert fold("إِلْغَاء") == fold("الغاء") == "الغاء"
    assert fold("مدرسة") == "مدرسه"
    assert fold("مستشفى") == "مستشفي"


def test_fold_keeps_sorani_letters() -> None:
    # ە and ی are letters of their own in Sorani: not folded into ه and ي.
    assert fold("هەولێر", sorani=True) == "هەولێر"
    assert fold("كوردي", sorani=True) == "کوردی"


def test_match_key_ignores_case_spacing_punctuation_and_emoji() -> None:
    assert match_key("  MENU! 🙂 ") == match_key("menu")
    assert match_key("القائمة") == match_key("القائمه")


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("/start", ("start", ())),
        ("/start report", ("start", ("report",))),
        ("/Start@ICSSI_bot sign", ("start", ("sign",))),
        ("\u200f/menu", ("menu", ())),
    ],
)
def test_commands(text: str, parsed: tuple[str, tuple[str, ...]]) -> None:
    assert parse_command(text) == parsed


@pytest.mark.parametrize("text", ["/", "hello", "/مرحبا", " / start"])
def test_not_commands(text: str) -> None:
    assert parse_command(text) is None


def test_resolve_choice_by_number_or_label() -> None:
    offered = [("a", "العربية"), ("b", "کوردی (سۆرانی)"), ("c", "English")]
    assert resolve_choice("۲", offered) == "b"
    assert resolve_choice("3", offered) == "c"
    assert resolve_choice("english", offered) == "c"
    assert resolve_choice("4", offered) is None
    assert resolve_choice("0", offered) is None
