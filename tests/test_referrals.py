"""Referrals (#22): a coordinator refers a family's report to a signatory organization; the
organization answers; the family says whether help came. Through the real engine, with real
databases: the family on WhatsApp, the organizations' members and the coordinators on
Telegram (the addresses the channels give; tests/test_referral_loop.py runs the channels)."""

from __future__ import annotations

import asyncio
import html
import io
import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot import exports, organizations, referrals, signatures
from bot.config import Settings
from bot.db import Database
from bot.engine import Engine
from bot.messages import Address, Inbound, Outbound
from bot.models import (
    AuditEntry,
    Contact,
    Organization,
    OutboxMessage,
    Referral,
    Report,
    Signature,
)
from bot.retention import purge
from tests.conftest import Person
from tests.helpers import LANGS, choose_language, t
from tests.test_console_web import ADDRESSES, CSRF, client, outbox_to, people, sign_in
from tests.test_sign import sign

__all__ = ["client", "people"]  # the console's fixtures, shared

COORDINATOR = Address("telegram", "1000")  # an admin, from the test settings
FAMILY = Address("whatsapp", "+9647501112222")
PHONE = "+964 750 123 4567"


async def family_report(family: Person, locale: str, *, share: bool = True) -> str:
    """A family's report in Duhok, Zakho (food and health, health most urgent), with its place
    and phone; `share`: whether the number may go to a relief organization. Its reference."""
    await family.tap(t(locale, "Report a displaced family"))
    await family.tap(t(locale, "I agree"))
    await family.press("gov:IQG09")
    await family.press("dist:IQG09Q04")
    await family.send("Khanke camp, tent 12")
    for payload in ("orig:IQG15", "when:gt1y", "n:5", "n:1", "n:1", "n:0", "n:1", "yes"):
        await family.press(payload)
    for payload in ("shelter:camp", "need:food", "need:health", "need:done", "urgent:health"):
        await family.press(payload)
    await family.deliver(
        Inbound(family.address, uuid.uuid4().hex, kind="text", text="We need a doctor")
    )
    await family.press("yes")
    await family.send(PHONE)
    await family.press("yes" if share else "no")
    await family.tap(t(locale, "Send the report"))
    found = re.search(r"R-[2-9A-Z]{5}", family.text())
    assert found is not None, family.text()
    return found.group(0)


async def an_organization(
    engine: Engine,
    db: Database,
    chat: str,
    locale: str,
    name: str,
    *,
    needs: tuple[str, ...] = ("food", "health"),
    governorates: tuple[str, ...] = ("IQG09",),
    districts: tuple[str, ...] = (),
    disclose: bool = True,
) -> Person:
    """A representative on Telegram whose signature a coordinator verified, with the
    organization's relief set."""
    rep = Person(engine, Address("telegram", chat))
    await choose_language(rep, locale)
    await sign(rep, locale, name=name, other=None)
    async with db.transaction() as session:
        signature = await session.scalar(
            select(Signature).where(Signature.name_ar == name).order_by(Signature.id.desc())
        )
        assert signature is not None
        await signatures.decide(
            session, signature.id, "verified", None, actor="cli:test", now=datetime.now(UTC)
        )
        org = await organizations.ensure(session, signature, datetime.now(UTC))
        await organizations.set_capacity(
            session,
            org,
            "cli:test",
            datetime.now(UTC),
            needs=needs,
            governorates=governorates,
            districts=districts,
            disclose_name=disclose,
        )
    return rep


async def org_id(db: Database, name: str) -> int:
    """An organization's id, by the name it signed with."""
    async with db.transaction() as session:
        found = await session.scalar(
            select(Organization.id)
            .join(Signature, Signature.id == Organization.signature_id)
            .where(Signature.name_ar == name)
        )
    assert found is not None
    return found


def plain(text: str) -> str:
    """A text without its direction marks and isolates (bot.i18n adds them around names)."""
    return re.sub("[\u2066-\u2069\u200e\u200f\u061c]", "", text)


