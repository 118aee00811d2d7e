"""Organizations' relief capacity (#22, first part): "My organization" in the chat, colleagues
by invitation code, suspension by the signature, the report's new consent, My data and Delete
my data, and the console's page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import select, update

from bot import organizations, roles, signatures
from bot.config import Settings
from bot.db import Database
from bot.engine import Engine
from bot.messages import Address
from bot.models import (
    AuditEntry,
    Contact,
    Organization,
    OrganizationInvitation,
    OrganizationMember,
    Report,
    Signature,
)
from tests.conftest import Person
from tests.coordinator_helpers import send_full_report
from tests.helpers import LANGS, choose_language, t
from tests.test_console_web import ADDRESSES, CSRF, client, sign_in
from tests.test_sign import sign

__all__ = ["client"]  # the console's client fixture, shared


async def verified_representative(engine: Engine, db: Database, locale: str) -> Person:
    """Someone who signed in the chat, whose signature a coordinator verified."""
    rep = Person(engine, Address("telegram", "5001"))
    await choose_language(rep, locale)
    await sign(rep, locale)
    async with db.transaction() as session:
        signature_id = await session.scalar(select(Signature.id))
        assert signature_id is not None
        decided, _ = await signatures.decide(
            session,
            signature_id,
            "verified",
            None,
            actor="cli:test",
            now=datetime.now(UTC),
        )
        assert decided is not None
    await rep.send("/start")  # the menu again, now with "My organization"
    return rep


async def the_organization(db: Database) -> Organization:
    """The one organization."""
    async with db.transaction() as session:
        org: Organization | None = await session.scalar(select(Organization))
        assert org is not None
        session.expunge(org)
        return org


async def invitation_code(rep: Person, locale: str) -> str:
    """From the menu: "My organization", "Invite a colleague"; the code the bot gave."""
    await rep.tap(t(locale, "My organization"))
    await rep.tap(t(locale, "Invite a colleague"))
    words = [w.strip("\u2066\u2067\u2068\u2069") for w in rep.text().split()]
    codes = [w for w in words if organizations.normalize_code(w) is not None]
    assert codes, rep.text()
    return codes[0]


@pytest.mark.parametrize("locale", LANGS)
async def test_a_representative_sets_the_capacity_in_each_language(
    engine: Engine, db: Database, locale: str
) -> None:
    rep = await verified_representative(engine, db, locale)
    assert t(locale, "My organization") in rep.labels()
    await rep.tap(t(locale, "My organization"))
    assert t(locale, "Needs you can meet: %(needs)s") % {"needs": t(locale, "None")} in rep.text()
    await rep.tap(t(locale, "Change what we offer"))
    assert t(locale, "Please check your answers:") in rep.text()
    await rep.press("edit:needs")
    await rep.press("oneed:health")
    await rep.press("oneed:food")
    await rep.press("oneed:done")
    await rep.press("edit:governorates")
    await rep.press("ogov:IQG09")  # Duhok
    await rep.press("ogov:IQG15")  # Nineveh
    await rep.press("ogov:done")
    await rep.press("edit:districts")
    await rep.press("odist:IQG09Q04")  # Zakho, in Duhok
    await rep.press("odist:done")
    await rep.press("edit:disclose")
    await rep.tap(t(locale, "Yes"))
    summary = rep.text()
    assert t(locale, "Families may be told our name") in summary
    await rep.tap(t(locale, "Save"))
    assert t(locale, "Saved. Thank you.") in rep.text()
    org = await the_organization(db)
    assert org.needs == ["food", "health"]  # the report's order
    assert org.governorates == ["IQG09", "IQG15"]
    assert org.districts == ["IQG09Q04"]
    assert org.disclose_name is True
    # Nineveh as a whole, Duhok by its district
    assert t(locale, "%(governorate)s (all districts)").split(")s")[1] in rep.text()


async def test_a_hostile_capacity_is_refused(engine: Engine, db: Database) -> None:
    rep = await verified_representative(engine, db, "en")
    await rep.tap("My organization")
    await rep.tap("Change what we offer")
    await rep.press("edit:needs")
    await rep.press("oneed:done")  # none chosen
    assert "Please choose at least one need" in rep.text()
    await rep.press("oneed:weapons")  # not a sector: asked again, nothing stored
    await rep.press("oneed:done")
    assert "Please choose at least one need" in rep.text()
    async with db.transaction() as session:
        org = await session.scalar(select(Organization))
        assert org is not None
        with pytest.raises(organizations.Refused):
            await organizations.set_capacity(
                session, org, "cli:test", datetime.now(UTC), needs=["weapons"]
            )
        with pytest.raises(organizations.Refused):
            await organizations.set_capacity(
                session, org, "cli:test", datetime.now(UTC), districts=["IQG99Q99"]
            )
        with pytest.raises(organizations.Refused):  # a district is not a governorate
            await organizations.set_capacity(
                session, org, "cli:test", datetime.now(UTC), governorates=["IQG09Q04"]
            )
    org = await the_organization(db)
    assert org.needs == []
    assert org.districts == []


@pytest.mark.parametrize("locale", LANGS)
async def test_a_colleague_joins_with_a_code_once(
    engine: Engine, db: Database, locale: str
) -> None:
    rep = await verified_representative(engine, db, locale)
    code = await invitation_code(rep, locale)
    async with db.transaction() as session:
        stored = (await session.scalars(select(OrganizationInvitation))).all()
    assert len(stored) == 1
    assert code.replace("-", "") not in stored[0].code_hash  # only its hash is kept
    colleague = Person(engine, Address("whatsapp", "+9647705550101"))
    await choose_language(colleague, locale)
    assert t(locale, "My organization") not in colleague.labels()
    await colleague.send(f"/join {code.lower()}")  # case and dash do not matter
    assert "جمعية الأمل للتنمية" in colleague.text() or "Al-Amal" in colleague.text()
    assert t(locale, "My organization") in colleague.labels()
    await colleague.tap(t(locale, "My organization"))
    assert t(locale, "Your organization's representative can change this.") in colleague.text()
    assert t(locale, "Change what we offer") not in colleague.labels()
    # The same code again, by someone else: refused as any wrong code is.
    other = Person(engine, Address("telegram", "5002"))
    await choose_language(other, locale)
    await other.send(f"/join {code}")
    assert t(locale, organizations_refusal("invalid")) in other.text()
    async with db.transaction() as session:
        members = (await session.scalars(select(OrganizationMember))).all()
    assert sorted(m.role for m in members) == ["colleague", "representative"]
    # A colleague may not remove anyone, nor change the capacity.
    await colleague.press("org:team")
    await colleague.press("org:edit")
    assert t(locale, "Please check your answers:") not in colleague.text()
    async with db.transaction() as session:
        contact = await session.scalar(
            select(Contact).where(Contact.address == "whatsapp:+9647705550101")
        )
        assert contact is not None
        theirs = await organizations.membership(session, contact, datetime.now(UTC))
        assert theirs is not None
        with pytest.raises(organizations.Refused, match="not_representative"):
            await organizations.remove(
                session, theirs, theirs.member.id, "cli:test", datetime.now(UTC)
            )
        with pytest.raises(organizations.Refused, match="not_representative"):
            await organizations.invite(session, theirs, "cli:test", datetime.now(UTC))
    # The representative sees the colleague, and removes them.
    await rep.tap(t(locale, "My organization"))
    await rep.tap(t(locale, "Colleagues"))
    assert "+9647705550101" not in rep.text()  # their number stays private
    await rep.tap(t(locale, "Remove colleague %(number)s") % {"number": 1})
    async with db.transaction() as session:
        members = (await session.scalars(select(OrganizationMember))).all()
    assert [m.role for m in members] == ["representative"]


async def test_an_expired_or_forged_code_is_refused_and_guessing_is_stopped(
    engine: Engine, db: Database
) -> None:
    rep = await verified_representative(engine, db, "ar")
    code = await invitation_code(rep, "ar")
    async with db.transaction() as session:
        await session.execute(
            update(OrganizationInvitation).values(
                expires_at=datetime.now(UTC) - timedelta(minutes=1)
            )
        )
    colleague = Person(engine, Address("telegram", "5003"))
    await choose_language(colleague, "ar")
    await colleague.send(f"/join {code}")
    invalid = t("ar", organizations_refusal("invalid"))
    assert invalid in colleague.text()
    # Forged codes: wrong letters, too long, another script's digits, nothing at all.
    await colleague.send("/join")
    for forged in ("AAAAA-AAAAA", "x" * 500, "٢٣٤٥٦٧٨٩٢٣"):
        await colleague.send(forged)
        assert invalid in colleague.text() or t("ar", organizations_refusal("too_many_tries")) in (
            colleague.text()
        )
    # Five wrong codes an hour: then even a right one waits.
    async with db.transaction() as session:
        await session.execute(
            update(OrganizationInvitation).values(expires_at=datetime.now(UTC) + timedelta(days=1))
        )
    for _ in range(3):
        await colleague.send("ZZZZZZZZZZ")
    await colleague.send(code)
    assert t("ar", organizations_refusal("too_many_tries")) in colleague.text()
    async with db.transaction() as session:
        assert (
            await session.scalar(
                select(OrganizationMember).where(OrganizationMember.role == "colleague")
            )
            is None
        )


def organizations_refusal(reason: str) -> str:
    """The msgid of a refusal."""
    from handlers.organization import REFUSALS

    return REFUSALS[reason]


async def test_invitations_are_limited_a_day(engine: Engine, db: Database) -> None:
    rep = await verified_representative(engine, db, "en")
    for _ in range(organizations.INVITATIONS_PER_DAY):
        await invitation_code(rep, "en")
    await rep.tap("My organization")
    await rep.tap("Invite a colleague")
    assert organizations_refusal("too_many_invitations") in rep.text()
    async with db.transaction() as session:
        rows = (await session.scalars(select(OrganizationInvitation))).all()
    assert len(rows) == organizations.INVITATIONS_PER_DAY


@pytest.mark.parametrize("locale", LANGS)
async def test_a_withdrawn_signature_suspends_the_organization(
    engine: Engine, db: Database, locale: str
) -> None:
    rep = await verified_representative(engine, db, locale)
    code = await invitation_code(rep, locale)
    async with db.transaction() as session:
        contact = await session.scalar(select(Contact).where(Contact.address == "telegram:5001"))
        assert contact is not None
        withdrawn, _ = await signatures.withdraw(
            session, engine.settings, contact.id, datetime.now(UTC)
        )
        assert withdrawn is not None
    await rep.send("/start")  # the menu again, now with "My organization"
    await rep.tap(t(locale, "My organization"))
    assert (
        t(
            locale,
            "Your organization's signature is no longer verified, so it receives no requests "
            "for now and its relief cannot be changed.",
        )
        in rep.text()
    )
    assert t(locale, "Change what we offer") not in rep.labels()
    assert t(locale, "Invite a colleague") not in rep.labels()
    await rep.press("org:invite")  # an old button: the rule is checked again
    await rep.press("org:edit")
    assert t(locale, "Please check your answers:") not in rep.text()
    async with db.transaction() as session:
        assert len((await session.scalars(select(OrganizationInvitation))).all()) == 1
        mine = await organizations.membership(session, contact, datetime.now(UTC))
        assert mine is not None
        assert not mine.active
        assert not mine.may_edit
        with pytest.raises(organizations.Refused, match="suspended"):
            await organizations.invite(session, mine, "cli:test", datetime.now(UTC))
    colleague = Person(engine, Address("telegram", "5004"))
    await choose_language(colleague, locale)
    await colleague.send(f"/join {code}")
    assert t(locale, organizations_refusal("suspended")) in colleague.text()


async def test_my_data_shows_the_membership_and_forgetting_ends_it(
    engine: Engine, db: Database
) -> None:
    rep = await verified_representative(engine, db, "ckb")
    code = await invitation_code(rep, "ckb")
    colleague = Person(engine, Address("telegram", "5005"))
    await choose_language(colleague, "ckb")
    await colleague.send(f"/join {code}")
    await colleague.send("/mydata")
    assert t("ckb", "Joined the organization") in colleague.text()
    assert t("ckb", "Colleague") in colleague.text()
    await colleague.send("/forget")
    await colleague.tap(t("ckb", "Yes, delete my data"))
    async with db.transaction() as session:
        members = (await session.scalars(select(OrganizationMember))).all()
        assert [m.role for m in members] == ["representative"]
        joins = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == "organization:join")
            )
        ).all()
        assert [e.actor for e in joins] == ["forgotten"]
    # The organization's capacity is not the colleague's: it stays.
    assert (await the_organization(db)).id


@pytest.mark.parametrize("locale", LANGS)
async def test_a_report_asks_whether_the_number_may_go_to_an_organization(
    person: Person, db: Database, locale: str
) -> None:
    await choose_language(person, locale)
    await send_full_report(person, locale)  # says yes
    async with db.transaction() as session:
        report = await session.scalar(select(Report))
        assert report is not None
        assert report.share_phone
        assert report.contact_ok
    await person.send("/mydata")
    assert t(locale, "Number may go to a relief organization") in person.text()


async def test_no_call_means_no_sharing(person: Person, db: Database) -> None:
    await choose_language(person, "en")
    await person.tap("Report a displaced family")
    await person.tap("I agree")
    await person.press("gov:IQG09")
    await person.press("dist:IQG09Q04")
    await person.send("Khanke camp")
    for payload in ("orig:IQG15", "when:gt1y", "n:5", "n:1", "n:1", "n:0", "n:1", "yes"):
        await person.press(payload)
    for payload in ("shelter:camp", "need:food", "need:done"):
        await person.press(payload)
    await person.press("notes:skip")
    await person.press("yes")
    await person.send("0750 123 4567")
    await person.press("yes")  # may go to an organization
    await person.press("edit:contact")
    await person.press("no")  # no call after all: the number and the sharing go
    assert "Number may go to a relief organization" not in person.text()
    await person.tap("Send the report")
    async with db.transaction() as session:
        report = await session.scalar(select(Report))
        assert report is not None
        assert (report.contact_ok, report.phone, report.share_phone) == (False, None, False)


@pytest.mark.parametrize(
    ("role", "status"), [("coordinator", 200), ("admin", 200), ("editor", 403), ("viewer", 403)]
)
async def test_the_console_page_by_role_with_its_form_token(
    engine: Engine,
    db: Database,
    settings: Settings,
    client: httpx.AsyncClient,
    role: str,
    status: int,
) -> None:
    rep = await verified_representative(engine, db, "ar")
    await rep.tap(t("ar", "My organization"))  # its page is made on first use
    org = await the_organization(db)
    address = ADDRESSES[role]
    async with db.transaction() as session:
        await roles.set_role(session, address, role, "test")
    await sign_in(client, db, settings, address)
    page = await client.get("/console/organizations")
    assert page.status_code == status
    if status != 200:
        refused = await post(client, {"id": str(org.id)})
        assert refused.status_code == 403
        return
    assert "Al-Amal Development Society" in page.text
    token = CSRF.search(page.text)
    assert token is not None
    form = [
        ("id", str(org.id)),
        ("need", "water"),
        ("gov", "IQG15"),
        ("district", "IQG15Q01"),
        ("disclose", "yes"),
    ]
    assert (await post(client, form)).status_code == 400  # no token
    forged = await post(client, [*form, ("csrf", "x" * 32)])
    assert forged.status_code == 400
    assert (await the_organization(db)).needs == []
    hostile = [("csrf", token.group(1)), ("id", str(org.id)), ("need", "weapons")]
    answer = await post(client, hostile)
    assert answer.status_code == 400
    assert "Choose needs and places from the lists." in answer.text
    for bad_id in ("", "abc", "9" * 30, "999999"):
        bad = await post(client, [("csrf", token.group(1)), ("id", bad_id)])
        assert bad.status_code == 400
    done = await post(client, [("csrf", token.group(1)), *form])
    assert done.status_code == 303
    org = await the_organization(db)
    assert (org.needs, org.governorates, org.districts, org.disclose_name) == (
        ["water"],
        ["IQG15"],
        ["IQG15Q01"],
        True,
    )
    async with db.transaction() as session:
        audited = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == "organization:capacity")
            )
        ).all()
    assert [e.actor for e in audited] == [address]
    big = await client.post(
        "/console/organizations",
        content=b"csrf=" + b"x" * 100_000,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert big.status_code == 400


async def post(client: httpx.AsyncClient, form: Any) -> httpx.Response:
    """Post a form whose names repeat (several needs, places), as a browser sends it."""
    pairs = list(form.items()) if isinstance(form, dict) else list(form)
    return await client.post(
        "/console/organizations",
        content=urlencode(pairs),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )


async def test_the_console_cannot_edit_a_suspended_organization(
    engine: Engine, db: Database, settings: Settings, client: httpx.AsyncClient
) -> None:
    rep = await verified_representative(engine, db, "en")
    await rep.tap("My organization")
    org = await the_organization(db)
    async with db.transaction() as session:
        await session.execute(update(Signature).values(status="withdrawn"))
        await roles.set_role(session, ADDRESSES["coordinator"], "coordinator", "test")
    await sign_in(client, db, settings, ADDRESSES["coordinator"])
    page = await client.get("/console/organizations")
    assert "Suspended" in page.text
    token = CSRF.search(page.text)
    assert token is not None
    answer = await post(
        client,
        [("csrf", token.group(1)), ("id", str(org.id)), ("need", "food")],
    )
    assert answer.status_code == 400
    assert (await the_organization(db)).needs == []
