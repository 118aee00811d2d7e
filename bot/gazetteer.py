"""Gazetteer of Iraq's governorates and districts: OCHA P-codes, names in three languages, lookup.

Source: Open Admin Data (https://openadmindata.org/iq/), CC-BY-4.0, derived from OCHA COD-AB
(https://github.com/open-admin-data/iraq-administrative-divisions): P-codes, English names, Arabic
names and centroids. Added by the project: the Arabic spellings with the standard hamza (الأنبار,
أربيل, أبي الخصيب, الأعظمية), two corrected Arabic names (عانة, بلدروز; the source's are aliases),
the aliases (other common spellings) and the Sorani (ckb) names. The Sorani names come from
shared/reference/sorani-places.csv: 50 are attested in Sorani sources, each credited by its URL in
_CKB_SOURCES (Kurdish Wikipedia and Wikisource names are CC BY-SA 4.0; from news and government
pages only the spelling of a name was taken); the other 69 are transliterations that a native
Sorani editor should review (Place.ckb_status == "transliterated"). No OpenStreetMap data is used.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from bot.text import fold, match_key

__all__ = ["DISTRICTS", "GOVERNORATES", "CkbStatus", "Place", "districts_of", "find", "place"]

CkbStatus = Literal["attested", "transliterated"]


@dataclass(frozen=True)
class Place:
    """A governorate or district: its P-code, names in en/ar/ckb, parent and centroid."""

    pcode: str
    name_en: str
    name_ar: str
    name_ckb: str
    parent: str | None  # the governorate's P-code, for districts
    lat: float
    lon: float
    aliases: tuple[str, ...] = ()  # other common spellings, in any language, for find()
    # "transliterated" names are careful guesses waiting for a native Sorani editor's review.
    ckb_status: CkbStatus = "transliterated"
    ckb_source: str = ""  # where an attested Sorani name was found (its credit)

    def name(self, locale: str) -> str:
        """The name to show in a locale (Arabic, Sorani, else English)."""
        lang = locale.replace("-", "_").split("_", 1)[0].lower()
        if lang not in ("ar", "ckb"):
            lang = "en"
        label = _LABELS.get(self.pcode)
        if label is not None:
            return label[lang]
        return {"ar": self.name_ar, "ckb": self.name_ckb}.get(lang, self.name_en)


# Halabja has been a governorate since 2025 (KRG 2014, Iraqi cabinet 2023, parliament 2025), while
# OCHA's COD-AB still has it as district IQG06Q05 of Al-Sulaymaniyah. Reports keep that P-code (so
# exports and partners' data agree), and the label, shown among Sulaymaniyah's districts, names it
# a governorate as the people who live there do.
_LABELS: dict[str, dict[str, str]] = {
    "IQG06Q05": {"en": "Halabja Governorate", "ar": "محافظة حلبجة", "ckb": "پارێزگای هەڵەبجە"},
}

# (P-code, English, Arabic, Sorani, latitude, longitude, aliases)
_Row = tuple[str, str, str, str, float, float, tuple[str, ...]]

_GOVERNORATE_ROWS: tuple[_Row, ...] = (
    ("IQG01", "Al-Anbar", "الأنبار", "ئەنبار", 33.178, 41.398, ("Anbar",)),
    ("IQG02", "Al-Basrah", "البصرة", "بەسرە", 30.208, 47.502, ("Basra", "Basrah", "بەسڕە")),
    ("IQG03", "Al-Muthanna", "المثنى", "موسەننا", 30.405, 45.36, ("Muthanna",)),
    ("IQG04", "Al-Najaf", "النجف", "نەجەف", 31.101, 43.364, ("Najaf",)),
    (
        "IQG05",
        "Al-Qadissiya",
        "القادسية",
        "دیوانیە",
        31.843,
        45.167,
        (
            "Qadisiyah",
            "Qadisiya",
            "Qadissiyah",
            "Diwaniyah",
            "Diwaniya",
            "الديوانية",
            "دیوانییە",
            "قادسیە",
        ),
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
    ("IQG07", "Babil", "بابل", "بابل", 32.58, 44.636, ("Babylon", "Babel")),
    ("IQG08", "Baghdad", "بغداد", "بەغدا", 33.278, 44.379, ("بەغداد",)),
    ("IQG09", "Duhok", "دهوك", "دهۆک", 37.046, 43.138, ("Dohuk", "Dahuk", "Dihok")),
    ("IQG10", "Diyala", "ديالى", "دیالە", 34.071, 44.896, ("Diala",)),
    ("IQG11", "Erbil", "أربيل", "هەولێر", 36.379, 44.21, ("Arbil", "Irbil", "Hawler", "Hewler")),
    ("IQG12", "Kerbala", "كربلاء", "کەربەلا", 32.498, 43.8, ("Karbala", "Kerbela", "كربلا")),
    ("IQG13", "Kirkuk", "كركوك", "کەرکووک", 35.288, 44.061, ("Kerkuk", "کەرکوک")),
    ("IQG14", "Maysan", "ميسان", "میسان", 32.0, 47.134, ("Missan", "Misan", "مەیسان")),
    ("IQG15", "Ninewa", "نينوى", "نەینەوا", 35.994, 42.362, ("Nineveh", "Ninawa", "نينوا")),
    (
        "IQG16",
        "Salah Al-Din",
        "صلاح الدين",
        "سەڵاحەدین",
        34.66,
        43.634,
        ("Salahuddin", "Salahaddin", "Salah ad-Din", "Saladin"),
    ),
    ("IQG17", "Thi Qar", "ذي قار", "زیقار", 31.29, 46.274, ("Dhi Qar", "Zi Qar")),
    ("IQG18", "Wassit", "واسط", "واست", 32.712, 45.702, ("Wasit", "واسیت")),
)
_DISTRICT_ROWS: tuple[_Row, ...] = (
    # IQG01 Al-Anbar
    ("IQG01Q01", "Al-Falluja", "الفلوجة", "فەلوجە", 33.19, 43.685, ("Fallujah", "فەلووجە")),
    ("IQG01Q02", "Al-Kaim", "القائم", "قائیم", 34.435, 41.207, ("Al-Qaim", "Qaim")),
    ("IQG01Q03", "Al-Ramadi", "الرمادي", "ڕەمادی", 33.237, 42.987, ("ڕومادی",)),
    ("IQG01Q04", "Al-Rutba", "الرطبة", "ڕوتبە", 32.559, 41.158, ("Rutbah",)),
    # Anah: the source's عنه reads "about him"; it stays an alias.
    ("IQG01Q05", "Ana", "عانة", "عانە", 34.323, 41.922, ("Anah", "عنه", "عنة")),
    ("IQG01Q06", "Haditha", "حديثة", "حەدیسە", 34.237, 42.408, ("Hadithah",)),
    ("IQG01Q07", "Heet", "هيت", "هیت", 33.822, 42.678, ("Hit",)),
    # IQG02 Al-Basrah
    (
        "IQG02Q01",
        "Abu Al-Khaseeb",
        "أبي الخصيب",
        "ئەبولخەسیب",
        30.336,
        47.993,
        ("Abu al-Khasib", "أبو الخصيب"),
    ),
    ("IQG02Q02", "Al-Basrah", "البصرة", "بەسرە", 30.555, 47.606, ("Basra", "Basrah", "بەسڕە")),
    ("IQG02Q03", "Al-Faw", "الفاو", "فاو", 30.046, 48.202, ("Fao",)),
    ("IQG02Q04", "Al-Midaina", "المدينة", "مەدینە", 30.982, 47.246, ("Al-Madina",)),
    ("IQG02Q05", "Al-Qurna", "القرنة", "قورنە", 30.943, 47.442, ("Qurnah",)),
    ("IQG02Q06", "Al-Zubair", "الزبير", "زوبێر", 29.902, 46.865, ("Zubayr",)),
    ("IQG02Q07", "Shat Al-Arab", "شط العرب", "شەتولعەرەب", 30.723, 47.892, ("Shatt al-Arab",)),
    # IQG03 Al-Muthanna
    ("IQG03Q01", "Al-Khidhir", "الخضر", "خدر", 31.261, 45.652, ("Khidr",)),
    ("IQG03Q02", "Al-Rumaitha", "الرميثة", "ڕومەیسە", 31.502, 45.371, ("Rumaytha",)),
    ("IQG03Q03", "Al-Salman", "السلمان", "سەلمان", 30.251, 45.348, ()),
    ("IQG03Q04", "Al-Samawa", "السماوة", "سەماوە", 31.217, 45.301, ("Samawah",)),
    # IQG04 Al-Najaf
    ("IQG04Q01", "Al-Kufa", "الكوفة", "کووفە", 32.07, 44.449, ("Kufah",)),
    (
        "IQG04Q02",
        "Al-Manathera",
        "المناذرة",
        "مەنازیرە",
        31.774,
        44.472,
        ("Al-Manadhira", "Manadhirah"),
    ),
    ("IQG04Q03", "Al-Najaf", "النجف", "نەجەف", 31.101, 43.364, ("Najaf",)),
    # IQG05 Al-Qadissiya
    ("IQG05Q01", "Afaq", "عفك", "عەفەک", 32.02, 45.379, ("Afak",)),
    ("IQG05Q02", "Al-Diwaniya", "الديوانية", "دیوانیە", 32.02, 44.89, ("Diwaniyah", "دیوانییە")),
    ("IQG05Q03", "Al-Hamza", "الحمزة", "حەمزە", 31.591, 44.775, ()),
    ("IQG05Q04", "Al-Shamiya", "الشامية", "شامیە", 31.868, 44.629, ("Shamiyah",)),
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
    ("IQG06Q04", "Dokan", "دوكان", "دووکان", 35.92, 45.036, ("Dukan", "دوکان")),
    # Halabja: see _LABELS.
    ("IQG06Q05", "Halabja", "حلبجة", "هەڵەبجە", 35.187, 46.022, ("Halabcha",)),
    ("IQG06Q06", "Kalar", "كلار", "کەلار", 34.84, 45.327, ()),
    ("IQG06Q07", "Panjwin", "بنجوين", "پێنجوێن", 35.648, 45.931, ("Penjwin",)),
    ("IQG06Q08", "Pshdar", "بشدر", "پشدەر", 36.265, 45.102, ("Pishdar", "قەڵادزێ")),
    ("IQG06Q09", "Rania", "رانية", "ڕانیە", 36.167, 44.917, ("Ranya",)),
    ("IQG06Q10", "Sharbazher", "شهربازار", "شارباژێڕ", 35.703, 45.628, ("Sharbazhar",)),
    # IQG07 Babil
    ("IQG07Q01", "Al-Hashimiya", "الهاشمية", "هاشمیە", 32.381, 44.824, ()),
    ("IQG07Q02", "Al-Hilla", "الحلة", "حیللە", 32.355, 44.43, ("Hillah",)),
    ("IQG07Q03", "Al-Mahaweel", "المحاويل", "مەحاویل", 32.674, 44.652, ("Mahawil",)),
    ("IQG07Q04", "Al-Mussyab", "المسيب", "موسەییب", 32.8, 44.266, ("Musayyib",)),
    # IQG08 Baghdad
    ("IQG08Q01", "Al-Adhamiya", "الأعظمية", "ئەعزەمیە", 33.479, 44.354, ("Adhamiyah",)),
    (
        "IQG08Q02",
        "Al-Kadhmiyah",
        "الكاظمية",
        "کازمیە",
        33.464,
        44.192,
        ("Kadhimiya", "Kadhimiyah", "Kazimiyah"),
    ),
    ("IQG08Q03", "Al-Karkh", "الكرخ", "کەرخ", 33.179, 44.471, ()),
    ("IQG08Q04", "Al-Mada'in", "المدائن", "مەدائین", 33.219, 44.686, ("Madain",)),
    ("IQG08Q05", "Al-Mahmoudiya", "المحمودية", "مەحموودیە", 33.035, 44.343, ("Mahmudiyah",)),
    ("IQG08Q06", "Al-Risafa", "الرصافة", "ڕوسافە", 33.325, 44.465, ("Rusafa",)),
    ("IQG08Q07", "Al-Thawra", "الثورة", "سەورە", 33.388, 44.465, ("Sadr City", "مدينة الصدر")),
    # IQG09 Duhok
    ("IQG09Q01", "Al-Amadiya", "العمادية", "ئامێدی", 37.091, 43.579, ("Amedi", "Amadiyah")),
    ("IQG09Q02", "Duhok", "دهوك", "دهۆک", 36.943, 43.105, ("Dohuk", "Dahuk")),
    ("IQG09Q03", "Sumail", "سميل", "سێمێل", 36.913, 42.727, ("Sumel", "Semel")),
    ("IQG09Q04", "Zakho", "زاخو", "زاخۆ", 37.202, 42.904, ()),
    # IQG10 Diyala
    ("IQG10Q01", "Al-Khalis", "الخالص", "خالس", 34.085, 44.657, ()),
    ("IQG10Q02", "Al-Muqdadiya", "المقدادية", "موقدادیە", 33.881, 44.926, ("Muqdadiyah",)),
    # The source's Arabic name مندلي is Mandali, a sub-district of Baladruz since 1987.
    (
        "IQG10Q03",
        "Baladruz",
        "بلدروز",
        "بەلەدڕووز",
        33.56,
        45.44,
        ("Balad Ruz", "Baladrooz", "Mandali", "مندلي"),
    ),
    ("IQG10Q04", "Baquba", "بعقوبة", "بەعقووبە", 33.647, 44.713, ("Baqubah", "Baaquba")),
    ("IQG10Q05", "Khanaqin", "خانقين", "خانەقین", 34.52, 45.383, ()),
    ("IQG10Q06", "Kifri", "كفري", "کفری", 34.561, 44.958, ()),
    # IQG11 Erbil
    # Zibar district is the one the Kurdistan Region calls Mergasor (مێرگەسۆر).
    (
        "IQG11Q01",
        "Al-Zibar",
        "الزيبار",
        "زێبار",
        37.088,
        44.094,
        ("Zibar", "Mergasor", "مێرگەسۆر"),
    ),
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
    ("IQG12Q01", "Ain Al-Tamur", "عين التمر", "عەینولتەمر", 32.483, 43.533, ("Ain al-Tamr",)),
    ("IQG12Q02", "Al-Hindiya", "الهندية", "هیندیە", 32.465, 44.207, ("Hindiyah",)),
    ("IQG12Q03", "Kerbela", "كربلاء", "کەربەلا", 32.497, 43.906, ("Karbala", "Kerbala", "كربلا")),
    # IQG13 Kirkuk
    ("IQG13Q01", "Al-Hawiga", "الحويجة", "حەویجە", 35.264, 43.788, ("Hawija", "Hawijah")),
    ("IQG13Q02", "Daquq", "داقوق", "داقووق", 34.995, 44.171, ()),
    ("IQG13Q03", "Dibis", "دبس", "دوبز", 35.66, 44.131, ("Dibs", "Dabes")),
    ("IQG13Q04", "Kirkuk", "كركوك", "کەرکووک", 35.516, 44.529, ("Kerkuk", "کەرکوک")),
    # IQG14 Maysan
    ("IQG14Q01", "Al-Amara", "العمارة", "عەمارە", 32.107, 47.272, ("Amarah",)),
    ("IQG14Q02", "Ali Al-Gharbi", "علي الغربي", "عەلی غەربی", 32.419, 46.765, ()),
    ("IQG14Q03", "Al-Kahla", "الكحلاء", "کەحلا", 31.764, 47.43, ()),
    ("IQG14Q04", "Al-Maimouna", "الميمونة", "مەیموونە", 31.472, 46.812, ("Maimuna",)),
    (
        "IQG14Q05",
        "Al-Mejar Al-Kabir",
        "المجر الكبير",
        "مەجەڕولکەبیر",
        31.432,
        47.579,
        ("Majar al-Kabir",),
    ),
    ("IQG14Q06", "Qalat Saleh", "قلعة صالح", "قەلعەت ساڵح", 31.479, 47.383, ("Qalat Salih",)),
    # IQG15 Ninewa
    ("IQG15Q01", "Aqra", "عقرة", "ئاکرێ", 36.667, 43.946, ("Akre", "Akra")),
    ("IQG15Q02", "Al-Baaj", "البعاج", "بەعاج", 35.693, 41.7, ()),
    ("IQG15Q03", "Al-Hamdaniya", "الحمدانية", "حەمدانیە", 36.191, 43.409, ()),
    ("IQG15Q04", "Al-Hatra", "الحضر", "حەزەر", 35.589, 42.505, ()),
    ("IQG15Q05", "Al-Mosul", "الموصل", "مووسڵ", 36.102, 42.951, ("Mosul", "Mawsil", "موسڵ")),
    ("IQG15Q06", "Al-Shikhan", "الشيخان", "شێخان", 36.699, 43.415, ("Shekhan", "Shaikhan")),
    ("IQG15Q07", "Sinjar", "سنجار", "شنگال", 36.336, 42.014, ("Shingal", "شەنگال")),
    (
        "IQG15Q08",
        "Telafar",
        "تلعفر",
        "تەلەعفەر",
        36.525,
        42.348,
        ("Tal Afar", "Tel Afar", "Tall Afar"),
    ),
    ("IQG15Q09", "Tilkaef", "تلكيف", "تەلکێف", 36.574, 42.992, ("Tilkaif", "Tel Kaif", "Telkaif")),
    # IQG16 Salah Al-Din
    ("IQG16Q01", "Al-Daur", "الدور", "دوور", 34.56, 44.208, ("Dour",)),
    ("IQG16Q02", "Al-Shirqat", "الشرقاط", "شرقات", 35.474, 43.176, ("Sharqat",)),
    ("IQG16Q03", "Beygee", "بيجي", "بێجی", 34.887, 43.037, ("Baiji", "Bayji", "Beiji")),
    ("IQG16Q04", "Balad", "بلد", "بەلەد", 33.936, 43.84, ()),
    ("IQG16Q05", "Samarra", "سامراء", "سامەڕا", 34.333, 43.377, ("سامرا",)),
    ("IQG16Q06", "Tikrit", "تكريت", "تکریت", 34.763, 43.855, ()),
    (
        "IQG16Q07",
        "Tooz Khurmato",
        "طوز خورماتو",
        "خورماتوو",
        34.825,
        44.659,
        ("Tuz Khurmatu", "Tuz", "طوز", "دووزخورماتوو", "طوزخورماتو"),
    ),
    # IQG17 Thi Qar
    ("IQG17Q01", "Al-Chibayish", "الجبايش", "چبایش", 30.858, 46.905, ("Chibayish", "Jibayish")),
    ("IQG17Q02", "Al-Rifai", "الرفاعي", "ڕیفاعی", 31.671, 46.125, ()),
    ("IQG17Q03", "Al-Shatra", "الشطرة", "شەترە", 31.41, 46.315, ()),
    ("IQG17Q04", "Al-Nasiriya", "الناصرية", "ناسرییە", 31.122, 46.491, ("Nasiriyah", "ناسڕیە")),
    (
        "IQG17Q05",
        "Suq Al-Shoyokh",
        "سوق الشيوخ",
        "سووقولشیوخ",
        30.812,
        46.458,
        ("Suq al-Shuyukh",),
    ),
    # IQG18 Wassit
    ("IQG18Q01", "Al-Hai", "الحي", "حەی", 32.181, 46.024, ("Hay",)),
    ("IQG18Q02", "Al-Kut", "الكوت", "کووت", 32.467, 46.132, ()),
    ("IQG18Q03", "Al-Namaniya", "النعمانية", "نوعمانیە", 32.447, 45.511, ("Numaniyah",)),
    ("IQG18Q04", "Al-Suwaira", "الصويرة", "سوێڕە", 32.841, 45.047, ("Suwayrah",)),
    ("IQG18Q05", "Badra", "بدرة", "بەدرە", 33.068, 45.852, ()),
)


# The source of each attested Sorani name (sorani-places.csv); a name not listed here is a
# transliteration marked for review.
_CKB_SOURCES: dict[str, str] = {
    "IQG01": "https://www.kurdistan24.net/ckb/story/879030",
    "IQG01Q01": "https://www.kurdistan24.net/ckb/story/879030",
    "IQG02": "https://esta.krd/294252/",
    "IQG02Q02": "https://esta.krd/294252/",
    "IQG03": "https://esta.krd/294252/",
    "IQG04": "https://esta.krd/294252/",
    "IQG04Q03": "https://esta.krd/294252/",
    "IQG05": "https://www.radionawa.com/ku/all-detail.aspx?Jimare=20630",
    "IQG05Q02": "https://www.radionawa.com/ku/all-detail.aspx?Jimare=20630",
    "IQG05Q04": "https://www.radionawa.com/ku/all-detail.aspx?Jimare=20630",
    "IQG06": "https://ckb.wikipedia.org/wiki/ناحیەی_ئاغجەلەر",
    "IQG06Q01": "https://ckb.wikipedia.org/wiki/ناحیەی_ئاغجەلەر",
    "IQG06Q02": "https://ckb.wikipedia.org/wiki/ناحیەی_ئاغجەلەر",
    "IQG06Q03": "https://ckb.wikipedia.org/wiki/دەربەندیخان",
    "IQG06Q04": "http://bot.gov.krd/kurdish/sulaimaniya-province/qaladiza",
    "IQG06Q05": "https://www.kurdistan24.net/ckb/story/868095",
    "IQG06Q06": "https://ckb.wikipedia.org/wiki/ناحیەی_ڕزگاری",
    "IQG06Q07": "https://wikisource.org/wiki/تەئریخی_جاف/فەسڵی_سیانزەهەم",
    "IQG06Q08": "https://wikibin.ir/article/wp/شهرستان_پشدر",
    "IQG06Q09": "http://bot.gov.krd/kurdish/sulaimaniya-province/qaladiza",
    "IQG07": "https://esta.krd/294252/",
    "IQG08": "https://www.sbeiy.com/Details.aspx?jimare=17261",
    "IQG09": "https://www.kurdistan24.net/ckb/story/885249",
    "IQG09Q01": "https://www.kurdistan24.net/ckb/story/870807",
    "IQG09Q02": "https://www.kurdistan24.net/ckb/story/885249",
    "IQG09Q03": "https://www.kurdistan24.net/ckb/story/885040",
    "IQG10": "https://www.kurdistan24.net/ckb/story/895755",
    "IQG10Q05": "https://www.kurdistan24.net/ckb/story/895755",
    "IQG10Q06": "https://jgu.garmian.edu.krd/article_91486.html",
    "IQG11": "https://www.kurdistan24.net/ckb/story/885686",
    "IQG11Q02": "https://www.kurdistan24.net/ckb/story/885686",
    "IQG11Q03": "https://ku.964media.com/159998/",
    "IQG11Q06": "https://ckb.wikipedia.org/wiki/شەقڵاوە",
    "IQG12": "https://esta.krd/294252/",
    "IQG12Q03": "https://esta.krd/294252/",
    "IQG13": "https://www.kurdistan24.net/ckb/story/895582",
    "IQG13Q04": "https://www.kurdistan24.net/ckb/story/895582",
    "IQG14": "https://esta.krd/294252/",
    "IQG14Q01": "https://ku.964media.com/296928/",
    "IQG15": "https://ckb.wikipedia.org/wiki/پارێزگای_نەینەوا",
    "IQG15Q01": "http://drawmedia.net/page_detail?smart-id=4013",
    "IQG15Q05": "https://ckb.wikipedia.org/wiki/پارێزگای_نەینەوا",
    "IQG15Q06": "https://www.kurdistan24.net/ckb/story/879943",
    "IQG15Q07": "https://www.kurdistan24.net/ckb/story/869656",
    "IQG16": "https://mail.gulanmedia.com/so/story/182774/1621549728-33755--%D9%87%DB%8E%D8%B2%DB%95-%D8%B3%D9%88%D9%86%D9%86%DB%95%DA%A9%D8%A7%D9%86%DB%8C-%D8%A6%DB%95%D9%86%D8%A8%D8%A7%D8%B1-%D9%86%D8%A7%DA%95%D8%A7%D8%B2%DB%8C%D9%86",
    "IQG16Q07": "https://www.kurdistan24.net/so/news/5e402b1e-5969-4327-822e-23da99e8e509",
    "IQG17": "https://esta.krd/294252/",
    "IQG17Q04": "https://radioazadi.live/%D8%AE%DB%86%D9%BE%DB%8C%D8%B4%D8%A7%D9%86%D8%AF%D8%A7%D9%86%DB%8C-%D8%AC%D9%87%E2%80%8C%D9%85%D8%A7%D9%88%D9%87%E2%80%8C%D8%B1%DB%8C-%D9%84%D9%87%E2%80%8C-%D9%BE%D8%A7%D8%B1%DB%8E%D8%B2%DA%AF%D8%A7/",
    "IQG18": "https://esta.krd/294252/",
    "IQG18Q04": "https://www.radionawa.com/ku/all-detail.aspx?Jimare=20630",
}


def _place(row: _Row, parent: str | None) -> Place:
    """Build a Place from a data row."""
    pcode, name_en, name_ar, name_ckb, lat, lon, aliases = row
    source = _CKB_SOURCES.get(pcode, "")
    status: CkbStatus = "attested" if source else "transliterated"
    return Place(pcode, name_en, name_ar, name_ckb, parent, lat, lon, aliases, status, source)


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
    """Every key under which a place can be found: its names, labels and aliases."""
    names = (p.name_en, p.name_ar, p.name_ckb, *p.aliases, *_LABELS.get(p.pcode, {}).values())
    return frozenset(k for k in map(_key, names) if k)


def find(text: str, among: Iterable[Place]) -> Place | None:
    """The one place among these whose name or alias is typed; None if none or several match."""
    key = _key(text)
    if not key:
        return None
    found = {p.pcode: p for p in among if key in _keys(p)}
    return next(iter(found.values())) if len(found) == 1 else None
