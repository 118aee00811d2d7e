"""Exports read back: CSV, HXL (hashtag row), GeoJSON, JSON; formulas neutralized; audited."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select, text

from bot import crypto, exports
from bot.db import Database
from bot.engine import Engine
from bot.messages import Address
from bot.models import AuditEntry
from bot.retention import rotate_keys
from tests.conftest import Person, user_url
from tests.coordinator_helpers import send_full_report
from tests.helpers import choose_language


@pytest.fixture
async def two_reports(engine: Engine) -> None:
    """Two families' reports; one wrote a formula into its notes."""
    first = Person(engine, Address("console", "a"))
    await choose_language(first, "en")
    await send_full_report(first, "en")
    second = Person(engine, Address("console", "b"))
    await choose_language(second, "ar")
    await second.tap("أخبرنا عن عائلة نازحة")
    await second.press("r:agree")
    for payload in ("gov:IQG11", "dist:unknown"):
        await second.press(payload)
    await second.send('=HYPERLINK("http://evil.example","x")')
    for payload in ("orig:IQG01", "when:lt1m", "n:2", "n:0", "n:0", "n:0", "n:0", "no"):
        await second.press(payload)
    for payload in ("shelter:rented", "need:cash", "need:done", "notes:skip", "no", "r:send"):
        await second.press(payload)


async def run(db: Database, fmt: str, **query: object) -> str:
    out = io.StringIO()
    await exports.export(db, exports.Query(**query), fmt, out, actor="test")  # type: ignore[arg-type]
    return out.getvalue()


async def test_csv_without_personal_fields_by_default(db: Database, two_reports: None) -> None:
    rows = list(csv.DictReader(io.StringIO(await run(db, "csv"))))
    assert len(rows) == 2
    assert {"place", "notes", "phone"}.isdisjoint(rows[0])
    assert rows[0]["governorate_pcode"] == "IQG09"
    assert rows[0]["district"] == "Zakho"
    assert rows[0]["needs"] == "food health"
    assert rows[0]["location_precision"] == "area"  # the exact point stays private
    assert rows[0]["latitude"] == "37.12"
    assert rows[1]["location_precision"] == "governorate"


async def test_private_csv_has_them_and_neutralizes_formulas(
    db: Database, two_reports: None
) -> None:
    rows = list(csv.DictReader(io.StringIO(await run(db, "csv", private=True))))
    assert rows[0]["place"] == "Khanke camp"
    assert rows[0]["phone"] == "'+9647501234567"  # a leading + would start a formula
    assert rows[0]["latitude"] == "37.12345"
    assert rows[0]["location_precision"] == "exact"
    assert rows[1]["place"].startswith("'=HYPERLINK")
    async with db.transaction() as session:
        audits = (await session.scalars(select(AuditEntry))).all()
    assert [(a.action, a.detail["private"], a.detail["count"]) for a in audits] == [
        ("export", True, 2)
    ]


async def test_hxl_has_the_hashtag_row(db: Database, two_reports: None) -> None:
    lines = list(csv.reader(io.StringIO(await run(db, "hxl"))))
    header, tags, *data = lines
    assert len(data) == 2
    assert tags[header.index("governorate_pcode")] == "#adm1+code"
    assert tags[header.index("people")] == "#affected+ind"
    assert tags[header.index("needs")] == "#sector"
    assert tags[header.index("reference")] == "#meta+id"
    assert all(tag.startswith("#") for tag in tags)


async def test_geojson_is_valid(db: Database, two_reports: None) -> None:
    data = json.loads(await run(db, "geojson", governorate="IQG09"))
    assert data["type"] == "FeatureCollection"
    [feature] = data["features"]
    assert feature["type"] == "Feature"
    assert feature["geometry"] == {"type": "Point", "coordinates": [42.54, 37.12]}
    assert feature["properties"]["people"] == 5
    assert "phone" not in feature["properties"]


async def test_json(db: Database, two_reports: None) -> None:
    data = json.loads(await run(db, "json"))
    assert [row["governorate_pcode"] for row in data] == ["IQG09", "IQG11"]


async def test_an_empty_export_is_still_valid(db: Database) -> None:
    assert json.loads(await run(db, "geojson")) == {"type": "FeatureCollection", "features": []}
    assert json.loads(await run(db, "json")) == []


async def test_key_rotation_re_encrypts(db: Database, engine: Engine) -> None:
    old, new = crypto.new_key(), crypto.new_key()
    crypto.configure((old,))
    try:
        person = Person(engine, Address("console", "k"))
        await choose_language(person, "en")
        await send_full_report(person, "en")
        crypto.configure((new, old))  # the new key first; the old one still reads
        assert await rotate_keys(db) == 1
        crypto.configure((new,))  # the old key is gone: everything still reads
        rows = list(csv.DictReader(io.StringIO(await run(db, "csv", private=True))))
        assert rows[0]["place"] == "Khanke camp"
        async with db.engine.connect() as conn:
            raw = (await conn.execute(text("SELECT place FROM reports"))).scalar_one()
        assert raw.startswith(crypto.TOKEN_PREFIX)
    finally:
        crypto.configure(None)


def test_the_export_command(tmp_path: Path, db_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": user_url(db_url)}
    subprocess.run(
        [sys.executable, "-m", "bot.cli", "db", "upgrade"], env=env, check=True, timeout=120
    )
    target = tmp_path / "reports.geojson"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot.cli",
            "export",
            "reports",
            "--format",
            "geojson",
            "--since",
            "2026-01-01",
            "--governorate",
            "IQG09",
            "-o",
            str(target),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(target.read_text("utf-8"))["type"] == "FeatureCollection"
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot.cli",
            "export",
            "reports",
            "--format",
            "csv",
            "--governorate",
            "IQG99",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2
    assert "--governorate: expected a P-code" in bad.stderr
