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
    # A URI: no spreadsheet computes it (a leading + starts a formula) or mangles its digits.
    assert rows[0]["phone"] == "tel:+9647501234567"
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
        assert (await rotate_keys(db))["reports"] == 1
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


def test_the_export_command_conventions(tmp_path: Path, db_url: str) -> None:
    """csv by default, `-o -` is standard output, counts in good English."""
    env = {**os.environ, "DATABASE_URL": user_url(db_url)}
    subprocess.run(
        [sys.executable, "-m", "bot.cli", "db", "upgrade"], env=env, check=True, timeout=120
    )
    for what, header in (("reports", "reference,"), ("signatures", "organization_ar,")):
        done = subprocess.run(
            [sys.executable, "-m", "bot.cli", "export", what, "-o", "-"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(header)
        assert f"exported 0 {what}" in done.stderr
        assert not (tmp_path / "-").exists()


def test_counts_in_the_operators_messages() -> None:
    from bot.cli import plural

    assert (plural(1, "report"), plural(0, "report"), plural(2, "signature")) == (
        "1 report",
        "0 reports",
        "2 signatures",
    )


# Every way a text cell can start a formula in a common spreadsheet: the six starts, and the
# same after spaces, in full width, and after a separator (a CSV opened with ";", "," or a tab
# as its separator splits the cell there).
HOSTILE = [
    "=1+1",
    "+1+1",
    "-1+1",
    "@SUM(A1)",
    "\t=1+1",
    "\r=1+1",
    "  =1+1",
    "\u3000=1+1",
    "\uff1d1+1",
    "\uff0b1",
    "\uff0d1",
    "\uff20SUM(A1)",
    "Camp;=1+1;",
    "help;=cmd|' /C calc'!A0;",
    "Khanke, -2+3",
    "a\t@x",
    "line\n+1",
    "a | =1",
    "\tplain",
    "\rplain",
]
STARTS = "=+-@\uff1d\uff0b\uff0d\uff20"


def formula_like(cell: str) -> bool:
    """Whether some spreadsheet, with some separator, could read part of the cell as a formula."""
    try:
        float(cell)
        return False  # a number is a number
    except ValueError:
        pass
    if cell.startswith(("\t", "\r")):
        return True
    for separator in (None, ",", ";", "\t", "|", "\n", "\r"):
        parts = [cell] if separator is None else cell.split(separator)
        if any(part.strip().startswith(tuple(STARTS)) for part in parts):
            return True
    return False


def test_the_checker_catches_every_hostile_value() -> None:
    assert all(formula_like(value) for value in HOSTILE)
    assert not formula_like("Khanke camp")
    assert not formula_like("-33.25")


async def test_no_csv_export_holds_a_formula(db: Database) -> None:
    """Boundary: every free-text field of reports and signatures, every CSV export."""
    from bot.models import Report, Signature

    async with db.transaction() as session:
        for number, value in enumerate(HOSTILE):
            session.add(
                Report(
                    reference=f"R-H{number:04}",
                    locale="ar",
                    status=value[:20],  # each within its column's length (PostgreSQL)
                    governorate="IQG09",
                    district=value[:12],
                    place=value,
                    origin=value[:12],
                    displaced=value[:20],
                    people=3,
                    shelter=value[:20],
                    needs=[value],
                    urgent=value[:20],
                    notes=value,
                    phone="+9647501234567",
                )
            )
            session.add(
                Signature(
                    receipt=f"S-H{number:06}",
                    locale="ar",
                    version=value[:40],
                    text_sha256=value,
                    name_ar=value,
                    name_en=value,
                    name_key=f"h{number}",
                    org_type=value[:30],
                    governorate=value[:12],
                    city=value,
                    representative=value,
                    role=value,
                    phone="+9647501234567",
                    email=value,
                    status="verified",
                    reason=value,
                )
            )
    outputs = {
        f"reports {fmt}{' private' if private else ''}": await run(db, fmt, private=private)
        for fmt in ("csv", "hxl")
        for private in (False, True)
    }
    for private in (False, True):
        out = io.StringIO()
        await exports.export_signatures(db, "csv", out, private=private)
        outputs[f"signatures{' private' if private else ''}"] = out.getvalue()
    for name, written in outputs.items():
        rows = list(csv.reader(io.StringIO(written)))
        assert len(rows) > len(HOSTILE), name  # every row is there
        header = rows[0]
        for row in rows[2:] if "hxl" in name else rows[1:]:  # HXL: after the hashtag row
            for column, cell in zip(header, row, strict=True):
                if column == "phone":
                    assert cell == "tel:+9647501234567", name
                else:
                    assert not formula_like(cell), (name, column, cell)
        # Nothing lost: the neutralized text still reads as what was written, ' aside.
        assert any("Camp;'=1+1;" in row for row in rows), name
