"""Gazetteer of Iraq's governorates and districts: OCHA P-codes, names in three languages, lookup.

Source: Open Admin Data (https://openadmindata.org/iq/), CC-BY-4.0, derived from OCHA COD-AB
(https://github.com/open-admin-data/iraq-administrative-divisions): P-codes, English names, Arabic
names and centroids. Added by the project: the Sorani (ckb) names, the Arabic spellings with the
standard hamza (الأنبار, أربيل, أبي الخصيب, الأعظمية) and the aliases (other common spellings).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from bot.text import fold, match_key

__all__ = ["DISTRICTS", "GOVERNORATES", "Place", "districts_of", "find", "place"]


@dataclass(frozen=True)
class Place:
    """A governorate or district: its P-code, names in en/ar/ckb, parent and centroid."""

    pcode: str
    name_en: str
    name_ar: str
    name_ckb: str | None  # only where a Sorani name is well established
    parent: str | None  # the governorate's P-code, for districts
    lat: float
    lon: float
    aliases: tuple[str, ...] = ()  # other common spellings, in any language, for find()

    def name(self, locale: str) -> str:
        """The name to show in a locale: ckb falls back to Arabic, anything unknown to English."""
        lang = locale.replace("-", "_").split("_", 1)[0].lower()
        if lang == "ar":
            return self.name_ar
        if lang == "ckb":
            return self.name_ckb or self.name_ar
        return self.name_en


# (P-code, English, Arabic, Sorani or None, latitude, longitude, aliases)
_Row = tuple[str, str, str, str | None, float, float, tuple[str, ...]]

_GOVERNORATE_ROWS: tuple[_Row, ...] = (
    ("IQG01", "Al-Anbar", "الأنبار", None, 33.178, 41.398, ("Anbar",)),
    ("IQG02", "Al-Basrah", "البصرة", None, 30.208, 47.502, ("Basra", "Basrah")),
    ("IQG03", "Al-Muthanna", "المثنى", None, 30.405, 45.36, ("Muthanna",)),
    ("IQG04", "Al-Najaf", "النجف", None, 31.101, 43.364, ("Najaf",)),
    (
        "IQG05",
        "Al-Qadissiya",
        "القادسية",
        None,
        31.843,
        45.167,
        ("Qadisiyah", "Qadisiya", "Qadissiyah", "Diwaniyah", "Diwaniya", "الديوانية"),
    ),
    (
        "IQG06",
        "Al-Sulaymaniyah",
        "السليمانية",
        "سلێمانی",
        35.532,
        45.377,
        ("Sulaymaniyah", "Sulaimani", "Slemani", "Sulaimaniya", "Suleimaniyah", "Sulaymaniya"),
    ),
    ("IQG07", "Babil", "بابل", None, 32.58, 44.636, ("Babylon", "Babel")),
    ("IQG08", "Baghdad", "بغداد", "بەغدا", 33.278, 44.379, ()),
    ("IQG09", "Duhok", "دهوك", "دهۆک", 37.046, 43.138, ("Dohuk", "Dahuk", "Dihok")),
    ("IQG10", "Diyala", "ديالى", "دیالە", 34.071, 44.896, ("Diala",)),
    ("IQG11", "Erbil", "أربيل", "هەولێر", 36.379, 44.21, ("Arbil", "Irbil", "Hawler", "Hewler")),
    ("IQG12", "Kerbala", "كربلاء", None, 32.498, 43.8, ("Karbala", "Kerbela", "كربلا")),
    ("IQG13", "Kirkuk", "كركوك", "کەرکووک", 35.288, 44.061, ("Kerkuk",)),
    ("IQG14", "Maysan", "ميسان", None, 32.0, 47.134, ("Missan", "Misan")),
    ("IQG15", "Ninewa", "نينوى", "نەینەوا", 35.994, 42.362, ("Nineveh", "Ninawa", "نينوا")),
    (
        "IQG16",
        "Salah Al-Din",
        "صلاح الدين",
        None,
        34.66,
        43.634,
        ("Salahuddin", "Salahaddin", "Salah ad-Din", "Saladin"),
    ),
    ("IQG17", "Thi Qar", "ذي قار", None, 31.29, 46.274, ("Dhi Qar", "Zi Qar")),
    ("IQG18", "Wassit", "واسط", None, 32.712, 45.702, ("Wasit",)),
)
_DISTRICT_ROWS: tuple[_Row, ...] = (
    # IQG01 Al-Anbar
    ("IQG01Q01", "Al-Falluja", "الفلوجة", None, 33.19, 43.685, ("Fallujah",)),
    ("IQG01Q02", "Al-Kaim", "القائم", None, 34.435, 41.207, ("Al-Qaim", "Qaim")),
    ("IQG01Q03", "Al-Ramadi", "الرمادي", None, 33.237, 42.987, ()),
    ("IQG01Q04", "Al-Rutba", "الرطبة", None, 32.559, 41.158, ("Rutbah",)),
    # Anah is usually written عانة; the source's عنه is kept and عانة is an alias.
    ("IQG01Q05", "Ana", "عنه", None, 34.323, 41.922, ("Anah", "عانة")),
    ("IQG01Q06", "Haditha", "حديثة", None, 34.237, 42.408, ("Hadithah",)),
    ("IQG01Q07", "Heet", "هيت", None, 33.822, 42.678, ("Hit",)),
    # IQG02 Al-Basrah
    (
        "IQG02Q01",
        "Abu Al-Khaseeb",
        "أبي الخصيب",
        None,
        30.336,
        47.993,
        ("Abu al-Khasib", "أبو الخصيب"),
    ),
    ("IQG02Q02", "Al-Basrah", "البصرة", None, 30.555, 47.606, ("Basra", "Basrah")),
    ("IQG02Q03", "Al-Faw", "الفاو", None, 30.046, 48.202, ("Fao",)),
    ("IQG02Q04", "Al-Midaina", "المدينة", None, 30.982, 47.246, ("Al-Madina",)),
    ("IQG02Q05", "Al-Qurna", "القرنة", None, 30.943, 47.442, ("Qurnah",)),
    ("IQG02Q06", "Al-Zubair", "الزبير", None, 29.902, 46.865, ("Zubayr",)),
    ("IQG02Q07", "Shat Al-Arab", "شط العرب", None, 30.723, 47.892, ("Shatt al-Arab",)),
    # IQG03 Al-Muthanna
    ("IQG03Q01", "Al-Khidhir", "الخضر", None, 31.261, 45.652, ("Khidr",)),
    ("IQG03Q02", "Al-Rumaitha", "الرميثة", None, 31.502, 45.371, ("Rumaytha",)),
    ("IQG03Q03", "Al-Salman", "السلمان", None, 30.251, 45.348, ()),
    ("IQG03Q04", "Al-Samawa", "السماوة", None, 31.217, 45.301, ("Samawah",)),
    # IQG04 Al-Najaf
    ("IQG04Q01", "Al-Kufa", "الكوفة", None, 32.07, 44.449, ("Kufah",)),
    ("IQG04Q02", "Al-Manathera", "المناذرة", None, 31.774, 44.472, ("Al-Manadhira", "Manadhirah")),
    ("IQG04Q03", "Al-Najaf", "النجف", None, 31.101, 43.364, ("Najaf",)),
    # IQG05 Al-Qadissiya
    ("IQG05Q01", "Afaq", "عفك", None, 32.02, 45.379, ("Afak",)),
    ("IQG05Q02", "Al-Diwaniya", "الديوانية", None, 32.02, 44.89, ("Diwaniyah",)),
    ("IQG05Q03", "Al-Hamza", "الحمزة", None, 31.591, 44.775, ()),
    ("IQG05Q04", "Al-Shamiya", "الشامية", None, 31.868, 44.629, ("Shamiyah",)),
    # IQG06 Al-Sulaymaniyah
    (
        "IQG06Q01",
        "Al-Sulaymaniyah",
        "السليمانية",
        "سلێمانی",
        35.442,
        45.421,
        ("Sulaymaniyah", "Sulaimani", "Slemani"),
    ),
    ("IQG06Q02", "Chamchamal", "جمجمال", "چەمچەماڵ", 35.415, 45.001, ()),
    ("IQG06Q03", "Derbendikhan", "دربندخان", "دەربەندیخان", 35.186, 45.713, ("Darbandikhan",)),
    ("IQG06Q04", "Dokan", "دوكان", "دووکان", 35.92, 45.036, ("Dukan",)),
    # Halabja was voted a governorate but has no P-code of its own: in the source (and here) it
    # is a district of Al-Sulaymaniyah (IQG06).
    ("IQG06Q05", "Halabcha", "حلبجة", "هەڵەبجە", 35.187, 46.022, ("Halabja",)),
    ("IQG06Q06", "Kalar", "كلار", "کەلار", 34.84, 45.327, ()),
    ("IQG06Q07", "Panjwin", "بنجوين", "پێنجوێن", 35.648, 45.931, ("Penjwin",)),
    ("IQG06Q08", "Pshdar", "بشدر", "پشدەر", 36.265, 45.102, ("Pishdar",)),
    ("IQG06Q09", "Rania", "رانية", "ڕانیە", 36.167, 44.917, ("Ranya",)),
    ("IQG06Q10", "Sharbazher", "شهربازار", "شارباژێڕ", 35.703, 45.628, ("Sharbazhar",)),
    # IQG07 Babil
    ("IQG07Q01", "Al-Hashimiya", "الهاشمية", None, 32.381, 44.824, ()),
    ("IQG07Q02", "Al-Hilla", "الحلة", None, 32.355, 44.43, ("Hillah",)),
    ("IQG07Q03", "Al-Mahaweel", "المحاويل", None, 32.674, 44.652, ("Mahawil",)),
    ("IQG07Q04", "Al-Mussyab", "المسيب", None, 32.8, 44.266, ("Musayyib",)),
    # IQG08 Baghdad
    ("IQG08Q01", "Al-Adhamiya", "الأعظمية", None, 33.479, 44.354, ("Adhamiyah",)),
    (
        "IQG08Q02",
        "Al-Kadhmiyah",
        "الكاظمية",
        None,
        33.464,
        44.192,
        ("Kadhimiya", "Kadhimiyah", "Kazimiyah"),
    ),
    ("IQG08Q03", "Al-Karkh", "الكرخ", None, 33.179, 44.471, ()),
    ("IQG08Q04", "Al-Mada'in", "المدائن", None, 33.219, 44.686, ("Madain",)),
    ("IQG08Q05", "Al-Mahmoudiya", "المحمودية", None, 33.035, 44.343, ("Mahmudiyah",)),
    ("IQG08Q06", "Al-Risafa", "الرصافة", None, 33.325, 44.465, ("Rusafa",)),
    ("IQG08Q07", "Al-Thawra", "الثورة", None, 33.388, 44.465, ("Sadr City", "مدينة الصدر")),
    # IQG09 Duhok
    ("IQG09Q01", "Al-Amadiya", "العمادية", "ئامێدی", 37.091, 43.579, ("Amedi", "Amadiyah")),
    ("IQG09Q02", "Duhok", "دهوك", "دهۆک", 36.943, 43.105, ("Dohuk", "Dahuk")),
    ("IQG09Q03", "Sumail", "سميل", "سێمێل", 36.913, 42.727, ("Sumel", "Semel")),
    ("IQG09Q04", "Zakho", "زاخو", "زاخۆ", 37.202, 42.904, ()),
    # IQG10 Diyala
    ("IQG10Q01", "Al-Khalis", "الخالص", None, 34.085, 44.657, ()),
    ("IQG10Q02", "Al-Muqdadiya", "المقدادية", None, 33.881, 44.926, ("Muqdadiyah",)),
    # The source names this district Baladruz in English but مندلي (Mandali, one of its
    # sub-districts) in Arabic; both are kept, with بلدروز and Mandali as aliases.
    (
        "IQG10Q03",
        "Baladruz",
        "مندلي",
        None,
        33.56,
        45.44,
        ("Balad Ruz", "Baladrooz", "Mandali", "بلدروز"),
    ),
    ("IQG10Q04", "Baquba", "بعقوبة", None, 33.647, 44.713, ("Baqubah", "Baaquba")),
    ("IQG10Q05", "Khanaqin", "خانقين", "خانەقین", 34.52, 45.383, ()),
    ("IQG10Q06", "Kifri", "كفري", "کفری", 34.561, 44.958, ()),
    # IQG11 Erbil
    ("IQG11Q01", "Al-Zibar", "الزيبار", "زێبار", 37.088, 44.094, ("Zibar",)),
    (
        "IQG11Q02",
        "Erbil",
        "أربيل",
        "هەولێر",
        36.091,
        43.994,
        ("Arbil", "Irbil", "Hawler", "Hewler"),
    ),
    (
        "IQG11Q03",
        "Koysinjaq",
        "كويسنجق",
        "کۆیە",
        36.036,
        44.526,
        ("Koya", "Koisanjaq", "Koysanjaq"),
    ),
    ("IQG11Q04", "Makhmour", "مخمور", "مەخموور", 35.823, 43.652, ("Makhmur",)),
    # Rawanduz district is the one the Kurdistan Region calls Soran (سۆران).
    ("IQG11Q05", "Rawanduz", "راوندوز", "ڕەواندز", 36.807, 44.535, ("Rawandiz", "Soran", "سۆران")),
    ("IQG11Q06", "Shaqlawa", "شقلاوة", "شەقڵاوە", 36.448, 44.152, ()),
    # IQG12 Kerbala
    ("IQG12Q01", "Ain Al-Tamur", "عين التمر", None, 32.483, 43.533, ("Ain al-Tamr",)),
    ("IQG12Q02", "Al-Hindiya", "الهندية", None, 32.465, 44.207, ("Hindiyah",)),
    ("IQG12Q03", "Kerbela", "كربلاء", None, 32.497, 43.906, ("Karbala", "Kerbala", "كربلا")),
    # IQG13 Kirkuk
    ("IQG13Q01", "Al-Hawiga", "الحويجة", "حەویجە", 35.264, 43.788, ("Hawija", "Hawijah")),
    ("IQG13Q02", "Daquq", "داقوق", "داقووق", 34.995, 44.171, ()),
    ("IQG13Q03", "Dibis", "دبس", "دوبز", 35.66, 44.131, ("Dibs", "Dabes")),
    ("IQG13Q04", "Kirkuk", "كركوك", "کەرکووک", 35.516, 44.529, ("Kerkuk",)),
    # IQG14 Maysan
    ("IQG14Q01", "Al-Amara", "العمارة", None, 32.107, 47.272, ("Amarah",)),
    ("IQG14Q02", "Ali Al-Gharbi", "علي الغربي", None, 32.419, 46.765, ()),
    ("IQG14Q03", "Al-Kahla", "الكحلاء", None, 31.764, 47.43, ()),
    ("IQG14Q04", "Al-Maimouna", "الميمونة", None, 31.472, 46.812, ("Maimuna",)),
    ("IQG14Q05", "Al-Mejar Al-Kabir", "المجر الكبير", None, 31.432, 47.579, ("Majar al-Kabir",)),
    ("IQG14Q06", "Qalat Saleh", "قلعة صالح", None, 31.479, 47.383, ("Qalat Salih",)),
    # IQG15 Ninewa
    ("IQG15Q01", "Aqra", "عقرة", "ئاکرێ", 36.667, 43.946, ("Akre", "Akra")),
    ("IQG15Q02", "Al-Baaj", "البعاج", None, 35.693, 41.7, ()),
    ("IQG15Q03", "Al-Hamdaniya", "الحمدانية", None, 36.191, 43.409, ()),
    ("IQG15Q04", "Al-Hatra", "الحضر", None, 35.589, 42.505, ()),
    ("IQG15Q05", "Al-Mosul", "الموصل", None, 36.102, 42.951, ("Mosul", "Mawsil")),
    ("IQG15Q06", "Al-Shikhan", "الشيخان", "شێخان", 36.699, 43.415, ("Shekhan", "Shaikhan")),
    ("IQG15Q07", "Sinjar", "سنجار", "شەنگال", 36.336, 42.014, ("Shingal",)),
    ("IQG15Q08", "Telafar", "تلعفر", None, 36.525, 42.348, ("Tal Afar", "Tel Afar", "Tall Afar")),
    ("IQG15Q09", "Tilkaef", "تلكيف", "تەلکێف", 36.574, 42.992, ("Tilkaif", "Tel Kaif", "Telkaif")),
    # IQG16 Salah Al-Din
    ("IQG16Q01", "Al-Daur", "الدور", None, 34.56, 44.208, ("Dour",)),
    ("IQG16Q02", "Al-Shirqat", "الشرقاط", None, 35.474, 43.176, ("Sharqat",)),
    ("IQG16Q03", "Beygee", "بيجي", None, 34.887, 43.037, ("Baiji", "Bayji", "Beiji")),
    ("IQG16Q04", "Balad", "بلد", None, 33.936, 43.84, ()),
    ("IQG16Q05", "Samarra", "سامراء", None, 34.333, 43.377, ("سامرا",)),
    ("IQG16Q06", "Tikrit", "تكريت", None, 34.763, 43.855, ()),
    (
        "IQG16Q07",
        "Tooz Khurmato",
        "طوز خورماتو",
        None,
        34.825,
        44.659,
        ("Tuz Khurmatu", "Tuz", "طوز"),
    ),
    # IQG17 Thi Qar
    ("IQG17Q01", "Al-Chibayish", "الجبايش", None, 30.858, 46.905, ("Chibayish", "Jibayish")),
    ("IQG17Q02", "Al-Rifai", "الرفاعي", None, 31.671, 46.125, ()),
    ("IQG17Q03", "Al-Shatra", "الشطرة", None, 31.41, 46.315, ()),
    ("IQG17Q04", "Al-Nasiriya", "الناصرية", None, 31.122, 46.491, ("Nasiriyah",)),
    ("IQG17Q05", "Suq Al-Shoyokh", "سوق الشيوخ", None, 30.812, 46.458, ("Suq al-Shuyukh",)),
    # IQG18 Wassit
    ("IQG18Q01", "Al-Hai", "الحي", None, 32.181, 46.024, ("Hay",)),
    ("IQG18Q02", "Al-Kut", "الكوت", None, 32.467, 46.132, ()),
    ("IQG18Q03", "Al-Namaniya", "النعمانية", None, 32.447, 45.511, ("Numaniyah",)),
    ("IQG18Q04", "Al-Suwaira", "الصويرة", None, 32.841, 45.047, ("Suwayrah",)),
    ("IQG18Q05", "Badra", "بدرة", None, 33.068, 45.852, ()),
)


def _place(row: _Row, parent: str | None) -> Place:
    """Build a Place from a data row."""
    pcode, name_en, name_ar, name_ckb, lat, lon, aliases = row
    return Place(pcode, name_en, name_ar, name_ckb, parent, lat, lon, aliases)


GOVERNORATES: tuple[Place, ...] = tuple(_place(row, None) for row in _GOVERNORATE_ROWS)
DISTRICTS: dict[str, tuple[Place, ...]] = {
    gov.pcode: tuple(_place(row, gov.pcode) for row in _DISTRICT_ROWS if row[0][:5] == gov.pcode)
    for gov in GOVERNORATES
}
_BY_PCODE: dict[str, Place] = {
    p.pcode: p for p in (*GOVERNORATES, *(d for ds in DISTRICTS.values() for d in ds))
}

# A leading English article with its separator ("Al-Kut", "al Kut", "El-Kut"); the Arabic ال is
# removed after match_key, which drops hyphens and apostrophes.
_LATIN_ARTICLE = re.compile(r"^(?:al|el)(?:\s*[-‐‑'’]\s*|\s+)")


def place(pcode: str) -> Place | None:
    """The governorate or district with this P-code, or None."""
    return _BY_PCODE.get(pcode.strip().upper())


def districts_of(governorate: str) -> tuple[Place, ...]:
    """The districts of a governorate (by P-code) in P-code order; empty if unknown."""
    return DISTRICTS.get(governorate.strip().upper(), ())


def _key(text: str) -> str:
    """The comparison key of a name: match_key without a leading article and without spaces."""
    key = match_key(_LATIN_ARTICLE.sub("", fold(text)))
    key = key.removeprefix("ال")
    return key.replace(" ", "")


@lru_cache(maxsize=256)
def _keys(p: Place) -> frozenset[str]:
    """Every key under which a place can be found: its three names and its aliases."""
    names = (p.name_en, p.name_ar, p.name_ckb or "", *p.aliases)
    return frozenset(k for k in map(_key, names) if k)


def find(text: str, among: Iterable[Place]) -> Place | None:
    """The one place among these whose name or alias is typed; None if none or several match."""
    key = _key(text)
    if not key:
        return None
    found = {p.pcode: p for p in among if key in _keys(p)}
    return next(iter(found.values())) if len(found) == 1 else None