def to(sent: list[Outbound], address: Address) -> list[Outbound]:
    """The messages among `sent` that go to `address`."""
    return [m for m in sent if m.address == address]


def text_to(sent: list[Outbound], address: Address) -> str:
    """What the messages to `address` say, together."""
    return plain("\n".join(m.text for m in to(sent, address)))


async def refer_in_chat(
    coordinator: Person, reference: str, organization: int, note: str | None = None
) -> list[Outbound]:
    """/report R-…, Refer, the organization, a note (or Skip): what was sent to everyone."""
    await coordinator.send(f"/report {reference}")
    await coordinator.tap(t("en", "Refer to an organization"))
    await coordinator.press(f"pick:{organization}")
    if note is None:
        return await coordinator.tap(t("en", "Skip"))
    return await coordinator.send(note)


async def the_referrals(db: Database) -> list[Referral]:
    """Every referral, oldest first."""
    async with db.transaction() as session:
        found = list(await session.scalars(select(Referral).order_by(Referral.id)))
        for row in found:
            session.expunge(row)
    return found


async def the_report(db: Database, reference: str) -> Report:
    """A report by its reference."""
    async with db.transaction() as session:
        found = await session.scalar(select(Report).where(Report.reference == reference))
        assert found is not None
        session.expunge(found)
    return found


@pytest.mark.parametrize("locale", LANGS)
async def test_the_loop_closes_in_each_language(engine: Engine, db: Database, locale: str) -> None:
    family = Person(engine, FAMILY)
    await choose_language(family, locale)
    reference = await family_report(family, locale)
    rep = await an_organization(engine, db, "5001", locale, "جمعية الأمل للتنمية")
    coordinator = Person(engine, COORDINATOR)
    await choose_language(coordinator, "en")

    # The coordinator's suggestions: the organization, with its record so far.
    await coordinator.send(f"/report {reference}")
    await coordinator.tap("Refer to an organization")
    assert "جمعية الأمل للتنمية" in coordinator.text()
    assert "received 0, accepted 0, helped 0" in coordinator.text()
    sent = await coordinator.press(f"pick:{await org_id(db, 'جمعية الأمل للتنمية')}")
    sent = await coordinator.send("Please call before noon")
    assert "was referred to" in coordinator.text()

    # The organization reads it in its language, with the place and phone (the family agreed).
    [request] = to(sent, rep.address)
    assert t(locale, "Most urgent: %(need)s").split("%")[0] in request.text
    assert "Khanke camp, tent 12" in request.text
    assert "+9647501234567" in request.text
    assert "Please call before noon" in request.text
    assert [b.label for b in request.options()] == [t(locale, "Accept"), t(locale, "Decline")]
    assert (await the_report(db, reference)).status == "referred"

    # Accept: the family hears, in its language, that the organization (named) has it.
    [referral] = await the_referrals(db)
    sent = await rep.press(f"ref:acc:{referral.id}")
    news = text_to(sent, FAMILY)
    assert "جمعية الأمل للتنمية" in news
    good_news = t(
        locale,
        "Good news about your report %(reference)s: the relief organization "
        "%(organization)s has your request and will look at how it can help your family.",
    )
    assert plain(good_news % {"reference": reference, "organization": "جمعية الأمل للتنمية"}) in (
        news
    )
    assert t(locale, "We helped") in rep.labels()

    # Helped, with health: the family is asked on WhatsApp, and answers by typing 1 (Yes).
    await rep.tap(t(locale, "We helped"))
    await rep.press("hn:health")
    await rep.tap(t(locale, "Done"))
    sent = await rep.send("A doctor visited on Sunday")
    [question] = to(sent, FAMILY)
    assert t(locale, "Did you receive this help?") in question.text
    await family.send("1")
    assert (
        t(locale, "Thank you for telling us. We are glad the help reached your family.")
        in family.text()
    )

    [referral] = await the_referrals(db)
    assert (referral.status, referral.confirmed, referral.helped_needs) == (
        "helped",
        "yes",
        ["health"],
    )
    assert referral.outcome_note == "A doctor visited on Sunday"
    assert (await the_report(db, reference)).status == "resolved"

    # Every step is in the report's history, in the chat.
    await coordinator.send(f"/report {reference}")
    history = plain(coordinator.text())
    for line in (
        "Referred to جمعية الأمل للتنمية",
        "جمعية الأمل للتنمية accepted",
        "جمعية الأمل للتنمية helped with: Health care and medicine",
        "The family says the help came: Yes",
    ):
        assert line in history, history


