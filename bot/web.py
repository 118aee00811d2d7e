"""The web app: the platforms' webhooks and /healthz, in one Starlette app."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl

import httpx
from sqlalchemy.exc import DBAPIError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from telegram import Update
from telegram.error import TelegramError

from bot import bulletins
from bot.config import Settings
from bot.db import Database
from bot.webconsole import Console

if TYPE_CHECKING:
    from bot.channels.telegram import TelegramChannel
    from bot.channels.whatsapp import WhatsAppChannel

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Seconds within which the platforms (and health checks) get an answer. A locked or unreachable
# database would otherwise hold a request for SQLite's busy timeout (10 s) or a connection
# timeout, while Telegram holds back that chat's next updates behind it; a quick 503 makes it
# deliver the update again, and the engine skips it then if it was handled meanwhile.
ANSWER_WITHIN = 5.0
PICTURES_KEPT = 8  # bulletins' pictures held in memory: Twilio fetches one for every message
PICTURE_WITHIN = 30.0  # seconds to take a picture from the platform it was sent on


class TooLarge(Exception):
    """A request's body is over the route's limit (413)."""


class Malformed(Exception):
    """A request's body is not what the route takes (400); the message names the fault only."""


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, if it is at most `limit` bytes; else TooLarge, read no further.

    Content-Length is believed when it says too much (nothing is read), and the bytes are
    counted as they come whatever it says (a chunked body has none).
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isascii() or not declared.isdigit():
            raise Malformed("Content-Length is not a number")
        if int(declared) > limit:
            raise TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def telegram_update(raw: bytes, bot: Any) -> Update:
    """The Telegram update in a webhook's body; Malformed if it is not one."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested a thousand deep
        raise Malformed(type(exc).__name__) from None
    if not isinstance(data, dict) or type(data.get("update_id")) is not int:
        raise Malformed("not an update object")
    try:
        update = Update.de_json(data, bot)
        # python-telegram-bot does not check the fields' types: the adapter's reading must
        # succeed, and give texts where texts belong.
        from bot.channels.telegram import to_inbound

        inbound = to_inbound(update)
    except Exception as exc:  # any field of the wrong shape: the update is malformed
        raise Malformed(type(exc).__name__) from None
    if inbound is not None:
        texts = (inbound.text, inbound.payload, inbound.command, inbound.language_hint)
        if not all(value is None or isinstance(value, str) for value in texts):
            raise Malformed("a field of the wrong type")
        if not all(isinstance(arg, str) for arg in inbound.args):
            raise Malformed("a field of the wrong type")
    return update


def create_app(
    db: Database,
    telegram: TelegramChannel | None = None,
    whatsapp: WhatsAppChannel | None = None,
    answer_within: float = ANSWER_WITHIN,
    *,
    settings: Settings | None = None,
    wake: Callable[[str], None] | None = None,
) -> Starlette:
    """The Starlette app, with the webhook of every channel that receives by webhook; with
    `settings`, the coordinators' console under /console/ too."""
    late: set[asyncio.Task[Any]] = set()  # work that outlived its request's answer
    closing: list[Callable[[], Awaitable[None]]] = []  # called when the app stops

    def finished(task: asyncio.Task[Any]) -> None:
        """Forget late work once it is done; log it if it failed."""
        late.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("work that outlived its answer failed: %r", task.exception())

    async def within(work: Coroutine[Any, Any, T]) -> T:
        """The work's result if it is done in time; else TimeoutError, and it goes on alone."""
        task = asyncio.ensure_future(work)
        try:
            # shield: cancelling work in the middle of a database call would not free the
            # request sooner, and would lose an update that is about to be handled.
            return await asyncio.wait_for(asyncio.shield(task), answer_within)
        except (TimeoutError, asyncio.CancelledError):
            late.add(task)
            task.add_done_callback(finished)
            raise

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        """Nothing to start; on the way out, late work is given time to finish."""
        yield
        if late:  # let updates still being handled finish before the database is closed
            await asyncio.wait(set(late), timeout=30)
        for close in closing:
            await close()

    async def healthz(_request: Request) -> JSONResponse:
        """200 when the database answers, 503 when it does not (or not in time)."""
        try:
            healthy = await within(db.ping())
        except TimeoutError:
            healthy = False
        if healthy:
            return JSONResponse({"status": "ok", "database": "ok"})
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)

    routes: list[BaseRoute] = [Route("/healthz", healthz, methods=["GET"])]
    if settings is not None:
        routes += Console(db, settings, wake).routes()
        # The public pages and the partner API: anyone may read them, nothing is written.
        from bot.public import PublicSite
        from bot.public.api import PartnerApi

        api = PartnerApi(db, settings)
        routes += PublicSite(db, settings).routes() + api.routes()
        closing.append(api.close)

    if telegram is not None and telegram.webhook:
        channel = telegram
        secret = (channel.settings.telegram_webhook_secret or "").encode()
        max_body = channel.settings.telegram_max_body

        async def telegram_webhook(request: Request) -> Response:
            """One update from Telegram: 403 without the secret, 503 when it must come again."""
            given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "").encode()
            if not secret or not hmac.compare_digest(given, secret):
                return Response(status_code=403)
            try:
                raw = await read_body(request, channel.settings.telegram_max_body)
                update = telegram_update(raw, channel.app.bot)
            except TooLarge:
                logger.warning("a body over %d bytes to /telegram refused", max_body)
                return Response(status_code=413)
            except Malformed as exc:
                # Telegram would post it again and again after a 5xx; the content is not logged.
                logger.warning("a malformed update to /telegram refused: %s", exc)
                return Response(status_code=400)
            # A pressed button is answered in the response, and Telegram makes the call: one
            # Bot API request fewer for most updates.
            answer = channel.answer_in_response(update)
            try:
                await within(channel.handle_update(update, answered=answer is not None))
            except DBAPIError:
                # Telegram delivers the update again later; nothing was half-done.
                logger.warning("database unavailable; update %s refused", update.update_id)
                return Response(status_code=503)
            except TimeoutError:
                # Still being handled: Telegram delivers it again, and it is skipped if done.
                logger.warning("update %s not handled in time; asked again", update.update_id)
                return Response(status_code=503)
            return JSONResponse(answer) if answer is not None else Response(status_code=200)

        routes.append(Route("/telegram", telegram_webhook, methods=["POST"]))

    if telegram is not None or whatsapp is not None:
        routes.append(picture_route(db, telegram, whatsapp, within))

    if whatsapp is not None:
        routes += whatsapp_routes(whatsapp, within)

    return Starlette(routes=routes, lifespan=lifespan)


