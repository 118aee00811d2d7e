"""Right to left on screen: every Latin, digit and command run keeps its order in ar and ckb.

Each message is laid out with the Unicode bidi algorithm (python-bidi, the Rust unicode-bidi
crate) as a right-to-left paragraph per line, the way Telegram and WhatsApp draw a message that
starts with a right-to-left letter; each left-to-right run of the logical text must appear, in
its logical order, in the visual line. Unisolated, "0770 123 4567" is drawn "4567 123 0770".
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from babel.messages.pofile import read_po
from bidi import get_display

from bot import gazetteer
from bot.bulletins import render
from bot.i18n import LANGUAGE_NAMES, catalog, format_datetime, locales_dir, use_locale
from bot.messages import Address
from bot.models import Bulletin
from tests.conftest import Person
from tests.helpers import choose_language, t
from tests.test_report import open_report

RTL = ("ar", "ckb")
# A left-to-right run as a reader sees one: a /command, or Latin letters and digits with the
# punctuation inside them, words joined by single spaces ("0770 123 4567", "2026-12-01 09:00").
TOKEN = r"(?:/[a-z]\w*|\+?[A-Za-z0-9](?:[A-Za-z0-9._:/@+,-]*[A-Za-z0-9])?)"
RUN = re.compile(rf"{TOKEN}(?: {TOKEN})*")
COUNTS = (1, 2, 3, 11, 100)


def misordered(text: str) -> list[str]:
    """The left-to-right runs of a message that the bidi algorithm draws out of order."""
    wrong = []
    for line in text.split("\n"):
        shown = get_display(line, base_dir="R")
        wrong += [f"{run!r} in {line!r}" for run in RUN.findall(line) if run not in shown]
    return wrong


def samples(locale: str) -> dict[str, Any]:
    """Values for every placeholder, as the code fills them: mostly Latin, the hard case."""
    moment = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
    with use_locale(locale):
        when = format_datetime(moment)
    place = gazetteer.place("IQG06Q05")
    assert place is not None
    return {
        "reference": "R-7K3M9",
        "receipt": "S-4F7Q2",
        "id": "B-2K7Q",
        "phone": "+964 770 123 4567",
        "email": "info@amal.example.org",
        "address": "whatsapp:+9647701234567",
        "when": when,
        "date": when,
        "time": "09:00",
        "zone": "Asia/Baghdad",
        "day": "Friday",
        "limit": "1,000",
        "given": "1,250",
        "organization": "Al-Amal Society 2",
        "names": "جمعية الأمل / Al-Amal Society 2",
        "name": "Zainab Hassan",
        "role": "Director",
        "city": "Zakho",
        "governorate": place.name(locale),
        "place": "Sharya Camp 2",
        "point": "36.19,43.99",
        "language": LANGUAGE_NAMES["en"],
        "languages": "English, کوردی (سۆرانی)",
        "filters": "IQG09 · 2026-12",
        "item": "Phone",
        "title": "Winter 2026 aid",
        "notes": "Tent 14-B, near gate 3",
        "reason": "No such NGO in Erbil (checked 2026-12-01)",
    }


def values_for(message: str, locale: str, count: int) -> dict[str, Any]:
    """Sample values for the placeholders of one message; numbers for everything else."""
    known = samples(locale)
    return {name: known.get(name, f"{count} 200") for name in re.findall(r"%\((\w+)\)s", message)}


def every_message(locale: str) -> list[str]:
    """Each catalog entry as the bot sends it in `locale`, with sample values and counts."""
    with (locales_dir() / "messages.pot").open("rb") as fh:
        template = read_po(fh)
    translations = catalog(locale)
    texts = []
    for message in template:
        if not message.id:
            continue
        if isinstance(message.id, str):
            if message.context:
                text = str(translations.pgettext(message.context, message.id))
            else:
                text = translations.gettext(message.id)
            texts.append(text % values_for(message.id, locale, 3) if "%(" in text else text)
            continue
        for n in COUNTS:
            text = translations.ngettext(message.id[0], message.id[1], n)
            values = values_for(message.id[0], locale, n) | {"count": n, "days": n}
            texts.append(text % values)
    return texts


@pytest.mark.parametrize("locale", RTL)
def test_every_catalog_message_keeps_its_left_to_right_runs_in_order(locale: str) -> None:
    texts = every_message(locale)
    assert len(texts) > 380
    problems = [p for text in texts for p in misordered(text)]
    assert not problems, "\n".join(problems)


def test_the_check_sees_the_reversed_phone_number_command_and_date() -> None:
    # What the issue saw on screen before the runs were isolated.
    assert misordered("من فضلك اكتبه هكذا: 0770 123 4567.")
    assert misordered("/mydata يعرض كل ما نحتفظ به عنك")
    assert misordered("مثلًا 2026-12-01 09:00، أو")
    assert not misordered("من فضلك اكتبه هكذا: \u20680770 123 4567\u2069.")


@pytest.mark.parametrize("locale", RTL)
async def test_a_report_summary_keeps_its_runs_in_order(person: Person, locale: str) -> None:
    await open_report(person, locale)
    await person.press("gov:IQG06")
    await person.press("dist:IQG06Q05")
    await person.send("12 Sharya Camp, Block 3")
    await person.press("orig:IQG15")
    await person.send("3/2024")
    for count in ("n:6", "n:2", "n:1", "n:0", "n:1"):
        await person.press(count)
    await person.tap(t(locale, "Yes"))  # a woman provides for the family
    await person.tap(t(locale, "Camp"))
    for need in ("need:food", "need:legal", "need:done", "urgent:legal"):
        await person.press(need)
    await person.send("2 tents, gate 14-B")
    await person.tap(t(locale, "Yes"))  # a coordinator may call
    await person.send("0770 123 4567")
    await person.tap(t(locale, "No"))  # the number stays with the coordinators
    summary = person.text()
    assert t(locale, "Please check your answers:") in summary
    assert "+9647701234567" in summary
    assert not misordered(summary)
    await person.tap(t(locale, "Send the report"))
    assert re.search(r"R-[0-9A-Z]{5}", person.text())
    assert not misordered(person.text())


@pytest.mark.parametrize("locale", RTL)
async def test_a_signature_summary_keeps_its_runs_in_order(person: Person, locale: str) -> None:
    await choose_language(person, locale)
    await person.tap(t(locale, "Sign the declaration"))
    if t(locale, "I have read it") in person.labels():
        await person.tap(t(locale, "I have read it"))
    await person.send("2020 Youth Forum")
    await person.send("منتدى شباب 2020")
    await person.press("type:association")
    await person.press("gov:IQG11")
    await person.send("40 Meter Street, Erbil")
    await person.send("Zainab Hassan")
    await person.send("IT Director")
    await person.send("0750 123 4567")
    await person.send("info@amal.example.org")
    await person.press("auth:yes")
    summary = person.text()
    assert "info@amal.example.org" in summary
    assert not misordered(summary)
    await person.tap(t(locale, "Confirm and sign"))
    assert re.search(r"S-[0-9A-Z]+|[0-9A-Z]{4,}", person.text())
    assert not misordered(person.text())


@pytest.mark.parametrize("locale", RTL)
def test_a_bulletin_keeps_its_runs_in_order(locale: str) -> None:
    bulletin = Bulletin(
        public_id="B-2K7Q",
        texts={"en": {"title": "Winter aid", "text": "Tents reach Zakho camps on 1 December."}},
        status="sent",
        created_by="console:editor",
        created_at=datetime(2026, 12, 1, 6, 0, tzinfo=UTC),
        published_at=datetime(2026, 12, 1, 6, 0, tzinfo=UTC),
    )
    shown = render(bulletin, Address("console", "reader"), locale, "Asia/Baghdad")
    assert "B-2K7Q" in shown.text
    # The English body is an English paragraph; the rest is the reader's right-to-left text.
    footer_and_note = [line for line in shown.text.split("\n") if "Tents" not in line]
    assert not misordered("\n".join(footer_and_note))