async def test_a_decline_then_a_referral_to_another(engine: Engine, db: Database) -> None:
    family = Person(engine, FAMILY)
    await choose_language(family, "ar")
    reference = await family_report(family, "ar")
    first = await an_organization(engine, db, "5001", "en", "جمعية الأمل للتنمية")
    second = await an_organization(
        engine, db, "5002", "ckb", "منظمة النور", districts=("IQG09Q04",)
    )
    coordinator = Person(engine, COORDINATOR)
    await choose_language(coordinator, "en")
    # The one naming the district comes first.
    await coordinator.send(f"/report {reference}")
    await coordinator.tap("Refer to an organization")
    names = [label for label in coordinator.labels() if label[0].isdigit()]
    assert names == ["1. منظمة النور", "2. جمعية الأمل للتنمية"]

    await refer_in_chat(coordinator, reference, await org_id(db, "جمعية الأمل للتنمية"))
    [referral] = await the_referrals(db)
    await first.press(f"ref:dec:{referral.id}")
    assert first.labels()[:3] == ["No capacity now", "Outside our area", "Another reason"]
    sent = await first.tap("No capacity now")
    alert = text_to(sent, COORDINATOR)
    assert "declined report" in alert
    assert reference in alert
    assert (await the_report(db, reference)).status == "verified"
    assert text_to(sent, FAMILY) == ""  # the family is not told of a decline

    # The one that declined is suggested again (it may have room later); the other first.
    sent = await refer_in_chat(coordinator, reference, await org_id(db, "منظمة النور"))
    assert to(sent, second.address)
    first_referral, second_referral = await the_referrals(db)
    assert (first_referral.status, first_referral.decline_reason) == ("declined", "no_capacity")
    assert second_referral.status == "sent"
    # A second answer to the declined one is refused.
    await first.press(f"ref:acc:{first_referral.id}")
    assert "answered already" in first.text()


async def test_an_unanswered_referral_expires_and_the_coordinators_are_told(
    engine: Engine, db: Database, settings: Settings
) -> None:
    family = Person(engine, FAMILY)
    await choose_language(family, "en")
    reference = await family_report(family, "en")
    rep = await an_organization(engine, db, "5001", "en", "جمعية الأمل للتنمية")
    coordinator = Person(engine, COORDINATOR)
    await choose_language(coordinator, "en")
    await refer_in_chat(coordinator, reference, await org_id(db, "جمعية الأمل للتنمية"))
    [referral] = await the_referrals(db)

    # Not yet: within REFERRAL_ANSWER_HOURS nothing happens.
    await purge(db, settings, datetime.now(UTC) + timedelta(hours=71))
    assert (await the_referrals(db))[0].status == "sent"
    counts = await purge(db, settings, datetime.now(UTC) + timedelta(hours=73))
    assert counts["referral notices"] == 3  # the two coordinators, the representative
    [expired] = await the_referrals(db)
    assert expired.status == "expired"
    assert (await the_report(db, reference)).status == "verified"
    async with db.transaction() as session:
        bodies = [
            Outbound.from_json(row.body)
            for row in await session.scalars(
                select(OutboxMessage).where(OutboxMessage.address == str(COORDINATOR))
            )
        ]
    assert any("did not answer report" in m.text and reference in m.text for m in bodies)
    # Too late to accept.
    await rep.press(f"ref:acc:{referral.id}")
    assert "answered already, or is closed" in rep.text()


