"""The partner API (/api/v1/), read-only: anonymous reports, figures and the verified signatories,
as JSON (with HXL hashtags if asked) or CSV, for a bearer token of the right scope.

Reports carry exactly the public export's fields (bot.exports, without its personal columns).
Each token is rate-limited (429 with Retry-After) and each use audited, a minute at a time
(bot.apitokens.Usage). A read takes no lock and writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
import math
from collections.abc import Mapping
from datetime import date
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ColumnElement
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot import apitokens, exports, gazetteer
from bot.config import NEEDS, Settings
from bot.db import Database
from bot.limits import Failures, client_of
from bot.models import Report, Signature
from bot.public import CSP
from bot.webconsole import ReportFilters

logger = logging.getLogger(__name__)

PREFIX = "/api/v1"
DEFAULT_LIMIT = 100
LARGEST_ID = 2**31 - 1
MAX_LIMIT = 1000
FLUSH_EVERY = 60.0  # seconds between writes of the finished minutes' usage
ANY_METHOD = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
GOVERNORATES = tuple(g.pcode for g in gazetteer.GOVERNORATES)
# The signatories' public fields (bot.exports) and their HXL hashtags.
SIGNATORY_TAGS = {
    "organization_ar": "#org+name+i_ar",
    "organization_en": "#org+name+i_en",
    "type": "#org+type",
    "governorate_pcode": "#adm1+code",
    "governorate": "#adm1+name",
    "city": "#loc+name",
    "verified_on": "#date+verified",
    "declaration_version": "#meta+version",
}
FIGURE_COLUMNS = (
    ("governorate_pcode", "#adm1+code"),
    ("governorate", "#adm1+name"),
    ("need", "#sector"),
    ("reports", "#meta+count"),
    ("people", "#affected+ind"),
)
# Which query fields each route takes; anything else is a 400.
TAKES = {
    "reports": {"since", "until", "governorate", "need", "cursor", "limit", "format", "hxl"},
    "figures": {"since", "until", "governorate", "need", "format", "hxl"},
    "signatories": {"cursor", "limit", "format", "hxl"},
}


class Refused(Exception):
    """A request the API does not take: its status, error code and message (in English: the
    API's readers are partners' programs and their developers)."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON error."""
    response = JSONResponse({"error": code, "message": message}, status, headers=headers)
    protect(response)
    return response


def protect(response: Response) -> None:
    """The headers every API answer carries."""
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"


def _day(query: Mapping[str, str], name: str) -> date | None:
    """A YYYY-MM-DD day from the query; Refused for anything else."""
    raw = query.get(name)
    if raw is None:
        return None
    try:
        if len(raw) != 10:
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        raise Refused(400, "bad_request", f"{name}: expected a day as YYYY-MM-DD") from None


def _choice(query: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    """One of `choices`; Refused for anything else."""
    raw = query.get(name, default)
    if raw not in choices:
        raise Refused(400, "bad_request", f"{name}: expected one of {', '.join(choices)}")
    return raw


def _limit(query: Mapping[str, str]) -> int:
    """The page's size, 1 to MAX_LIMIT."""
    raw = query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw[:6]) <= MAX_LIMIT:
        raise Refused(400, "bad_request", f"limit: expected a number from 1 to {MAX_LIMIT}")
    return int(raw)


def cursor_of(row_id: int) -> str:
    """The cursor that follows a row: the row's id (keyset paging: a page never shifts when
    reports are added meanwhile)."""
    return str(row_id)


def _after(query: Mapping[str, str]) -> int:
    """The row id a ?cursor= follows (0 for none); Refused for anything but a number."""
    raw = query.get("cursor")
    if raw is None:
        return 0
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        raise Refused(400, "bad_request", "cursor: the next_cursor of a page, a number")
    # Row ids are 32-bit integers on PostgreSQL, which refuses a larger value: past the
    # largest there is no row, and the page is empty all the same.
    return min(int(raw), LARGEST_ID)


