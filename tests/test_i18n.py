"""The catalogs: complete, not fuzzy, placeholders intact, in step with the code; bidi helpers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from hypothesis import given
from hypothesis import strategies as st

from bot.i18n import (
    FSI,
    LOCALES,
    PDI,
    RLM,
    direct,
    format_number,
    isolate,
    locales_dir,
    ngettext,
    order_by_hint,
    use_locale,
)

ROOT = locales_dir().parent
ARABIC_PLURALS = (
    "nplurals=6; plural=(n==0 ? 0 : n==1 ? 1 : n==2 ? 2 : "
    "n%100>=3 && n%100<=10 ? 3 : n%100>=11 ? 4 : 5);"
)


def load(locale: str) -> Catalog:
    path = locales_dir() / locale / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as fh:
        return read_po(fh, locale=locale)


def template() -> Catalog:
    with (locales_dir() / "messages.pot").open("rb") as fh:
        return read_po(fh)


def strings_of(message: Message) -> list[str]:
    """The translations of a message: one, or one per plural form."""
    value = message.string
    if isinstance(value, str):
        return [value]
    return [str(v or "") for v in value or [""]]


def ids(catalog: Catalog) -> set[tuple[str | None, str]]:
    """Each message's (context, id): one English text may have two contexts."""
    return {(m.context, m.id if isinstance(m.id, str) else m.id[0]) for m in catalog if m.id}


def extracted_from_code() -> set[tuple[str | None, str]]:
    """What pybabel would extract now, with the Makefile's keywords (and its default pgettext)."""
    found: set[tuple[str | None, str]] = set()
    keywords = {"_": None, "N_": None, "ngettext": (1, 2), "pgettext": ((1, "c"), 2)}
    methods = [
        ("**.py", "python"),
        ("bot/webconsole/templates/**.html", "jinja2"),
        ("bot/public/templates/**.html", "jinja2"),
    ]
    for folder in ("bot", "handlers"):
        for _file, _line, message, _comments, context in extract_from_dir(
            ROOT / folder,
            method_map=[(pattern.removeprefix(folder + "/"), how) for pattern, how in methods],
            keywords=keywords,
            options_map={"**.html": {"extensions": "jinja2.ext.i18n"}},
        ):
            found.add((context, message if isinstance(message, str) else message[0]))
    return found


def test_the_template_is_in_step_with_the_code() -> None:
    missing = extracted_from_code() - ids(template())
    stale = ids(template()) - extracted_from_code()
    assert not missing, f"run `make locales`: not in messages.pot: {sorted(missing)}"
    assert not stale, f"run `make locales`: no longer in the code: {sorted(stale)}"


@pytest.mark.parametrize("locale", LOCALES)
def test_every_catalog_has_every_message(locale: str) -> None:
    assert ids(load(locale)) == ids(template())


@pytest.mark.parametrize("locale", LOCALES)
def test_every_entry_is_translated_not_fuzzy_and_placeholders_match(locale: str) -> None:
    catalog = load(locale)
    problems = []
    for message in catalog:
        if not message.id:
            continue
        strings = strings_of(message)
        if message.fuzzy:
            problems.append(f"fuzzy: {message.id!r}")
        if not all(s and s.strip() for s in strings):
            problems.append(f"empty: {message.id!r}")
        if message.pluralizable and len(strings) != catalog.num_plurals:
            problems.append(f"plural forms: {message.id!r}")
        problems.extend(f"{message.id!r}: {error}" for error in message.check(catalog))
        msgid = message.id if isinstance(message.id, str) else message.id[0]
        for string in strings:
            if set(re.findall(r"%\(\w+\)s", msgid)) != set(re.findall(r"%\(\w+\)s", string)):
                problems.append(f"placeholders: {message.id!r}")
    assert not problems, "\n".join(problems)


def test_arabic_has_six_plural_forms_in_the_right_order() -> None:
    catalog = load("ar")
    assert catalog.plural_forms == ARABIC_PLURALS  # as written in the header, not Babel's guess
    assert catalog.num_plurals == 6


@pytest.mark.parametrize("locale", ["ckb", "en"])
def test_two_plural_forms(locale: str) -> None:
    assert load(locale).num_plurals == 2


def test_sorani_is_written_in_sorani_letters() -> None:
    catalog = load("ckb")
    text = " ".join(s for m in catalog if m.id for s in strings_of(m))
    assert not set(text) & set("يكىة"), "Arabic yeh/kaf/alef maqsura/ta marbuta in Sorani"
    assert set(text) & set("ێۆڕڵە")
    declaration = (locales_dir() / "ckb" / "declaration.txt").read_text("utf-8")
    assert not set(declaration) & set("يكىة")


