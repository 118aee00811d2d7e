"""The public pages: the Initiative, the declaration, the signatories and the bulletins.

Anyone may open them, without signing in, in Arabic, Sorani or English. An anonymous read
takes no lock and writes nothing (Database.read); a page is rendered at most once every
CACHE_SECONDS per language and query (past that, the reader gets the page as it was while it is
made again for the next), answered with an ETag (304 when the browser has it), and carries a
strict Content-Security-Policy (no script at all).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import logging
import time
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import phonenumbers
import segno
from markupsafe import Markup
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from bot import bulletins, declaration, exports, gazetteer, signatures
from bot.config import Settings
from bot.db import Database
from bot.i18n import (
    LOCALES,
    N_,
    SHORT_LANGUAGE_NAMES,
    _,
    format_datetime,
    format_number,
    is_rtl,
    long_text,
    ngettext,
    use_locale,
)
from bot.limits import InboundLimit, client_of
from bot.models import Bulletin, Signature
from bot.public.verify import Checker
from bot.text import ascii_digits
from bot.webconsole import LANG_COOKIE, _environment, request_locale

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
CACHE_SECONDS = 10.0  # a page is rendered at most this often per language and query
CACHE_ENTRIES = 512  # pages kept rendered at most (the query is read before it is a key)
MAX_AGE = 60  # seconds a browser or proxy may keep a page without asking again
SIGNATORIES_PAGE = 50
BULLETINS_PAGE = 10  # a bulletin is up to 3,500 characters in each of three languages
FEED_ENTRIES = 50
LAST_PAGE = 100_000
VERIFY_LIMIT = 65_536  # bytes of a posted text to check, at most (a bulletin is under 8 KB)
VERIFY_CHARACTERS = 2 * (bulletins.TEXT_LIMIT + bulletins.TITLE_LIMIT)
# A check costs tens of milliseconds of the process that also answers the platforms' webhooks:
# one client's flood of checks must not delay the families' replies. Per client a minute, and
# for everyone together (a flood from many addresses).
VERIFY_PER_CLIENT = 20
VERIFY_PER_MINUTE = 600
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
# The chat's deep links the home page offers (handlers/__init__.py), with their labels.
DEEP_LINKS = (
    ("bulletin", N_("Subscribe to the bulletin")),
    ("report", N_("Report a displaced family's situation")),
    ("sign", N_("Sign the declaration for your organization")),
)


class BadRequest(Exception):
    """A query or form the pages do not take (400)."""


@dataclass(frozen=True)
class Rendered:
    """A page as sent: its bytes, type and ETag, and when it was made (time.monotonic)."""

    body: bytes
    media_type: str
    etag: str
    made: float
    status: int = 200


def page_number(query: Mapping[str, str]) -> int:
    """The 1-based ?page= (1 when absent); BadRequest for anything but a number in range."""
    raw = query.get("page")
    if raw is None or raw == "":
        return 1
    digits = ascii_digits(raw).strip()
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 6):
        raise BadRequest("page")
    if not 1 <= int(digits) <= LAST_PAGE:
        raise BadRequest("page")
    return int(digits)


def qr_svg(url: str) -> Markup:
    """A QR code of `url` as inline SVG, drawn on the server (no script, no image request)."""
    # segno writes the SVG from the URL it encodes as modules, not as text: nothing to escape.
    return Markup(segno.make(url, error="m").svg_inline(scale=4, border=2))


def whatsapp_number(setting: str | None) -> tuple[str, str] | None:
    """The bot's WhatsApp number as people read it, and its wa.me link; None if unset."""
    if not setting:
        return None
    number = setting.removeprefix("whatsapp:")
    try:
        shown = phonenumbers.format_number(
            phonenumbers.parse(number), phonenumbers.PhoneNumberFormat.INTERNATIONAL
        )
    except phonenumbers.NumberParseException:
        shown = number
    return shown, "https://wa.me/" + "".join(ch for ch in number if ch.isdigit())