def report_filters(query: Mapping[str, str], timezone: str) -> list[ColumnElement[bool]]:
    """The reports' conditions of ?since=&until=&governorate=&need=, checked (400), read by the
    console's filters (bot.webconsole.ReportFilters), so both filter alike."""
    since, until = _day(query, "since"), _day(query, "until")
    # Days at the calendar's ends bound nothing (no report is that old or new), and would
    # overflow once moved into UTC.
    since = since if since is not None and since.year > 1970 else None
    until = until if until is not None and until < date(9999, 12, 1) else None
    governorate = query.get("governorate")
    if governorate is not None and governorate not in GOVERNORATES:
        raise Refused(400, "bad_request", "governorate: expected a P-code from IQG01 to IQG18")
    need = query.get("need")
    if need is not None and need not in NEEDS:
        raise Refused(400, "bad_request", "need: expected one of " + ", ".join(NEEDS))
    filters = ReportFilters(
        governorate=governorate or "", need=need or "", since=since, until=until
    )
    return filters.conditions(timezone)


def rows_csv(names: list[str], tags: list[str] | None, rows: list[dict[str, Any]]) -> str:
    """Rows as CSV, with the HXL hashtag row under the header if `tags`; cells made safe."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(names)
    if tags is not None:
        writer.writerow(tags)
    for row in rows:
        writer.writerow(exports.csv_row(row, names))
    return out.getvalue()


# Unknown or revoked tokens a client may send in a minute before it is turned away unread.
FAILURES_PER_MINUTE = 30


class PartnerApi:
    """The API's routes, bound to a database and the settings."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.limits = apitokens.RateLimit(settings.api_requests_per_minute)
        # Unknown and revoked tokens, per client: a client guessing tokens costs a read each.
        self.strangers = Failures(FAILURES_PER_MINUTE)
        self.usage = apitokens.Usage()
        self.flusher: asyncio.Task[None] | None = None

    def routes(self) -> list[BaseRoute]:
        """The routes to mount at the app's root."""
        return [
            Route(f"{PREFIX}/openapi.json", self.openapi, methods=["GET"]),
            Route(f"{PREFIX}/reports", self.reports, methods=["GET"]),
            Route(f"{PREFIX}/figures", self.figures, methods=["GET"]),
            Route(f"{PREFIX}/signatories", self.signatories, methods=["GET"]),
            # Anything else under the prefix, any method: a JSON answer, not Starlette's text.
            Route(PREFIX + "/{rest:path}", self.unknown, methods=list(ANY_METHOD)),
        ]

    async def close(self) -> None:
        """Write every minute's usage not yet written (the app stops)."""
        if self.flusher is not None:
            self.flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.flusher
        try:
            await self.usage.flush(self.db, everything=True)
        except Exception:  # the database is going away too: say what is lost
            logger.warning("the partner API's last usage could not be audited", exc_info=True)

    async def _flush_regularly(self) -> None:
        """Write the finished minutes' usage every minute, while the app runs."""
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            try:
                await self.usage.flush(self.db)
            except Exception:
                logger.warning("the partner API's usage could not be audited yet", exc_info=True)

    async def authorized(self, request: Request, scope: str) -> apitokens.Holder:
        """The token's holder if it may read `scope` now; else Refused (401, 403 or 429)."""
        header = request.headers.get("authorization", "")
        scheme, _sep, token = header.partition(" ")
        challenge = {"WWW-Authenticate": 'Bearer realm="icssi"'}
        if scheme.lower() != "bearer" or not token.strip():
            raise Refused(401, "unauthorized", "send a token: Authorization: Bearer …", challenge)
        client = client_of(request, self.settings.trust_proxy)
        if self.strangers.over(client):
            raise Refused(
                429,
                "too_many_failures",
                f"more than {FAILURES_PER_MINUTE} tokens refused in a minute",
                {"Retry-After": "60"},
            )
        async with self.db.read() as connection:
            holder = await apitokens.holder(connection, token.strip())
        if holder is None or holder.revoked:
            self.strangers.note(client)
        if holder is None:
            raise Refused(401, "invalid_token", "this token is not known", challenge)
        if holder.revoked:
            raise Refused(401, "invalid_token", "this token was revoked", challenge)
        if holder.scope != scope:
            raise Refused(403, "insufficient_scope", f"this token's scope is {holder.scope}")
        self.usage.note(holder, request.url.path)
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.ensure_future(self._flush_regularly())
        wait = self.limits.wait(holder.id)
        if wait:
            raise Refused(
                429,
                "rate_limited",
                f"at most {self.limits.per_minute} requests a minute for a token",
                {"Retry-After": str(math.ceil(wait))},
            )
        return holder

    async def answer(self, request: Request, scope: str) -> Response:
        """The route's answer, or the JSON error that says why not."""
        try:
            query = request.query_params
            unknown = set(query.keys()) - TAKES[scope]
            if unknown or any(len(query.getlist(key)) > 1 for key in query):
                raise Refused(400, "bad_request", "unknown or repeated query fields")
            await self.authorized(request, scope)
            if self.usage.due():
                try:
                    await self.usage.flush(self.db)
                except Exception:  # the audit waits for the next try; the answer need not
                    logger.warning("the partner API's usage could not be audited yet")
            fmt = _choice(query, "format", ("json", "csv"), "json")
            hxl = _choice(query, "hxl", ("0", "1", "true", "false"), "0") in ("1", "true")
            if scope == "reports":
                response = await self._reports(request, fmt, hxl)
            elif scope == "figures":
                response = await self._figures(request, fmt, hxl)
            else:
                response = await self._signatories(request, fmt, hxl)
        except Refused as refused:
            return error(refused.status, refused.code, refused.message, refused.headers)
        except (DBAPIError, OSError):
            logger.warning("the partner API could not read the database")
            return error(503, "unavailable", "the database is not available; try again")
        protect(response)
        return response

    async def reports(self, request: Request) -> Response:
        """GET /api/v1/reports."""
        return await self.answer(request, "reports")

    async def figures(self, request: Request) -> Response:
        """GET /api/v1/figures."""
        return await self.answer(request, "figures")

    async def signatories(self, request: Request) -> Response:
        """GET /api/v1/signatories."""
        return await self.answer(request, "signatories")

    async def unknown(self, request: Request) -> Response:
        """A JSON 404 (or 405) for anything else under /api/v1/."""
        if request.method not in ("GET", "HEAD"):
            return error(
                405,
                "method_not_allowed",
                "the API is read-only: GET only",
                {"Allow": "GET, HEAD"},
            )
        return error(404, "not_found", "no such route; see /api/v1/openapi.json")

    def page(
        self,
        request: Request,
        columns: list[tuple[str, str]],
        rows: list[dict[str, Any]],
        fmt: str,
        hxl: bool,
        after: int | None,
    ) -> Response:
        """Rows as JSON or CSV, with the next page's cursor when there is one."""
        names = [name for name, _tag in columns]
        headers: dict[str, str] = {}
        following = None
        if after is not None:
            following = cursor_of(after)
            query = dict(request.query_params)
            query["cursor"] = following
            headers["Link"] = f'<{request.url.path}?{urlencode(query)}>; rel="next"'
        if fmt == "csv":
            tags = [tag for _name, tag in columns] if hxl else None
            return Response(
                rows_csv(names, tags, rows), media_type="text/csv; charset=utf-8", headers=headers
            )
        tag_of = dict(columns)
        data = [{tag_of[k]: v for k, v in row.items()} for row in rows] if hxl else rows
        body = {
            "data": data,
            "next_cursor": following,
            "columns": [{"name": name, "hxl": tag} for name, tag in columns],
        }
        return JSONResponse(body, headers=headers)

    async def _reports(self, request: Request, fmt: str, hxl: bool) -> Response:
        """Reports without any personal field, oldest first, a page at a time."""
        query = request.query_params
        conditions = report_filters(query, self.settings.timezone)
        after, limit = _after(query), _limit(query)
        wanted = exports.Query(
            private=False, conditions=(*conditions, Report.id > after), limit=limit + 1
        )
        found: list[tuple[int, dict[str, Any]]] = []
        async with self.db.reading() as reading:
            async for report in exports.reports(reading, wanted):
                found.append((report.id, exports.record(report, private=False)))
        more = len(found) > limit
        found = found[:limit]
        rows = [row for _id, row in found]
        last = found[-1][0] if found else None
        return self.page(request, exports.columns(False), rows, fmt, hxl, last if more else None)

    async def _figures(self, request: Request, fmt: str, hxl: bool) -> Response:
        """Reports and people by governorate and need (a report counts under each need)."""
        conditions = report_filters(request.query_params, self.settings.timezone)
        tally: dict[tuple[str, str], list[int]] = {}
        async with self.db.read() as connection:
            found = await connection.stream(
                select(Report.governorate, Report.needs, Report.people).where(*conditions)
            )
            async for governorate, needs, people in found:
                for need in needs if isinstance(needs, list) else []:
                    counts = tally.setdefault((str(governorate), str(need)), [0, 0])
                    counts[0] += 1
                    counts[1] += int(people or 0)
        wanted_need = request.query_params.get("need")
        rows = []
        for (pcode, need), (reports, people) in sorted(tally.items()):
            if wanted_need and need != wanted_need:
                continue  # the report has that need and others: only the need asked for
            place = gazetteer.place(pcode)
            rows.append(
                {
                    "governorate_pcode": pcode,
                    "governorate": place.name_en if place else "",
                    "need": need,
                    "reports": reports,
                    "people": people,
                }
            )
        return self.page(request, list(FIGURE_COLUMNS), rows, fmt, hxl, None)

    async def _signatories(self, request: Request, fmt: str, hxl: bool) -> Response:
        """The verified signatories' public fields, a page at a time."""
        query = request.query_params
        after, limit = _after(query), _limit(query)
        async with self.db.reading() as reading:
            found = (
                await reading.scalars(
                    select(Signature)
                    .where(Signature.status == "verified", Signature.id > after)
                    .order_by(Signature.id)
                    .limit(limit + 1)
                )
            ).all()
        more = len(found) > limit
        found = found[:limit]
        rows = [exports.signature_record(s, {}, private=False) for s in found]
        columns = [(name, SIGNATORY_TAGS[name]) for name in exports.PUBLIC_SIGNATURE_FIELDS]
        return self.page(request, columns, rows, fmt, hxl, found[-1].id if more else None)

    async def openapi(self, request: Request) -> Response:
        """The OpenAPI 3 description of this API."""
        base = (self.settings.public_url or str(request.base_url)).rstrip("/")
        response = JSONResponse(openapi_document(base))
        protect(response)
        response.headers["Cache-Control"] = "public, max-age=3600"
        return response


