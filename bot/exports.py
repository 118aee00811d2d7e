"""Exports of reports for relief coordination: CSV, HXL, GeoJSON and JSON, streamed.

Rows are read from the database in batches and written as they come: 100,000 reports never sit
in memory at once. Personal fields (place name, exact point, notes, phone) are only in a
`private` export, and every export is written to the audit log.
"""

from __future__ import annotations

import asyncio
import csv
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from bot import gazetteer
from bot.db import Database
from bot.models import AuditEntry, Organization, Referral, Report, Signature

FORMATS = ("csv", "hxl", "geojson", "json")
BATCH = 500

# Column, HXL hashtag (blank where HXL has none), and whether the column is personal.
COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("reference", "#meta+id", False),
    ("reported", "#date+reported", False),
    ("status", "#status", False),
    ("governorate", "#adm1+name", False),
    ("governorate_pcode", "#adm1+code", False),
    ("district", "#adm2+name", False),
    ("district_pcode", "#adm2+code", False),
    ("place", "#loc+name", True),
    ("latitude", "#geo+lat", False),
    ("longitude", "#geo+lon", False),
    ("location_precision", "#geo+precision", False),
    ("origin_pcode", "#adm1+code+origin", False),
    ("displaced", "#date+displaced", False),
    ("households", "#affected+hh", False),
    ("people", "#affected+ind", False),
    ("children_under_5", "#affected+children", False),
    ("elderly_over_60", "#affected+elderly", False),
    ("disabled", "#affected+disabled", False),
    ("pregnant_or_breastfeeding", "#affected+f+pregnant", False),
    ("female_headed", "#affected+hh+f", False),
    ("shelter", "#shelter+type", False),
    ("needs", "#sector", False),
    ("most_urgent", "#sector+urgent", False),
    ("notes", "#description", True),
    ("phone", "#contact+phone", True),
    ("duplicate_of_row", "#meta+duplicate", False),
)
# What makes a spreadsheet read a text as a formula: these at the start of a cell, in their
# ASCII or full-width forms (some spreadsheets read ＝ as =), also after spaces (trimmed on
# import). A cell is also the text after a separator, since a CSV opened with ";" or a tab as
# its separator (Excel in many locales, LibreOffice's import) splits "Camp;=1+1" in two.
FORMULA_STARTS = "=+-@\uff1d\uff0b\uff0d\uff20"
SEPARATORS = ",;\t\r\n|"
_FORMULA = re.compile(f"(?:^|(?<=[{SEPARATORS}]))(?=\\s*[{re.escape(FORMULA_STARTS)}])")
PHONE_COLUMNS = frozenset({"phone"})


@dataclass(frozen=True)
class Query:
    """Which reports to export."""

    since: datetime | None = None
    governorate: str | None = None
    private: bool = False
    # More conditions (the console's filters), and how the audit log names them.
    conditions: tuple[ColumnElement[bool], ...] = ()
    described: tuple[tuple[str, str], ...] = ()
    limit: int | None = None  # at most this many (the partner API's pages)


def neutralize(value: Any) -> Any:
    """Make a text cell safe from spreadsheet formula injection: a ' before every part of it
    that a spreadsheet could read as a formula (see FORMULA_STARTS), and before a leading tab
    or carriage return."""
    if not isinstance(value, str):
        return value
    value = _FORMULA.sub("'", value)
    return "'" + value if value.startswith(("\t", "\r")) else value


def phone_cell(phone: str) -> str:
    """A phone number as an RFC 3966 URI (tel:+9647501234567): text to every spreadsheet,
    which neither computes "+964…" nor turns its digits into 9.6475E+12."""
    return f"tel:{phone}" if phone else ""


def csv_row(row: dict[str, Any], names: list[str]) -> list[Any]:
    """A row's cells for CSV, in the order of `names`: phones as tel: URIs, texts neutralized."""
    return [
        phone_cell(row[name]) if name in PHONE_COLUMNS else neutralize(row[name]) for name in names
    ]


