"""The public pages: what anyone sees without signing in, in each language; caching, limits, and
the check of a pasted bulletin (genuine, tampered, almost the same)."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import html
import io
import json
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from bot import bulletins, declaration, exports
from bot.config import Settings
from bot.db import Database
from bot.engine import Engine
from bot.messages import Address
from bot.models import AuditEntry, Bulletin, Contact
from bot.public import CSP
from bot.web import create_app
from tests.helpers import t
from tests.public_helpers import NEWS, seed

WITHIN = 10.0  # seconds an answer may take, at most


@pytest.fixture
async def seeded(db: Database, engine: Engine) -> dict[str, Any]:
    """The seeded organizations, report and bulletins."""
    return await seed(db, engine)


@pytest.fixture
async def client(
    db: Database, settings: Settings, seeded: dict[str, Any]
) -> AsyncIterator[httpx.AsyncClient]:
    """An anonymous browser of the public pages, the bot's addresses configured."""
    configured = dataclasses.replace(
        settings,
        telegram_bot_username="icssi_test_bot",
        twilio_whatsapp_from="whatsapp:+9647701234500",
    )
    transport = httpx.ASGITransport(app=create_app(db, settings=configured))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", timeout=WITHIN
    ) as anonymous:
        yield anonymous


def text_of(page: httpx.Response) -> str:
    """A page's visible text, roughly: tags dropped (a <bdi> inside a sentence without a space,
    as a reader sees it), entities read."""
    inline = re.sub(r"</?bdi[^>]*>", "", page.text)
    return html.unescape(re.sub(r"<[^>]+>", " ", inline))


@pytest.mark.parametrize("locale", ["ar", "ckb", "en"])
async def test_the_home_page_says_how_to_reach_the_bot(
    client: httpx.AsyncClient, locale: str
) -> None:
    page = await client.get(f"/?lang={locale}")
    assert page.status_code == 200
    assert f'<html lang="{locale}" dir="{"ltr" if locale == "en" else "rtl"}">' in page.text
    shown = text_of(page)
    assert t(locale, "Iraqi Civil Society Solidarity Initiative") in shown
    assert 'href="https://t.me/icssi_test_bot"' in page.text
    assert 'href="https://t.me/icssi_test_bot?start=bulletin"' in page.text
    assert t(locale, "Subscribe to the bulletin") in shown
    assert 'href="https://wa.me/9647701234500"' in page.text
    assert "+964 770 123 4500" in shown
    # Two QR codes, drawn on the server as SVG: no script, no image from elsewhere.
    assert page.text.count("<svg") == 2
    assert "<script" not in page.text
    counted = t(locale, "%(count)s organization has signed the declaration (verified).")
    assert counted.split("%(count)s")[-1].strip() in shown


async def test_the_language_comes_from_the_link_then_the_cookie_then_the_browser(
    client: httpx.AsyncClient,
) -> None:
    chosen = await client.get("/declaration?lang=ckb")
    assert 'lang="ckb"' in chosen.text
    assert chosen.cookies.get("icssi_lang") == "ckb"
    # The choice is remembered: the next page is in Sorani without ?lang=.
    assert 'html lang="ckb"' in (await client.get("/signatories")).text
    client.cookies.clear()
    browser = await client.get("/signatories", headers={"Accept-Language": "en-GB,en;q=0.8"})
    assert 'html lang="en"' in browser.text
    assert "Accept-Language" in browser.headers["Vary"]
    default = await client.get("/signatories", headers={"Accept-Language": "fr"})
    assert 'html lang="ar"' in default.text