def _row_schema(columns: list[tuple[str, str]], types: Mapping[str, Any]) -> dict[str, Any]:
    """An object schema of rows keyed by name, and one keyed by HXL hashtag."""
    return {
        "anyOf": [
            {
                "type": "object",
                "properties": {name: types[name] for name, _tag in columns},
                "required": [name for name, _tag in columns],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {tag: types[name] for name, tag in columns},
                "required": [tag for _name, tag in columns],
                "additionalProperties": False,
            },
        ]
    }


TEXT: dict[str, Any] = {"type": "string"}
COUNT: dict[str, Any] = {"type": "integer", "minimum": 0}
POINT: dict[str, Any] = {"type": "number", "nullable": True}
REPORT_TYPES: dict[str, Any] = {
    name: TEXT
    for name, _tag in exports.columns(False)
    if name
    not in {
        "latitude",
        "longitude",
        "households",
        "people",
        "children_under_5",
        "elderly_over_60",
        "disabled",
        "pregnant_or_breastfeeding",
        "female_headed",
        "duplicate_of_row",
    }
} | {
    "latitude": POINT,
    "longitude": POINT,
    "households": COUNT,
    "people": COUNT,
    "children_under_5": COUNT,
    "elderly_over_60": COUNT,
    "disabled": COUNT,
    "pregnant_or_breastfeeding": COUNT,
    "female_headed": {"type": "boolean"},
    # the earlier report's row, or "" for none (as in the export)
    "duplicate_of_row": {"oneOf": [COUNT, {"type": "string", "maxLength": 0}]},
}
FIGURE_TYPES: dict[str, Any] = {
    "governorate_pcode": TEXT,
    "governorate": TEXT,
    "need": {"type": "string", "enum": list(NEEDS)},
    "reports": COUNT,
    "people": COUNT,
}
SIGNATORY_TYPES: dict[str, Any] = dict.fromkeys(exports.PUBLIC_SIGNATURE_FIELDS, TEXT)


