"""Coordinators triage reports: the list, one report, status changes, the audit log."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.db import Database
from bot.engine import Engine
from bot.i18n import FSI, PDI, direct
from bot.messages import Address, Inbound, Media
from bot.models import AuditEntry
from bot.reports import STATUS_NOTICES
from bot.text import ascii_digits
from handlers.coordinator import EXPORT_DIR
from tests.conftest import ON_POSTGRES, Person
from tests.helpers import choose_language, menu_labels, t, until
from tests.test_report import by_buttons_to_summary_with_needs, reports


@pytest.fixture
async def coordinator(engine: Engine) -> Person:
    """The Telegram coordinator of the test settings, who reads Arabic."""
    person = Person(engine, Address("telegram", "1000"))
    await choose_language(person, "ar")
    return person


async def family_report(
    engine: Engine, locale: str = "ckb", needs: str = "need:protection"
) -> Person:
    """A family on WhatsApp sends a report in `locale`."""
    family = Person(engine, Address("whatsapp", "+9647501112233"))
    await choose_language(family, locale)
    await family.tap(t(locale, "Report a displaced family"))
    await family.tap(t(locale, "I agree"))
    for payload in ("gov:IQG09", "dist:unknown", "place:skip", "orig:IQG15", "when:gt1y"):
        await family.press(payload)
    for payload in ("n:3", "n:0", "n:0", "n:0", "n:0", "no", "shelter:camp", needs):
        await family.press(payload)
    await family.press("need:done")
    await family.send("We have no doctor here")
    await family.press("yes")
    await family.send("0750 111 2233")
    await family.press("no")  # the number stays with the coordinators
    await family.tap(t(locale, "Send the report"))
    return family


async def audit_rows(db: Database) -> list[AuditEntry]:
    async with db.transaction() as session:
        return list((await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all())


async def test_open_verify_and_the_family_is_told_in_its_language(
    engine: Engine, db: Database, coordinator: Person
) -> None:
    family = await family_report(engine, "ckb")
    alerts = [m for m in family.sent if m.address == coordinator.address]
    assert len(alerts) == 1
    [report] = await reports(db)
    open_button = alerts[0].options()[0]
    assert open_button.label == t("ar", "Open the report")

    await coordinator.press(open_button.payload)
    shown = coordinator.text()
    assert report.reference in shown
    assert "We have no doctor here" in shown  # coordinators see the personal fields
    assert "+9647501112233" in shown
    await coordinator.tap(t("ar", "Verified"))
    await coordinator.send("اتصلنا بالعائلة")
    await coordinator.tap(t("ar", "No, only for the record"))
    to_family = [m for m in coordinator.sent if m.address == family.address]
    assert len(to_family) == 1
    # The family is told what the new status means for it, in its language.
    notice = STATUS_NOTICES["verified"]
    reference = f"{FSI}{report.reference}{PDI}"
    assert to_family[0].text == direct(t("ckb", notice) % {"reference": reference}, "ckb")
    assert report.reference in to_family[0].text
    [stored] = await reports(db)
    assert stored.status == "verified"
    rows = await audit_rows(db)
    assert [r.action for r in rows] == ["view", "status", "view"]
    assert rows[1].actor == "telegram:1000"
    assert rows[1].detail == {
        "before": "new",
        "after": "verified",
        "note": "اتصلنا بالعائلة",
        "told": False,
    }
    # The note stays with the report, for the next coordinator who opens it.
    assert "اتصلنا بالعائلة" in coordinator.text()
    assert rows[1].report_id == stored.id


async def test_a_status_note_too_long_or_not_a_text_is_asked_again(
    engine: Engine, db: Database, coordinator: Person
) -> None:
    """Nothing typed is cut short: 1,001 characters are refused with the count, 1,000 are kept
    whole; a photo or a blank text is asked again. The status stays until the note is taken."""
    family = await family_report(engine, "en")
    [report] = await reports(db)
    alerts = [m for m in family.sent if m.address == coordinator.address]
    await coordinator.press(alerts[0].options()[0].payload)
    await coordinator.tap(t("ar", "Verified"))
    await coordinator.send("ن" * 1001)
    assert (
        t("ar", "Please keep it shorter: at most %(limit)s characters (yours has %(given)s).")[:10]
        in coordinator.text()
    )
    assert "1001" in ascii_digits(coordinator.text()).replace("٬", "").replace(",", "")
    await coordinator.deliver(
        Inbound(
            coordinator.address,
            "photo-1",
            kind="photo",
            media=(Media("photo", "file-1", "image/jpeg"),),
        )
    )
    assert t("ar", "Add a short note for the record (what was done, by whom), or press Skip.") in (
        coordinator.text()
    )  # the engine's answer to a photo, and the question again
    await coordinator.send("\u200f \u2066 ")  # nothing but marks and spaces
    assert t("ar", "Add a short note for the record (what was done, by whom), or press Skip.") in (
        coordinator.text()
    )
    assert (await reports(db))[0].status == "new"
    await coordinator.send("ن" * 1000)
    await coordinator.tap(t("ar", "No, only for the record"))
    [stored] = await reports(db)
    assert stored.status == "verified"
    [change] = [r for r in await audit_rows(db) if r.action == "status"]
    assert change.detail["note"] == "ن" * 1000
    assert report.reference == stored.reference


async def test_a_note_sent_to_the_family_and_the_history_of_a_report(
    engine: Engine, db: Database, coordinator: Person
) -> None:
    family = await family_report(engine, "en")
    [report] = await reports(db)
    await coordinator.send(f"/report {report.reference}")
    await coordinator.tap(t("ar", "Verified"))
    await coordinator.send("A team visits on Sunday")
    await coordinator.tap(t("ar", "Yes, send the note too"))
    [to_family] = [m for m in coordinator.sent if m.address == family.address]
    assert "A note from the coordinator: A team visits on Sunday" in to_family.text
    await coordinator.tap(t("ar", "Referred to a relief organization"))
    await coordinator.tap(t("ar", "Skip"))
    shown = coordinator.text()
    history = shown[shown.index(t("ar", "History:")) :]
    assert history.index("A team visits on Sunday") < history.index(
        t("ar", "Referred to a relief organization")
    )
    assert t("ar", "sent to the family") in history
    # My reports: each with its day.
    await family.send("/menu")
    await family.tap("My reports")
    assert report.reference in family.text()
    assert str(report.created_at.year) in family.text()


async def test_a_duplicate_names_the_earlier_report(
    engine: Engine, db: Database, coordinator: Person
) -> None:
    family = await family_report(engine, "en")
    await family.send("/menu")
    await family_report_again(family)
    first, second = await reports(db)
    assert second.duplicate_of == first.id
    await coordinator.send(f"/report {second.reference}")
    assert first.reference in coordinator.text()
    await coordinator.tap(t("ar", "Open %(reference)s") % {"reference": first.reference})
    assert t("ar", "Report %(reference)s").split("%")[0] in coordinator.text()
    assert "/report" not in coordinator.text()


async def family_report_again(family: Person) -> None:
    """The same family sends the same report again."""
    await family.tap("Report a displaced family")
    await family.tap("I agree")
    for payload in ("gov:IQG09", "dist:unknown", "place:skip", "orig:IQG15", "when:gt1y"):
        await family.press(payload)
    for payload in ("n:3", "n:0", "n:0", "n:0", "n:0", "no", "shelter:camp", "need:protection"):
        await family.press(payload)
    await family.press("need:done")
    await family.send("We have no doctor here")
    await family.press("no")
    await family.tap("Send the report")


@pytest.mark.parametrize(
    ("locale", "status", "notice", "listed"),
    [
        ("en", "Referred", "passed to a relief organization", "Referred to a relief organization"),
        # «مكرر» would read like a refusal: the family is told its earlier request is followed.
        ("ar", "Duplicate", "طلبك السابق قيد المتابعة", "يُتابَع مع طلبك السابق"),
        ("ckb", "Closed", "دوای بەدواداچوون داخرا", "دوای بەدواداچوون داخرا"),
    ],
)
async def test_the_family_sees_what_the_new_status_means(
    engine: Engine,
    db: Database,
    coordinator: Person,
    locale: str,
    status: str,
    notice: str,
    listed: str,
) -> None:
    family = await family_report(engine, locale, needs="need:food")
    [report] = await reports(db)
    await coordinator.send(f"/report {report.reference.lower()}")
    label = {"Referred": "Referred to a relief organization"}.get(status, status)
    await coordinator.tap(t("ar", label))
    await coordinator.tap(t("ar", "Skip"))
    [told] = [m for m in coordinator.sent if m.address == family.address]
    assert notice in told.text
    await family.tap(t(locale, "My reports"))
    assert listed in family.text()
    if locale == "ar":
        assert t(locale, label) not in family.text()


async def test_the_list_with_filters_and_pages(
    engine: Engine, db: Database, coordinator: Person
) -> None:
    for n in range(10):
        family = Person(engine, Address("console", f"family{n}"))
        await choose_language(family, "en")
        await by_buttons_to_summary_with_needs(family, ["need:food"])
        await family.tap("Send the report")
    await coordinator.send("/reports")
    assert "10" in coordinator.text()
    first_page = [b for b in coordinator.options() if b.payload.startswith("rep:open:")]
    assert len(first_page) == 8
    await coordinator.tap(t("ar", "Next page"))
    assert len([b for b in coordinator.options() if b.payload.startswith("rep:open:")]) == 2
    await coordinator.send("/reports IQG01")
    assert [b for b in coordinator.options() if b.payload.startswith("rep:open:")] == []
    await coordinator.send("/reports دهوك new food")
    assert len([b for b in coordinator.options() if b.payload.startswith("rep:open:")]) == 8
    await coordinator.tap(t("ar", "Need"))
    await coordinator.press("f:water")
    assert [b for b in coordinator.options() if b.payload.startswith("rep:open:")] == []
    assert {r.action for r in await audit_rows(db)} == {"list"}


@pytest.mark.parametrize("command", ["/reports", "/report R-ABCDE", "/reports IQG09"])
async def test_others_are_refused_like_any_unknown_input(
    engine: Engine, db: Database, command: str
) -> None:
    stranger = Person(engine, Address("telegram", "555"))
    await choose_language(stranger, "en")
    await stranger.send(command)
    assert "I do not know that command" in stranger.text()
    assert stranger.labels() == menu_labels("en")
    assert await audit_rows(db) == []


async def test_others_cannot_press_a_coordinators_button(engine: Engine, db: Database) -> None:
    await family_report(engine, "en")
    [report] = await reports(db)
    stranger = Person(engine, Address("telegram", "555"))
    await choose_language(stranger, "en")
    await stranger.press(f"rep:open:{report.reference}")
    assert "This menu has expired" in stranger.text()
    assert report.reference not in stranger.text()
    assert await audit_rows(db) == []


async def test_an_unknown_reference(coordinator: Person) -> None:
    await coordinator.send("/report R-ZZZZZ")
    assert "R-ZZZZZ" in coordinator.text()
    assert t("ar", "Reports") in coordinator.labels()


async def test_an_export_from_the_chat(engine: Engine, db: Database, coordinator: Person) -> None:
    await family_report(engine, "en")
    await coordinator.send("/export")
    await coordinator.press("x:hxl")
    said = [m.text for m in coordinator.replies]
    assert any(t("ar", "Preparing the file: it comes in a moment.") in text for text in said)
    [file] = [m for m in coordinator.replies if m.document]
    path = Path(file.document or "")
    lines = path.read_text("utf-8").splitlines()
    assert lines[1].startswith("#meta+id,#date+reported")
    assert len(lines) == 3
    assert "7501112233" not in path.read_text("utf-8")  # personal fields stay in the bot
    assert [r.action for r in await audit_rows(db)][-1] == "export"
    path.unlink()


async def test_a_csv_export_from_the_chat_is_named_once(
    engine: Engine, db: Database, coordinator: Person
) -> None:
    await family_report(engine, "en")
    await coordinator.send("/export")
    await coordinator.press("x:csv")
    [file] = [m for m in coordinator.replies if m.document]
    name = Path(file.document or "").name
    assert name.endswith(".csv")
    assert not name.endswith(".csv.csv")
    Path(file.document or "").unlink()


@pytest.mark.skipif(ON_POSTGRES, reason="PostgreSQL has no write turn to hold")
async def test_a_long_export_from_the_chat_lets_others_write_meanwhile(
    engine: Engine, db: Database, coordinator: Person
) -> None:
    """The export reads after the coordinator's transaction: a family is answered while the
    file is still being written (in the transaction, it waited for the whole export)."""
    from sqlalchemy import insert

    from bot.models import Report

    async with db.transaction() as session:
        await session.execute(
            insert(Report),
            [
                {
                    "reference": f"R-{n:05}",
                    "locale": "ar",
                    "governorate": "IQG09",
                    "people": 3,
                    "shelter": "camp",
                    "displaced": "week",
                    "needs": ["food"],
                    "urgent": "food",
                }
                for n in range(20_000)
            ],
        )
    await coordinator.send("/export")
    export = asyncio.create_task(coordinator.press("x:csv"))
    family = Person(engine, Address("whatsapp", "+9647700000001"))
    # The family writes once the export is under way: its file has begun.
    before = set(EXPORT_DIR.glob("*"))
    await until(lambda: bool(set(EXPORT_DIR.glob("*")) - before), "the export's file", every=0.005)
    await family.send("/start")
    assert [b.payload for b in family.options()][:1] == ["lang:ar"]
    assert not export.done(), "the family waited for the whole export"
    await asyncio.wait_for(export, 60)
    [file] = [m for m in coordinator.replies if m.document]
    path = Path(file.document or "")
    assert len(path.read_text("utf-8").splitlines()) == 20_001  # the header and each report
    path.unlink()


async def test_an_unknown_filter_is_said_not_dropped(
    engine: Engine, db: Database, coordinator: Person
) -> None:
    await family_report(engine, "en")
    await coordinator.send("/reports R-ABCDE food")
    assert "R-ABCDE" in coordinator.text()
    assert t(
        "ar",
        "Not a filter, so left out: %(words)s. Filters are a governorate, a status "
        "or a need; to open one report, send /report and its reference.",
    ).split("%")[0] in (coordinator.text())
    await coordinator.send("/reports food")
    assert "R-ABCDE" not in coordinator.text()


async def test_others_cannot_export(engine: Engine, db: Database) -> None:
    stranger = Person(engine, Address("telegram", "555"))
    await choose_language(stranger, "en")
    await stranger.send("/export")
    assert "I do not know that command" in stranger.text()


async def test_a_coordinator_removed_mid_flow_is_taken_out_of_it(
    engine: Engine, db: Database, coordinator: Person
) -> None:
    import dataclasses

    from handlers import build_registry

    await family_report(engine)
    await coordinator.send("/reports")
    assert coordinator.options()  # inside the coordinators' report list
    settings = dataclasses.replace(engine.settings, coordinators=frozenset())
    coordinator.engine = Engine(db, settings, build_registry())
    await coordinator.send("١")  # would open the first report
    assert t("ar", "This is only for the Initiative's coordinators. Nothing was changed.") in (
        coordinator.text()
    )
    assert coordinator.labels() == menu_labels("ar")
    assert [row.action for row in await audit_rows(db)] == ["list"]  # no report was opened


async def test_coordinators_find_their_tools_in_the_menu_and_help(
    engine: Engine, db: Database, coordinator: Person
) -> None:
    citizen = Person(engine, Address("console", "citizen"))
    await choose_language(citizen, "en")
    await citizen.send("/help")
    assert "/signatures" not in citizen.text()
    assert "/referrals" not in citizen.text()
    assert t("en", "Reports to triage") not in citizen.labels()
    await coordinator.send("/help")
    assert "/signatures" in coordinator.text()
    assert "/report" in coordinator.text()
    assert t("ar", "/referrals: referrals to relief organizations, the figures") in (
        coordinator.text()
    )
    assert "/console" in coordinator.text()
    await coordinator.send("/menu")
    await coordinator.tap(t("ar", "Reports to triage"))
    assert coordinator.replies[0].title == t("ar", "Reports")
    await coordinator.send("/menu")
    await coordinator.tap(t("ar", "Signatures to verify"))
    assert t("ar", "No signature is waiting for verification.") in coordinator.text()