async def test_the_place_and_phone_stay_with_the_family_without_its_consent(
    engine: Engine, db: Database
) -> None:
    family = Person(engine, FAMILY)
    await choose_language(family, "en")
    reference = await family_report(family, "en", share=False)
    rep = await an_organization(engine, db, "5001", "en", "جمعية الأمل للتنمية")
    coordinator = Person(engine, COORDINATOR)
    await choose_language(coordinator, "en")
    sent = await refer_in_chat(coordinator, reference, await org_id(db, "جمعية الأمل للتنمية"))
    request = text_to(sent, rep.address)
    assert "Zakho" in request
    assert "Khanke" not in request
    assert "750" not in request
    assert "did not agree to give its place and number" in request
    # Opening it again says the same, and is audited.
    [referral] = await the_referrals(db)
    await rep.press(f"ref:open:{referral.id}")
    assert "Khanke" not in rep.text()
    assert "750" not in rep.text()


async def test_an_organization_sees_only_its_own_referrals(engine: Engine, db: Database) -> None:
    family = Person(engine, FAMILY)
    await choose_language(family, "en")
    reference = await family_report(family, "en")
    owner = await an_organization(engine, db, "5001", "en", "جمعية الأمل للتنمية")
    other = await an_organization(engine, db, "5002", "en", "منظمة النور")
    stranger = Person(engine, Address("telegram", "5003"))  # in no organization
    await choose_language(stranger, "en")
    coordinator = Person(engine, COORDINATOR)
    await choose_language(coordinator, "en")
    await refer_in_chat(coordinator, reference, await org_id(db, "جمعية الأمل للتنمية"))
    [referral] = await the_referrals(db)

    for intruder in (other, stranger):
        for prefix in ("ref:open:", "ref:acc:", "ref:dec:", "ref:done:", "ref:fail:"):
            # The real id and guessed ones read alike.
            for ident in (referral.id, referral.id + 1, 0, 999999999):
                sent = await intruder.press(f"{prefix}{ident}")
                assert "not one of your organization's" in intruder.text()
                assert "Khanke" not in "".join(m.text for m in sent)
                assert "7501234567" not in "".join(m.text for m in sent)
        await intruder.press("ref:open:1;DROP")
        await intruder.press(f"ref:fam:{referral.id}:yes")  # not their family either
    [untouched] = await the_referrals(db)
    assert untouched.status == "sent"

    # The organization's own views are audited, by who looked.
    await owner.press(f"ref:open:{referral.id}")
    assert "Khanke camp" in owner.text()
    async with db.transaction() as session:
        views = list(
            await session.scalars(select(AuditEntry).where(AuditEntry.action == "referral:view"))
        )
    assert [v.actor for v in views] == [str(owner.address)]
    assert views[0].detail["referral"] == referral.id


async def test_colleagues_who_joined_by_invitation_receive_it_in_their_language(
    engine: Engine, db: Database
) -> None:
    family = Person(engine, FAMILY)
    await choose_language(family, "en")
    reference = await family_report(family, "en")
    rep = await an_organization(engine, db, "5001", "ar", "جمعية الأمل للتنمية")
    async with db.transaction() as session:
        contact_membership = await organizations.membership(
            session, await _contact(session, rep.address), datetime.now(UTC)
        )
        assert contact_membership is not None
        code, _expires = await organizations.invite(
            session, contact_membership, "cli:test", datetime.now(UTC)
        )
    colleague = Person(engine, Address("telegram", "5009"))
    await choose_language(colleague, "ckb")
    await colleague.send(f"/join {code}")
    coordinator = Person(engine, COORDINATOR)
    await choose_language(coordinator, "en")
    sent = await refer_in_chat(coordinator, reference, await org_id(db, "جمعية الأمل للتنمية"))
    assert t("ar", "Accept") in [b.label for b in to(sent, rep.address)[0].options()]
    assert t("ckb", "Accept") in [b.label for b in to(sent, colleague.address)[0].options()]
    # Either may answer; the colleague accepts.
    [referral] = await the_referrals(db)
    await colleague.press(f"ref:acc:{referral.id}")
    assert (await the_referrals(db))[0].status == "accepted"


