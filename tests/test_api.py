"""The partner API: tokens made and revoked by the CLI, scopes, limits, audit, filters and pages,
and its OpenAPI document checked against the running app by Schemathesis."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from sqlalchemy import select

from bot import apitokens, exports
from bot.config import Settings
from bot.db import Database
from bot.engine import Engine
from bot.messages import Address
from bot.models import ApiToken, AuditEntry
from bot.public.api import FIGURE_COLUMNS, cursor_of, openapi_document
from bot.web import create_app
from tests.conftest import Person
from tests.coordinator_helpers import send_full_report
from tests.helpers import choose_language
from tests.public_helpers import seed
from tests.test_bulletin import run_cli

WITHIN = 10.0


async def new_token(db: Database, scope: str, name: str | None = None) -> str:
    """A token of `scope`, made by the service the CLI calls."""
    async with db.transaction() as session:
        _id, token = await apitokens.create(session, name or f"partner {scope}", scope, "test")
    return token


@pytest.fixture
async def seeded(db: Database, engine: Engine) -> dict[str, Any]:
    """The seeded organizations, report and bulletins."""
    return await seed(db, engine)


@pytest.fixture
async def api(
    db: Database, settings: Settings, seeded: dict[str, Any]
) -> AsyncIterator[httpx.AsyncClient]:
    """A partner's program, talking to the app."""
    transport = httpx.ASGITransport(app=create_app(db, settings=settings))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", timeout=WITHIN
    ) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    """The Authorization header of a token."""
    return {"Authorization": f"Bearer {token}"}


async def test_an_admin_makes_lists_and_revokes_tokens_with_the_cli(
    db: Database, db_url: str, settings: Settings, seeded: dict[str, Any]
) -> None:
    code, out, err = await run_cli(
        ["api-token", "create", "--name", "WFP Duhok", "--scope", "reports"], db_url
    )
    assert code == 0, err
    token = out.strip()
    assert token.startswith("icssi_")
    assert "shown this once" in err
    async with db.read() as connection:
        stored = (await connection.execute(select(ApiToken))).one()
    # Only its hash is kept: the token itself is nowhere in the database.
    assert stored.token_hash == apitokens.digest(token)
    assert stored.scope == "reports"
    async with db.read() as connection:
        everything = [
            str(v) for row in (await connection.execute(select(ApiToken))).all() for v in row
        ]
    assert token not in " ".join(everything)
    code, out, _err = await run_cli(["api-token", "list"], db_url)
    assert code == 0
    assert out.split("\t")[:3] == [str(stored.id), "WFP Duhok", "reports"]
    assert "never used" in out
    transport = httpx.ASGITransport(app=create_app(db, settings=settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get("/api/v1/reports", headers=bearer(token))).status_code == 200
        code, _out, err = await run_cli(["api-token", "revoke", str(stored.id)], db_url)
        assert code == 0, err
        refused = await client.get("/api/v1/reports", headers=bearer(token))
        assert refused.status_code == 401
        assert refused.json() == {"error": "invalid_token", "message": "this token was revoked"}
    code, _out, err = await run_cli(["api-token", "revoke", str(stored.id)], db_url)
    assert code == 2
    assert "revoked already" in err
    code, _out, err = await run_cli(["api-token", "revoke", "999"], db_url)
    assert code == 2
    code, _out, err = await run_cli(
        ["api-token", "create", "--name", "X", "--scope", "everything"], db_url
    )
    assert code == 2
    code, _out, _err = await run_cli(["api-token", "list"], db_url)
    async with db.read() as connection:
        actions = (
            await connection.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.action.startswith("api-token"))
                .order_by(AuditEntry.id)
            )
        ).all()
    assert list(actions) == ["api-token:create", "api-token:revoke"]


