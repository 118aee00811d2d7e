"""The catalogs: complete, not fuzzy, placeholders intact, in step with the code; bidi helpers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

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
    for folder in ("bot", "handlers"):
        for _file, _line, message, _comments, context in extract_from_dir(
            ROOT / folder, method_map=[("**.py", "python")], keywords=keywords
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