def test_arabic_plural_rule_picks_the_six_forms() -> None:
    from bot.i18n import catalog

    rule = catalog("ar").plural
    forms = [rule(n) for n in (0, 1, 2, 3, 10, 11, 99, 100, 101, 102)]
    assert forms == [0, 1, 2, 3, 3, 4, 4, 5, 5, 5]


def test_ngettext_falls_back_to_english_rules_for_unknown_messages() -> None:
    with use_locale("en"):
        assert ngettext("%(n)s part", "%(n)s parts", 1) == "%(n)s part"
        assert ngettext("%(n)s part", "%(n)s parts", 3) == "%(n)s parts"


def test_long_texts_exist_in_every_language() -> None:
    for locale in LOCALES:
        assert (locales_dir() / locale / "declaration.txt").read_text("utf-8").strip()


def test_right_to_left_messages_start_right_to_left() -> None:
    assert direct("2 families", "ar") == RLM + "2 families"
    assert direct("عائلتان", "ar") == "عائلتان"
    assert direct(f"{FSI}R-7K3M9{PDI} رقم", "ckb") == RLM + f"{FSI}R-7K3M9{PDI} رقم"
    assert direct("2 families", "en") == "2 families"


def test_isolate_only_in_right_to_left() -> None:
    with use_locale("ar"):
        assert isolate("R-7K3M9") == f"{FSI}R-7K3M9{PDI}"
    with use_locale("en"):
        assert isolate("R-7K3M9") == "R-7K3M9"


def test_numbers_are_formatted_per_locale() -> None:
    with use_locale("en"):
        assert format_number(1234567) == "1,234,567"
    with use_locale("ar"):
        assert re.sub(r"[^\d]", "", format_number(1234567)) == "1234567"


@pytest.mark.parametrize(
    ("hint", "first"),
    [
        ("ar", "ar"),
        ("ar-IQ", "ar"),
        ("ckb", "ckb"),
        ("sdh", "ckb"),
        ("ku", "ar"),
        (None, "ar"),
        ("en", "ar"),
        ("fr", "ar"),
    ],
)
def test_the_hint_only_orders_the_picker(hint: str | None, first: str) -> None:
    order = order_by_hint(hint)
    assert order[0] == first
    assert sorted(order) == sorted(LOCALES)


def test_no_fstring_is_a_message_id() -> None:
    pattern = re.compile(r"""\b(?:_|N_|ngettext)\(\s*f["']""")
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("bot", "handlers")
        for path in Path(ROOT / folder).rglob("*.py")
        if pattern.search(path.read_text("utf-8"))
    ]
    assert not offenders


# The Arabic and Sorani corrections of issue #18: each check fails on the old text.

BUTTON_LIMIT = 20  # characters of a label on a half-width button (two to a row)


def translations(locale: str) -> dict[str, list[str]]:
    """Each msgid's translations (every plural form) in a locale."""
    return {
        (m.id if isinstance(m.id, str) else m.id[0]): strings_of(m) for m in load(locale) if m.id
    }


def test_a_count_stands_as_a_value_in_arabic_plurals() -> None:
    # «وهو 2 شخصان» or «2 طلبان»: a digit before a dual noun is not Arabic.
    noun_after_count = re.compile(r"%\(\w+\)s\s*[\u0621-\u064a]")
    plurals = [m for m in load("ar") if m.id and m.pluralizable]
    assert len(plurals) >= 5  # each of them checked below
    for message in plurals:
        for form in strings_of(message):
            assert not noun_after_count.search(form), form


def test_sorani_singular_takes_the_singular_verb() -> None:
    with use_locale("ckb"):
        one = ngettext(
            "That is more than the family's %(count)s person. Please check the number.",
            "That is more than the family's %(count)s people. Please check the number.",
            1,
        )
    assert "کەسن" not in one
    assert "کەسە" in one