async def test_missing_wrong_and_other_scopes_tokens_get_a_json_error(
    api: httpx.AsyncClient, db: Database
) -> None:
    reports = await new_token(db, "reports")
    missing = await api.get("/api/v1/reports")
    assert missing.status_code == 401
    assert missing.json()["error"] == "unauthorized"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    for header in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer icssi_not-a-token", "Bearer x" * 200):
        wrong = await api.get("/api/v1/reports", headers={"Authorization": header})
        assert wrong.status_code == 401, header
        assert wrong.headers["content-type"] == "application/json"
    for path in ("/api/v1/figures", "/api/v1/signatories"):
        other = await api.get(path, headers=bearer(reports))
        assert other.status_code == 403
        assert other.json() == {
            "error": "insufficient_scope",
            "message": "this token's scope is reports",
        }
    assert (await api.get("/api/v1/reports", headers=bearer(reports))).status_code == 200
    assert (await api.get("/api/v1/nothing", headers=bearer(reports))).status_code == 404
    posted = await api.post("/api/v1/reports", headers=bearer(reports), content=b"{}")
    assert posted.status_code == 405
    assert posted.json()["error"] == "method_not_allowed"


async def test_reports_have_exactly_the_public_exports_fields_and_filter_and_page(
    api: httpx.AsyncClient, db: Database, engine: Engine
) -> None:
    for number in (6201, 6202):  # two more reports: three in all, in Duhok, with health
        family = Person(engine, Address("telegram", str(number)))
        await choose_language(family, "en")
        await send_full_report(family, "en")
    token = bearer(await new_token(db, "reports"))
    everything = (await api.get("/api/v1/reports", headers=token)).json()
    names = [name for name, _tag in exports.columns(False)]
    assert [set(row) for row in everything["data"]] == [set(names)] * 3
    assert everything["columns"] == [{"name": n, "hxl": t} for n, t in exports.columns(False)]
    assert everything["next_cursor"] is None
    # One at a time, by the cursor.
    seen = []
    cursor = None
    for _ in range(4):
        query = {"limit": "1", **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/api/v1/reports", headers=token, params=query)).json()
        seen += [row["reference"] for row in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [row["reference"] for row in everything["data"]]
    filtered = {
        "governorate=IQG09": 3,
        "governorate=IQG01": 0,
        "need=health": 3,
        "need=water": 0,
        "since=2000-01-01": 3,
        "until=2000-01-01": 0,
        f"since={(datetime.now(UTC) + timedelta(days=2)).date().isoformat()}": 0,
    }
    for condition, count in filtered.items():
        answer = await api.get(f"/api/v1/reports?{condition}", headers=token)
        assert len(answer.json()["data"]) == count, condition
    hxl = (await api.get("/api/v1/reports?hxl=1&limit=1", headers=token)).json()
    assert set(hxl["data"][0]) == {tag for _name, tag in exports.columns(False)}
    as_csv = await api.get("/api/v1/reports?format=csv&hxl=1", headers=token)
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(as_csv.text)))
    assert rows[0] == names
    assert rows[1] == [tag for _name, tag in exports.columns(False)]
    assert len(rows) == 5
    # A cursor past any row id (on PostgreSQL, past a 32-bit integer): an empty page.
    beyond = await api.get("/api/v1/reports?cursor=999999999999", headers=token)
    assert beyond.status_code == 200
    assert beyond.json()["data"] == []
    paged = await api.get("/api/v1/reports?limit=2", headers=token)
    assert paged.headers["link"].endswith('rel="next"')
    for bad in (
        "since=2024-13-01",
        "since=yesterday",
        "governorate=XX",
        "governorate=IQG09Q04",
        "need=gold",
        "limit=0",
        "limit=1001",
        "limit=ten",
        "cursor=garbage!",
        f"cursor={cursor_of(1)}x",
        "cursor=-1",
        "format=xml",
        "hxl=yes",
        "colour=red",
        "limit=1&limit=2",
    ):
        answer = await api.get(f"/api/v1/reports?{bad}", headers=token)
        assert answer.status_code == 400, bad
        assert answer.json()["error"] == "bad_request"