def openapi_document(base: str) -> dict[str, Any]:
    """The OpenAPI 3.0 document of the API, built from the same columns the routes send."""

    def parameter(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
        return {
            "name": name,
            "in": "query",
            "required": False,
            "schema": schema,
            "description": description,
        }

    day = {"type": "string", "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$"}
    filters = [
        parameter("since", day, "reports from this day on (Asia/Baghdad unless TIMEZONE)"),
        parameter("until", day, "reports up to this day, included"),
        parameter("governorate", {"type": "string", "enum": list(GOVERNORATES)}, "P-code"),
        parameter("need", {"type": "string", "enum": list(NEEDS)}, "a sector"),
    ]
    paging = [
        parameter(
            "cursor",
            {"type": "string", "pattern": "^[0-9]{1,12}$"},
            "the next_cursor of the previous page",
        ),
        parameter(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
            "rows a page",
        ),
    ]
    shape = [
        parameter("format", {"type": "string", "enum": ["json", "csv"]}, "json (default) or csv"),
        parameter(
            "hxl",
            {"type": "string", "enum": ["0", "1", "true", "false"]},
            "1: JSON keyed by HXL hashtags; CSV with the hashtag row under the header",
        ),
    ]

    def listing(
        summary: str, scope: str, schema: str, parameters: list[dict[str, Any]]
    ) -> dict[str, Any]:
        page = {
            "type": "object",
            "required": ["data", "next_cursor", "columns"],
            "properties": {
                "data": {"type": "array", "items": {"$ref": f"#/components/schemas/{schema}"}},
                "next_cursor": {"type": "string", "nullable": True},
                "columns": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "hxl"],
                        "properties": {"name": TEXT, "hxl": TEXT},
                    },
                },
            },
        }
        problem = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        return {
            "get": {
                "summary": summary,
                "description": f"Needs a token of scope `{scope}`.",
                "security": [{"bearer": []}],
                "parameters": parameters,
                "responses": {
                    "200": {
                        "description": "a page of rows",
                        "content": {
                            "application/json": {"schema": page},
                            "text/csv": {"schema": {"type": "string"}},
                        },
                    },
                    "400": {"description": "a query field is wrong", "content": problem},
                    "401": {"description": "no token, or not a valid one", "content": problem},
                    "403": {"description": "the token's scope is another", "content": problem},
                    "429": {
                        "description": "too many requests: wait Retry-After seconds",
                        "content": problem,
                        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                    },
                    "503": {"description": "the database is not available", "content": problem},
                },
            }
        }

    return {
        "openapi": "3.0.3",
        "info": {
            "title": "ICSSI partner API",
            "version": "1",
            "description": "Read-only data of the Iraqi Civil Society Solidarity Initiative for "
            "relief partners: anonymous reports of displaced families (no personal field), "
            "figures by governorate and need, and the verified signatory organizations.",
        },
        "servers": [{"url": base}],
        "paths": {
            f"{PREFIX}/reports": listing(
                "Reports of displaced families, without any personal field",
                "reports",
                "Report",
                filters + paging + shape,
            ),
            f"{PREFIX}/figures": listing(
                "Reports and people by governorate and need", "figures", "Figure", filters + shape
            ),
            f"{PREFIX}/signatories": listing(
                "The verified signatory organizations", "signatories", "Signatory", paging + shape
            ),
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {"error": TEXT, "message": TEXT},
                },
                "Report": _row_schema(exports.columns(False), REPORT_TYPES),
                "Figure": _row_schema(list(FIGURE_COLUMNS), FIGURE_TYPES),
                "Signatory": _row_schema(list(SIGNATORY_TAGS.items()), SIGNATORY_TYPES),
            },
        },
    }