async def _contact(session: AsyncSession, address: Address) -> Contact:
    """A contact by address (for the service calls)."""
    found = await session.scalar(select(Contact).where(Contact.address == str(address)))
    assert found is not None
    return found


async def test_a_withdrawn_signature_stops_referrals(
    engine: Engine, db: Database, settings: Settings
) -> None:
    family = Person(engine, FAMILY)
    await choose_language(family, "en")
    first_ref = await family_report(family, "en")
    other_family = Person(engine, Address("whatsapp", "+9647501113333"))
    await choose_language(other_family, "en")
    second_ref = await family_report(other_family, "en")
    rep = await an_organization(engine, db, "5001", "en", "جمعية الأمل للتنمية")
    coordinator = Person(engine, COORDINATOR)
    await choose_language(coordinator, "en")
    org = await org_id(db, "جمعية الأمل للتنمية")
    await refer_in_chat(coordinator, first_ref, org)
    await refer_in_chat(coordinator, second_ref, org)
    accepted, waiting = await the_referrals(db)
    await rep.press(f"ref:acc:{accepted.id}")

    # The representative withdraws the signature in the chat.
    await rep.send("/start")
    await rep.tap("Sign the declaration")
    await rep.tap("Withdraw the signature")
    sent = await rep.tap("Yes, withdraw it")
    accepted, waiting = await the_referrals(db)
    # What was not answered goes back to the coordinators; what was accepted stays with it.
    assert waiting.status == "cancelled"
    assert accepted.status == "accepted"
    assert (await the_report(db, second_ref)).status == "verified"
    assert "is suspended" in text_to(sent, COORDINATOR)
    assert "was taken back" in text_to(sent, rep.address)
    # No new referral: it is no longer suggested, and a forged choice is refused.
    await coordinator.send(f"/report {second_ref}")
    await coordinator.tap("Refer to an organization")
    assert "No verified organization" in coordinator.text()
    await coordinator.press(f"pick:{org}")  # not offered: the menu has expired
    assert "This menu has expired" in coordinator.text()
    async with db.transaction() as session:
        report = await session.scalar(select(Report).where(Report.reference == second_ref))
        assert report is not None
        with pytest.raises(organizations.Refused, match="not_suggested"):
            await referrals.refer(
                session, settings, report, org, actor="cli:test", note="", now=datetime.now(UTC)
            )
    assert len(await the_referrals(db)) == 2
    # The accepted one can still be finished.
    await rep.press(f"ref:fail:{accepted.id}")
    assert (await the_referrals(db))[0].status == "not_helped"


async def test_forget_in_the_middle_withdraws_and_tells_the_organization_nothing_more(
    engine: Engine, db: Database
) -> None:
    family = Person(engine, FAMILY)
    await choose_language(family, "en")
    reference = await family_report(family, "en")
    rep = await an_organization(engine, db, "5001", "en", "جمعية الأمل للتنمية")
    coordinator = Person(engine, COORDINATOR)
    await choose_language(coordinator, "en")
    await refer_in_chat(
        coordinator, reference, await org_id(db, "جمعية الأمل للتنمية"), "Mother is ill"
    )
    [referral] = await the_referrals(db)
    await rep.press(f"ref:acc:{referral.id}")

    await family.send("/forget")
    sent = await family.tap(t("en", "Yes, delete my data"))
    [notice] = to(sent, rep.address)
    assert reference in notice.text
    assert "was withdrawn" in notice.text
    for secret in ("Khanke", "750", "Mother", "Zakho"):
        assert secret not in notice.text
    [withdrawn] = await the_referrals(db)
    assert withdrawn.status == "withdrawn"
    assert withdrawn.note is None  # the coordinator's note about the family is blanked
    # The organization can do nothing more with it.
    await rep.press(f"ref:done:{referral.id}")
    assert "answered already, or is closed" in rep.text()
    # The request still waiting in the outbox, which quoted the family, went with its data.
    async with db.transaction() as session:
        left = [row.body for row in await session.scalars(select(OutboxMessage))]
    for secret in ("Khanke", "7501234567", "Mother"):
        assert secret not in str(left)