def record(report: Report, private: bool) -> dict[str, Any]:
    """One report as an export row; personal fields only when `private`."""
    gov = gazetteer.place(report.governorate)
    district = gazetteer.place(report.district) if report.district else None
    latitude, longitude, precision = location(report, private)
    row: dict[str, Any] = {
        "reference": report.reference,
        "reported": report.created_at.isoformat(timespec="seconds"),
        "status": report.status,
        "governorate": gov.name_en if gov else "",
        "governorate_pcode": report.governorate,
        "district": district.name_en if district else "",
        "district_pcode": report.district or "",
        "place": report.place or "",
        "latitude": latitude,
        "longitude": longitude,
        "location_precision": precision,
        "origin_pcode": report.origin or "",
        "displaced": report.displaced or "",
        "households": 1,
        "people": report.people,
        "children_under_5": report.children,
        "elderly_over_60": report.elderly,
        "disabled": report.disabled,
        "pregnant_or_breastfeeding": report.pregnant,
        "female_headed": report.female_headed,
        "shelter": report.shelter,
        "needs": " ".join(report.needs or []),
        "most_urgent": report.urgent,
        "notes": report.notes or "",
        "phone": report.phone or "",
        "duplicate_of_row": report.duplicate_of or "",
    }
    if not private:
        for name, _tag, personal in COLUMNS:
            if personal:
                row.pop(name)
    return row


def location(report: Report, private: bool) -> tuple[float | None, float | None, str]:
    """The best point we may give: exact (private only), the area, or a centroid."""
    if private and report.exact_point:
        lat, _sep, lon = report.exact_point.partition(",")
        return float(lat), float(lon), "exact"
    if report.latitude is not None and report.longitude is not None:
        return report.latitude, report.longitude, "area"
    for pcode, precision in ((report.district, "district"), (report.governorate, "governorate")):
        found = gazetteer.place(pcode) if pcode else None
        if found is not None:
            return found.lat, found.lon, precision
    return None, None, "none"


def columns(private: bool) -> list[tuple[str, str]]:
    """The columns of an export, with their HXL hashtags."""
    return [(name, tag) for name, tag, personal in COLUMNS if private or not personal]


async def reports(session: AsyncSession, query: Query) -> AsyncIterator[Report]:
    """The matching reports, oldest first, read in batches."""
    statement = select(Report).order_by(Report.id)
    if query.since is not None:
        statement = statement.where(Report.created_at >= query.since)
    if query.governorate:
        statement = statement.where(Report.governorate == query.governorate)
    statement = statement.where(*query.conditions)
    if query.limit is not None:
        statement = statement.limit(query.limit)
    stream = await session.stream_scalars(statement.execution_options(yield_per=BATCH))
    count = 0
    async for report in stream:
        yield report
        session.expunge(report)  # let rows already written go
        count += 1
        if count % BATCH == 0:
            # On SQLite the batches are read in the loop's thread, without a pause of their
            # own: others (people's messages) get a turn between two of them.
            await asyncio.sleep(0)


async def export(db: Database, query: Query, fmt: str, out: TextIO, actor: str = "cli") -> int:
    """Write the export to `out` from a read of its own; return the count. Audited."""
    # A read takes no turn at SQLite's write lock: a long export held it before, and every
    # message of every person waited for the export's end.
    async with db.reading() as reading:
        count = await write(reading, query, fmt, out)
    async with db.transaction() as session:
        session.add(audit_entry(actor, query, fmt, count))
    return count


def audit_entry(actor: str, query: Query, fmt: str, count: int) -> AuditEntry:
    """The audit log's record of an export."""
    return AuditEntry(
        actor=actor,
        action="export",
        detail={
            "format": fmt,
            "count": count,
            "private": query.private,
            "since": query.since.isoformat() if query.since else None,
            "governorate": query.governorate,
            **({"filters": dict(query.described)} if query.described else {}),
        },
    )