def picture_route(
    db: Database,
    telegram: TelegramChannel | None,
    whatsapp: WhatsAppChannel | None,
    within: Callable[[Coroutine[Any, Any, str | None]], Awaitable[str | None]],
) -> Route:
    """GET /media/bulletin/<public id>: a published bulletin's picture, for the other platform.

    A photo sent to the bot is known to the platform it came from only (a Telegram file id, or
    Twilio's address, which may need the account's credentials): this serves it, taken from
    there once and kept. Only published bulletins' pictures, which every subscriber gets
    anyway; drafts are not served.
    """
    kept: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
    # One fetch per picture, however many ask for it at once; the others wait for that one
    # only, and requests for other pictures (or unknown ids) wait for nothing.
    fetching: dict[str, asyncio.Future[tuple[bytes, str] | None]] = {}

    async def take(reference: str) -> tuple[bytes, str] | None:
        """The picture's bytes and type from the platform it came from (None: not here)."""
        source = bulletins.picture_source(reference)
        if source == "upload":  # uploaded on the console's bulletin desk: in the database
            return await bulletins.uploaded_picture(db, reference)
        if source == "telegram" and telegram is not None:
            return await telegram.picture(reference)
        if source == "whatsapp" and whatsapp is not None:
            return await whatsapp.picture(reference)
        return None

    async def fetch(public_id: str, reference: str) -> tuple[bytes, str] | None:
        """Take the picture from its platform and keep it; None if it could not be had."""
        try:
            async with asyncio.timeout(PICTURE_WITHIN):
                taken = await take(reference)
        except (TelegramError, httpx.HTTPError, ValueError, TimeoutError) as exc:
            logger.warning("bulletin %s: no picture from its platform: %s", public_id, exc)
            taken = None
        if taken is not None:
            kept[public_id] = taken
            while len(kept) > PICTURES_KEPT:
                kept.popitem(last=False)
        return taken

    async def picture(request: Request) -> Response:
        """The picture's bytes; 404 for no such published picture, 502 if the platform fails."""
        public_id = str(request.path_params["public_id"])
        found = kept.get(public_id)
        if found is not None:
            kept.move_to_end(public_id)
        else:
            under_way = fetching.get(public_id)
            if under_way is None:
                try:  # a read: an unknown id costs no lock and no write
                    reference = await within(bulletins.published_picture(db, public_id))
                except (DBAPIError, TimeoutError):
                    return Response(status_code=503)
                if reference is None:
                    return Response(status_code=404)
                under_way = fetching.get(public_id)  # another request may have begun meanwhile
                if under_way is None:
                    under_way = asyncio.ensure_future(fetch(public_id, reference))
                    fetching[public_id] = under_way
                    under_way.add_done_callback(lambda _f: fetching.pop(public_id, None))
            # shield: a client that goes away must not cancel the fetch the others wait for
            found = await asyncio.shield(under_way)
            if found is None:
                return Response(status_code=502)
        content, kind = found
        cache = {"Cache-Control": "public, max-age=86400"}
        return Response(content, media_type=kind, headers=cache)

    return Route("/media/bulletin/{public_id}", picture, methods=["GET"])