def test_arabic_wording_corrections() -> None:
    ar = {k: v[0] for k, v in translations("ar").items()}
    assert ar["Informal settlement"] == "تجمّع سكني غير رسمي"
    assert ar["Is the family headed by a woman?"] == "هل تعيل العائلةَ امرأة؟"
    assert (
        "الحد الأقصى لعدد الأحرف: %(limit)s"
        in ar["Please keep it shorter: at most %(limit)s characters (yours has %(given)s)."]
    )
    # A woman who signs presses neutral words about herself.
    assert ar["I am authorized to sign for this organization"] == "لديّ تفويض بالتوقيع باسمها"
    assert ar["I am not"] == "ليس لديّ تفويض"
    everything = " ".join(s for v in translations("ar").values() for s in v)
    assert not re.search("مخو[َّ]*ل", everything)
    assert not re.search("غدا(?!ً)", everything)  # one spelling: غدًا
    declaration = (locales_dir() / "ar" / "declaration.txt").read_text("utf-8")
    for word in ("فضلًا", "تمهيدًا", "وقّعت", "وفقًا"):
        assert word in declaration


def test_no_keep_it_has_a_context_per_confirmation() -> None:
    from bot.i18n import catalog

    data = catalog("ar").pgettext("data", "No, keep it")
    signature = catalog("ar").pgettext("signature", "No, keep it")
    assert data != signature
    assert "بياناتي" in str(data)
    assert "التوقيع" in str(signature)


def test_sorani_minor_corrections() -> None:
    ckb = {k: v[0] for k, v in translations("ckb").items()}
    assert ckb["Recurring"] == "دووبارە دەبێتەوە"
    for locale in ("ar", "ckb"):
        text = " ".join(s for v in translations(locale).values() for s in v)
        assert not re.search("[٠-٩۰-۹]", text), f"one digit style in {locale}"


def test_sorani_dates_read_day_month_year_then_time() -> None:
    from datetime import UTC, datetime

    from bot.i18n import format_datetime

    with use_locale("ckb"):
        shown = format_datetime(datetime(2026, 12, 6, 16, 5, tzinfo=UTC))
    assert shown == "6ی کانونی یەکەمی 2026، 19:05"


def test_status_notices_say_what_the_status_means() -> None:
    from bot.reports import STATUS_LABELS, STATUS_NOTICES

    assert set(STATUS_NOTICES) == set(STATUS_LABELS)
    ar = {k: v[0] for k, v in translations("ar").items()}
    assert "طلبك السابق قيد المتابعة" in ar[STATUS_NOTICES["duplicate"]]
    assert "بعد المتابعة" in ar[STATUS_NOTICES["invalid"]]
    for notice in STATUS_NOTICES.values():
        assert "%(reference)s" in notice
        assert "«" not in ar[notice]  # a sentence, not a bare status word in quotes


@pytest.mark.parametrize("locale", LOCALES)
def test_half_width_buttons_are_short(locale: str) -> None:
    from bot import gazetteer
    from bot.reports import NEED_BUTTONS
    from bot.signatures import TYPE_LABELS

    with use_locale(locale):
        from bot.i18n import _

        labels = [_(label) for label in (*NEED_BUTTONS.values(), *TYPE_LABELS.values())]
    places = (*gazetteer.GOVERNORATES, *(d for ds in gazetteer.DISTRICTS.values() for d in ds))
    labels += [p.name(locale) for p in places]
    long = [label for label in labels if len(label) > BUTTON_LIMIT]
    assert not long, long


def test_the_summary_keeps_the_full_wording_of_the_needs() -> None:
    from bot.reports import NEED_LABELS
    from handlers.report import FORM

    with use_locale("en"):
        assert FORM["needs"].words({"needs": ["legal"]}) == "Civil documents and legal help"
    assert NEED_LABELS["legal"] == "Civil documents and legal help"


def test_the_picker_says_which_kurdish() -> None:
    from bot.i18n import LANGUAGE_NAMES

    assert LANGUAGE_NAMES["ckb"] == "کوردی (سۆرانی)"


def test_the_names_of_the_languages_have_one_home() -> None:
    import ast

    from bot import i18n

    tables = (i18n.LANGUAGE_NAMES, i18n.SHORT_LANGUAGE_NAMES, i18n.LANGUAGE_NAMES_TRANSLATED)
    assert all(set(table) == set(LOCALES) for table in tables)
    names = {name for table in tables for name in table.values()} | {"Arabic", "Kurdish"}

    def words(node: ast.expr | None) -> set[str]:
        """The strings of a dict's value: a constant, or what _() or N_() is given."""
        if isinstance(node, ast.Call) and node.args:
            node = node.args[0]
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        return set()

    # A table of language names anywhere else (the console had its own short one) would have
    # to be kept in step by whoever adds a language: bot/i18n.py is the only place.
    found = []
    for path in sorted([*(ROOT / "bot").rglob("*.py"), *(ROOT / "handlers").rglob("*.py")]):
        if path == ROOT / "bot" / "i18n.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Dict) and any(words(value) & names for value in node.values):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []


def test_right_to_left_catalogs_isolate_every_left_to_right_run() -> None:
    from bot.i18n import isolate_runs, translate_in

    assert isolate_runs("اكتبه هكذا: 0770 123 4567.") == f"اكتبه هكذا: {FSI}0770 123 4567{PDI}."
    assert isolate_runs(f"{FSI}/mydata{PDI} يعرض") == f"{FSI}/mydata{PDI} يعرض"
    shown = translate_in(
        "ar", "That does not look like a phone number. Please type it like 0770 123 4567."
    )
    assert f"{FSI}0770 123 4567{PDI}" in shown
    english = translate_in(
        "en", "That does not look like a phone number. Please type it like 0770 123 4567."
    )
    assert FSI not in english


@given(st.text(alphabet=st.sampled_from("ab 09-/:.%()s\u2068\u2069يکە،"), max_size=40))
def test_isolating_runs_only_adds_marks_and_is_done_once(text: str) -> None:
    from bot.i18n import isolate_runs
    from bot.text import strip_bidi

    once = isolate_runs(text)
    assert strip_bidi(once) == strip_bidi(text)
    assert isolate_runs(once) == once


# The review of the entries added after #18: one word for one thing, as the reviewed entries say.

ONE_WORD = [
    ("ar", r"تيليجرام", "تيليغرام"),  # Telegram
    ("ar", r"(?<!رو)بوت", "روبوت"),  # the bot: «روبوت المحادثة», not the loanword «البوت»
    ("ar", r"يُ?رجى", "من فضلك"),  # please
    ("ckb", r"ڕێکخەر", "هەماهەنگکار"),  # coordinator («ڕێکخەر» is next to «ڕێکخراو»)
    ("ckb", r"واتساپ|واتسئاپ", "واتسئەپ"),  # WhatsApp
    ("ckb", r"لاپەڕە", "پەڕە"),  # page
    ("ckb", r"ڕاگەیەندراو|ڕاگەیاندنەکە", "بەیاننامە"),  # the declaration
    ("ckb", r"قبووڵ", "پەسەند"),  # accept (received is «وەرگیرا», in the same tables)
]


@pytest.mark.parametrize(("locale", "other", "word"), ONE_WORD)
def test_one_word_for_one_thing(locale: str, other: str, word: str) -> None:
    texts = [s for v in translations(locale).values() for s in v]
    assert any(word in s for s in texts)
    offenders = [s for s in texts if re.search(other, s)]
    assert not offenders, offenders


def test_arabic_writes_the_tanween_of_fath_one_way() -> None:
    # «أولًا», «جدًا»: the fathatan on the letter before the alef, never on the alef («أولاً»).
    texts = [s for v in translations("ar").values() for s in v]
    assert any("ًا" in s for s in texts)
    assert not [s for s in texts if "اً" in s]


def test_no_sorani_suffix_hangs_after_a_placeholder() -> None:
    # «داواکاریی %(reference)s ی ڕەت کردەوە»: the reference is isolated on screen, so a clitic
    # after it stands alone; the sentence puts it on the verb («ڕەتی کردەوە») instead.
    hanging = re.compile(r"%\(\w+\)s [یە](?=[\s،.:؛]|$)")
    offenders = [s for v in translations("ckb").values() for s in v if hanging.search(s)]
    assert not offenders, offenders


def test_the_consoles_when_is_a_time_not_the_familys_displacement() -> None:
    """ "When" in a report is the time of displacement («وقت النزوح»); a page's column of
    times asks for the word in the context "time"."""
    from tests.helpers import t, tc

    folders = [ROOT / "bot/webconsole/templates", ROOT / "bot/public/templates"]
    bare = [p.name for f in folders for p in f.glob("*.html") if '_("When")' in p.read_text()]
    assert bare == []
    assert t("ar", "When") != tc("ar", "time", "When")
    assert tc("ar", "time", "When") == "الوقت"


def test_isolating_twice_a_token_glued_to_another() -> None:
    """Found by the property test: "/a/a" isolated twice came out with a second isolate."""
    from bot.i18n import isolate_runs

    assert isolate_runs(isolate_runs("/a/a")) == isolate_runs("/a/a") == f"{FSI}/a{PDI}/a"