async def write(session: AsyncSession, query: Query, fmt: str, out: TextIO) -> int:
    """Write the export of the matching reports to `out`; return how many it holds."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    db_reports = reports(session, query)
    count = 0
    cols = columns(query.private)
    names = [name for name, _tag in cols]
    if fmt in ("csv", "hxl"):
        writer = csv.writer(out)
        writer.writerow(names)
        if fmt == "hxl":
            writer.writerow([tag for _name, tag in cols])
        async for report in db_reports:
            row = record(report, query.private)
            writer.writerow(csv_row(row, names))
            count += 1
    elif fmt == "json":
        out.write("[")
        async for report in db_reports:
            item = json.dumps(record(report, query.private), ensure_ascii=False)
            out.write(("," if count else "") + "\n" + item)
            count += 1
        out.write("\n]\n")
    else:
        out.write('{"type": "FeatureCollection", "features": [')
        async for report in db_reports:
            row = record(report, query.private)
            lat, lon = row.pop("latitude"), row.pop("longitude")
            geometry = None if lat is None else {"type": "Point", "coordinates": [lon, lat]}
            feature = {"type": "Feature", "geometry": geometry, "properties": row}
            out.write(("," if count else "") + "\n" + json.dumps(feature, ensure_ascii=False))
            count += 1
        out.write("\n]}\n")
    return count


PUBLIC_SIGNATURE_FIELDS = (
    "organization_ar",
    "organization_en",
    "type",
    "governorate_pcode",
    "governorate",
    "city",
    "verified_on",
    "declaration_version",
)
PRIVATE_SIGNATURE_FIELDS = (
    "receipt",
    "status",
    "signed_at",
    "language",
    "text_sha256",
    "representative",
    "role",
    "phone",
    "email",
    "similar_to_receipt",
    "same_organization",
    "reason",
    "withdrawn_at",
)


def signature_record(
    signature: Signature, receipts: dict[int, str], private: bool
) -> dict[str, Any]:
    """One signature as an export row: the public fields, and with `private` the rest."""
    gov = gazetteer.place(signature.governorate)
    row: dict[str, Any] = {
        "organization_ar": signature.name_ar or "",
        "organization_en": signature.name_en or "",
        "type": signature.org_type,
        "governorate_pcode": signature.governorate,
        "governorate": gov.name_en if gov else "",
        "city": signature.city,
        "verified_on": signature.decided_at.date().isoformat()
        if signature.decided_at and signature.status == "verified"
        else "",
        "declaration_version": signature.version,
    }
    if private:
        row.update(
            receipt=signature.receipt,
            status=signature.status,
            signed_at=signature.created_at.isoformat(timespec="seconds"),
            language=signature.locale,
            text_sha256=signature.text_sha256,
            representative=signature.representative,
            role=signature.role,
            phone=signature.phone or "",
            email=signature.email or "",
            similar_to_receipt=receipts.get(signature.similar_to or 0, ""),
            same_organization=signature.same_organization,
            reason=signature.reason or "",
            withdrawn_at=signature.withdrawn_at.isoformat(timespec="seconds")
            if signature.withdrawn_at
            else "",
        )
    return row


async def export_signatures(
    db: Database, fmt: str, out: TextIO, *, private: bool = False, actor: str = "cli"
) -> int:
    """The signatories for the Initiative's website (verified, public fields) or, with
    `private`, every signature with every field for operators. Audited."""
    if fmt not in ("csv", "json"):
        raise ValueError(f"unknown format {fmt!r}")
    names = list(PUBLIC_SIGNATURE_FIELDS) + (list(PRIVATE_SIGNATURE_FIELDS) if private else [])
    count = 0
    async with db.transaction() as session:
        statement = select(Signature).order_by(Signature.id)
        if not private:
            statement = statement.where(Signature.status == "verified")
        receipts = {
            row.id: row.receipt
            for row in await session.execute(select(Signature.id, Signature.receipt))
        }
        rows = await session.stream_scalars(statement.execution_options(yield_per=BATCH))
        writer = csv.writer(out) if fmt == "csv" else None
        if writer is not None:
            writer.writerow(names)
        else:
            out.write("[")
        async for signature in rows:
            row = signature_record(signature, receipts, private)
            if writer is not None:
                writer.writerow(csv_row(row, names))
            else:
                item = json.dumps(row, ensure_ascii=False)
                out.write(("," if count else "") + "\n" + item)
            count += 1
        if writer is None:
            out.write("\n]\n")
        session.add(
            AuditEntry(
                actor=actor,
                action="export:signatures",
                detail={"format": fmt, "count": count, "private": private},
            )
        )
    return count


# A referral as a 3W row (who: the organization, what: the sectors, where: the P-codes), with
# HXL hashtags; the notes (which may speak of the family) only in a private export.
REFERRAL_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("referral", "#meta+id", False),
    ("report", "#meta+report", False),
    ("date", "#date", False),
    ("answered", "#date+answered", False),
    ("organization", "#org+name", False),
    ("status", "#status", False),
    ("decline_reason", "#status+reason", False),
    ("confirmed_by_family", "#status+confirmed", False),
    ("sector", "#sector", False),
    ("most_urgent", "#sector+urgent", False),
    ("helped_with", "#sector+helped", False),
    ("governorate_pcode", "#adm1+code", False),
    ("governorate", "#adm1+name", False),
    ("district_pcode", "#adm2+code", False),
    ("district", "#adm2+name", False),
    ("people", "#affected+ind", False),
    ("note", "#description+note", True),
    ("outcome_note", "#description+outcome", True),
)
REFERRAL_FORMATS = ("csv", "hxl", "json")


def referral_record(
    referral: Referral, report: Report, organization: str, private: bool
) -> dict[str, Any]:
    """One referral as an export row; the notes only when `private`."""
    gov = gazetteer.place(report.governorate)
    district = gazetteer.place(report.district) if report.district else None
    row: dict[str, Any] = {
        "referral": referral.id,
        "report": report.reference,
        "date": referral.created_at.isoformat(timespec="seconds"),
        "answered": referral.answered_at.isoformat(timespec="seconds")
        if referral.answered_at
        else "",
        "organization": organization,
        "status": referral.status,
        "decline_reason": referral.decline_reason or "",
        "confirmed_by_family": referral.confirmed or "",
        "sector": " ".join(report.needs or []),
        "most_urgent": report.urgent,
        "helped_with": " ".join(referral.helped_needs or []),
        "governorate_pcode": report.governorate,
        "governorate": gov.name_en if gov else "",
        "district_pcode": report.district or "",
        "district": district.name_en if district else "",
        "people": report.people,
        "note": referral.note or "",
        "outcome_note": referral.outcome_note or "",
    }
    if not private:
        for name, _tag, personal in REFERRAL_COLUMNS:
            if personal:
                row.pop(name)
    return row


async def export_referrals(
    db: Database, fmt: str, out: TextIO, *, private: bool = False, actor: str = "cli"
) -> int:
    """Every referral, one row each, streamed from a read of its own; the notes only with
    `private`. Audited."""
    if fmt not in REFERRAL_FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    cols = [(n, tag) for n, tag, personal in REFERRAL_COLUMNS if private or not personal]
    names = [n for n, _tag in cols]
    count = 0
    async with db.reading() as reading:
        statement = (
            select(Referral, Report, Signature)
            .join(Report, Report.id == Referral.report_id)
            .join(Organization, Organization.id == Referral.organization_id)
            .join(Signature, Signature.id == Organization.signature_id)
            .order_by(Referral.id)
            .execution_options(yield_per=BATCH)
        )
        rows = await reading.stream(statement)
        writer = csv.writer(out) if fmt != "json" else None
        if writer is not None:
            writer.writerow(names)
            if fmt == "hxl":
                writer.writerow([tag for _n, tag in cols])
        else:
            out.write("[")
        async for referral, report, signature in rows:
            name = signature.name_en or signature.name_ar or ""
            row = referral_record(referral, report, name, private)
            if writer is not None:
                writer.writerow(csv_row(row, names))
            else:
                item = json.dumps(row, ensure_ascii=False)
                out.write(("," if count else "") + "\n" + item)
            count += 1
            if count % BATCH == 0:
                await asyncio.sleep(0)  # others get a turn on SQLite
        if writer is None:
            out.write("\n]\n")
    async with db.transaction() as session:
        session.add(
            AuditEntry(
                actor=actor,
                action="export:referrals",
                detail={"format": fmt, "count": count, "private": private},
            )
        )
    return count
