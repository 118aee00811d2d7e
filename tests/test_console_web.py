"""The coordinators' web console: sign-in by a one-time link, roles on every route, forms."""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import func, select, update

from bot import reports, roles, signin
from bot.config import Settings
from bot.db import Database
from bot.i18n import use_locale
from bot.limits import REMEMBERED, Failures
from bot.messages import Address, Outbound
from bot.models import (
    AuditEntry,
    OutboxMessage,
    Report,
    ReportMessage,
    Signature,
    SignInLink,
    WebSession,
    utcnow,
)
from bot.models import Person as RolePerson
from bot.web import create_app
from bot.webconsole import COOKIE, REDEEM_TRIES, Console
from tests.conftest import Person
from tests.coordinator_helpers import send_full_report
from tests.helpers import choose_language, t

ADDRESSES = {
    "admin": "telegram:501",
    "coordinator": "telegram:502",
    "editor": "whatsapp:+9647700000503",
    "viewer": "console:viewer",
}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
async def people(db: Database) -> None:
    """One person of each role."""
    async with db.transaction() as session:
        for role, address in ADDRESSES.items():
            await roles.set_role(session, address, role, "test")


@pytest.fixture
async def client(db: Database, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client of the app with the console."""
    transport = httpx.ASGITransport(app=create_app(db, settings=settings))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://bot.test", headers={"accept-language": "en-GB"}
    ) as client:
        yield client


async def link_for(db: Database, settings: Settings, address: str) -> str:
    """A fresh sign-in link's path."""
    async with db.transaction() as session:
        url = await signin.new_link(session, settings, address)
    return url.removeprefix(signin.base_url(settings))


async def sign_in(
    client: httpx.AsyncClient, db: Database, settings: Settings, address: str
) -> None:
    """Open a link and press Sign in, as a person does."""
    path = await link_for(db, settings, address)
    page = await client.get(path)
    assert page.status_code == 200
    assert f'action="{path}"' in page.text
    done = await client.post(path)
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/console/"


# (path, who may open it): the others get 403, an anonymous visitor 401 with how to sign in.
ROUTES = [
    ("/console/", set(ADDRESSES)),
    ("/console/reports", {"admin", "coordinator"}),
    ("/console/people", {"admin"}),
    ("/console/map", set(ADDRESSES)),
    ("/console/map.json", set(ADDRESSES)),
    ("/console/audit", {"admin"}),
    ("/console/reports.csv", {"admin", "coordinator"}),
    ("/console/signatures", {"admin", "coordinator"}),
    ("/console/organizations", {"admin", "coordinator"}),
    ("/console/referrals", {"admin", "coordinator", "viewer"}),
]


@pytest.mark.usefixtures("people")
@pytest.mark.parametrize(("path", "allowed"), ROUTES)
@pytest.mark.parametrize("role", [None, *ADDRESSES])
async def test_every_route_for_every_role(
    client: httpx.AsyncClient,
    db: Database,
    settings: Settings,
    path: str,
    allowed: set[str],
    role: str | None,
) -> None:
    if role is not None:
        await sign_in(client, db, settings, ADDRESSES[role])
    response = await client.get(path)
    if role is None:
        assert response.status_code == (200 if path == "/console/" else 401)
        assert "Send /console" in response.text
    elif role in allowed:
        assert response.status_code == 200
        assert "Sign out" in response.text or path.endswith((".json", ".csv"))
    else:
        assert response.status_code == 403
        assert "Your role does not include this page" in response.text
    assert response.headers["content-security-policy"].startswith("default-src 'self'")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "<script>" not in response.text  # no inline script: the policy forbids them


@pytest.mark.usefixtures("people")
async def test_a_link_works_once_and_sets_a_protected_cookie(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    path = await link_for(db, settings, ADDRESSES["admin"])
    # A chat app's preview fetches the link: that must not spend it.
    assert (await client.get(path)).status_code == 200
    first = await client.post(path)
    assert first.status_code == 303
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie or "samesite=lax" in cookie.lower()
    assert "Secure" not in cookie  # PUBLIC_URL is not https here
    client.cookies.clear()
    again = await client.post(path)
    assert again.status_code == 400
    assert "was used already" in again.text
    async with db.transaction() as session:
        link = (await session.scalars(select(SignInLink))).one()
        assert link.used_at is not None
        assert link.token_hash not in path  # only the hash is stored
        signed_in = await session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == "console:sign-in")
        )
    assert signed_in == 1


