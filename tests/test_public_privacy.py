"""No personal field in any public page or API answer: a family's report and an organization's
representative give every personal value bot/personal.py declares, then every public route and
every API route is read, in every language and format, and searched for them."""

from __future__ import annotations

import httpx
from sqlalchemy import select
from starlette.routing import Mount, Route

from bot import apitokens
from bot.config import Settings
from bot.db import Database
from bot.engine import Engine
from bot.models import Report, Signature
from bot.public import PublicSite
from bot.public.api import PartnerApi
from bot.web import create_app
from tests.public_helpers import PERSONAL_VALUES, personal_values_in, seed

# What each route is asked, beyond its plain address: every variant that changes the answer.
VARIANTS: dict[str, list[str]] = {
    "/": [""],
    "/declaration": [""],
    "/signatories": ["", "?page=1", "?page=2"],
    "/signatories.{fmt}": ["csv", "json"],
    "/bulletins": ["", "?page=2"],
    "/bulletins.atom": [""],
    "/bulletins/verify": [""],
    "/bulletins/{public_id}": ["{public_id}"],
    "/api/v1/openapi.json": [""],
    "/api/v1/reports": ["", "?hxl=1", "?format=csv", "?format=csv&hxl=1", "?limit=1"],
    "/api/v1/figures": ["", "?hxl=1", "?format=csv", "?format=csv&hxl=1"],
    "/api/v1/signatories": ["", "?hxl=1", "?format=csv", "?format=csv&hxl=1"],
    "/api/v1/{rest:path}": ["nothing"],
}
SCOPE_OF = {
    "/api/v1/reports": "reports",
    "/api/v1/figures": "figures",
    "/api/v1/signatories": "signatories",
}


def addresses(path: str, variant: str, public_id: str) -> str:
    """A route's address with a variant filled in."""
    if "{fmt}" in path:
        return path.replace("{fmt}", variant)
    if "{public_id}" in path:
        return path.replace("{public_id}", public_id)
    if "{rest:path}" in path:
        return path.replace("{rest:path}", variant)
    return path + variant


async def test_no_personal_value_in_any_public_page_or_api_answer(
    db: Database, engine: Engine, settings: Settings
) -> None:
    seeded = await seed(db, engine)
    tokens = {}
    async with db.transaction() as session:
        for scope in apitokens.SCOPES:
            tokens[scope] = (await apitokens.create(session, scope, scope, "test"))[1]
    app = create_app(db, settings=settings)
    # Every GET route of the public pages and the API (a route added later must be listed
    # in VARIANTS, or this fails).
    site = PublicSite(db, settings).routes() + PartnerApi(db, settings).routes()
    paths = {r.path for r in site if isinstance(r, Route) and "GET" in (r.methods or ())}
    assert paths == set(VARIANTS), "list the new route's variants in VARIANTS"
    assert any(isinstance(r, Mount) for r in site)  # the stylesheet: a file, checked below
    searched = 0
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for path, variants in VARIANTS.items():
            headers = (
                {"Authorization": f"Bearer {tokens[SCOPE_OF[path]]}"} if (path in SCOPE_OF) else {}
            )
            for variant in variants:
                for locale in ("ar", "ckb", "en"):
                    address = addresses(path, variant, seeded["public_id"])
                    joiner = "&" if "?" in address else "?"
                    answer = await client.get(f"{address}{joiner}lang={locale}", headers=headers)
                    wanted = 404 if path == "/api/v1/{rest:path}" else 200
                    # ?lang= is no API field: the API refuses it (400), and says so in JSON.
                    if path in SCOPE_OF:
                        wanted = 400
                    assert answer.status_code == wanted, address
                    assert personal_values_in(answer.text) == [], address
                    assert personal_values_in(str(answer.headers)) == [], address
                    if path in SCOPE_OF:  # and once as the partner's program asks
                        answer = await client.get(address, headers=headers)
                        assert answer.status_code == 200, address
                    assert personal_values_in(answer.text) == [], address
                    assert personal_values_in(str(answer.headers)) == [], address
                    searched += 1
        # The check of a pasted text answers with the bulletin it found, and nothing of
        # anyone's: even a text made of personal values finds none of them in the answer.
        for pasted in (seeded["public_id"], " ".join(PERSONAL_VALUES)):
            answer = await client.post("/bulletins/verify", data={"text": pasted})
            shown = answer.text.split("<textarea", 1)[0]  # the form gives back what was pasted
            assert personal_values_in(shown) == []
            searched += 1
        stylesheet = await client.get("/public/static/public.css")
        assert stylesheet.status_code == 200
        assert personal_values_in(stylesheet.text) == []
    assert searched == 3 * sum(len(v) for v in VARIANTS.values()) + 2
    # The seeded values are really there to be found: the check is not vacuous.
    async with db.read() as connection:
        report = (await connection.execute(select(Report.place, Report.notes, Report.phone))).one()
        representative = await connection.scalar(select(Signature.representative).limit(1))
    assert report.place == "Khanke camp"
    assert "We need a doctor" in (report.notes or "")
    assert personal_values_in(str(report.phone)) != []
    assert representative == "Zainab Hassan"