async def test_figures_by_governorate_and_need(api: httpx.AsyncClient, db: Database) -> None:
    token = bearer(await new_token(db, "figures"))
    answer = (await api.get("/api/v1/figures", headers=token)).json()
    assert answer["columns"] == [{"name": n, "hxl": t} for n, t in FIGURE_COLUMNS]
    assert answer["data"] == [
        {
            "governorate_pcode": "IQG09",
            "governorate": "Duhok",
            "need": need,
            "reports": 1,
            "people": 5,
        }
        for need in ("food", "health")
    ]
    only = (await api.get("/api/v1/figures?need=health&hxl=1", headers=token)).json()
    assert only["data"] == [
        {
            "#adm1+code": "IQG09",
            "#adm1+name": "Duhok",
            "#sector": "health",
            "#meta+count": 1,
            "#affected+ind": 5,
        }
    ]
    none = (await api.get("/api/v1/figures?governorate=IQG01", headers=token)).json()
    assert none["data"] == []


async def test_signatories_are_the_verified_with_the_public_fields(
    api: httpx.AsyncClient, db: Database
) -> None:
    token = bearer(await new_token(db, "signatories"))
    answer = (await api.get("/api/v1/signatories", headers=token)).json()
    assert [row["organization_en"] for row in answer["data"]] == ["Al-Amal Development Society"]
    assert set(answer["data"][0]) == set(exports.PUBLIC_SIGNATURE_FIELDS)
    as_csv = await api.get("/api/v1/signatories?format=csv", headers=token)
    assert as_csv.text.splitlines()[0] == ",".join(exports.PUBLIC_SIGNATURE_FIELDS)


async def test_a_token_past_its_rate_gets_429_with_retry_after(
    db: Database, settings: Settings, seeded: dict[str, Any]
) -> None:
    limited = dataclasses.replace(settings, api_requests_per_minute=3)
    token = bearer(await new_token(db, "figures"))
    other = bearer(await new_token(db, "figures", "another partner"))
    transport = httpx.ASGITransport(app=create_app(db, settings=limited))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        answers = [await client.get("/api/v1/figures", headers=token) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert answers[3].json()["error"] == "rate_limited"
        assert 1 <= int(answers[3].headers["retry-after"]) <= 60
        # Another token has its own allowance.
        assert (await client.get("/api/v1/figures", headers=other)).status_code == 200


async def test_a_client_guessing_tokens_is_turned_away_before_any_read(
    db: Database, settings: Settings, seeded: dict[str, Any]
) -> None:
    from bot.public.api import FAILURES_PER_MINUTE

    token = bearer(await new_token(db, "figures"))
    proxied = dataclasses.replace(settings, trust_proxy=True)
    transport = httpx.ASGITransport(app=create_app(db, settings=proxied))
    guesser = {"x-forwarded-for": "198.51.100.7"}
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for n in range(FAILURES_PER_MINUTE):
            wrong = {**guesser, "Authorization": f"Bearer icssi_guess{n}"}
            assert (await client.get("/api/v1/figures", headers=wrong)).status_code == 401
        # Past the count, even a good token from that client waits: nothing is read for it.
        turned = await client.get("/api/v1/figures", headers={**guesser, **token})
        assert turned.status_code == 429
        assert turned.json()["error"] == "too_many_failures"
        assert turned.headers["retry-after"] == "60"
        # Another partner, elsewhere, is not held up.
        elsewhere = {**token, "x-forwarded-for": "198.51.100.8"}
        assert (await client.get("/api/v1/figures", headers=elsewhere)).status_code == 200


def test_the_rate_limit_lets_requests_through_again_as_the_minute_slides() -> None:
    limit = apitokens.RateLimit(2)
    assert limit.wait(1, now=100.0) == 0
    assert limit.wait(1, now=110.0) == 0
    assert limit.wait(1, now=120.0) == pytest.approx(40.0)
    assert limit.wait(1, now=160.5) == 0  # the first has left the window


async def test_each_use_is_audited_once_a_minute_per_token_with_its_count(
    db: Database, seeded: dict[str, Any]
) -> None:
    async with db.transaction() as session:
        token_id, _token = await apitokens.create(session, "UNHCR", "figures", "test")
    usage = apitokens.Usage()
    holder = apitokens.Holder(token_id, "UNHCR", "figures", False)
    start = datetime(2026, 12, 7, 1, 0, 10, tzinfo=UTC)
    for second in range(0, 40, 2):
        usage.note(holder, "/api/v1/figures", start + timedelta(seconds=second))
    usage.note(holder, "/api/v1/figures", start + timedelta(minutes=1))
    assert usage.due(start + timedelta(seconds=45)) is False
    assert await usage.flush(db, start + timedelta(seconds=45)) == 0
    assert usage.due(start + timedelta(minutes=1)) is True
    assert await usage.flush(db, start + timedelta(minutes=1, seconds=5)) == 1
    assert await usage.flush(db, everything=True) == 1
    async with db.read() as connection:
        lines = (
            await connection.execute(
                select(AuditEntry.actor, AuditEntry.detail)
                .where(AuditEntry.action == "api:use")
                .order_by(AuditEntry.id)
            )
        ).all()
        used = await connection.scalar(
            select(ApiToken.last_used_at).where(ApiToken.id == token_id)
        )
    assert [(actor, detail["count"], detail["minute"]) for actor, detail in lines] == [
        ("api:UNHCR", 20, "2026-12-07T01:00+00:00"),
        ("api:UNHCR", 1, "2026-12-07T01:01+00:00"),
    ]
    assert lines[0][1]["paths"] == {"/api/v1/figures": 20}
    assert used is not None
    assert used.replace(second=0) == datetime(2026, 12, 7, 1, 1, tzinfo=UTC)


async def test_the_running_app_audits_its_last_minute_when_it_stops(
    db: Database, settings: Settings, seeded: dict[str, Any]
) -> None:
    from tests.test_console_browser import Server

    token = bearer(await new_token(db, "signatories", "IOM"))
    with Server(settings) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=WITHIN) as client:
            for _ in range(5):
                answer = await client.get("/api/v1/signatories", headers=token)
                assert answer.status_code == 200
    async with db.read() as connection:
        details = (
            await connection.scalars(
                select(AuditEntry.detail).where(AuditEntry.action == "api:use")
            )
        ).all()
    assert sum(d["count"] for d in details) == 5
    assert len(details) <= 2  # one a minute (two if the run crossed a minute's end)


