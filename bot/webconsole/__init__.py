"""The coordinators' web console under /console/: server-rendered pages, signed in by a link.

Every page is rendered on the server in the reader's language (right-to-left for ar and ckb),
with no inline script, so that the Content-Security-Policy can forbid them all. A role that may
not see a page gets 403 in its language; an anonymous visitor gets the page that says how to
sign in through the bot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from sqlalchemy import String, Table, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement
from starlette.concurrency import iterate_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from bot import exports, gazetteer, reports, roles, signatures, signin
from bot.config import NEEDS, Settings
from bot.db import Database
from bot.flows import too_long
from bot.i18n import (
    LOCALES,
    N_,
    SHORT_LANGUAGE_NAMES,
    _,
    current_locale,
    format_datetime,
    format_number,
    is_rtl,
    ngettext,
    pgettext,
    translate_in,
    use_locale,
)
from bot.limits import Failures, client_of
from bot.messages import Outbound
from bot.models import AuditEntry, Contact, Report, Signature, utcnow
from bot.outbox import enqueue
from bot.personal import personal_columns

# Not "referrals": the package's module bot.webconsole.referrals takes that name here.
from bot.referrals import history_text as referral_history
from bot.reports import NEED_LABELS, STATUS_LABELS
from bot.text import ascii_digits, clean_input
from bot.webconsole.bulletins import routes as bulletin_routes
from bot.webconsole.organizations import routes as organization_routes
from bot.webconsole.referrals import latest_referrals
from bot.webconsole.referrals import routes as referral_routes
from handlers.report import FORM as REPORT_FORM

HERE = Path(__file__).resolve().parent
# One colour a need, for the map's circles and legend (told apart by colour-blind readers too,
# as far as ten colours can be; the legend names each).
NEED_COLOURS = {
    "food": "#e6550d",
    "water": "#3182bd",
    "shelter": "#756bb1",
    "health": "#de2d26",
    "wash": "#31a354",
    "legal": "#636363",
    "protection": "#d6616b",
    "education": "#e7ba52",
    "cash": "#8c6d31",
    "psychosocial": "#7b4173",
}
# What the reports table downloads: the exporter's format -> file extension, media type.
DOWNLOADS = {
    "csv": ("csv", "text/csv; charset=utf-8"),
    "hxl": ("hxl.csv", "text/csv; charset=utf-8"),
    "geojson": ("geojson", "application/geo+json"),
}
FEW = 5  # a viewer sees fewer reports than this as "<5": a small count can point at a family
COOKIE = "icssi_console"
LANG_COOKIE = "icssi_lang"
PAGE_SIZE = 50
FORM_LIMIT = 16_384  # bytes of a posted form, at most
# Failed sign-in attempts one client may make in REDEEM_WINDOW seconds: a guessed link is
# 256 random bits, but nobody should be able to hammer the database with guesses.
REDEEM_TRIES = 20
REDEEM_WINDOW = 600.0

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Page:
    """A console page: its path, the permission it needs, and its label in the menu."""

    path: str
    permission: str
    label: str


def report_answers(report: Report, personal: bool) -> list[tuple[str, str]]:
    """A stored report's answers as the report's form words them, in the current locale;
    without the personal ones (bot.personal's declaration) unless `personal`."""
    private = {column.key for column in personal_columns(cast_table(Report))}
    data = REPORT_FORM.from_model(report)
    found = []
    for question in REPORT_FORM.questions:
        if not question.label or not (question.in_summary or question.applies)(data):
            continue
        if question.column is not None:
            filled = {question.column}
        else:
            filled = set(question.to_model(data)) if question.to_model is not None else set()
        if filled & private and not personal:
            continue
        found.append((_(question.label), question.words(data)))
    return found


def cast_table(model: type[Report]) -> Table:
    """A model's table, typed."""
    return model.__table__  # type: ignore[return-value]


# The table's columns: no personal field among them.
TABLE_COLUMNS = (
    Report.reference,
    Report.created_at,
    Report.governorate,
    Report.district,
    Report.people,
    Report.needs,
    Report.urgent,
    Report.status,
    Report.duplicate_of,
)
# The table's orders: the newest first unless asked; the largest households for a distribution.
SORTS: dict[str, tuple[ColumnElement[Any], ...]] = {
    "newest": (Report.id.desc(),),
    "oldest": (Report.id.asc(),),
    "people": (Report.people.desc(), Report.id.desc()),
}
# The menu, in order; each page is shown only to the roles that may open it.
PAGES = (
    Page("/console/reports", "reports", N_("Reports")),
    Page("/console/map", "map", N_("Map")),
    Page("/console/signatures", "signatures", N_("Signatures")),
    Page("/console/organizations", "organizations", N_("Organizations")),
    Page("/console/bulletins", "bulletins", N_("Bulletins")),
    Page("/console/referrals", "referrals", N_("Referrals")),
    Page("/console/people", "people", N_("People and roles")),
    Page("/console/audit", "audit", N_("Audit log")),
)


def request_locale(request: Request, default: str, preferred: str | None = None) -> str:
    """A page's language: ?lang=, the cookie, `preferred` (a person's chat language), the
    browser's Accept-Language, else `default`."""
    for candidate in (
        request.query_params.get("lang"),
        request.cookies.get(LANG_COOKIE),
        preferred,
    ):
        if candidate in LOCALES:
            return candidate
    for part in request.headers.get("accept-language", "")[:500].split(","):
        tag = part.split(";")[0].strip().lower().replace("_", "-")
        for locale in LOCALES:
            if tag == locale or tag.startswith(locale + "-"):
                return locale
    return default


def _environment(folder: Path = HERE / "templates") -> Environment:
    """The Jinja2 environment of the templates in `folder`, translating with the bot's catalogs
    in the current locale."""
    env = Environment(
        loader=FileSystemLoader(folder),
        autoescape=select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=_, ngettext=ngettext, pgettext=pgettext, newstyle=True
    )
    env.filters["number"] = format_number
    env.filters["code"] = code
    env.filters["codes"] = codes
    return env


# A code a person reads or types: a bulletin's id (B-…), a report's reference (R-…), a receipt
# (S-…).
CODE = re.compile(rf"\b[BRS]-[{reports.CODE_ALPHABET}]{{5,8}}\b")
CODE_HTML = Markup('<bdi class="code" dir="ltr">{}</bdi>')
TAG = re.compile(r"(<[^>]*>)")


def code(value: object) -> Markup:
    """A code inside a sentence, kept whole on one line and left to right (class "code"): a
    right-to-left line would break "B-HCFFNF" at its hyphen, and may draw it backwards."""
    return CODE_HTML.format(value)


def codes(text: str) -> Markup:
    """A text, escaped unless it is Markup already, with each code in it set as `code` sets
    one (the codes in a message shown as the family or the reader gets it)."""
    if not isinstance(text, Markup):
        text = escape(text)
    # Only the text between tags: a code in an attribute stays as it is.
    parts = TAG.split(str(text))
    return Markup(
        "".join(
            part if part.startswith("<") else CODE.sub(lambda m: str(code(m.group(0))), part)
            for part in parts
        )
    )


@dataclass(frozen=True)
class Posted:
    """A form posted by a signed-in person whose role may post it, with this session's token."""

    who: signin.Signed
    locale: str
    pairs: list[tuple[str, str]]  # in order, repeated names kept (ticked boxes)

    @property
    def fields(self) -> dict[str, str]:
        """The fields by name (the last of a repeated name)."""
        return dict(self.pairs)


class Console:
    """The console's routes, bound to a database and the settings."""

    def __init__(
        self, db: Database, settings: Settings, wake: Callable[[str], None] | None = None
    ) -> None:
        self.db = db
        self.settings = settings
        # Tells this process's sender, if one runs here, that messages wait; a worker process
        # finds them by itself.
        self.wake = wake
        self.env = _environment()
        self.secure = (settings.public_url or "").startswith("https://")
        self.failures = Failures(REDEEM_TRIES, window=REDEEM_WINDOW)
        tiles = urlsplit(settings.map_tiles_url)
        # The map's tiles are the only images from elsewhere.
        self.images = "'self' data:" + (
            f" {tiles.scheme}://{tiles.netloc.replace('{s}', '*')}"
            if settings.map_tiles_url
            else ""
        )

    # -- plumbing ---------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """The routes to mount at the app's root."""
        return [
            Route("/console", self.home, methods=["GET"]),
            Route("/console/", self.home, methods=["GET"]),
            Route("/console/sign-in/{token}", self.sign_in_page, methods=["GET"]),
            Route("/console/sign-in/{token}", self.sign_in, methods=["POST"]),
            Route("/console/sign-out", self.sign_out, methods=["POST"]),
            Route("/console/reports", self.reports, methods=["GET"]),
            Route("/console/reports", self.change_many, methods=["POST"]),
            Route("/console/reports.{fmt}", self.download, methods=["GET"]),
            Route("/console/reports/{reference}", self.report, methods=["GET"]),
            Route("/console/reports/{reference}", self.act_on_report, methods=["POST"]),
            Route("/console/map", self.map_page, methods=["GET"]),
            Route("/console/map.json", self.map_data, methods=["GET"]),
            Route("/console/signatures", self.signatures_page, methods=["GET"]),
            Route("/console/signatures", self.decide, methods=["POST"]),
            Route("/console/audit", self.audit, methods=["GET"]),
            Route("/console/people", self.people, methods=["GET"]),
            Route("/console/people", self.change_people, methods=["POST"]),
            *organization_routes(self),
            *bulletin_routes(self),
            *referral_routes(self),
            Mount("/console/static", app=StaticFiles(directory=HERE / "static"), name="static"),
        ]

    def locale_of(self, request: Request, preferred: str | None = None) -> str:
        """The page's language: ?lang=, the cookie, the person's chat language, the browser's."""
        return request_locale(request, self.settings.default_locale, preferred)

    def render(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any],
        *,
        who: signin.Signed | None = None,
        locale: str,
        status: int = 200,
    ) -> HTMLResponse:
        """A page in the locale, with the security headers every console page carries."""
        with use_locale(locale):
            menu = [
                (page.path, _(page.label))
                for page in PAGES
                if who is not None and roles.may(who.role, page.permission)
            ]
            html = self.env.get_template(template).render(
                locale=locale,
                dir="rtl" if is_rtl(locale) else "ltr",
                who=who,
                role_label=_(roles.ROLE_LABELS[who.role]) if who else "",
                menu=menu,
                here=request.url.path,
                languages=[
                    (code, SHORT_LANGUAGE_NAMES[code], self._with_lang(request, code))
                    for code in LOCALES
                ],
                **context,
            )
        response = HTMLResponse(html, status_code=status)
        self.protect(response)
        if request.query_params.get("lang") in LOCALES:
            response.set_cookie(
                LANG_COOKIE,
                locale,
                max_age=365 * 86400,
                httponly=True,
                samesite="lax",
                secure=self.secure,
                path="/console",
            )
        return response

    @staticmethod
    def _with_lang(request: Request, code: str) -> str:
        """This page's address with another language."""
        query = dict(request.query_params)
        query["lang"] = code
        return request.url.path + "?" + urlencode(query)

    def protect(self, response: Response) -> None:
        """The headers that keep the console out of frames, caches and inline scripts."""
        response.headers["Content-Security-Policy"] = (
            f"default-src 'self'; script-src 'self'; style-src 'self'; img-src {self.images}; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
        )
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        # A sign-in link is in the address bar: no other site may receive it as a Referer.
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Cache-Control"] = "no-store"

    async def who(self, request: Request) -> signin.Signed | None:
        """The signed-in person, or None (no lock is taken for it)."""
        cookie = request.cookies.get(COOKIE)
        if not cookie:
            return None
        async with self.db.read() as connection:
            return await signin.signed(connection, cookie)

    async def chat_locale(self, address: str) -> str | None:
        """The language the person chose in the chat, if any."""
        async with self.db.read() as connection:
            return await connection.scalar(
                select(Contact.locale).where(Contact.address == address)
            )

    async def allowed(
        self, request: Request, permission: str
    ) -> tuple[signin.Signed, str] | Response:
        """The person and the page's locale if their role has the permission; else the answer
        (the sign-in page for nobody, 403 for a role without it)."""
        who = await self.who(request)
        if who is None:
            locale = self.locale_of(request)
            return self.render(request, "anonymous.html", {}, locale=locale, status=401)
        locale = self.locale_of(request, await self.chat_locale(who.address))
        if not roles.may(who.role, permission):
            return self.render(request, "forbidden.html", {}, who=who, locale=locale, status=403)
        return who, locale

    async def form(self, request: Request) -> dict[str, str] | None:
        """A posted form's fields (the last of a repeated name), or None when it is too large
        or not a form."""
        pairs = await self.form_pairs(request)
        return None if pairs is None else dict(pairs)

    async def form_pairs(self, request: Request) -> list[tuple[str, str]] | None:
        """A posted form's fields in order, repeated names kept; None when it is too large or
        not a form. Called once per request: the body is a stream."""
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > FORM_LIMIT):
            return None
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > FORM_LIMIT:
                return None
        if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
            return None
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=500)
        except (UnicodeDecodeError, ValueError):  # ValueError: past max_num_fields
            return None
        return pairs

    async def posted(self, request: Request, permission: str) -> Posted | Response:
        """A signed-in person's form post: who, the page's locale and the fields in order; else
        the answer (how to sign in, 403, or 400 for a form too large, from another site or
        without this session's token)."""
        found = await self.allowed(request, permission)
        if isinstance(found, Response):
            return found
        who, locale = found
        pairs = await self.form_pairs(request)
        if (
            pairs is None
            or not self.same_origin(request)
            or not signin.csrf_ok(who, dict(pairs).get("csrf"))
        ):
            return self.bad_request(request, locale, who)
        return Posted(who, locale, pairs)

    def same_origin(self, request: Request) -> bool:
        """Whether a POST comes from the console's own pages (when the browser says)."""
        origin = request.headers.get("origin")
        # "null" is what a browser says when it keeps the origin to itself: the form token is
        # the check then.
        if not origin or origin == "null":
            return True
        return urlsplit(origin).netloc == request.url.netloc

    def bad_request(self, request: Request, locale: str, who: signin.Signed | None) -> Response:
        """400: the form was not what the page sends (too large, expired token, other site)."""
        return self.render(request, "bad_request.html", {}, who=who, locale=locale, status=400)

    # -- pages ------------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        """The overview for the signed-in; how to sign in for anyone else."""
        who = await self.who(request)
        if who is None:
            locale = self.locale_of(request)
            return self.render(request, "anonymous.html", {}, locale=locale)
        locale = self.locale_of(request, await self.chat_locale(who.address))
        async with self.db.read() as connection:
            grouped = await connection.execute(
                select(Report.status, func.count()).group_by(Report.status)
            )
            counts: dict[str, int] = {status: count for status, count in grouped.all()}
        with use_locale(locale):
            statuses = [(_(label), counts.get(code, 0)) for code, label in STATUS_LABELS.items()]
        return self.render(
            request,
            "home.html",
            {"statuses": statuses, "total": sum(counts.values())},
            who=who,
            locale=locale,
        )

    async def sign_in_page(self, request: Request) -> Response:
        """A button that signs in: a GET never uses the link (chat apps fetch links to preview
        them, and that must not spend it)."""
        locale = self.locale_of(request)
        token = request.path_params["token"]
        return self.render(request, "sign_in.html", {"token": token}, locale=locale)

    async def sign_in(self, request: Request) -> Response:
        """Use a link: a session cookie and the overview, or why not."""
        locale = self.locale_of(request)
        client = client_of(request, self.settings.trust_proxy)
        if self.failures.over(client):
            return self.render(
                request, "link_refused.html", {"busy": True}, locale=locale, status=429
            )
        if not self.same_origin(request):
            return self.bad_request(request, locale, None)
        async with self.db.transaction() as session:
            cookie = await signin.redeem(session, self.settings, request.path_params["token"])
        if cookie is None:
            self.failures.note(client)
            return self.render(
                request, "link_refused.html", {"busy": False}, locale=locale, status=400
            )
        response = RedirectResponse("/console/", status_code=303)
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=self.settings.console_session_hours * 3600,
            httponly=True,
            samesite="lax",
            secure=self.secure,
            path="/console",
        )
        self.protect(response)
        return response

    async def sign_out(self, request: Request) -> Response:
        """End the session (with its form token), then the page that says how to sign in."""
        who = await self.who(request)
        locale = self.locale_of(request)
        fields = await self.form(request)
        if who is None:
            return RedirectResponse("/console/", status_code=303)
        if fields is None or not signin.csrf_ok(who, fields.get("csrf")):
            return self.bad_request(request, locale, who)
        async with self.db.transaction() as session:
            await signin.sign_out(session, request.cookies.get(COOKIE, ""))
        response = RedirectResponse("/console/", status_code=303)
        response.delete_cookie(COOKIE, path="/console")
        self.protect(response)
        return response

    async def reports(self, request: Request) -> Response:
        """The reports table: filters, sorting, paging and counts."""
        found = await self.allowed(request, "reports")
        if isinstance(found, Response):
            return found
        who, locale = found
        filters = ReportFilters.from_query(request.query_params)
        page = _page_number(request.query_params.get("page"))
        conditions = filters.conditions(self.settings.timezone)
        order = SORTS[filters.sort]
        # A read: no lock and no write (the table shows no personal field, so it is not audited).
        async with self.db.read() as connection:
            total = await connection.scalar(
                select(func.count()).select_from(Report).where(*conditions)
            )
            rows = (
                await connection.execute(
                    select(*TABLE_COLUMNS)
                    .where(*conditions)
                    .order_by(*order)
                    .limit(PAGE_SIZE)
                    .offset(page * PAGE_SIZE)
                )
            ).all()
            earlier = [r.duplicate_of for r in rows if r.duplicate_of]
            duplicates: dict[int, str] = {}
            if earlier:
                found_refs = await connection.execute(
                    select(Report.id, Report.reference).where(Report.id.in_(earlier))
                )
                duplicates = {row_id: ref for row_id, ref in found_refs.all()}
        total = total or 0
        with use_locale(locale):
            table = [
                {
                    "reference": r.reference,
                    "date": format_datetime(r.created_at, self.settings.timezone),
                    "governorate": _place_name(r.governorate, locale),
                    "district": _place_name(r.district, locale),
                    "people": r.people,
                    "needs": ", ".join(
                        _(NEED_LABELS[n]) for n in r.needs or [] if n in NEED_LABELS
                    ),
                    "urgent": _(NEED_LABELS.get(r.urgent, r.urgent)) if r.urgent else "",
                    "status": _(STATUS_LABELS.get(r.status, r.status)),
                    "duplicate_of": duplicates.get(r.duplicate_of),
                }
                for r in rows
            ]
            options = filter_options(filters, locale)
            counted = ngettext("%(count)s report", "%(count)s reports", total) % {
                "count": format_number(total)
            }
        pages = max(1, -(-total // PAGE_SIZE))
        query = filters.as_query()
        downloads: list[tuple[str, str]] = []
        if roles.may(who.role, "exports"):
            plain = "?" + urlencode(query) if query else ""
            downloads = [
                ("CSV", "/console/reports.csv" + plain),
                ("HXL", "/console/reports.hxl" + plain),
                ("GeoJSON", "/console/reports.geojson" + plain),
            ]
            if roles.may(who.role, "personal"):
                with use_locale(locale):
                    downloads.append(
                        (
                            _("CSV with personal fields"),
                            "/console/reports.csv?" + urlencode({**query, "private": "1"}),
                        )
                    )
        return self.render(
            request,
            "reports.html",
            {
                "rows": table,
                "filters": filters,
                "options": options,
                "counted": counted,
                "page": page,
                "pages": pages,
                "previous": _query_with(query, page - 1) if page > 0 else None,
                "next": _query_with(query, page + 1) if page + 1 < pages else None,
                "downloads": downloads,
                "back": "?" + urlencode({**query, "page": str(page)}),
            },
            who=who,
            locale=locale,
        )

    async def change_many(self, request: Request) -> Response:
        """The status of the reports ticked in the table, changed at once with one note; each
        family told in its language, each change audited."""
        post = await self.posted(request, "reports")
        if isinstance(post, Response):
            return post
        who, locale, pairs, fields = post.who, post.locale, post.pairs, post.fields
        if fields.get("status") not in STATUS_LABELS:
            return self.bad_request(request, locale, who)
        chosen = sorted({value.strip().upper()[:12] for key, value in pairs if key == "ref"})
        note = clean_input(fields.get("note", ""), limit=FORM_LIMIT)
        back = fields.get("back", "")
        if not back.startswith("?"):
            back = ""
        if len(note) > reports.MESSAGE_LIMIT or not chosen or len(chosen) > PAGE_SIZE:
            return self.bad_request(request, locale, who)
        sent: list[Outbound] = []
        async with self.db.transaction() as session:
            found_reports = (
                await session.scalars(select(Report).where(Report.reference.in_(chosen)))
            ).all()
            if not found_reports:  # a forged or stale form: nothing it names exists
                return self.bad_request(request, locale, who)
            now = utcnow()
            for report in found_reports:
                sent += await reports.change_status(
                    session,
                    report,
                    fields["status"],
                    actor=who.address,
                    now=now,
                    note=note,
                    tell_note=fields.get("tell") == "1" and bool(note),
                )
            await self.queue(session, sent)
        self.woken(sent)
        response = RedirectResponse("/console/reports" + back, status_code=303)
        self.protect(response)
        return response

    async def download(self, request: Request) -> Response:
        """The filtered reports as CSV, HXL or GeoJSON, by the same exporter as the CLI; audited.

        Written to a spooled file first: the database is let go before a slow phone has read
        the last byte.
        """
        found = await self.allowed(request, "exports")
        if isinstance(found, Response):
            return found
        who, _locale = found
        fmt = request.path_params["fmt"]
        if fmt not in DOWNLOADS:
            return Response("unknown format", status_code=404)
        filters = ReportFilters.from_query(request.query_params)
        private = request.query_params.get("private") == "1" and roles.may(who.role, "personal")
        query = exports.Query(
            private=private,
            conditions=tuple(filters.conditions(self.settings.timezone)),
            described=tuple(sorted(filters.as_query().items())),
        )
        # Closed by chunks() once sent (or here, if the export fails).
        spool = tempfile.SpooledTemporaryFile(max_size=1 << 20, mode="w+", encoding="utf-8")  # noqa: SIM115
        try:
            await exports.export(self.db, query, fmt, spool, actor=who.address)  # type: ignore[arg-type]
        except BaseException:
            spool.close()
            raise
        spool.seek(0)

        def chunks() -> Iterator[str]:
            """The file in pieces, closed at the end."""
            with spool:
                while piece := spool.read(1 << 16):
                    yield piece

        stamp = datetime.now(ZoneInfo(self.settings.timezone)).strftime("%Y-%m-%d")
        name = f"icssi-reports-{stamp}{'-private' if private else ''}.{DOWNLOADS[fmt][0]}"
        response = StreamingResponse(
            iterate_in_threadpool(chunks()),
            media_type=DOWNLOADS[fmt][1],
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
        self.protect(response)
        return response

    async def map_page(self, request: Request) -> Response:
        """The map: its filters, the legend, and a table of the same figures (no script needed)."""
        found = await self.allowed(request, "map")
        if isinstance(found, Response):
            return found
        who, locale = found
        filters = ReportFilters.from_query(request.query_params)
        districts = await self.district_figures(filters, who.role, locale)
        with use_locale(locale):
            legend = [(NEED_COLOURS[code], _(NEED_LABELS[code])) for code in NEEDS]
            options = filter_options(filters, locale)
        query = urlencode(filters.as_query())
        return self.render(
            request,
            "map.html",
            {
                "filters": filters,
                "options": options,
                "legend": legend,
                "districts": districts,
                "source": "/console/map.json" + ("?" + query if query else ""),
                "tiles": self.settings.map_tiles_url,
                "attribution": self.settings.map_tiles_attribution,
            },
            who=who,
            locale=locale,
        )

    async def map_data(self, request: Request) -> Response:
        """The map's circles and labels as JSON, for static/map.js."""
        found = await self.allowed(request, "map")
        if isinstance(found, Response):
            return found
        who, locale = found
        filters = ReportFilters.from_query(request.query_params)
        districts = await self.district_figures(filters, who.role, locale)
        governorates = [
            {"name": g.name(locale), "lat": g.lat, "lon": g.lon} for g in gazetteer.GOVERNORATES
        ]
        response = JSONResponse({"districts": districts, "governorates": governorates})
        self.protect(response)
        return response

    async def district_figures(
        self, filters: ReportFilters, role: str, locale: str
    ) -> list[dict[str, Any]]:
        """Reports per district under the filters: count, most frequent urgent need, centroid."""
        async with self.db.read() as connection:
            grouped = await connection.execute(
                select(Report.district, Report.urgent, func.count())
                .where(*filters.conditions(self.settings.timezone), Report.district.is_not(None))
                .group_by(Report.district, Report.urgent)
            )
            tally: dict[str, dict[str, int]] = {}
            for district, urgent, count in grouped.all():
                tally.setdefault(str(district), {})[urgent or ""] = count
        exact = roles.may(role, "reports")
        figures = []
        with use_locale(locale):
            for pcode, by_need in sorted(tally.items()):
                where = gazetteer.place(pcode)
                if where is None:
                    continue
                count = sum(by_need.values())
                top = max(sorted(by_need), key=lambda need: by_need[need])
                hidden = not exact and count < FEW
                figures.append(
                    {
                        "pcode": pcode,
                        "name": where.name(locale),
                        "lat": where.lat,
                        "lon": where.lon,
                        "count": None if hidden else count,
                        "label": "<" + format_number(FEW) if hidden else format_number(count),
                        "urgent": _(NEED_LABELS[top]) if top in NEED_LABELS else "",
                        "colour": NEED_COLOURS.get(top, "#555555"),
                        "link": "/console/reports?"
                        + urlencode(
                            {
                                **filters.as_query(),
                                "governorate": where.parent or "",
                                "district": pcode,
                            }
                        )
                        if exact
                        else None,
                    }
                )
        return figures

    async def audit(self, request: Request) -> Response:
        """The audit log, newest first, filtered by who, what and when (admins)."""
        found = await self.allowed(request, "audit")
        if isinstance(found, Response):
            return found
        who, locale = found
        query = request.query_params
        actor = query.get("actor", "").strip()[:100]
        action = query.get("action", "").strip()[:40]
        since, until = _day(query.get("since")), _day(query.get("until"))
        page = _page_number(query.get("page"))
        conditions: list[ColumnElement[bool]] = []
        if actor:
            conditions.append(AuditEntry.actor == actor)
        if action:
            conditions.append(AuditEntry.action.startswith(action, autoescape=True))
        if since:
            conditions.append(AuditEntry.at >= _start_of(since, self.settings.timezone))
        if until:
            end = _start_of(until + timedelta(days=1), self.settings.timezone)
            conditions.append(AuditEntry.at < end)
        async with self.db.read() as connection:
            total = await connection.scalar(
                select(func.count()).select_from(AuditEntry).where(*conditions)
            )
            entries = (
                await connection.execute(
                    select(
                        AuditEntry.at,
                        AuditEntry.actor,
                        AuditEntry.action,
                        AuditEntry.report_id,
                        AuditEntry.detail,
                    )
                    .where(*conditions)
                    .order_by(AuditEntry.id.desc())
                    .limit(PAGE_SIZE)
                    .offset(page * PAGE_SIZE)
                )
            ).all()
            ids = {e.report_id for e in entries if e.report_id}
            references: dict[int, str] = {}
            if ids:
                found_refs = await connection.execute(
                    select(Report.id, Report.reference).where(Report.id.in_(ids))
                )
                references = {row_id: ref for row_id, ref in found_refs.all()}
        rows = [
            {
                "at": format_datetime(e.at, self.settings.timezone),
                "actor": e.actor,
                "action": e.action,
                "report": references.get(e.report_id, "") if e.report_id else "",
                "detail": json.dumps(e.detail, ensure_ascii=False, sort_keys=True)[:500],
            }
            for e in entries
        ]
        total = total or 0
        pages = max(1, -(-total // PAGE_SIZE))
        kept = {
            key: value
            for key, value in (
                ("actor", actor),
                ("action", action),
                ("since", since.isoformat() if since else ""),
                ("until", until.isoformat() if until else ""),
            )
            if value
        }
        return self.render(
            request,
            "audit.html",
            {
                "rows": rows,
                "kept": kept,
                "page": page,
                "pages": pages,
                "total": total,
                "previous": _query_with(kept, page - 1) if page > 0 else None,
                "next": _query_with(kept, page + 1) if page + 1 < pages else None,
            },
            who=who,
            locale=locale,
        )

    async def queue(self, session: AsyncSession, messages: list[Outbound]) -> None:
        """Put messages in the outbox, in this transaction (the sender is woken after it)."""
        await enqueue(session, messages, None)

    def woken(self, messages: list[Outbound]) -> None:
        """Wake the sender for each channel the messages go to, once they are committed."""
        if self.wake is not None:
            for channel in {m.address.channel for m in messages}:
                self.wake(channel)

    async def report(
        self,
        request: Request,
        *,
        preview: tuple[str, str, bool] | None = None,
        problem: str | None = None,
    ) -> Response:
        """One report: every answer, its thread with the family, its history, and forms to
        change its status, add a note and write to the family. Viewing is audited."""
        found = await self.allowed(request, "reports")
        if isinstance(found, Response):
            return found
        who, locale = found
        reference = request.path_params["reference"].strip().upper()[:12]
        async with self.db.transaction() as session:
            report = await session.scalar(select(Report).where(Report.reference == reference))
            if report is None:
                return self.render(
                    request, "not_found.html", {}, who=who, locale=locale, status=404
                )
            personal = roles.may(who.role, "personal")
            session.add(
                AuditEntry(
                    actor=who.address,
                    action="console:view",
                    report_id=report.id,
                    detail={"personal": personal},
                )
            )
            earlier = (
                await session.scalar(
                    select(Report.reference).where(Report.id == report.duplicate_of)
                )
                if report.duplicate_of
                else None
            )
            contact = await session.get(Contact, report.contact_id) if report.contact_id else None
            family_locale = (contact.locale if contact else None) or report.locale
            messages = await reports.thread(session, report)
            its_referrals = await latest_referrals(session, locale, self.settings.timezone, report)
            history = (
                await session.scalars(
                    select(AuditEntry)
                    .where(
                        AuditEntry.report_id == report.id,
                        AuditEntry.action.in_(("status", "note", "message", "referral")),
                    )
                    .order_by(AuditEntry.at, AuditEntry.id)
                )
            ).all()
            with use_locale(locale):
                answers = report_answers(report, personal)
                if personal and report.latitude is not None:
                    point = report.exact_point or f"{report.latitude:.2f}, {report.longitude:.2f}"
                    answers.append((_("Coordinates"), point))
                page = {
                    "report": report,
                    "status_label": _(STATUS_LABELS.get(report.status, report.status)),
                    "received": format_datetime(report.created_at, self.settings.timezone),
                    "answers": answers,
                    "earlier": earlier,
                    "reachable": contact is not None and report.anonymized_at is None,
                    "anonymized": report.anonymized_at is not None,
                    "statuses": [
                        (code, _(label))
                        for code, label in STATUS_LABELS.items()
                        if code != report.status
                    ],
                    "thread": [
                        {
                            "at": format_datetime(m.at, self.settings.timezone),
                            "out": m.direction == "out",
                            "author": m.author or "",
                            "body": m.body,
                        }
                        for m in messages
                    ],
                    "history": [self.history_line(entry) for entry in history],
                    "limit": reports.MESSAGE_LIMIT,
                    "problem": problem,
                    "referrals": its_referrals,
                }
                if preview is not None:
                    status, note, tell = preview
                    with use_locale(family_locale):
                        page["preview"] = reports.notice_text(
                            report.reference, status, note if tell else None
                        )
                    page["preview_dir"] = "rtl" if is_rtl(family_locale) else "ltr"
                    page["preview_lang"] = family_locale
                    page["chosen"] = {"status": status, "note": note, "tell": tell}
        return self.render(
            request,
            "report.html",
            page,
            who=who,
            locale=locale,
            status=400 if problem else 200,
        )

    def history_line(self, entry: AuditEntry) -> dict[str, str]:
        """One line of a report's history, in the current locale."""
        detail = entry.detail
        when = format_datetime(entry.at, self.settings.timezone)
        if entry.action == "status":
            before, after, note = reports.change_words(detail)
            what = _("Status: %(before)s → %(after)s") % {"before": before, "after": after}
            if note:
                what += " · " + note
        elif entry.action == "note":
            what = _("Internal note: %(note)s") % {"note": str(detail.get("note", ""))}
        elif entry.action == "referral":
            what = referral_history(detail)
        else:
            what = _("A message to the family")
        return {"when": when, "who": entry.actor, "what": what}

    async def act_on_report(self, request: Request) -> Response:
        """A report's forms: preview or change the status, add a note, write to the family."""
        post = await self.posted(request, "reports")
        if isinstance(post, Response):
            return post
        who, locale, fields = post.who, post.locale, post.fields
        action = fields.get("action", "")
        note = clean_input(fields.get("note", ""), limit=FORM_LIMIT)
        with use_locale(locale):
            if len(note) > reports.MESSAGE_LIMIT:
                return await self.report(
                    request, problem=too_long(reports.MESSAGE_LIMIT, len(note))
                )
        status = fields.get("status", "")
        tell = fields.get("tell") == "1"
        if action == "preview" and status in STATUS_LABELS:
            return await self.report(request, preview=(status, note, tell))
        reference = request.path_params["reference"].strip().upper()[:12]
        sent: list[Outbound] = []
        async with self.db.transaction() as session:
            report = await session.scalar(select(Report).where(Report.reference == reference))
            if report is None:
                return self.render(
                    request, "not_found.html", {}, who=who, locale=locale, status=404
                )
            now = utcnow()
            if action == "status" and status in STATUS_LABELS:
                sent = await reports.change_status(
                    session,
                    report,
                    status,
                    actor=who.address,
                    now=now,
                    note=note,
                    tell_note=tell and bool(note),
                )
            elif action == "note" and note:
                reports.add_note(session, report, note, actor=who.address, now=now)
            elif action == "message" and note:
                sent = await reports.message_family(
                    session, report, note, actor=who.address, now=now
                )
            else:
                return self.bad_request(request, locale, who)
            await self.queue(session, sent)
        self.woken(sent)
        response = RedirectResponse(f"/console/reports/{reference}", status_code=303)
        self.protect(response)
        return response

    async def signatures_page(self, request: Request, *, problem: str | None = None) -> Response:
        """The pending signatures, oldest first, each probable duplicate beside the signature
        it resembles; the latest decisions, which can be taken back; counts by status."""
        found = await self.allowed(request, "signatures")
        if isinstance(found, Response):
            return found
        who, locale = found
        personal = roles.may(who.role, "personal")
        async with self.db.transaction() as session:
            counted = await session.execute(
                select(Signature.status, func.count()).group_by(Signature.status)
            )
            counts: dict[str, int] = {status: n for status, n in counted.all()}
            pending = (
                await session.scalars(
                    select(Signature)
                    .where(Signature.status == "pending")
                    .order_by(Signature.created_at, Signature.id)
                    .limit(PAGE_SIZE)
                )
            ).all()
            decided = (
                await session.scalars(
                    select(Signature)
                    .where(Signature.status.in_(("verified", "rejected")))
                    .order_by(Signature.decided_at.desc(), Signature.id.desc())
                    .limit(20)
                )
            ).all()
            earlier_ids = {s.similar_to for s in pending if s.similar_to}
            earlier = {
                s.id: s
                for s in (
                    await session.scalars(select(Signature).where(Signature.id.in_(earlier_ids)))
                ).all()
            }
            if pending and personal:
                session.add(
                    AuditEntry(
                        actor=who.address,
                        action="console:signatures",
                        detail={"pending": [s.id for s in pending]},
                    )
                )
            with use_locale(locale):
                page = {
                    "counts": [
                        (_(label), counts.get(code, 0))
                        for code, label in signatures.STATUS_LABELS.items()
                    ],
                    "pending": [
                        {
                            **self.signature_view(s, personal, locale),
                            "like": self.signature_view(earlier[s.similar_to], False, locale)
                            if s.similar_to in earlier
                            else None,
                        }
                        for s in pending
                    ],
                    "decided": [self.signature_view(s, False, locale) for s in decided],
                    "reasons": [
                        (code, _(text)) for code, text in signatures.REJECT_REASONS.items()
                    ],
                    "problem": problem,
                }
        return self.render(
            request,
            "signatures.html",
            page,
            who=who,
            locale=locale,
            status=400 if problem else 200,
        )

    def signature_view(self, signature: Signature, personal: bool, locale: str) -> dict[str, Any]:
        """What the signatures page shows of one signature, in the current locale."""
        view: dict[str, Any] = {
            "id": signature.id,
            "receipt": signature.receipt,
            "name_ar": signature.name_ar or "",
            "name_en": signature.name_en or "",
            "type": signatures.type_text(signature.org_type),
            "place": " · ".join(
                part
                for part in (_place_name(signature.governorate, locale), signature.city)
                if part
            ),
            "status": _(signatures.STATUS_LABELS.get(signature.status, signature.status)),
            "reason": signature.reason or "",
            "when": format_datetime(signature.created_at, self.settings.timezone),
        }
        if personal:
            view["contact"] = [
                value
                for value in (
                    signature.representative,
                    signature.role,
                    signature.phone,
                    signature.email,
                )
                if value
            ]
        return view

    async def decide(self, request: Request) -> Response:
        """Verify, reject (with a preset or written reason) or take back a decision; the
        representative is told in their language, the decision audited."""
        post = await self.posted(request, "signatures")
        if isinstance(post, Response):
            return post
        who, locale, fields = post.who, post.locale, post.fields
        ident = fields.get("id", "")
        # Past nine digits, past a database integer: no such signature.
        if not (ident.isascii() and ident.isdigit() and len(ident) <= 9):
            return self.bad_request(request, locale, who)
        action = fields.get("action", "")
        signature_id = int(fields["id"])
        written = " ".join(clean_input(fields.get("reason", ""), limit=FORM_LIMIT).split())
        preset = fields.get("preset", "")
        if action == "reject" and not written and preset not in signatures.REJECT_REASONS:
            with use_locale(locale):
                problem = _("Choose a reason, or write one: the representative is told it.")
            return await self.signatures_page(request, problem=problem)
        if len(written) > 500:
            with use_locale(locale):
                return await self.signatures_page(request, problem=too_long(500, len(written)))
        sent: list[Outbound] = []
        async with self.db.transaction() as session:
            now = utcnow()
            if action == "verify":
                _signature, sent = await signatures.decide(
                    session, signature_id, "verified", None, actor=who.address, now=now
                )
            elif action == "reject":
                reason = written
                if not reason:
                    target = await session.get(Signature, signature_id)
                    contact = (
                        await session.get(Contact, target.contact_id)
                        if target and target.contact_id
                        else None
                    )
                    language = (contact.locale if contact else None) or (
                        target.locale if target else self.settings.default_locale
                    )
                    reason = translate_in(language, signatures.REJECT_REASONS[preset])
                _signature, sent = await signatures.decide(
                    session, signature_id, "rejected", reason, actor=who.address, now=now
                )
            elif action == "undo":
                _signature, sent = await signatures.undo(
                    session, signature_id, actor=who.address, now=now, settings=self.settings
                )
            else:
                return self.bad_request(request, locale, who)
            await self.queue(session, sent)
        self.woken(sent)
        response = RedirectResponse("/console/signatures", status_code=303)
        self.protect(response)
        return response

    async def people(self, request: Request, *, problem: str | None = None) -> Response:
        """Who has which role, with their last sign-in; forms to add, change and remove."""
        found = await self.allowed(request, "people")
        if isinstance(found, Response):
            return found
        who, locale = found
        async with self.db.transaction() as session:
            everyone = await roles.everyone(session)
        with use_locale(locale):
            listed = [
                {
                    "address": p.address,
                    "name": p.name or "",
                    "role": p.role,
                    "role_label": _(roles.ROLE_LABELS.get(p.role, p.role)),
                    "last": format_datetime(p.last_sign_in_at, self.settings.timezone)
                    if p.last_sign_in_at
                    else _("never"),
                }
                for p in everyone
            ]
            choices = [
                (role, _(roles.ROLE_LABELS[role]), _(roles.ROLE_HELP[role]))
                for role in roles.ROLES
            ]
        return self.render(
            request,
            "people.html",
            {"people": listed, "choices": choices, "problem": problem},
            who=who,
            locale=locale,
            status=400 if problem else 200,
        )

    async def change_people(self, request: Request) -> Response:
        """Add a person, change a role, or remove one; audited by bot.roles."""
        post = await self.posted(request, "people")
        if isinstance(post, Response):
            return post
        who, locale, fields = post.who, post.locale, post.fields
        action = fields.get("action", "")
        try:
            async with self.db.transaction() as session:
                if action == "remove":
                    await roles.remove(session, fields.get("address", ""), who.address)
                elif action == "set":
                    await roles.set_role(
                        session,
                        fields.get("address", ""),
                        fields.get("role", ""),
                        who.address,
                        name=fields.get("name") or None,
                    )
                else:
                    return self.bad_request(request, locale, who)
        except roles.RoleError as exc:
            with use_locale(locale):
                problem = _people_problem(str(exc))
            return await self.people(request, problem=problem)
        response = RedirectResponse("/console/people", status_code=303)
        self.protect(response)
        return response


@contextlib.asynccontextmanager
async def served_locally(
    db: Database,
    settings: Settings,
    wake: Callable[[str], None] | None = None,
    host: str = "127.0.0.1",
) -> AsyncIterator[str | None]:
    """The console on this machine's PORT while the console chat runs (`make run` with no
    token): its address, or None when the port is taken (another `make run`, say)."""
    import uvicorn

    from bot.web import create_app

    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((host, settings.port))
    except OSError:
        listening.close()
        yield None
        return

    class Quiet(uvicorn.Server):
        """uvicorn without its signal handlers: Ctrl-C belongs to the chat."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    config = uvicorn.Config(
        create_app(db, settings=settings, wake=wake),
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    server = Quiet(config)
    task = asyncio.create_task(server.serve(sockets=[listening]), name="console web")
    try:
        yield f"http://{host}:{listening.getsockname()[1]}/console/"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5)
        listening.close()


def filter_options(filters: ReportFilters, locale: str) -> dict[str, list[tuple[str, str]]]:
    """The choices of the reports' filters, in the current locale."""
    return {
        "governorates": [(g.pcode, g.name(locale)) for g in gazetteer.GOVERNORATES],
        "districts": [
            (d.pcode, d.name(locale)) for d in gazetteer.districts_of(filters.governorate)
        ]
        if filters.governorate
        else [],
        "statuses": [(code, _(label)) for code, label in STATUS_LABELS.items()],
        "needs": [(code, _(NEED_LABELS[code])) for code in NEEDS],
    }


def _people_problem(reason: str) -> str:
    """A RoleError's reason in the current locale."""
    if reason.startswith("not an address"):
        return _("That is not an address: write telegram:ID, whatsapp:+PHONE or console:NAME.")
    if reason.startswith("not a role"):
        return _("Choose one of the roles.")
    if reason.startswith("the last admin"):
        return _("The last administrator cannot be removed or changed: add another first.")
    return _("This person has no role.")


def _place_name(pcode: str | None, locale: str) -> str:
    """A P-code's name in the locale (the code itself if unknown)."""
    if not pcode:
        return ""
    found = gazetteer.place(pcode)
    return found.name(locale) if found else pcode


def _page_number(value: str | None) -> int:
    """A page number from the query (0 for anything that is not one)."""
    digits = ascii_digits(value or "").strip()
    return min(int(digits), 100_000) if digits.isdigit() and len(digits) < 7 else 0


def _query_with(query: dict[str, str], page: int) -> str:
    """The query string of another page of the same filters."""
    return "?" + urlencode({**query, "page": str(page)})


def _day(value: str | None) -> date | None:
    """A date typed as YYYY-MM-DD (in any digits), or None."""
    if not value:
        return None
    try:
        return date.fromisoformat(ascii_digits(value.strip()))
    except ValueError:
        return None


@dataclass(frozen=True)
class ReportFilters:
    """The reports table's filters, read from the query string; anything unknown is dropped."""

    governorate: str = ""
    district: str = ""
    status: str = ""
    need: str = ""
    since: date | None = None
    until: date | None = None
    duplicates: bool = False
    sort: str = "newest"

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> ReportFilters:
        """Filters from ?governorate=&district=&status=&need=&since=&until=&duplicates=&sort=."""
        gov = gazetteer.place(query.get("governorate", "")[:12])
        governorate = gov.pcode if gov is not None and gov.parent is None else ""
        dist = gazetteer.place(query.get("district", "")[:12])
        district = dist.pcode if dist is not None and dist.parent == governorate else ""
        status = query.get("status", "")
        need = query.get("need", "")
        return cls(
            governorate=governorate,
            district=district,
            status=status if status in STATUS_LABELS else "",
            need=need if need in NEEDS else "",
            since=_day(query.get("since")),
            until=_day(query.get("until")),
            duplicates=query.get("duplicates") == "1",
            sort=query.get("sort", "newest") if query.get("sort") in SORTS else "newest",
        )

    def conditions(self, timezone: str) -> list[ColumnElement[bool]]:
        """The WHERE conditions of these filters, the same on SQLite and PostgreSQL."""
        found: list[ColumnElement[bool]] = []
        if self.governorate:
            found.append(Report.governorate == self.governorate)
        if self.district:
            found.append(Report.district == self.district)
        if self.status:
            found.append(Report.status == self.status)
        if self.need:
            # needs is a JSON list of fixed codes, none inside another with its quotes: a match
            # on the text serves both databases, where JSON containment is spelt differently.
            found.append(cast(Report.needs, String).like(f'%"{self.need}"%'))
        if self.since:
            found.append(Report.created_at >= _start_of(self.since, timezone))
        if self.until:
            found.append(Report.created_at < _start_of(self.until + timedelta(days=1), timezone))
        if self.duplicates:
            found.append(Report.duplicate_of.is_not(None))
        return found

    def as_query(self) -> dict[str, str]:
        """The filters as a query string's fields (only those set)."""
        fields = {
            "governorate": self.governorate,
            "district": self.district,
            "status": self.status,
            "need": self.need,
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
            "duplicates": "1" if self.duplicates else "",
            "sort": self.sort if self.sort != "newest" else "",
        }
        return {key: value for key, value in fields.items() if value}


def _start_of(day: date, timezone: str) -> datetime:
    """The moment (in UTC) a day starts in the coordinators' zone, as the dates are shown."""
    return datetime.combine(day, day_time(0), tzinfo=ZoneInfo(timezone)).astimezone(UTC)


__all__ = ["Console", "ReportFilters", "current_locale"]
