"""Text helpers for what users type: digits of every script, bidi marks, Arabic letter forms."""

from __future__ import annotations

import re
import unicodedata

# Arabic-Indic (U+0660..) and Extended/Persian (U+06F0..) digits, and the Arabic decimal sign.
_DIGITS = str.maketrans(
    "٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹٫",
    "01234567890123456789.",
)
# ALM, LRM, RLM, embeddings and overrides, isolates; plus zero-width (non-)joiners and BOM.
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_ZW = re.compile("[\u200b-\u200d]")
_TASHKEEL = re.compile("[\u064b-\u065f\u0670\u0640]")  # harakat, superscript alef, tatweel
_SPACE = re.compile(r"\s+")
_ALEF_FORMS = str.maketrans("أإآٱ", "اااا")
_ARABIC_FORMS = str.maketrans("أإآٱىة", "اااايه")
# Sorani spellings in the wild use Arabic kaf and yeh; fold them to the Persian-block letters.
_KURDISH_FORMS = str.maketrans("كي", "کی")

MAX_INPUT = 4096


def ascii_digits(text: str) -> str:
    """Map Arabic-Indic and Persian digits (and ٫) to ASCII."""
    return text.translate(_DIGITS)


def strip_bidi(text: str) -> str:
    """Remove bidi control marks and zero-width characters."""
    return _ZW.sub("", _BIDI.sub("", text))


def clean_input(text: str, limit: int = MAX_INPUT) -> str:
    """Make typed text safe to handle: NFC, no control characters or bidi marks, trimmed."""
    text = unicodedata.normalize("NFC", text[: limit * 2])
    text = strip_bidi(text)
    text = "".join(
        ch if ch in "\n\t" or unicodedata.category(ch)[0] != "C" else " " for ch in text
    )
    return text.strip()[:limit]


def fold(text: str, *, sorani: bool = False) -> str:
    """Normalize text for comparison and search (not for display).

    NFKC, no bidi marks or tashkeel, one alef, ASCII digits, single spaces, Latin casefolded.
    ى->ي and ة->ه are skipped for Sorani, where ی and ە are letters of their own.
    """
    text = unicodedata.normalize("NFKC", text)
    text = _TASHKEEL.sub("", strip_bidi(text))
    if sorani:
        text = text.translate(_KURDISH_FORMS).translate(_ALEF_FORMS)
    else:
        text = text.translate(_ARABIC_FORMS)
    text = ascii_digits(text).casefold()
    return _SPACE.sub(" ", text).strip()


def match_key(text: str) -> str:
    """A loose key for matching a typed word against labels in any of our languages."""
    key = fold(text).translate(_KURDISH_FORMS)
    key = key.replace("\u06d5", "ه").replace("\u06be", "ه")  # ە and ھ as typed on Arabic layouts
    key = key.replace("ی", "ي").replace("ک", "ك")
    # Sorani typed on an Arabic keyboard: ێ ۆ ڕ ڵ come as ي و ر ل.
    key = key.translate(str.maketrans("ێۆڕڵ", "يورل"))
    key = re.sub(r"[^\w\s]", "", key)  # punctuation and emoji do not change a word
    return _SPACE.sub(" ", key).strip()


def parse_int(text: str) -> int | None:
    """Read a whole number typed in any digit script, or None."""
    cleaned = ascii_digits(strip_bidi(text)).strip()
    if re.fullmatch(r"[0-9]{1,9}", cleaned, re.ASCII):
        return int(cleaned)
    return None


def parse_command(text: str) -> tuple[str, tuple[str, ...]] | None:
    """Split "/start report" (or "/start@SomeBot report") into ("start", ("report",))."""
    stripped = strip_bidi(text).strip()
    if not stripped.startswith("/") or len(stripped) < 2 or stripped[1].isspace():
        return None
    head, *args = stripped[1:].split()
    name = head.split("@", 1)[0].lower()
    if not re.fullmatch(r"[a-z0-9_]{1,32}", name, re.ASCII):
        return None
    return name, tuple(args)


SORANI_LETTERS = frozenset("ێۆڕڵەڤھ")


def organization_key(name: str) -> str:
    """An organization's name normalized for finding duplicates.

    Hamza and alef forms, ta marbuta, alef maqsura, tashkeel, tatweel, bidi marks, digits, Latin
    case, punctuation and spacing are folded; a name with Sorani letters keeps ی and ە.
    """
    sorani = any(ch in SORANI_LETTERS for ch in name)
    key = fold(name, sorani=sorani)
    key = re.sub(r"[^\w\s]", " ", key)  # "Al-Amal" and "Al Amal", quotes and dots
    # "Assn." is "Association", "ج." is «جمعية»; "for", "of" and "the" say nothing of which
    # organization it is (word order is the fuzzy matcher's: it sorts the words).
    words = [_ABBREVIATIONS.get(word, word) for word in key.split()]
    return " ".join(word for word in words if word not in _FILLERS)


# Abbreviations in organizations' names, and what they stand for (folded as names are).
_ABBREVIATIONS = {
    short: fold(full)
    for short, full in {
        "assn": "association",
        "assoc": "association",
        "asso": "association",
        "org": "organization",
        "orgs": "organizations",
        "organisation": "organization",
        "soc": "society",
        "dev": "development",
        "intl": "international",
        "inst": "institute",
        "ج": "جمعية",
        "م": "منظمة",
    }.items()
}
_FILLERS = frozenset({"for", "of", "the", "and", "in"})


def split_text(text: str, limit: int) -> list[str]:
    """Cut a text into parts of at most `limit` characters, at paragraph or line ends."""
    parts: list[str] = []
    while len(text) > limit:
        cut = max(text.rfind("\n\n", 0, limit), text.rfind("\n", 0, limit))
        if cut <= 0:
            cut = text.rfind(" ", 0, limit)
        if cut <= 0:
            cut = limit
        parts.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    parts.append(text)
    return [part for part in parts if part]
