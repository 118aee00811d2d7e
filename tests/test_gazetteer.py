"""The gazetteer against the Open Admin Data CSV, and finding places typed in three languages."""

from __future__ import annotations

import csv
import math
from functools import cache
from pathlib import Path

import pytest

from bot.gazetteer import DISTRICTS, GOVERNORATES, Place, districts_of, find, place
from bot.text import fold

CSV_PATH = (
    Path(__file__).resolve().parents[2] / "shared" / "reference" / "iraq-admin-divisions.csv"
)
SORANI_ONLY = set("ێۆڕڵە")
NOT_SORANI = set("يكىة")

ALL_DISTRICTS = tuple(d for ds in DISTRICTS.values() for d in ds)
ALL_PLACES = (*GOVERNORATES, *ALL_DISTRICTS)


@cache
def csv_rows() -> dict[str, dict[str, str]]:
    """The CSV's rows by P-code (its first line is a comment, the header is the second)."""
    lines = CSV_PATH.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("#")
    return {row["id"]: row for row in csv.DictReader(lines[1:])}


def csv_codes(level: str) -> list[str]:
    """The CSV's P-codes of one level ("1" governorates, "2" districts), sorted."""
    return sorted(code for code, row in csv_rows().items() if row["level"] == level)


def test_same_governorates_as_the_csv_in_pcode_order() -> None:
    codes = [g.pcode for g in GOVERNORATES]
    assert codes == csv_codes("1")
    assert len(codes) == 18
    assert all(g.parent is None for g in GOVERNORATES)


def test_same_districts_as_the_csv_with_their_parents() -> None:
    assert sorted(d.pcode for d in ALL_DISTRICTS) == csv_codes("2")
    assert len(ALL_DISTRICTS) == 101
    assert list(DISTRICTS) == [g.pcode for g in GOVERNORATES]
    for gov, districts in DISTRICTS.items():
        assert [d.pcode for d in districts] == sorted(d.pcode for d in districts)
        for d in districts:
            assert d.parent == gov == csv_rows()[d.pcode]["parent.id"]


def test_names_and_coordinates_match_the_csv() -> None:
    for p in ALL_PLACES:
        row = csv_rows()[p.pcode]
        assert p.name_en == row["name.en"], p.pcode
        assert fold(p.name_ar) == fold(row["name.local"]), p.pcode
        assert math.isclose(p.lat, float(row["geo.lat"]), abs_tol=0.01), p.pcode
        assert math.isclose(p.lon, float(row["geo.lon"]), abs_tol=0.01), p.pcode


def test_arabic_names_use_the_standard_hamza() -> None:
    assert place("IQG01") == GOVERNORATES[0]
    assert GOVERNORATES[0].name_ar == "الأنبار"
    assert GOVERNORATES[10].name_ar == "أربيل"


def is_arabic_script(text: str) -> bool:
    """True if every character is a letter of the Arabic block or a space."""
    return all(ch == " " or "\u0600" <= ch <= "\u06ff" for ch in text)


def test_sorani_names_use_sorani_letters_only() -> None:
    sorani = [p.name_ckb for p in ALL_PLACES if p.name_ckb is not None]
    assert len(sorani) >= 30
    for name in sorani:
        assert is_arabic_script(name), name
        assert not set(name) & NOT_SORANI, name


def test_arabic_names_have_no_sorani_letters() -> None:
    for p in ALL_PLACES:
        assert is_arabic_script(p.name_ar), p.pcode
        assert not set(p.name_ar) & SORANI_ONLY, p.pcode


def test_well_known_sorani_names() -> None:
    assert [g.name_ckb for g in GOVERNORATES if g.name_ckb] == [
        "سلێمانی",
        "بەغدا",
        "دهۆک",
        "دیالە",
        "هەولێر",
        "کەرکووک",
        "نەینەوا",
    ]
    assert all(d.name_ckb for gov in ("IQG06", "IQG09", "IQG11") for d in districts_of(gov))


def test_names_are_unique_within_each_list() -> None:
    for places in (GOVERNORATES, *DISTRICTS.values()):
        for p in places:
            for name in (p.name_en, p.name_ar, p.name_ckb, *p.aliases):
                if name:
                    assert find(name, places) == p, name