@pytest.mark.parametrize("locale", ["ar", "ckb", "en"])
async def test_the_declaration_in_every_language_with_its_version_and_hashes(
    client: httpx.AsyncClient, locale: str
) -> None:
    page = await client.get(f"/declaration?lang={locale}")
    assert page.status_code == 200
    assert declaration.VERSION in page.text
    for code in ("ar", "ckb", "en"):
        assert declaration.sha256(code) in page.text
        section = re.search(
            rf'<section class="declaration" lang="{code}" dir="(\w+)" id="text-{code}">', page.text
        )
        assert section is not None
        assert section.group(1) == ("ltr" if code == "en" else "rtl")
    # The text shown is the very text whose hash is given: copied out, it hashes the same.
    shown = re.search(r'id="text-en">.*?<div class="text">(.*?)</div>', page.text, re.S)
    assert shown is not None
    assert bulletins.sha256(html.unescape(shown.group(1))) == declaration.sha256("en")


async def test_the_signatories_are_the_verified_organizations_without_a_representative(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/signatories?lang=en")
    assert page.status_code == 200
    shown = text_of(page)
    assert "Al-Amal Development Society" in shown
    assert "جمعية الأمل للتنمية" in shown
    assert "Pending Helpers Union" not in shown  # not verified yet
    assert "Zainab Hassan" not in shown
    assert "1 verified organization" in shown
    by_governorate = re.search(r'<table class="by-governorate">(.*?)</table>', page.text, re.S)
    assert by_governorate is not None
    assert "Baghdad" in by_governorate.group(1)
    assert ">1<" in by_governorate.group(1)
    assert "Women&#39;s organization" in page.text or "Women's organization" in page.text


async def test_the_signatories_download_as_csv_and_json_with_the_public_fields_only(
    client: httpx.AsyncClient,
) -> None:
    as_csv = await client.get("/signatories.csv")
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert "attachment" in as_csv.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(as_csv.text)))
    assert rows[0] == list(exports.PUBLIC_SIGNATURE_FIELDS)
    assert len(rows) == 2
    assert "Al-Amal Development Society" in rows[1]
    as_json = (await client.get("/signatories.json")).json()
    assert [set(row) for row in as_json] == [set(exports.PUBLIC_SIGNATURE_FIELDS)]
    assert as_json[0]["governorate_pcode"] == "IQG08"
    assert (await client.get("/signatories.xml")).status_code == 404