# -- the OpenAPI document against the running app ---------------------------------------------

SCHEMA = schemathesis.openapi.from_dict(openapi_document("http://127.0.0.1"))


# A token of each scope for the test below, known before the app runs: Schemathesis builds
# some of its requests while collecting the tests. The fixture stores their hashes.
TOKENS = {scope: f"icssi_schemathesis-{scope}-0123456789" for scope in apitokens.SCOPES}


@SCHEMA.auth(cache_by_key=lambda case, _context: case.path)
class ScopeToken:
    """The token of an operation's scope, as Schemathesis sets it on a generated request (and
    leaves off where it tests the API without one)."""

    def get(self, case: Any, _context: Any) -> str:
        """The token of the scope the path is named after."""
        return TOKENS[case.path.rsplit("/", 1)[-1]]

    def set(self, case: Any, data: str, _context: Any) -> None:
        """Send it as a bearer token."""
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@pytest.fixture
def running(db: Database, settings: Settings, seeded: dict[str, Any]) -> Iterator[str]:
    """The app on uvicorn, TOKENS valid."""
    from tests.test_console_browser import Server

    asyncio.run(_store_tokens(settings.database_url))
    generous = dataclasses.replace(settings, api_requests_per_minute=100_000)
    with Server(generous) as server:
        yield server.url


async def _store_tokens(url: str) -> None:
    """TOKENS' hashes stored, as `api-token create` stores a token's, from this thread's loop."""
    database = Database(url)
    try:
        async with database.transaction() as session:
            for scope, token in TOKENS.items():
                digest = apitokens.digest(token)
                session.add(ApiToken(token_hash=digest, name=scope, scope=scope, created_by="t"))
    finally:
        await database.close()


def test_the_openapi_document_is_served(running: str) -> None:
    served = httpx.get(f"{running}/api/v1/openapi.json", timeout=WITHIN)
    assert served.status_code == 200
    assert served.json()["openapi"].startswith("3.")
    assert set(served.json()["paths"]) == {
        "/api/v1/reports",
        "/api/v1/figures",
        "/api/v1/signatories",
    }


@SCHEMA.parametrize()
@hypothesis_settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_api_keeps_to_its_openapi_document(case: Any, running: str) -> None:
    case.call_and_validate(base_url=running, timeout=WITHIN)