@pytest.mark.usefixtures("people")
async def test_an_expired_or_forged_link_is_refused(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    async with db.transaction() as session:
        url = await signin.new_link(
            session, settings, ADDRESSES["admin"], now=utcnow() - timedelta(minutes=11)
        )
    expired = await client.post(url.removeprefix(signin.base_url(settings)))
    assert expired.status_code == 400
    forged = await client.post("/console/sign-in/" + "A" * 43)
    assert forged.status_code == 400
    assert COOKIE not in client.cookies
    assert (await client.get("/console/reports")).status_code == 401


@pytest.mark.usefixtures("people")
async def test_guessing_links_is_stopped(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    for n in range(REDEEM_TRIES):
        assert (await client.post(f"/console/sign-in/guess{n}")).status_code == 400
    path = await link_for(db, settings, ADDRESSES["admin"])
    blocked = await client.post(path)
    assert blocked.status_code == 429
    assert "Too many attempts" in blocked.text


@pytest.mark.usefixtures("people")
async def test_a_guesser_is_held_ten_minutes_and_only_that_client(
    db: Database, settings: Settings
) -> None:
    from starlette.applications import Starlette

    # Behind our own proxy (TRUST_PROXY), clients are told apart by X-Forwarded-For, as the
    # partner API and the bulletin check tell them.
    console = Console(db, dataclasses.replace(settings, trust_proxy=True))
    now = [1000.0]
    console.failures.clock = lambda: now[0]
    transport = httpx.ASGITransport(app=Starlette(routes=console.routes()))
    guesser = {"x-forwarded-for": "198.51.100.7"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://bot.test", headers={"accept-language": "en"}
    ) as client:
        for n in range(REDEEM_TRIES):
            guess = await client.post(f"/console/sign-in/guess{n}", headers=guesser)
            assert guess.status_code == 400
        blocked = await client.post(
            await link_for(db, settings, ADDRESSES["admin"]), headers=guesser
        )
        assert blocked.status_code == 429
        assert "Too many attempts" in blocked.text
        # Someone else behind the same proxy signs in.
        elsewhere = {"x-forwarded-for": "198.51.100.8"}
        path = await link_for(db, settings, ADDRESSES["viewer"])
        assert (await client.post(path, headers=elsewhere)).status_code == 303
        now[0] += 599  # still within the ten minutes
        path = await link_for(db, settings, ADDRESSES["admin"])
        assert (await client.post(path, headers=guesser)).status_code == 429
        now[0] += 2  # ten minutes after the last failure
        assert (await client.post(path, headers=guesser)).status_code == 303


def test_failures_count_over_their_window_and_outlive_a_spray_of_addresses() -> None:
    now = [0.0]
    failures = Failures(3, clock=lambda: now[0], window=600.0)
    for _ in range(3):
        failures.note("198.51.100.7")
    assert failures.over("198.51.100.7")
    assert not failures.over("198.51.100.8")
    now[0] = 300.0
    for n in range(REMEMBERED + 10):  # a spray of other addresses, one failure each
        failures.note(f"10.0.{n // 250}.{n % 250}")
    assert failures.over("198.51.100.7")  # the guesser's count was not forgotten for them
    now[0] = 600.5
    assert not failures.over("198.51.100.7")
    assert len(failures.failed) <= REMEMBERED + 10


def test_codes_in_a_shown_message_are_set_whole_and_left_to_right() -> None:
    from markupsafe import Markup

    from bot.webconsole import codes

    def kept(code: str) -> str:
        return f'<bdi class="code" dir="ltr">{code}</bdi>'

    # A plain text (WhatsApp's, a family's notice) is escaped first.
    assert codes("<b>B-7K3M9Q</b> & R-7K3M9") == (
        f"&lt;b&gt;{kept('B-7K3M9Q')}&lt;/b&gt; &amp; {kept('R-7K3M9')}"
    )
    # Telegram's HTML keeps its tags; a code inside a tag's attribute is left as it is.
    link = Markup('<a href="/bulletins/B-7K3M9Q">S-23456789</a>')
    assert codes(link) == f'<a href="/bulletins/B-7K3M9Q">{kept("S-23456789")}</a>'
    # Not codes: inside a word, or with letters no code has (0, O, 1, I, L).
    assert codes("AB-7K3M9Q R-0O1IL") == "AB-7K3M9Q R-0O1IL"


async def test_only_people_with_a_role_get_a_link(db: Database, settings: Settings) -> None:
    async with db.transaction() as session:
        with pytest.raises(signin.NoRole):
            await signin.new_link(session, settings, "telegram:999")
        await roles.set_role(session, "telegram:999", "viewer", "test")
        for _ in range(signin.LINKS_PER_HOUR):
            await signin.new_link(session, settings, "telegram:999")
        with pytest.raises(signin.TooManyLinks):
            await signin.new_link(session, settings, "telegram:999")


@pytest.mark.usefixtures("people")
async def test_a_post_without_the_form_token_is_refused(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    await sign_in(client, db, settings, ADDRESSES["admin"])
    form = {"action": "set", "address": "telegram:777", "role": "viewer"}
    refused = await client.post("/console/people", data=form)
    assert refused.status_code == 400
    wrong = await client.post("/console/people", data={**form, "csrf": "x" * 32})
    assert wrong.status_code == 400
    page = await client.get("/console/people")
    token = CSRF.search(page.text)
    assert token is not None
    other_site = await client.post(
        "/console/people",
        data={**form, "csrf": token.group(1)},
        headers={"origin": "https://evil.example"},
    )
    assert other_site.status_code == 400
    async with db.transaction() as session:
        assert await roles.role_of(session, "telegram:777") is None
    done = await client.post("/console/people", data={**form, "csrf": token.group(1)})
    assert done.status_code == 303
    async with db.transaction() as session:
        assert await roles.role_of(session, "telegram:777") == "viewer"
        audited = (
            await session.scalars(select(AuditEntry).where(AuditEntry.action == "role:set"))
        ).all()
    assert any(
        e.actor == ADDRESSES["admin"] and e.detail["address"] == "telegram:777" for e in audited
    )


@pytest.mark.usefixtures("people")
async def test_a_removed_role_ends_the_session(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    await sign_in(client, db, settings, ADDRESSES["coordinator"])
    assert (await client.get("/console/reports")).status_code == 200
    async with db.transaction() as session:
        await roles.remove(session, ADDRESSES["coordinator"], "test")
    assert (await client.get("/console/reports")).status_code == 401
    async with db.transaction() as session:
        left = await session.scalar(select(func.count()).select_from(WebSession))
    assert left == 0


@pytest.mark.usefixtures("people")
async def test_a_changed_role_takes_effect_at_once(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    await sign_in(client, db, settings, ADDRESSES["coordinator"])
    async with db.transaction() as session:
        await roles.set_role(session, ADDRESSES["coordinator"], "viewer", "test")
    assert (await client.get("/console/reports")).status_code == 403


@pytest.mark.usefixtures("people")
async def test_signing_out_ends_the_session(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    await sign_in(client, db, settings, ADDRESSES["viewer"])
    page = await client.get("/console/")
    token = CSRF.search(page.text)
    assert token is not None
    cookie = client.cookies[COOKIE]
    out = await client.post("/console/sign-out", data={"csrf": token.group(1)})
    assert out.status_code == 303
    client.cookies.set(COOKIE, cookie, domain="bot.test", path="/console")  # kept by a thief
    assert "Send /console" in (await client.get("/console/")).text


@pytest.mark.usefixtures("people")
async def test_the_last_admin_stays(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    await sign_in(client, db, settings, ADDRESSES["admin"])
    token = CSRF.search((await client.get("/console/people")).text)
    assert token is not None
    form = {"csrf": token.group(1), "action": "remove", "address": ADDRESSES["admin"]}
    refused = await client.post("/console/people", data=form, params={"lang": "ar"})
    assert refused.status_code == 400
    assert "لا يمكن" in refused.text
    async with db.transaction() as session:
        assert await roles.role_of(session, ADDRESSES["admin"]) == "admin"


@pytest.mark.usefixtures("people")
async def test_the_reports_table_filters_and_shows_no_personal_field(
    client: httpx.AsyncClient, db: Database, settings: Settings, person: Person
) -> None:
    await choose_language(person, "en")
    await send_full_report(person, "en")
    await sign_in(client, db, settings, ADDRESSES["coordinator"])
    page = await client.get("/console/reports", params={"governorate": "IQG09"})
    assert page.status_code == 200
    assert "1 report" in page.text
    assert "Duhok" in page.text
    assert "Khanke camp" not in page.text  # the place is personal: not in the table
    none = await client.get("/console/reports", params={"governorate": "IQG01"})
    assert "0 reports" in none.text
    assert "No report matches these filters." in none.text
    by_need = await client.get("/console/reports", params={"need": "food"})
    assert by_need.status_code == 200
    hostile = await client.get(
        "/console/reports",
        params={"page": "99999999999", "since": "not a date", "status": "<script>"},
    )
    assert hostile.status_code == 200


@pytest.mark.usefixtures("people")
async def test_arabic_pages_are_right_to_left(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    await sign_in(client, db, settings, ADDRESSES["admin"])
    page = await client.get("/console/people", params={"lang": "ckb"})
    assert '<html lang="ckb" dir="rtl">' in page.text
    again = await client.get("/console/people")  # the choice is remembered
    assert 'dir="rtl"' in again.text
    english = await client.get("/console/people", params={"lang": "en"})
    assert '<html lang="en" dir="ltr">' in english.text


async def test_coordinators_from_the_settings_become_admins(
    db: Database, settings: Settings
) -> None:
    from bot.runtime import adopt_coordinators

    async with db.transaction() as session:
        await roles.set_role(session, "telegram:1000", "editor", "test")
    await adopt_coordinators(db, settings)
    await adopt_coordinators(db, settings)  # at every start: no second entry
    async with db.transaction() as session:
        assert await roles.role_of(session, "telegram:1000") == "editor"  # kept as it was
        assert await roles.role_of(session, "whatsapp:+9647700000001") == "admin"
        count = await session.scalar(select(func.count()).select_from(RolePerson))
    assert count == 2


@pytest.mark.usefixtures("people")
async def test_the_map_counts_districts_and_hides_small_counts_from_viewers(
    client: httpx.AsyncClient, db: Database, settings: Settings, engine: Any
) -> None:
    for n in range(2):
        family = Person(engine, Address("console", f"family{n}"))
        await choose_language(family, "en")
        await send_full_report(family, "en")
    await sign_in(client, db, settings, ADDRESSES["coordinator"])
    figures = (await client.get("/console/map.json", params={"lang": "en"})).json()
    [sumel] = figures["districts"]
    assert sumel["pcode"] == "IQG09Q04"
    assert sumel["count"] == 2
    assert sumel["link"].endswith("district=IQG09Q04")
    assert {g["name"] for g in figures["governorates"]} >= {"Duhok", "Baghdad"}
    filtered = (await client.get("/console/map.json", params={"governorate": "IQG01"})).json()
    assert filtered["districts"] == []
    page = await client.get("/console/map")
    assert "tile.openstreetmap.org" in page.headers["content-security-policy"]
    assert "Zakho" in page.text  # the table under the map, for a page without script
    client.cookies.clear()
    await sign_in(client, db, settings, ADDRESSES["viewer"])
    hidden = (await client.get("/console/map.json")).json()["districts"][0]
    assert hidden["count"] is None
    assert hidden["label"] == "<5"
    assert hidden["link"] is None
    assert ">2<" not in (await client.get("/console/map")).text


@pytest.mark.usefixtures("people")
async def test_the_audit_log_shows_who_did_what(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    await sign_in(client, db, settings, ADDRESSES["admin"])
    page = await client.get("/console/audit", params={"action": "role:"})
    assert page.status_code == 200
    assert "4 entries" in page.text  # the four roles given by the fixture
    assert ADDRESSES["viewer"] in page.text
    mine = await client.get("/console/audit", params={"actor": ADDRESSES["admin"]})
    assert "1 entry" in mine.text  # signing in
    assert "console:sign-in" in mine.text
    odd = await client.get("/console/audit", params={"action": "%", "since": "2026-13-45"})
    assert odd.status_code == 200
    assert "0 entries" in odd.text


async def test_people_and_login_links_on_the_server(
    db: Database, db_url: str, client: httpx.AsyncClient, settings: Settings
) -> None:
    from tests.test_bulletin import run_cli

    code, _out, err = await run_cli(
        ["people", "add", "telegram:42", "admin", "--name", "Sara, Duhok"], db_url
    )
    assert code == 0, err
    code, _out, err = await run_cli(["people", "add", "telegram:42", "viewer"], db_url)
    assert code == 2
    assert "already admin" in err
    code, _out, err = await run_cli(["people", "add", "telegram", "viewer"], db_url)
    assert code == 2
    assert "not an address" in err
    code, out, _err = await run_cli(["people", "list"], db_url)
    assert out.splitlines() == ["telegram:42\tadmin\tSara, Duhok\tnever"]
    code, _out, err = await run_cli(["web", "login-link", "--as", "telegram:7"], db_url)
    assert code == 2
    assert "has no role" in err
    code, out, _err = await run_cli(["web", "login-link", "--as", "telegram:42"], db_url)
    assert code == 0
    path = out.strip().removeprefix("http://127.0.0.1:8080")
    assert path.startswith("/console/sign-in/")
    assert (await client.post(path)).status_code == 303  # the printed link signs in
    code, _out, err = await run_cli(["people", "remove", "telegram:42"], db_url)
    assert code == 2
    assert "last admin" in err
    code, _out, _err = await run_cli(["people", "add", "console:ops", "admin"], db_url)
    code, _out, err = await run_cli(["people", "role", "telegram:42", "editor"], db_url)
    assert code == 0, err
    code, _out, err = await run_cli(["people", "remove", "telegram:42"], db_url)
    assert code == 0, err
    async with db.transaction() as session:
        assert await roles.role_of(session, "telegram:42") is None
        actors = (
            await session.scalars(
                select(AuditEntry.actor).where(AuditEntry.action.startswith("role:"))
            )
        ).all()
    assert actors
    assert all(actor.startswith("cli:") for actor in actors)
    assert (await client.get("/console/")).status_code == 200
    assert "Send /console" in (await client.get("/console/")).text  # the session ended


async def test_the_chat_sends_a_link_only_to_people_with_a_role(
    db: Database, settings: Settings, engine: Any, client: httpx.AsyncClient
) -> None:
    person = Person(engine, Address("telegram", "1000"))  # in COORDINATORS, with no role yet
    await choose_language(person, "en")
    refused = await person.send("/console")
    assert "for people with a role" in refused[0].text
    assert "/console/sign-in/" not in refused[0].text
    async with db.transaction() as session:
        await roles.set_role(session, str(person.address), "coordinator", "test")
    [answer] = await person.send("/console")
    assert "within 10 minutes" in answer.text
    found = re.search(r"http://127\.0\.0\.1:8080(/console/sign-in/[\w-]+)", answer.text)
    assert found is not None
    assert (await client.post(found.group(1))).status_code == 303
    assert (await client.get("/console/reports")).status_code == 200
    for _ in range(signin.LINKS_PER_HOUR - 1):
        await person.send("/console")
    [busy] = await person.send("/console")
    assert "within the hour" in busy.text


@pytest.mark.usefixtures("people")
async def test_the_filtered_reports_download_as_csv_hxl_and_geojson(
    client: httpx.AsyncClient, db: Database, settings: Settings, engine: Any
) -> None:
    family = Person(engine, Address("console", "family"))
    await choose_language(family, "en")
    await send_full_report(family, "en")
    await sign_in(client, db, settings, ADDRESSES["coordinator"])
    page = await client.get("/console/reports", params={"governorate": "IQG09"})
    assert 'href="/console/reports.csv?governorate=IQG09"' in page.text
    csv_file = await client.get("/console/reports.csv", params={"governorate": "IQG09"})
    assert csv_file.status_code == 200
    assert csv_file.headers["content-disposition"].startswith("attachment;")
    lines = csv_file.text.splitlines()
    assert len(lines) == 2  # the header and the one report
    assert "Khanke camp" not in csv_file.text  # public fields unless asked
    hxl = await client.get("/console/reports.hxl")
    assert hxl.text.splitlines()[1].startswith("#")
    empty = await client.get("/console/reports.geojson", params={"governorate": "IQG01"})
    assert empty.json() == {"type": "FeatureCollection", "features": []}
    private = await client.get("/console/reports.csv", params={"private": "1"})
    assert "Khanke camp" in private.text
    assert (await client.get("/console/reports.xlsx")).status_code == 404
    async with db.transaction() as session:
        logged = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == "export").order_by(AuditEntry.id)
            )
        ).all()
    assert [e.actor for e in logged] == [ADDRESSES["coordinator"]] * 4
    assert logged[0].detail["filters"] == {"governorate": "IQG09"}
    assert [e.detail["private"] for e in logged] == [False, False, False, True]


async def post_pairs(
    client: httpx.AsyncClient, path: str, pairs: list[tuple[str, str]]
) -> httpx.Response:
    """Post a form whose names repeat (ticked boxes), as a browser does."""
    return await client.post(
        path,
        content=urlencode(pairs),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )


async def outbox_to(db: Database, address: Address) -> list[Outbound]:
    """The messages queued for an address, oldest first."""
    async with db.transaction() as session:
        rows = (
            await session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.address == str(address))
                .order_by(OutboxMessage.id)
            )
        ).all()
    return [Outbound.from_json(row.body) for row in rows]


async def a_family_report(engine: Any, locale: str = "ar") -> tuple[Person, str]:
    """A family that reported in `locale`; its report's reference."""
    family = Person(engine, Address("telegram", "7001"))
    await choose_language(family, locale)
    await send_full_report(family, locale)
    found = re.search(r"R-[2-9A-Z]{5}", family.text())
    assert found is not None, family.text()
    return family, found.group(0)


async def csrf_of(client: httpx.AsyncClient, path: str) -> str:
    """The form token on a page."""
    token = CSRF.search((await client.get(path)).text)
    assert token is not None
    return token.group(1)


@pytest.mark.usefixtures("people")
async def test_a_report_page_shows_every_answer_and_audits_the_view(
    client: httpx.AsyncClient, db: Database, settings: Settings, engine: Any
) -> None:
    _family, reference = await a_family_report(engine)
    await sign_in(client, db, settings, ADDRESSES["coordinator"])
    page = await client.get(f"/console/reports/{reference.lower()}")
    assert page.status_code == 200
    assert "Khanke camp" in page.text  # personal fields, for a coordinator
    assert "Zakho" in page.text
    assert (await client.get("/console/reports/R-ZZZZZ")).status_code == 404
    async with db.transaction() as session:
        views = (
            await session.scalars(select(AuditEntry).where(AuditEntry.action == "console:view"))
        ).all()
    assert [(v.actor, v.detail["personal"]) for v in views] == [(ADDRESSES["coordinator"], True)]


@pytest.mark.usefixtures("people")
async def test_a_status_change_with_a_preview_in_the_familys_language(
    client: httpx.AsyncClient, db: Database, settings: Settings, engine: Any
) -> None:
    family, reference = await a_family_report(engine, "ckb")
    await sign_in(client, db, settings, ADDRESSES["coordinator"])
    path = f"/console/reports/{reference}"
    csrf = await csrf_of(client, path)
    form = {"csrf": csrf, "status": "verified", "note": "Food parcels on Sunday", "tell": "1"}
    preview = await client.post(path, data={**form, "action": "preview"})
    assert preview.status_code == 200
    with use_locale("ckb"):
        expected = reports.notice_text(reference, "verified", "Food parcels on Sunday")
    # As the family reads it, the reference kept whole and left to right in the Sorani line.
    kept = f'<bdi class="code" dir="ltr">{reference}</bdi>'
    shown = html.escape(expected, quote=False).replace(reference, kept)
    assert shown.split("\n")[0] in preview.text
    assert 'lang="ckb" dir="rtl"' in preview.text
    async with db.transaction() as session:
        report = await session.scalar(select(Report).where(Report.reference == reference))
        assert report is not None
        assert report.status == "new"  # a preview changes nothing
    done = await client.post(path, data={**form, "action": "status"})
    assert done.status_code == 303
    told = await outbox_to(db, family.address)
    assert "Food parcels on Sunday" in told[-1].text
    assert expected.split("\n")[0] in told[-1].text
    page = await client.get(path)
    assert "Food parcels on Sunday" in page.text  # in the history
    async with db.transaction() as session:
        report = await session.scalar(select(Report).where(Report.reference == reference))
        assert report is not None
        assert report.status == "verified"
    refused = await client.post(path, data={**form, "action": "status", "csrf": "x"})
    assert refused.status_code == 400
    too_long = await client.post(path, data={**form, "note": "x" * 1001, "action": "status"})
    assert too_long.status_code == 400
    assert "1,001" in too_long.text


@pytest.mark.usefixtures("people")
async def test_messages_with_the_family_and_its_reply(
    client: httpx.AsyncClient, db: Database, settings: Settings, engine: Any
) -> None:
    family, reference = await a_family_report(engine, "ar")
    await sign_in(client, db, settings, ADDRESSES["coordinator"])
    path = f"/console/reports/{reference}"
    csrf = await csrf_of(client, path)
    note = await client.post(path, data={"csrf": csrf, "action": "note", "note": "Call Monday"})
    assert note.status_code == 303
    sent = await client.post(
        path, data={"csrf": csrf, "action": "message", "note": "How many tents do you need?"}
    )
    assert sent.status_code == 303
    [message] = [m for m in await outbox_to(db, family.address) if "tents" in m.text]
    assert t("ar", "Reply") in [b.label for b in message.options()]
    family.replies = [message]  # the family sees it in its chat
    await family.tap(t("ar", "Reply"))
    await family.send("نحتاج خيمتين")
    assert t("ar", "Thank you. Your answer was passed to the coordinators.") in family.text()
    coordinators = [m for m in family.sent if m.address != family.address]
    assert coordinators
    assert all("نحتاج" not in m.text for m in coordinators)  # the words stay in the thread
    page = await client.get(path)
    assert "نحتاج خيمتين" in page.text
    assert "How many tents do you need?" in page.text
    assert "Call Monday" in page.text
    # "Delete my data": the thread goes with the family's data.
    await family.send("/forget")
    await family.press("forget:yes")
    async with db.transaction() as session:
        left = await session.scalar(select(func.count()).select_from(ReportMessage))
    assert left == 0
    after = await client.get(path)
    assert "نحتاج" not in after.text
    assert "The family cannot be written to" in after.text


async def test_a_reply_to_someone_elses_report_is_refused(
    db: Database, settings: Settings, engine: Any
) -> None:
    _family, reference = await a_family_report(engine, "en")
    stranger = Person(engine, Address("telegram", "7002"))
    await choose_language(stranger, "en")
    await stranger.press(f"msg:reply:{reference}")
    await stranger.send("hello")
    assert "no longer open for messages" in stranger.text()
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(ReportMessage)) == 0


@pytest.mark.usefixtures("people")
async def test_several_reports_change_status_at_once(
    client: httpx.AsyncClient, db: Database, settings: Settings, engine: Any
) -> None:
    families = []
    for n, locale in enumerate(("ar", "en")):
        family = Person(engine, Address("telegram", f"71{n}"))
        await choose_language(family, locale)
        await send_full_report(family, locale)
        families.append(family)
    await sign_in(client, db, settings, ADDRESSES["coordinator"])
    page = await client.get("/console/reports", params={"governorate": "IQG09"})
    refs = re.findall(r'name="ref" value="(R-[2-9A-Z]{5})"', page.text)
    assert len(refs) == 2
    csrf = CSRF.search(page.text)
    assert csrf is not None
    back = re.search(r'name="back" value="([^"]+)"', page.text)
    assert back is not None
    form = [
        ("csrf", csrf.group(1)),
        ("back", html.unescape(back.group(1))),
        *(("ref", ref) for ref in refs),
        ("status", "referred"),
        ("note", "Sent to the Duhok office"),
        ("tell", "1"),
    ]
    done = await post_pairs(client, "/console/reports", form)
    assert done.status_code == 303
    assert done.headers["location"] == "/console/reports?governorate=IQG09&page=0"
    for family, locale in zip(families, ("ar", "en"), strict=True):
        [notice] = [m for m in await outbox_to(db, family.address) if "Duhok office" in m.text]
        assert notice.locale == locale
    async with db.transaction() as session:
        statuses = (await session.scalars(select(Report.status))).all()
        changes = await session.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "status")
        )
    assert statuses == ["referred", "referred"]
    assert changes == 2
    bad = await post_pairs(client, "/console/reports", [*form[:3], ("status", "gone")])
    assert bad.status_code == 400
    none = await post_pairs(client, "/console/reports", [form[0], ("status", "new")])
    assert none.status_code == 400


@pytest.mark.usefixtures("people")
async def test_signatures_are_verified_rejected_and_taken_back(
    client: httpx.AsyncClient, db: Database, settings: Settings, engine: Any
) -> None:
    from tests.test_sign import sign

    first = Person(engine, Address("telegram", "8001"))
    await choose_language(first, "ar")
    await sign(first, "ar")
    second = Person(engine, Address("telegram", "8002"))
    await choose_language(second, "ckb")
    await sign(second, "ckb", name="Tigris Youth Forum", other=None)
    await sign_in(client, db, settings, ADDRESSES["coordinator"])
    page = await client.get("/console/signatures", params={"lang": "en"})
    assert page.status_code == 200
    assert "Pending verification: <strong>2</strong>" in page.text
    assert "Zainab Hassan" in page.text  # the representative, for a coordinator
    ids = re.findall(r'name="id" value="(\d+)"', page.text)
    csrf = CSRF.search(page.text)
    assert csrf is not None
    token = csrf.group(1)
    verified = await client.post(
        "/console/signatures", data={"csrf": token, "id": ids[0], "action": "verify"}
    )
    assert verified.status_code == 303
    unreasoned = await client.post(
        "/console/signatures", data={"csrf": token, "id": ids[-1], "action": "reject"}
    )
    assert unreasoned.status_code == 400
    rejected = await client.post(
        "/console/signatures",
        data={"csrf": token, "id": ids[-1], "action": "reject", "preset": "unreachable"},
    )
    assert rejected.status_code == 303
    told = await outbox_to(db, second.address)
    reason = t("ckb", "We could not reach the representative to confirm the signature.")
    assert any(reason in m.text for m in told)  # the preset, in the representative's language
    undone = await client.post(
        "/console/signatures", data={"csrf": token, "id": ids[0], "action": "undo"}
    )
    assert undone.status_code == 303
    taken_back = t(
        "ar",
        "The decision on your organization's signature (%(receipt)s) was taken back. The "
        "coordinators will look at it again and write to you.",
    ).split("(")[0]
    assert any(taken_back in m.text for m in await outbox_to(db, first.address))
    async with db.transaction() as session:
        statuses = dict((await session.execute(select(Signature.id, Signature.status))).all())
        actions = (
            await session.scalars(
                select(AuditEntry.action).where(AuditEntry.action.startswith("signature:"))
            )
        ).all()
    assert statuses == {int(ids[0]): "pending", int(ids[-1]): "rejected"}
    assert sorted(actions) == ["signature:rejected", "signature:undo", "signature:verified"]
    await sign_in(client, db, settings, ADDRESSES["viewer"])
    assert (await client.get("/console/signatures")).status_code == 403


async def test_the_chat_follows_the_roles_in_the_database(
    db: Database, settings: Settings, engine: Any
) -> None:
    editor = Person(engine, Address("telegram", "9001"))
    viewer = Person(engine, Address("telegram", "9002"))
    coordinator = Person(engine, Address("whatsapp", "+9647700009003"))
    for person in (editor, viewer, coordinator):
        await choose_language(person, "en")
    async with db.transaction() as session:
        await roles.set_role(session, str(editor.address), "editor", "test")
        await roles.set_role(session, str(viewer.address), "viewer", "test")
        await roles.set_role(session, str(coordinator.address), "coordinator", "test")
    await editor.send("/menu")
    assert "Bulletin desk" in editor.labels()
    assert "Reports to triage" not in editor.labels()
    assert "Coordinators' console" in editor.labels()
    await editor.send("/reports")
    assert "I do not know that command" in editor.text()
    await editor.send("/bulletin")
    assert "I do not know that command" not in editor.text()
    await viewer.send("/menu")
    assert "Coordinators' console" in viewer.labels()
    # A viewer is not told they are a coordinator.
    assert "Your tools for the Initiative's work come after My data." in viewer.text()
    assert "coordinator" not in viewer.text().lower()
    assert "Bulletin desk" not in viewer.labels()
    await viewer.send("/console")
    assert "within 10 minutes" in viewer.text()
    await coordinator.send("/reports")
    assert "I do not know that command" not in coordinator.text()
    # A new report reaches the coordinator of the database, and not the editor.
    family = Person(engine, Address("telegram", "9100"))
    await choose_language(family, "en")
    await send_full_report(family, "en")
    alerted = {
        str(m.address)
        for m in family.sent
        if any(b.payload.startswith("rep:open:") for b in m.options())
    }
    assert str(coordinator.address) in alerted
    assert str(editor.address) not in alerted
    assert "telegram:1000" in alerted  # COORDINATORS, with no role in the database yet
    # Taken away in the middle of the list: out of the tools.
    async with db.transaction() as session:
        await roles.remove(session, str(coordinator.address), "test")
    await coordinator.send("2")
    assert "only for the Initiative's coordinators" in coordinator.text()


@pytest.mark.usefixtures("people")
async def test_the_table_sorts_by_household(
    client: httpx.AsyncClient, db: Database, settings: Settings, engine: Any
) -> None:
    for n in range(3):
        family = Person(engine, Address("console", f"sort{n}"))
        await choose_language(family, "en")
        await send_full_report(family, "en")
    async with db.transaction() as session:
        ids = (await session.scalars(select(Report.id).order_by(Report.id))).all()
        await session.execute(update(Report).where(Report.id == ids[1]).values(people=12))
        largest = await session.scalar(select(Report.reference).where(Report.id == ids[1]))
        newest = await session.scalar(select(Report.reference).where(Report.id == ids[2]))
        oldest = await session.scalar(select(Report.reference).where(Report.id == ids[0]))
    await sign_in(client, db, settings, ADDRESSES["coordinator"])

    async def first(sort: str) -> str:
        page = await client.get("/console/reports", params={"sort": sort})
        found = re.search(r'name="ref" value="(R-[2-9A-Z]{5})"', page.text)
        assert found is not None
        return found.group(1)

    assert await first("people") == largest
    assert await first("newest") == newest
    assert await first("oldest") == oldest
    assert await first("anything") == newest


async def test_the_cookie_is_secure_behind_https(db: Database, settings: Settings) -> None:
    public = dataclasses.replace(settings, public_url="https://bot.example.org")
    async with db.transaction() as session:
        await roles.set_role(session, "telegram:501", "admin", "test")
        url = await signin.new_link(session, public, "telegram:501")
    assert url.startswith("https://bot.example.org/console/sign-in/")
    transport = httpx.ASGITransport(app=create_app(db, settings=public))
    async with httpx.AsyncClient(
        transport=transport, base_url="https://bot.example.org"
    ) as client:
        answer = await client.post(url.removeprefix("https://bot.example.org"))
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    assert "Secure" in cookie
    assert "HttpOnly" in cookie


async def test_retention_ends_old_sessions_and_links(db: Database, settings: Settings) -> None:
    from bot import retention

    now = utcnow()
    async with db.transaction() as session:
        await roles.set_role(session, "telegram:501", "admin", "test")
        await signin.new_link(session, settings, "telegram:501", now=now - timedelta(days=2))
        await signin.new_link(session, settings, "telegram:501", now=now)
    async with db.transaction() as session:
        url = await signin.new_link(session, settings, "telegram:501", now=now)
    async with db.transaction() as session:
        cookie = await signin.redeem(session, settings, url.rsplit("/", 1)[1], now=now)
    assert cookie is not None
    later = now + timedelta(hours=settings.console_session_hours, minutes=1)
    counts = await retention.purge(db, settings, later)
    assert counts["console sessions ended"] == 1
    assert counts["sign-in links deleted"] == 1  # the one two days old
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(WebSession)) == 0
        assert await session.scalar(select(func.count()).select_from(SignInLink)) == 2