class Form(dict[str, list[str]]):
    """A form's fields, each with every value sent (Twilio's validator signs them all)."""

    def getall(self, key: str) -> list[str]:
        """Every value of a field (the name twilio's RequestValidator looks for)."""
        return self[key]


def whatsapp_routes(
    channel: WhatsAppChannel, within: Callable[[Coroutine[Any, Any, Any]], Awaitable[Any]]
) -> list[Route]:
    """Twilio's two webhooks: messages, and the status of the messages we sent."""
    from bot.channels.whatsapp import TWIML_EMPTY

    max_body = channel.settings.twilio_max_body

    async def signed_form(request: Request) -> dict[str, str] | None:
        """The request's form, if Twilio signed it; else None. TooLarge and Malformed for a
        body over the limit or not a form."""
        raw = await read_body(request, max_body)
        try:
            pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
        except ValueError as exc:  # UnicodeDecodeError too
            raise Malformed(type(exc).__name__) from None
        form = Form()
        for key, value in pairs:
            form.setdefault(key, []).append(value)
        url = channel.public_url(
            request.url.path, request.url.query, request.headers, request.url.scheme
        )
        if not channel.signed(url, form, request.headers.get("X-Twilio-Signature")):
            logger.warning("a request to %s without a valid Twilio signature", request.url.path)
            return None
        return {key: values[-1] for key, values in form.items()}

    def twilio_route(
        handle: Callable[[dict[str, str]], Coroutine[Any, Any, object]],
        done: Callable[[], Response],
    ) -> Callable[[Request], Awaitable[Response]]:
        """A Twilio webhook: 403 unsigned, 503 when the database is away, else `done()`."""

        async def endpoint(request: Request) -> Response:
            try:
                form = await signed_form(request)
            except TooLarge:
                logger.warning("a body over %d bytes to %s refused", max_body, request.url.path)
                return Response(status_code=413)
            except Malformed as exc:  # the content is not logged
                logger.warning("a malformed form to %s refused: %s", request.url.path, exc)
                return Response(status_code=400)
            if form is None:
                return Response(status_code=403)
            try:
                # In time, or it goes on alone: not lost even if Twilio does not post it again.
                await within(handle(form))
            except (DBAPIError, TimeoutError):
                logger.warning("database unavailable or slow; %s refused", request.url.path)
                return Response(status_code=503)  # Twilio may post it again (see README)
            return done()

        return endpoint

    # A message gets an empty TwiML answer (replies go by the REST API); a status, 204.
    twilio_whatsapp = twilio_route(
        channel.handle, lambda: Response(TWIML_EMPTY, media_type="text/xml")
    )
    twilio_status = twilio_route(channel.record_status, lambda: Response(status_code=204))

    return [
        Route("/twilio/whatsapp", twilio_whatsapp, methods=["POST"]),
        Route("/twilio/status", twilio_status, methods=["POST"]),
    ]