async def test_partly_goes_back_to_the_coordinators_with_an_alert(
    engine: Engine, db: Database
) -> None:
    family = Person(engine, FAMILY)
    await choose_language(family, "ckb")
    reference = await family_report(family, "ckb")
    rep = await an_organization(engine, db, "5001", "en", "جمعية الأمل للتنمية", disclose=False)
    coordinator = Person(engine, COORDINATOR)
    await choose_language(coordinator, "en")
    await refer_in_chat(coordinator, reference, await org_id(db, "جمعية الأمل للتنمية"))
    [referral] = await the_referrals(db)
    sent = await rep.press(f"ref:acc:{referral.id}")
    assert "جمعية الأمل" not in text_to(sent, FAMILY)  # not named: it did not agree
    await rep.press(f"ref:done:{referral.id}")
    await rep.press("hn:food")
    await rep.press("hn:done")
    await rep.tap("Skip")
    # Someone else cannot answer for the family, by button or by guessing the id.
    stranger = Person(engine, Address("whatsapp", "+9647509998888"))
    await choose_language(stranger, "en")
    await stranger.press(f"ref:fam:{referral.id}:no")
    assert (await the_referrals(db))[0].confirmed is None
    sent = await family.send(t("ckb", "Partly"))  # typed, as on WhatsApp
    assert "Alert" in text_to(sent, COORDINATOR)
    assert (await the_report(db, reference)).status == "verified"
    # A second answer changes nothing.
    await family.press(f"ref:fam:{referral.id}:yes")
    assert (await the_referrals(db))[0].confirmed == "partly"


async def test_the_figures_and_the_export_read_back(
    engine: Engine, db: Database, settings: Settings
) -> None:
    family = Person(engine, FAMILY)
    await choose_language(family, "en")
    reference = await family_report(family, "en")
    rep = await an_organization(engine, db, "5001", "en", "جمعية الأمل للتنمية")
    coordinator = Person(engine, COORDINATOR)
    await choose_language(coordinator, "en")
    await refer_in_chat(
        coordinator, reference, await org_id(db, "جمعية الأمل للتنمية"), "Mother is ill"
    )
    [referral] = await the_referrals(db)
    await rep.press(f"ref:acc:{referral.id}")
    await rep.press(f"ref:done:{referral.id}")
    await rep.press("hn:health")
    await rep.press("hn:done")
    await rep.tap("Skip")
    await family.send("1")

    await coordinator.send("/referrals")
    figures = plain(coordinator.text())
    assert "Open: 0 · Accepted: 1 · Declined: 0 · No answer in time: 0 · Helped: 1" in figures
    assert "Confirmed by the family: 1" in figures
    assert "• جمعية الأمل للتنمية: 1, 1, " in figures
    assert "• Duhok: 1, 1, 1" in figures
    # Not for a family.
    await family.send("/referrals")
    assert "Helped: 1" not in family.text()

    out = io.StringIO()
    assert await exports.export_referrals(db, "hxl", out) == 1
    rows = out.getvalue().splitlines()
    tags = rows[1].split(",")
    for tag in ("#org+name", "#sector", "#adm1+code", "#adm2+code", "#status", "#date"):
        assert tag in tags
    assert "Mother" not in out.getvalue()
    cells = dict(zip(rows[0].split(","), rows[2].split(","), strict=True))
    assert cells["status"] == "helped"
    assert cells["confirmed_by_family"] == "yes"
    assert cells["governorate_pcode"] == "IQG09"
    assert cells["district_pcode"] == "IQG09Q04"
    private = io.StringIO()
    await exports.export_referrals(db, "json", private, private=True, actor="cli:test")
    [row] = json.loads(private.getvalue())
    assert row["note"] == "Mother is ill"
    async with db.transaction() as session:
        logged = list(
            await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.action == "export:referrals")
                .order_by(AuditEntry.id)  # in the order they were written, on PostgreSQL too
            )
        )
    assert [(e.actor, e.detail["private"]) for e in logged] == [
        ("cli", False),
        ("cli:test", True),
    ]