POSTS = ["/console/people", "/console/reports", "/console/reports/R-22222", "/console/signatures"]


@pytest.mark.usefixtures("people")
@pytest.mark.parametrize("path", POSTS)
async def test_hostile_posts_get_400_never_500(
    client: httpx.AsyncClient, db: Database, settings: Settings, path: str
) -> None:
    await sign_in(client, db, settings, ADDRESSES["admin"])
    csrf = await csrf_of(client, "/console/people")
    form = "application/x-www-form-urlencoded"
    bodies: list[tuple[bytes, str]] = [
        (b"", form),
        (b"\xff\xfe\x00garbage", form),
        (f"csrf={csrf}&id=%C0%AF&status=%00".encode(), form),
        (f"csrf={csrf}&".encode() + b"a=b&" * 600, form),  # too many fields
        (f"csrf={csrf}&note=".encode() + b"x" * 20_000, form),  # over the form's limit
        (b'{"csrf": "x"}', "application/json"),
        (f"csrf={csrf}&action=status&status=verified&ref=".encode() + b"R-" * 60, form),
        (f"csrf={csrf}&id=99999999999999999999&action=verify".encode(), form),
    ]
    for body, kind in bodies:
        answer = await client.post(path, content=body, headers={"content-type": kind})
        assert answer.status_code in (400, 404, 413), (path, body[:40], answer.status_code)
    lying = await client.post(
        path, content=b"a=b", headers={"content-type": form, "content-length": "999999999"}
    )
    assert lying.status_code in (400, 413)