@pytest.mark.parametrize(
    ("typed", "pcode"),
    [
        ("الانبار", "IQG01"),
        ("انبار", "IQG01"),
        ("الأنبار", "IQG01"),
        ("Anbar", "IQG01"),
        ("al anbar", "IQG01"),
        ("Basra", "IQG02"),
        ("دهوك", "IQG09"),
        ("دهۆک", "IQG09"),
        ("Dohuk", "IQG09"),
        ("هەولێر", "IQG11"),
        ("هه\u200cولێر", "IQG11"),
        ("  erbil ", "IQG11"),
        ("اربيل", "IQG11"),
        ("السليمانيه", "IQG06"),
        ("Sulaimani", "IQG06"),
        ("Slemani", "IQG06"),
        ("سلێمانی", "IQG06"),
        ("ديالي", "IQG10"),
        ("بغـــداد", "IQG08"),
        ("بَغْدَاد", "IQG08"),
        ("کرکوک", "IQG13"),
        ("صلاح الدین", "IQG16"),
        ("Salahuddin", "IQG16"),
        ("thi-qar", "IQG17"),
        ("Dhi Qar", "IQG17"),
        ("Karbala", "IQG12"),
        ("كربلا", "IQG12"),
        ("Wasit", "IQG18"),
        ("Nineveh", "IQG15"),
        ("Missan", "IQG14"),
        ("Diwaniyah", "IQG05"),
        ("\u200fالقادسية\u200f", "IQG05"),
    ],
)
def test_find_governorate(typed: str, pcode: str) -> None:
    found = find(typed, GOVERNORATES)
    assert found is not None
    assert found.pcode == pcode


@pytest.mark.parametrize(
    ("typed", "governorate", "pcode"),
    [
        ("Mosul", "IQG15", "IQG15Q05"),
        ("الموصل", "IQG15", "IQG15Q05"),
        ("موصل", "IQG15", "IQG15Q05"),
        ("شەنگال", "IQG15", "IQG15Q07"),
        ("Sinjar", "IQG15", "IQG15Q07"),
        ("Kut", "IQG18", "IQG18Q02"),
        ("Koya", "IQG11", "IQG11Q03"),
        ("کۆیە", "IQG11", "IQG11Q03"),
        ("هەڵەبجە", "IQG06", "IQG06Q05"),
        ("Halabja", "IQG06", "IQG06Q05"),
        ("Sadr City", "IQG08", "IQG08Q07"),
        ("Mada'in", "IQG08", "IQG08Q04"),
        ("خانەقین", "IQG10", "IQG10Q05"),
    ],
)
def test_find_district(typed: str, governorate: str, pcode: str) -> None:
    found = find(typed, districts_of(governorate))
    assert found is not None
    assert found.pcode == pcode


@pytest.mark.parametrize("typed", ["Paris", "", "   ", "ال", "Al-", "🙂", "Iraq"])
def test_find_nothing(typed: str) -> None:
    assert find(typed, ALL_PLACES) is None


@pytest.mark.parametrize("typed", ["Erbil", "Basra", "النجف", "دهۆک", "Kirkuk"])
def test_find_ambiguous_between_governorate_and_district(typed: str) -> None:
    assert find(typed, ALL_PLACES) is None
    assert find(typed, GOVERNORATES) is not None


def test_find_only_looks_among_the_given_places() -> None:
    assert find("Mosul", GOVERNORATES) is None
    assert find("Mosul", districts_of("IQG09")) is None
    assert find("Mosul", iter(ALL_PLACES)) == place("IQG15Q05")


def test_name_in_each_locale_with_fallbacks() -> None:
    erbil = place("IQG11")
    basra = place("IQG02")
    assert erbil is not None
    assert basra is not None
    assert erbil.name("en") == "Erbil"
    assert erbil.name("ar") == "أربيل"
    assert erbil.name("ckb") == "هەولێر"
    assert erbil.name("ckb_IQ") == "هەولێر"
    assert basra.name_ckb is None
    assert basra.name("ckb") == "البصرة"
    assert basra.name("fr") == "Al-Basrah"
    assert basra.name("") == "Al-Basrah"


def test_place_and_districts_of() -> None:
    assert place("IQG15Q05") == Place(
        "IQG15Q05", "Al-Mosul", "الموصل", None, "IQG15", 36.102, 42.951, ("Mosul", "Mawsil")
    )
    assert place("iqg08") is not None
    assert place("IQG99") is None
    assert len(districts_of("IQG06")) == 10
    assert districts_of("IQG99") == ()