def test_suggestions_rank_the_district_then_the_most_urgent_need() -> None:
    report = Report(
        governorate="IQG09", district="IQG09Q04", needs=["food", "health"], urgent="health"
    )
    whole = Organization(governorates=["IQG09"], districts=[], needs=["food"])
    named = Organization(governorates=["IQG09"], districts=["IQG09Q04"], needs=["food"])
    elsewhere = Organization(governorates=["IQG09"], districts=["IQG09Q01"], needs=["health"])
    assert referrals.covers(named, report) == 0
    assert referrals.covers(whole, report) == 1
    assert referrals.covers(elsewhere, report) == 2
    assert referrals.covers(Organization(governorates=["IQG15"], districts=[]), report) is None


@pytest.mark.usefixtures("people")
async def test_the_console_refers_and_shows_the_figures(
    client: httpx.AsyncClient, db: Database, settings: Settings, engine: Engine
) -> None:
    family = Person(engine, FAMILY)
    await choose_language(family, "ar")
    reference = await family_report(family, "ar", share=False)
    rep = await an_organization(engine, db, "5001", "ckb", "جمعية الأمل للتنمية")
    await sign_in(client, db, settings, ADDRESSES["coordinator"])
    page = await client.get(f"/console/reports/{reference}")
    assert f'href="/console/reports/{reference}/refer"' in page.text
    refer_page = await client.get(f"/console/reports/{reference}/refer")
    assert refer_page.status_code == 200
    assert "جمعية الأمل للتنمية" in refer_page.text
    assert "did not agree to give its place and number" in refer_page.text
    token = CSRF.search(refer_page.text)
    assert token is not None
    organization = await org_id(db, "جمعية الأمل للتنمية")

    # Malformed or forged: 400, with the reason, and nothing referred.
    for fields in (
        {"organization": "x"},
        {"organization": "999999"},
        {"organization": str(organization), "note": "n" * 1001},
    ):
        bad = await client.post(
            f"/console/reports/{reference}/refer", data={"csrf": token.group(1), **fields}
        )
        assert bad.status_code == 400, fields
    assert "at most" in bad.text
    assert await the_referrals(db) == []
    no_token = await client.post(
        f"/console/reports/{reference}/refer", data={"organization": str(organization)}
    )
    assert no_token.status_code == 400

    done = await client.post(
        f"/console/reports/{reference}/refer",
        data={"csrf": token.group(1), "organization": str(organization), "note": "Call first"},
    )
    assert done.status_code == 303
    [referral] = await the_referrals(db)
    request = (await outbox_to(db, rep.address))[-1]
    assert t("ckb", "Accept") in [b.label for b in request.options()]
    assert "Call first" in request.text
    assert referral.created_by == ADDRESSES["coordinator"]

    await rep.press(f"ref:acc:{referral.id}")
    report_page = await client.get(f"/console/reports/{reference}")
    assert "Referred to جمعية الأمل للتنمية" in plain(html.unescape(report_page.text))
    assert "accepted" in plain(html.unescape(report_page.text))

    figures = await client.get("/console/referrals")
    assert figures.status_code == 200
    assert 'data-figure="accepted">1<' in figures.text
    assert reference in figures.text  # the latest referrals, for a coordinator

    # A viewer: the figures, not the referrals' list; no Refer page.
    await client.post("/console/sign-out", data={"csrf": CSRF.search(figures.text).group(1)})  # type: ignore[union-attr]
    await sign_in(client, db, settings, ADDRESSES["viewer"])
    seen = await client.get("/console/referrals")
    assert seen.status_code == 200
    assert 'data-figure="accepted">1<' in seen.text
    assert reference not in seen.text
    assert (await client.get(f"/console/reports/{reference}/refer")).status_code == 403


