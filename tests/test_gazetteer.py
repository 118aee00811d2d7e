"""The gazetteer against the Open Admin Data CSV, and finding places typed in three languages."""

from __future__ import annotations

import csv
import math
from functools import cache
from pathlib import Path

import pytest

from bot.gazetteer import DISTRICTS, GOVERNORATES, Place, districts_of, find, place
from bot.text import fold

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
CSV_PATH = REFERENCE / "iraq-admin-divisions.csv"
SORANI_CSV = REFERENCE / "sorani-places.csv"
SORANI_ONLY = set("ێۆڕڵە")
NOT_SORANI = set("يكىةأإ")
# Names corrected on purpose from the source (the source's value is an alias): Anah «عانة», not
# «عنه» ("about him"); the district is Baladruz «بلدروز», Mandali being one of its sub-districts.
CORRECTED = {
    "IQG01Q05": ("Ana", "عانة", "عنه"),
    "IQG10Q03": ("Baladruz", "بلدروز", "مندلي"),
    "IQG06Q05": ("Halabja", "حلبجة", "حلبجة"),
}

ALL_DISTRICTS = tuple(d for ds in DISTRICTS.values() for d in ds)
ALL_PLACES = (*GOVERNORATES, *ALL_DISTRICTS)


@cache
def csv_rows() -> dict[str, dict[str, str]]:
    """The CSV's rows by P-code (its first line is a comment, the header is the second)."""
    lines = CSV_PATH.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("#")
    return {row["id"]: row for row in csv.DictReader(lines[1:])}


@cache
def sorani_rows() -> dict[str, dict[str, str]]:
    """sorani-places.csv's rows by P-code."""
    with SORANI_CSV.open(encoding="utf-8") as fh:
        return {row["pcode"]: row for row in csv.DictReader(fh)}


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
        if p.pcode in CORRECTED:
            name_en, name_ar, source_ar = CORRECTED[p.pcode]
            assert (p.name_en, p.name_ar) == (name_en, name_ar)
            assert fold(row["name.local"]) == fold(source_ar)
            assert find(row["name.local"], districts_of(p.parent or "")) == p
            continue
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
    for p in ALL_PLACES:
        for name in (p.name_ckb, p.name("ckb")):
            assert is_arabic_script(name), p.pcode
            assert not set(name) & NOT_SORANI, p.pcode


def test_every_place_has_the_reviewed_sorani_name_with_its_status_and_source() -> None:
    assert {p.pcode for p in ALL_PLACES} == set(sorani_rows())
    for p in ALL_PLACES:
        row = sorani_rows()[p.pcode]
        assert p.name_ckb == row["name_ckb"], p.pcode
        assert p.ckb_status == row["status"], p.pcode
        assert p.ckb_source == row["source"], p.pcode
        assert fold(p.name_ar) == fold(row["name_ar"]), p.pcode
    statuses = [p.ckb_status for p in ALL_PLACES]
    assert (statuses.count("attested"), statuses.count("transliterated")) == (50, 69)
    assert all(p.ckb_source.startswith("http") for p in ALL_PLACES if p.ckb_status == "attested")


def test_a_sorani_user_sees_no_arabic_place_name() -> None:
    for p in ALL_PLACES:
        assert p.name("ckb") != p.name_ar or p.name_ckb == p.name_ar == "بابل", p.pcode


def test_arabic_names_have_no_sorani_letters() -> None:
    for p in ALL_PLACES:
        assert is_arabic_script(p.name_ar), p.pcode
        assert not set(p.name_ar) & SORANI_ONLY, p.pcode


def test_well_known_sorani_names() -> None:
    names = {g.pcode: g.name_ckb for g in GOVERNORATES}
    assert names["IQG01"] == "ئەنبار"
    assert names["IQG02"] == "بەسرە"
    assert names["IQG06"] == "سلێمانی"
    assert names["IQG11"] == "هەولێر"
    assert names["IQG16"] == "سەڵاحەدین"
    assert names["IQG17"] == "زیقار"
    mosul = place("IQG15Q05")
    assert mosul is not None
    assert mosul.name("ckb") == "مووسڵ"


def test_corrected_arabic_names_and_halabja() -> None:
    anah, baladruz, halabja = place("IQG01Q05"), place("IQG10Q03"), place("IQG06Q05")
    assert anah is not None
    assert baladruz is not None
    assert halabja is not None
    assert anah.name("ar") == "عانة"
    assert baladruz.name("ar") == "بلدروز"
    # The old spellings are still understood when typed.
    assert find("عنه", districts_of("IQG01")) == anah
    assert find("مندلي", districts_of("IQG10")) == baladruz
    assert find("Mandali", districts_of("IQG10")) == baladruz
    # Halabja keeps OCHA's P-code, under Sulaymaniyah, and its label calls it a governorate.
    assert halabja.parent == "IQG06"
    assert halabja.name("ar") == "محافظة حلبجة"
    assert halabja.name("ckb") == "پارێزگای هەڵەبجە"
    assert halabja.name("en") == "Halabja Governorate"
    assert halabja.name_en == "Halabja"  # exports' admin2 name
    for typed in ("حلبجة", "هەڵەبجە", "Halabja", "Halabcha", "محافظة حلبجة"):
        assert find(typed, districts_of("IQG06")) == halabja, typed


def test_names_are_unique_within_each_list() -> None:
    for places in (GOVERNORATES, *DISTRICTS.values()):
        for p in places:
            for name in (p.name_en, p.name_ar, p.name_ckb, p.name("ckb"), *p.aliases):
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
        # Sorani users typing the Sorani, the Arabic or the English name, on any keyboard.
        ("ئەنبار", "IQG01"),
        ("بەسرە", "IQG02"),
        ("بەسڕە", "IQG02"),
        ("البصرة", "IQG02"),
        ("سەڵاحەدین", "IQG16"),
        ("سهڵاحهدین", "IQG16"),  # legacy ه for ە
        ("سه\u200cڵاحه\u200cدین", "IQG16"),  # legacy ه + ZWNJ
        ("زیقار", "IQG17"),
        ("ذي قار", "IQG17"),
        ("دیوانیە", "IQG05"),
        ("ھەولێر", "IQG11"),  # ھ U+06BE, as Kurdish Wikipedia writes h
        ("کەربەلا", "IQG12"),
        ("كەربەلا", "IQG12"),  # Arabic kaf
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
        ("مووسڵ", "IQG15", "IQG15Q05"),
        ("موسڵ", "IQG15", "IQG15Q05"),
        ("شنگال", "IQG15", "IQG15Q07"),
        ("ڕەمادی", "IQG01", "IQG01Q03"),
        ("رەمادی", "IQG01", "IQG01Q03"),
        ("ھیت", "IQG01", "IQG01Q07"),
        ("عانة", "IQG01", "IQG01Q05"),
        ("خورماتوو", "IQG16", "IQG16Q07"),
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
    assert basra.name("ckb") == "بەسرە"
    assert basra.name("ar") == "البصرة"
    assert basra.name("fr") == "Al-Basrah"
    assert basra.name("") == "Al-Basrah"


def test_place_and_districts_of() -> None:
    assert place("IQG15Q05") == Place(
        "IQG15Q05",
        "Al-Mosul",
        "الموصل",
        "مووسڵ",
        "IQG15",
        36.102,
        42.951,
        ("Mosul", "Mawsil", "موسڵ"),
        "attested",
        "https://ckb.wikipedia.org/wiki/پارێزگای_نەینەوا",
    )
    assert place("iqg08") is not None
    assert place("IQG99") is None
    assert len(districts_of("IQG06")) == 10
    assert districts_of("IQG99") == ()