class PublicSite:
    """The public pages' routes, bound to a database and the settings."""

    def __init__(
        self, db: Database, settings: Settings, cache_seconds: float | None = None
    ) -> None:
        self.db = db
        self.settings = settings
        self.cache_seconds = CACHE_SECONDS if cache_seconds is None else cache_seconds
        self.env = _environment(HERE / "templates")
        self.cache: OrderedDict[tuple[str, ...], Rendered] = OrderedDict()
        # One rendering per page at a time, however many ask for it at once.
        self.making: dict[tuple[str, ...], asyncio.Future[Rendered]] = {}
        self.secure = (settings.public_url or "").startswith("https://")
        self.checker = Checker()
        self.checks = InboundLimit(VERIFY_PER_CLIENT)
        self.all_checks = InboundLimit(VERIFY_PER_MINUTE)

    def routes(self) -> list[BaseRoute]:
        """The routes to mount at the app's root."""
        return [
            Route("/", self.home, methods=["GET"]),
            Route("/declaration", self.declaration, methods=["GET"]),
            Route("/signatories", self.signatories, methods=["GET"]),
            Route("/signatories.{fmt}", self.signatories_file, methods=["GET"]),
            Route("/bulletins", self.archive, methods=["GET"]),
            Route("/bulletins.atom", self.feed, methods=["GET"]),
            Route("/bulletins/verify", self.verify_page, methods=["GET"]),
            Route("/bulletins/verify", self.verify_text, methods=["POST"]),
            Route("/bulletins/{public_id}", self.bulletin, methods=["GET"]),
            Mount("/public/static", app=StaticFiles(directory=HERE / "static"), name="public"),
        ]

    # -- plumbing ---------------------------------------------------------------------------

    def locale_of(self, request: Request) -> str:
        """The page's language: ?lang=, the cookie, the browser's, the default."""
        return request_locale(request, self.settings.default_locale)

    @staticmethod
    def _with_lang(request: Request, code: str) -> str:
        """This page in another language: its page number kept, nothing else of the query (a
        cached page must not carry what its first reader happened to add)."""
        try:
            number = page_number(request.query_params)
        except BadRequest:
            number = 1
        query = {"page": str(number)} if number > 1 else {}
        return request.url.path + "?" + urlencode({**query, "lang": code})

    def html(
        self, request: Request, template: str, context: Mapping[str, Any], locale: str
    ) -> bytes:
        """A page rendered in the locale."""
        with use_locale(locale):
            return (
                self.env.get_template(template)
                .render(
                    locale=locale,
                    dir="rtl" if is_rtl(locale) else "ltr",
                    here=request.url.path,
                    limit=VERIFY_CHARACTERS,
                    languages=[
                        (code, SHORT_LANGUAGE_NAMES[code], self._with_lang(request, code))
                        for code in LOCALES
                    ],
                    site_pages=[
                        ("/", _("The Initiative")),
                        ("/declaration", _("The declaration")),
                        ("/signatories", _("Signatories")),
                        ("/bulletins", _("Bulletins")),
                        ("/bulletins/verify", _("Check a bulletin")),
                    ],
                    **context,
                )
                .encode("utf-8")
            )

    async def cached(
        self, key: tuple[str, ...], make: Callable[[], Awaitable[tuple[bytes, str]]]
    ) -> Rendered:
        """The page under `key`, made again when it is older than cache_seconds."""
        found = self.cache.get(key)
        if found is not None:
            self.cache.move_to_end(key)
            if time.monotonic() - found.made < self.cache_seconds:
                return found
        under_way = self.making.get(key)
        if under_way is None:
            under_way = asyncio.ensure_future(self._make(key, make))
            self.making[key] = under_way
            under_way.add_done_callback(lambda done: self._made(key, done))
        if found is not None and self.cache_seconds > 0:
            # Stale by less than a render: this reader gets it now, and the page is made
            # again meanwhile (readers do not queue behind every page's renewal at once).
            return found
        # shield: one reader going away must not cancel what the others wait for
        return await asyncio.shield(under_way)

    def _made(self, key: tuple[str, ...], done: asyncio.Future[Rendered]) -> None:
        """Forget a finished rendering; log it if it failed (a renewal no reader waits for)."""
        self.making.pop(key, None)
        if not done.cancelled() and done.exception() is not None:
            logger.warning("a public page could not be made: %r", done.exception())

    async def _make(
        self, key: tuple[str, ...], make: Callable[[], Awaitable[tuple[bytes, str]]]
    ) -> Rendered:
        """Make a page and keep it."""
        body, media_type = await make()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        made = Rendered(body, media_type, etag, time.monotonic())
        self.cache[key] = made
        while len(self.cache) > CACHE_ENTRIES:
            self.cache.popitem(last=False)
        return made

    def send(self, request: Request, page: Rendered, *, attachment: str | None = None) -> Response:
        """The page, or 304 when the browser has it already; cacheable, under the CSP."""
        headers = {"ETag": page.etag, "Vary": "Accept-Language, Cookie"}
        chosen = request.query_params.get("lang") in LOCALES
        # A page whose language came from ?lang= sets the cookie: no shared cache may keep it.
        headers["Cache-Control"] = f"{'private' if chosen else 'public'}, max-age={MAX_AGE}"
        if attachment:
            headers["Content-Disposition"] = f'attachment; filename="{attachment}"'
        wanted = request.headers.get("if-none-match", "")
        if page.status == 200 and page.etag in {tag.strip() for tag in wanted.split(",")}:
            response = Response(status_code=304, headers=headers)
        else:
            response = Response(
                page.body, status_code=page.status, media_type=page.media_type, headers=headers
            )
        self.protect(response)
        if chosen:
            response.set_cookie(
                LANG_COOKIE,
                str(request.query_params["lang"]),
                max_age=365 * 86400,
                httponly=True,
                samesite="lax",
                secure=self.secure,
            )
        return response

    @staticmethod
    def protect(response: Response) -> None:
        """The headers every public answer carries."""
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "strict-origin-when-cross-origin"

    def problem(self, request: Request, locale: str, status: int, template: str) -> Response:
        """An error page (400, 404, 503) in the reader's language, never cached."""
        body = self.html(request, template, {}, locale)
        response = Response(body, status_code=status, media_type="text/html; charset=utf-8")
        response.headers["Cache-Control"] = "no-store"
        self.protect(response)
        return response

    async def page(
        self,
        request: Request,
        key: tuple[str, ...],
        make: Callable[[], Awaitable[tuple[bytes, str]]],
        *,
        attachment: str | None = None,
    ) -> Response:
        """A cached page's answer; 503 when the database does not answer."""
        try:
            rendered = await self.cached(key, make)
        except (DBAPIError, OSError):
            logger.warning("a public page could not be read: the database is unavailable")
            return self.problem(request, self.locale_of(request), 503, "unavailable.html")
        return self.send(request, rendered, attachment=attachment)

    # -- pages ------------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        """The Initiative in a paragraph, and how to reach the bot, with a QR code for each."""
        locale = self.locale_of(request)

        async def make() -> tuple[bytes, str]:
            async with self.db.read() as connection:
                signed = await connection.scalar(
                    select(func.count()).select_from(Signature).where(signatures.VERIFIED)
                )
            telegram = None
            if self.settings.telegram_bot_username:
                url = f"https://t.me/{self.settings.telegram_bot_username}"
                with use_locale(locale):
                    telegram = {
                        "url": url,
                        "name": "@" + self.settings.telegram_bot_username,
                        "qr": qr_svg(url),
                        "deep": [(f"{url}?start={code}", _(label)) for code, label in DEEP_LINKS],
                    }
            whatsapp = None
            number = whatsapp_number(self.settings.twilio_whatsapp_from)
            if number is not None:
                whatsapp = {"number": number[0], "url": number[1], "qr": qr_svg(number[1])}
            with use_locale(locale):
                counted = ngettext(
                    "%(count)s organization has signed the declaration (verified).",
                    "%(count)s organizations have signed the declaration (verified).",
                    signed or 0,
                ) % {"count": format_number(signed or 0)}
            context = {"telegram": telegram, "whatsapp": whatsapp, "counted": counted}
            return self.html(request, "home.html", context, locale), "text/html; charset=utf-8"

        return await self.page(request, ("home", locale), make)

    async def declaration(self, request: Request) -> Response:
        """The declaration in each language, with its version and each text's SHA-256."""
        locale = self.locale_of(request)

        async def make() -> tuple[bytes, str]:
            order = [locale, *(code for code in LOCALES if code != locale)]
            texts = [
                {
                    "locale": code,
                    "name": SHORT_LANGUAGE_NAMES[code],
                    "dir": "rtl" if is_rtl(code) else "ltr",
                    "text": long_text("declaration", code),
                    "sha256": declaration.sha256(code),
                }
                for code in order
            ]
            context = {"texts": texts, "version": declaration.VERSION}
            html = self.html(request, "declaration.html", context, locale)
            return html, "text/html; charset=utf-8"

        return await self.page(request, ("declaration", locale), make)

    async def signatories(self, request: Request) -> Response:
        """The verified organizations (never a representative), their counts, paged."""
        locale = self.locale_of(request)
        try:
            number = page_number(request.query_params)
        except BadRequest:
            return self.problem(request, locale, 400, "bad_request.html")

        async def make() -> tuple[bytes, str]:
            verified = signatures.VERIFIED
            async with self.db.read() as connection:
                by_governorate = (
                    await connection.execute(
                        select(Signature.governorate, func.count())
                        .where(verified)
                        .group_by(Signature.governorate)
                    )
                ).all()
                by_kind = (
                    await connection.execute(
                        select(Signature.org_type, func.count())
                        .where(verified)
                        .group_by(Signature.org_type)
                    )
                ).all()
                total, rows = await signatures.signatories(
                    connection, (number - 1) * SIGNATORIES_PAGE, SIGNATORIES_PAGE
                )
            pages = max(1, -(-total // SIGNATORIES_PAGE))
            with use_locale(locale):
                organizations = [
                    {
                        "names": [n for n in (row.name_ar, row.name_en) if n],
                        "kind": signatures.type_text(row.org_type),
                        "governorate": _place(row.governorate, locale),
                        "city": row.city,
                    }
                    for row in rows
                ]
                governorates = sorted(
                    ((_place(code, locale), count) for code, count in by_governorate),
                    key=lambda item: -item[1],
                )
                kinds = sorted(
                    ((signatures.type_text(code), count) for code, count in by_kind),
                    key=lambda item: -item[1],
                )
                counted = ngettext(
                    "%(count)s verified organization", "%(count)s verified organizations", total
                ) % {"count": format_number(total)}
            context = {
                "organizations": organizations,
                "governorates": governorates,
                "kinds": kinds,
                "counted": counted,
                **_paging(number, pages),
            }
            html = self.html(request, "signatories.html", context, locale)
            return html, "text/html; charset=utf-8"

        return await self.page(request, ("signatories", locale, str(number)), make)

    async def signatories_file(self, request: Request) -> Response:
        """Every verified organization as CSV or JSON: the public fields of the export."""
        fmt = request.path_params["fmt"]
        if fmt not in ("csv", "json"):
            return self.problem(request, self.locale_of(request), 404, "not_found.html")

        async def make() -> tuple[bytes, str]:
            names = list(exports.PUBLIC_SIGNATURE_FIELDS)
            async with self.db.reading() as reading:
                found = (
                    await reading.scalars(
                        select(Signature).where(signatures.VERIFIED).order_by(Signature.id)
                    )
                ).all()
                rows = [exports.signature_record(s, {}, private=False) for s in found]
            if fmt == "json":
                return (
                    json.dumps(rows, ensure_ascii=False, indent=1).encode("utf-8"),
                    "application/json",
                )
            out = io.StringIO()
            writer = csv.writer(out)
            writer.writerow(names)
            for row in rows:
                writer.writerow(exports.csv_row(row, names))
            return out.getvalue().encode("utf-8"), "text/csv; charset=utf-8"

        return await self.page(
            request, ("signatories-file", fmt), make, attachment=f"icssi-signatories.{fmt}"
        )

    async def archive(self, request: Request) -> Response:
        """The published bulletins, newest first: id, date, every language's text and hash."""
        locale = self.locale_of(request)
        try:
            number = page_number(request.query_params)
        except BadRequest:
            return self.problem(request, locale, 400, "bad_request.html")

        async def make() -> tuple[bytes, str]:
            async with self.db.read() as connection:
                published = _published()
                total = await connection.scalar(
                    select(func.count()).select_from(Bulletin).where(*published)
                )
                rows = (
                    await connection.execute(
                        select(
                            Bulletin.public_id,
                            Bulletin.published_at,
                            Bulletin.texts,
                            Bulletin.hashes,
                        )
                        .where(*published)
                        .order_by(Bulletin.published_at.desc(), Bulletin.id.desc())
                        .limit(BULLETINS_PAGE)
                        .offset((number - 1) * BULLETINS_PAGE)
                    )
                ).all()
            total = total or 0
            pages = max(1, -(-total // BULLETINS_PAGE))
            with use_locale(locale):
                items = [self._bulletin_view(row, locale) for row in rows]
                counted = ngettext(
                    "%(count)s published bulletin", "%(count)s published bulletins", total
                ) % {"count": format_number(total)}
            context = {
                "bulletins": items,
                "counted": counted,
                **_paging(number, pages),
            }
            html = self.html(request, "bulletins.html", context, locale)
            return html, "text/html; charset=utf-8"

        return await self.page(request, ("bulletins", locale, str(number)), make)

    def _bulletin_view(self, row: Any, locale: str) -> dict[str, Any]:
        """A published bulletin as the pages show it: the reader's language first."""
        texts = dict(row.texts or {})
        order = [code for code in (locale, *LOCALES) if code in texts]
        return {
            "public_id": row.public_id,
            "date": format_datetime(row.published_at, self.settings.timezone)
            if row.published_at
            else "",
            "texts": [
                {
                    "locale": code,
                    "name": SHORT_LANGUAGE_NAMES[code],
                    "dir": "rtl" if is_rtl(code) else "ltr",
                    "title": texts[code]["title"].strip(),
                    "text": texts[code]["text"].strip(),
                    "sha256": (row.hashes or {}).get(code)
                    or bulletins.sha256(bulletins.plain(texts[code])),
                }
                for code in dict.fromkeys(order)
            ],
        }

    async def bulletin(self, request: Request) -> Response:
        """One published bulletin; 404 for an id that no published bulletin has."""
        locale = self.locale_of(request)
        public_id = str(request.path_params["public_id"]).upper()
        if not bulletins.PUBLIC_ID.fullmatch(public_id):
            return self.problem(request, locale, 404, "not_found.html")

        async def make() -> tuple[bytes, str]:
            async with self.db.read() as connection:
                row = (
                    await connection.execute(
                        select(
                            Bulletin.public_id,
                            Bulletin.published_at,
                            Bulletin.texts,
                            Bulletin.hashes,
                        ).where(Bulletin.public_id == public_id, *_published())
                    )
                ).first()
            if row is None:
                return b"", "missing"
            with use_locale(locale):
                view = self._bulletin_view(row, locale)
            html = self.html(request, "bulletin.html", {"bulletin": view}, locale)
            return html, "text/html; charset=utf-8"

        try:
            page = await self.cached(("bulletin", locale, public_id), make)
        except (DBAPIError, OSError):
            logger.warning("a public page could not be read: the database is unavailable")
            return self.problem(request, locale, 503, "unavailable.html")
        if page.media_type == "missing":
            return self.problem(request, locale, 404, "not_found.html")
        return self.send(request, page)

    async def feed(self, request: Request) -> Response:
        """The latest published bulletins as an Atom feed, in the reader's language."""
        locale = self.locale_of(request)

        async def make() -> tuple[bytes, str]:
            async with self.db.read() as connection:
                rows = (
                    await connection.execute(
                        select(Bulletin.public_id, Bulletin.published_at, Bulletin.texts)
                        .where(*_published())
                        .order_by(Bulletin.published_at.desc(), Bulletin.id.desc())
                        .limit(FEED_ENTRIES)
                    )
                ).all()
            base = (self.settings.public_url or str(request.base_url)).rstrip("/")
            return _atom(rows, locale, base), "application/atom+xml; charset=utf-8"

        return await self.page(request, ("feed", locale), make)

    async def verify_page(self, request: Request) -> Response:
        """The form to paste a bulletin's text or id into."""
        locale = self.locale_of(request)

        async def make() -> tuple[bytes, str]:
            html = self.html(request, "verify.html", {"verdict": None, "pasted": ""}, locale)
            return html, "text/html; charset=utf-8"

        return await self.page(request, ("verify", locale), make)

    async def verify_text(self, request: Request) -> Response:
        """Whether the pasted text is a published bulletin, which one, or what differs."""
        from bot.web import Malformed, TooLarge, read_body

        locale = self.locale_of(request)
        try:
            raw = await read_body(request, VERIFY_LIMIT)
            content_type = request.headers.get("content-type", "")
            if "application/x-www-form-urlencoded" not in content_type:
                raise Malformed("not a form")
            try:
                fields = dict(
                    parse_qsl(
                        raw.decode("utf-8"),
                        keep_blank_values=True,
                        max_num_fields=10,
                        errors="strict",  # a %FF that is no UTF-8 is malformed, not a "?"
                    )
                )
            except ValueError as exc:  # UnicodeDecodeError too
                raise Malformed(type(exc).__name__) from None
        except TooLarge:
            return self._verify_refused(request, locale, 413, "too_long")
        except Malformed:
            return self.problem(request, locale, 400, "bad_request.html")
        pasted = fields.get("text", "").replace("\r\n", "\n").strip()
        if not pasted:
            return self._verify_refused(request, locale, 400, "empty")
        if len(pasted) > VERIFY_CHARACTERS:
            return self._verify_refused(request, locale, 413, "too_long")
        client = client_of(request, self.settings.trust_proxy)
        if self.checks.check(client) != "read" or self.all_checks.check("*") != "read":
            refused = self._verify_refused(request, locale, 429, "too_many")
            refused.headers["Retry-After"] = "60"
            return refused
        try:
            async with self.db.reading() as reading:
                verdict = await self.checker.verify(reading, pasted)
                view = None
                if verdict.bulletin is not None:
                    with use_locale(locale):
                        view = self._bulletin_view(verdict.bulletin, locale)
        except (DBAPIError, OSError):
            return self.problem(request, locale, 503, "unavailable.html")
        context = {"verdict": verdict, "bulletin": view, "pasted": pasted}
        body = self.html(request, "verify.html", context, locale)
        response = Response(body, media_type="text/html; charset=utf-8")
        response.headers["Cache-Control"] = "no-store"
        self.protect(response)
        return response

    def _verify_refused(self, request: Request, locale: str, status: int, why: str) -> Response:
        """The form again with why the text was not checked."""
        context = {"verdict": None, "pasted": "", "refused": why}
        body = self.html(request, "verify.html", context, locale)
        response = Response(body, status_code=status, media_type="text/html; charset=utf-8")
        response.headers["Cache-Control"] = "no-store"
        self.protect(response)
        return response


def _paging(number: int, pages: int) -> dict[str, Any]:
    """A listing's page number, page count and links to the pages either side."""
    return {
        "page": number,
        "pages": pages,
        "previous": f"?page={number - 1}" if number > 1 else None,
        "next": f"?page={number + 1}" if number < pages else None,
    }


def _published() -> tuple[Any, ...]:
    """The conditions of a published bulletin."""
    return (Bulletin.public_id.is_not(None), Bulletin.status.in_(bulletins.PUBLISHED))


def _place(pcode: str | None, locale: str) -> str:
    """A governorate's name in the locale."""
    found = gazetteer.place(pcode or "")
    return found.name(locale) if found is not None else (pcode or "")


def _atom(rows: Sequence[Any], locale: str, base: str) -> bytes:
    """An Atom 1.0 feed of published bulletins, each in `locale` or its fallback."""
    ns = "http://www.w3.org/2005/Atom"
    ET.register_namespace("", ns)
    feed = ET.Element(f"{{{ns}}}feed", {"xml:lang": locale})
    with use_locale(locale):
        ET.SubElement(feed, f"{{{ns}}}title").text = _(
            "Bulletins of the Iraqi Civil Society Solidarity Initiative"
        )
    ET.SubElement(feed, f"{{{ns}}}id").text = f"{base}/bulletins.atom"
    ET.SubElement(feed, f"{{{ns}}}link", {"rel": "self", "href": f"{base}/bulletins.atom"})
    ET.SubElement(feed, f"{{{ns}}}link", {"rel": "alternate", "href": f"{base}/bulletins"})
    newest = rows[0].published_at if rows else None
    ET.SubElement(feed, f"{{{ns}}}updated").text = (
        newest.isoformat(timespec="seconds") if newest else "2014-07-11T00:00:00+00:00"
    )
    author = ET.SubElement(feed, f"{{{ns}}}author")
    ET.SubElement(author, f"{{{ns}}}name").text = "ICSSI"
    for row in rows:
        texts = dict(row.texts or {})
        if not texts:
            continue
        shown = next(code for code in (locale, *bulletins.FALLBACK, *texts) if code in texts)
        entry = ET.SubElement(feed, f"{{{ns}}}entry", {"xml:lang": shown})
        ET.SubElement(entry, f"{{{ns}}}title").text = texts[shown]["title"].strip()
        ET.SubElement(entry, f"{{{ns}}}id").text = f"{base}/bulletins/{row.public_id}"
        link = {"rel": "alternate", "href": f"{base}/bulletins/{row.public_id}"}
        ET.SubElement(entry, f"{{{ns}}}link", link)
        stamp = row.published_at.isoformat(timespec="seconds")
        ET.SubElement(entry, f"{{{ns}}}updated").text = stamp
        ET.SubElement(entry, f"{{{ns}}}published").text = stamp
        content = ET.SubElement(entry, f"{{{ns}}}content", {"type": "text"})
        content.text = texts[shown]["text"].strip()
    written: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return written