async def test_pages_of_signatories_and_a_malformed_page_number(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/signatories?page=1")).status_code == 200
    beyond = await client.get("/signatories?page=7&lang=en")
    assert beyond.status_code == 200
    assert "Al-Amal" not in beyond.text
    for bad in ("abc", "0", "-1", "99999999999", "1.5", "0000001" + "0" * 400, "٢x"):
        answer = await client.get(f"/signatories?page={bad}&lang=en")
        assert answer.status_code == 400, bad
        assert "This address is not right" in answer.text
        assert answer.headers["cache-control"] == "no-store"
    # The language links of a page that is kept for other readers carry nothing of its first
    # reader's query but the page number.
    second = await client.get("/signatories?page=2&lang=en&utm_source=spam")
    assert 'href="/signatories?page=2&amp;lang=ar"' in second.text
    assert "spam" not in second.text
    arabic = await client.get("/bulletins?page=x&lang=ar")
    assert arabic.status_code == 400
    assert t("ar", "This address is not right") in arabic.text


@pytest.mark.parametrize("locale", ["ar", "ckb", "en"])
async def test_the_archive_shows_published_bulletins_in_every_language_with_hashes(
    client: httpx.AsyncClient, seeded: dict[str, Any], locale: str
) -> None:
    page = await client.get(f"/bulletins?lang={locale}")
    assert page.status_code == 200
    shown = text_of(page)
    assert seeded["public_id"] in shown
    for code, item in NEWS.items():
        assert item["title"] in shown
        assert item["text"] in shown
        assert bulletins.sha256(bulletins.plain(item)) in shown, code
    assert "Not yet" not in shown  # scheduled: not published
    # The reader's language first.
    first = re.search(r'<section lang="(\w+)"', page.text)
    assert first is not None
    assert first.group(1) == locale
    one = await client.get(f"/bulletins/{seeded['public_id']}?lang={locale}")
    assert one.status_code == 200
    assert NEWS["en"]["title"] in one.text
    missing = await client.get("/bulletins/B-ZZZZZZ")
    assert missing.status_code == 404


async def test_the_atom_feed_lists_the_published_bulletins(
    client: httpx.AsyncClient, seeded: dict[str, Any]
) -> None:
    answer = await client.get("/bulletins.atom?lang=ckb")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/atom+xml")
    feed = ET.fromstring(answer.content)
    ns = {"a": "http://www.w3.org/2005/Atom"}
    entries = feed.findall("a:entry", ns)
    assert len(entries) == 1
    assert entries[0].findtext("a:title", namespaces=ns) == NEWS["ckb"]["title"]
    assert entries[0].findtext("a:content", namespaces=ns) == NEWS["ckb"]["text"]
    link = entries[0].find("a:link", ns)
    assert link is not None
    assert link.get("href", "").endswith(f"/bulletins/{seeded['public_id']}")


async def test_pages_are_cacheable_and_answer_304_when_the_browser_has_them(
    client: httpx.AsyncClient,
) -> None:
    for path in ("/", "/declaration", "/signatories", "/bulletins", "/bulletins.atom"):
        first = await client.get(path, headers={"Accept-Language": "en"})
        assert first.status_code == 200, path
        tag = first.headers["etag"]
        assert first.headers["cache-control"].startswith("public, max-age=")
        assert first.headers["content-security-policy"] == CSP
        assert first.headers["x-frame-options"] == "DENY"
        again = await client.get(path, headers={"Accept-Language": "en", "If-None-Match": tag})
        assert again.status_code == 304, path
        assert again.content == b""
        assert again.headers["etag"] == tag
        other = await client.get(path, headers={"Accept-Language": "en", "If-None-Match": '"x"'})
        assert other.status_code == 200
    # Chosen by ?lang= the page sets a cookie: it is no shared cache's to keep.
    chosen = await client.get("/bulletins?lang=ar")
    assert chosen.headers["cache-control"].startswith("private")


async def test_an_anonymous_read_needs_no_lock_and_writes_nothing(
    client: httpx.AsyncClient, db: Database, seeded: dict[str, Any]
) -> None:
    async def counts() -> tuple[int, int, int]:
        async with db.read() as connection:
            return (
                await connection.scalar(select(func.count()).select_from(AuditEntry)) or 0,
                await connection.scalar(select(func.count()).select_from(Contact)) or 0,
                await connection.scalar(select(func.count()).select_from(Bulletin)) or 0,
            )

    before = await counts()
    paths = [
        "/",
        "/declaration",
        "/signatories",
        "/signatories.csv",
        "/signatories.json",
        "/bulletins",
        "/bulletins.atom",
        f"/bulletins/{seeded['public_id']}",
        "/bulletins/verify",
    ]
    # Someone writes meanwhile and holds the write lock (and the bot's turn at it): every
    # page is read all the same, well within the time a write would wait.
    async with db.transaction() as session:
        session.add(AuditEntry(actor="test", action="hold", detail={}))
        await session.flush()
        answers = await asyncio.wait_for(
            asyncio.gather(*(client.get(p) for p in paths)), timeout=WITHIN
        )
        posted = await asyncio.wait_for(
            client.post("/bulletins/verify", data={"text": seeded["public_id"]}), WITHIN
        )
    assert [a.status_code for a in answers] == [200] * len(paths)
    assert posted.status_code == 200
    after = await counts()
    assert after == (before[0] + 1, before[1], before[2])  # only the test's own line


async def test_a_genuine_bulletin_pasted_as_delivered_is_recognized(
    client: httpx.AsyncClient, db: Database, seeded: dict[str, Any]
) -> None:
    async with db.transaction() as session:
        bulletin = await session.scalar(
            select(Bulletin).where(Bulletin.public_id == seeded["public_id"])
        )
        assert bulletin is not None
        delivered = bulletins.render(bulletin, Address("telegram", "1"), "ar", "Asia/Baghdad").text
    answer = await client.post("/bulletins/verify?lang=en", data={"text": delivered})
    assert answer.status_code == 200
    assert f"Genuine: this is bulletin {seeded['public_id']}" in text_of(answer)
    by_id = await client.post("/bulletins/verify?lang=ar", data={"text": seeded["public_id"]})
    assert t("ar", "Genuine: this is bulletin %(id)s, as it was published.").split("%")[0] in (
        text_of(by_id)
    )
    english = NEWS["en"]["title"] + "\n\n" + NEWS["en"]["text"]
    genuine = await client.post("/bulletins/verify?lang=en", data={"text": english})
    assert "Genuine" in text_of(genuine)


async def test_a_tampered_bulletin_is_told_apart_with_what_differs(
    client: httpx.AsyncClient, seeded: dict[str, Any]
) -> None:
    tampered = NEWS["en"]["text"].replace("Sunday", "Monday")
    answer = await client.post(
        "/bulletins/verify?lang=en", data={"text": NEWS["en"]["title"] + "\n\n" + tampered}
    )
    assert answer.status_code == 200
    shown = text_of(answer)
    assert "Genuine" not in shown
    assert f"like bulletin {seeded['public_id']}" in shown
    changes = re.search(r'<table class="changes">(.*?)</table>', answer.text, re.S)
    assert changes is not None
    assert re.search(r"<del>Sunday</del></td><td><ins>Monday</ins>", changes.group(1))
    # With its id given, a changed text is compared with that bulletin whatever the changes.
    rewritten = f"{seeded['public_id']}\nThe camps close tomorrow."
    named = text_of(await client.post("/bulletins/verify?lang=en", data={"text": rewritten}))
    assert f"like bulletin {seeded['public_id']}" in named


async def test_an_almost_matching_text_and_texts_that_are_no_bulletin(
    client: httpx.AsyncClient, seeded: dict[str, Any]
) -> None:
    # Forwarded with a word dropped and the spacing changed.
    almost = NEWS["ar"]["title"] + "\n" + NEWS["ar"]["text"].replace(" يوم", "")
    answer = text_of(await client.post("/bulletins/verify?lang=ar", data={"text": almost}))
    assert seeded["public_id"] in answer
    assert "يوم" in answer  # the missing word is named
    unrelated = "The price of bread fell in Basra markets this week, traders say."
    none = text_of(await client.post("/bulletins/verify?lang=en", data={"text": unrelated}))
    assert "This text is not a published bulletin, nor close to one." in none
    unknown = text_of(await client.post("/bulletins/verify?lang=en", data={"text": "B-ZZZZZZ"}))
    assert "No published bulletin has the id B-ZZZZZZ." in unknown


async def test_the_check_refuses_what_it_cannot_read_in_the_readers_language(
    client: httpx.AsyncClient,
) -> None:
    empty = await client.post("/bulletins/verify?lang=ckb", data={"text": "  "})
    assert empty.status_code == 400
    assert t("ckb", "Paste a bulletin's text or its id first.") in text_of(empty)
    long = await client.post("/bulletins/verify?lang=en", data={"text": "word " * 3000})
    assert long.status_code == 413
    assert "This text is too long to be a bulletin." in text_of(long)
    # Over the limit by its Content-Length: refused before a byte is read.
    huge = await client.post(
        "/bulletins/verify?lang=en",
        content=b"text=" + b"a" * 70_000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert huge.status_code == 413
    for body, kind in (
        (b"text=%FF%FE", "application/x-www-form-urlencoded"),
        (json.dumps({"text": "x"}).encode(), "application/json"),
    ):
        bad = await client.post(
            "/bulletins/verify?lang=en", content=body, headers={"Content-Type": kind}
        )
        assert bad.status_code == 400
        assert "This address is not right" in bad.text
    number = await client.post(
        "/bulletins/verify",
        content=b"text=x",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Content-Length": "x1"},
    )
    assert number.status_code == 400


async def test_a_page_is_made_again_once_it_is_old_and_the_reader_never_waits_for_it(
    db: Database, settings: Settings, seeded: dict[str, Any]
) -> None:
    from bot.public import PublicSite

    site = PublicSite(db, settings, cache_seconds=0.2)
    made: list[int] = []

    async def make() -> tuple[bytes, str]:
        made.append(len(made))
        return f"version {len(made)}".encode(), "text/plain"

    first = await site.cached(("test",), make)
    assert first.body == b"version 1"
    assert (await site.cached(("test",), make)).body == b"version 1"  # fresh: kept
    assert made == [0]
    # A second older than its age allows, on the cache's own clock.
    site.cache[("test",)] = dataclasses.replace(first, made=first.made - 1.2)
    deadline = time.monotonic() + WITHIN
    # Old now: this reader gets it at once, and it is made again meanwhile.
    assert (await site.cached(("test",), make)).body == b"version 1"
    while not site.cache[("test",)].body.endswith(b"2"):
        assert time.monotonic() < deadline, "the page was not made again"
        await asyncio.sleep(0.01)
    assert (await site.cached(("test",), make)).body == b"version 2"
    assert made == [0, 1]


async def test_without_the_database_the_pages_say_so_in_the_readers_language(
    settings: Settings, tmp_path: Any
) -> None:
    gone = Database(f"sqlite+aiosqlite:///{tmp_path / 'no-such-folder' / 'bot.db'}")
    app = create_app(gone, settings=dataclasses.replace(settings, database_url=gone.url))
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            for path in ("/signatories", "/bulletins", "/bulletins/B-ZZZZZZ", "/"):
                answer = await client.get(f"{path}?lang=ckb")
                assert answer.status_code == 503, path
                assert t("ckb", "Not available right now") in answer.text
                assert answer.headers["cache-control"] == "no-store"
            api = await client.get("/api/v1/reports", headers={"Authorization": "Bearer icssi_x"})
            assert api.status_code == 503
            assert api.json()["error"] == "unavailable"
    finally:
        await gone.close()


async def test_one_client_flooding_the_check_is_slowed_and_others_are_not(
    client: httpx.AsyncClient, db: Database, settings: Settings, seeded: dict[str, Any]
) -> None:
    """A check costs the process that answers the webhooks: past 20 a minute from one client,
    429 in the reader's language; another client's check still goes through."""
    from bot.public import VERIFY_PER_CLIENT

    text = {"text": seeded["public_id"]}
    for _ in range(VERIFY_PER_CLIENT):
        answer = await client.post("/bulletins/verify?lang=en", data=text)
        assert answer.status_code == 200
    flooded = await client.post("/bulletins/verify?lang=ckb", data=text)
    assert flooded.status_code == 429
    assert flooded.headers["retry-after"] == "60"
    refusal = t(
        "ckb",
        "Many texts were checked from your connection in the last minute. "
        "Please try again in a minute.",
    )
    assert refusal in text_of(flooded)
    # Without a trusted proxy, a forwarded address is not believed: the same client still.
    spoofed = {"x-forwarded-for": "203.0.113.9"}
    assert (await client.post("/bulletins/verify", data=text, headers=spoofed)).status_code == 429
    # Behind a trusted proxy, each reader is counted apart.
    proxied = dataclasses.replace(settings, trust_proxy=True)
    transport = httpx.ASGITransport(app=create_app(db, settings=proxied))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as site:
        one = {"x-forwarded-for": "198.51.100.1, 10.0.0.1"}
        for _ in range(VERIFY_PER_CLIENT):
            await site.post("/bulletins/verify", data=text, headers=one)
        assert (await site.post("/bulletins/verify", data=text, headers=one)).status_code == 429
        another = {"x-forwarded-for": "198.51.100.2"}
        answer = await site.post("/bulletins/verify?lang=en", data=text, headers=another)
        assert answer.status_code == 200
        assert "Genuine" in text_of(answer)