async def test_my_organization_lists_its_open_requests(engine: Engine, db: Database) -> None:
    family = Person(engine, FAMILY)
    await choose_language(family, "en")
    reference = await family_report(family, "en")
    rep = await an_organization(engine, db, "5001", "ar", "جمعية الأمل للتنمية")
    other = await an_organization(engine, db, "5002", "en", "منظمة النور")
    coordinator = Person(engine, COORDINATOR)
    await choose_language(coordinator, "en")
    await refer_in_chat(coordinator, reference, await org_id(db, "جمعية الأمل للتنمية"))
    await rep.send("/organization")
    assert plain(t("ar", "Requests open with your organization: %(count)s") % {"count": 1}) in (
        plain(rep.text())
    )
    await rep.tap(reference)
    assert "Khanke camp" in rep.text()
    assert t("ar", "Accept") in rep.labels()
    await other.send("/organization")
    assert reference not in other.labels()


async def test_my_data_shows_what_was_written_about_the_family_in_a_referral(
    engine: Engine, db: Database
) -> None:
    family = Person(engine, FAMILY)
    await choose_language(family, "en")
    reference = await family_report(family, "en")
    await an_organization(engine, db, "5001", "en", "جمعية الأمل للتنمية")
    coordinator = Person(engine, COORDINATOR)
    await choose_language(coordinator, "en")
    await refer_in_chat(
        coordinator, reference, await org_id(db, "جمعية الأمل للتنمية"), "Mother is ill"
    )
    await family.send("/mydata")
    shown = plain(family.text())
    assert f"Report {reference}, passed to a relief organization" in shown
    assert "Note to the relief organization: Mother is ill" in shown


async def test_retention_withdraws_the_referrals_of_reports_it_anonymizes(
    engine: Engine, db: Database, settings: Settings
) -> None:
    family = Person(engine, FAMILY)
    await choose_language(family, "en")
    reference = await family_report(family, "en")
    rep = await an_organization(engine, db, "5001", "en", "جمعية الأمل للتنمية")
    coordinator = Person(engine, COORDINATOR)
    await choose_language(coordinator, "en")
    await refer_in_chat(coordinator, reference, await org_id(db, "جمعية الأمل للتنمية"))
    [referral] = await the_referrals(db)
    await rep.press(f"ref:acc:{referral.id}")
    later = datetime.now(UTC) + timedelta(days=settings.report_retention_days + 1)
    await purge(db, settings, later)
    [withdrawn] = await the_referrals(db)
    assert withdrawn.status == "withdrawn"
    told = [m.text for m in await outbox_to(db, rep.address)]
    assert any("was withdrawn" in text and reference in text for text in told)


async def test_the_running_bot_expires_referrals_within_minutes(
    engine: Engine, db: Database, settings: Settings
) -> None:
    """Expiry does not wait for the six-hourly retention rules: the bot's own loop does it."""
    from bot.models import Referral
    from bot.runtime import keep_expiring

    family = Person(engine, FAMILY)
    await choose_language(family, "en")
    reference = await family_report(family, "en")
    await an_organization(engine, db, "5002", "en", "جمعية الأمل للتنمية")
    coordinator = Person(engine, COORDINATOR)
    await choose_language(coordinator, "en")
    await refer_in_chat(coordinator, reference, await org_id(db, "جمعية الأمل للتنمية"))
    async with db.transaction() as session:  # its hours ran out a minute ago
        await session.execute(
            update(Referral).values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
    looking = asyncio.create_task(keep_expiring(db, settings, every=0.05))
    try:
        for _ in range(400):  # 20 s at most
            if (await the_referrals(db))[0].status == "expired":
                break
            await asyncio.sleep(0.05)
    finally:
        looking.cancel()
    assert (await the_referrals(db))[0].status == "expired"
    assert (await the_report(db, reference)).status == "verified"
