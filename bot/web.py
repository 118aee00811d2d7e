"""The web app: the platforms' webhooks and /healthz, in one Starlette app."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from sqlalchemy.exc import DBAPIError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from telegram import Update

from bot.db import Database

if TYPE_CHECKING:
    from bot.channels.telegram import TelegramChannel
    from bot.channels.whatsapp import WhatsAppChannel

logger = logging.getLogger(__name__)


def create_app(
    db: Database,
    telegram: TelegramChannel | None = None,
    whatsapp: WhatsAppChannel | None = None,
) -> Starlette:
    """The Starlette app, with the webhook of every channel that receives by webhook."""

    async def healthz(_request: Request) -> JSONResponse:
        """200 when the database answers, 503 when it does not."""
        if await db.ping():
            return JSONResponse({"status": "ok", "database": "ok"})
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)

    routes = [Route("/healthz", healthz, methods=["GET"])]

    if telegram is not None and telegram.webhook:
        channel = telegram
        secret = (channel.settings.telegram_webhook_secret or "").encode()

        async def telegram_webhook(request: Request) -> Response:
            """One update from Telegram: 403 without the secret, 503 when it must come again."""
            given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "").encode()
            if not secret or not hmac.compare_digest(given, secret):
                return Response(status_code=403)
            try:
                update = Update.de_json(json.loads(await request.body()), channel.app.bot)
            except (ValueError, TypeError, KeyError):
                return Response(status_code=400)
            try:
                await channel.handle_update(update)
            except DBAPIError:
                # Telegram delivers the update again later; nothing was half-done.
                logger.warning("database unavailable; update %s refused", update.update_id)
                return Response(status_code=503)
            return Response(status_code=200)

        routes.append(Route("/telegram", telegram_webhook, methods=["POST"]))

    if whatsapp is not None:
        routes += whatsapp_routes(whatsapp)

    return Starlette(routes=routes)


class Form(dict[str, list[str]]):
    """A form's fields, each with every value sent (Twilio's validator signs them all)."""

    def getall(self, key: str) -> list[str]:
        """Every value of a field (the name twilio's RequestValidator looks for)."""
        return self[key]


def whatsapp_routes(channel: WhatsAppChannel) -> list[Route]:
    """Twilio's two webhooks: messages, and the status of the messages we sent."""
    from bot.channels.whatsapp import TWIML_EMPTY

    async def signed_form(request: Request) -> dict[str, str] | None:
        """The request's form, if Twilio signed it; else None."""
        pairs = parse_qsl(
            (await request.body()).decode("utf-8", "replace"), keep_blank_values=True
        )
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
        handle: Callable[[dict[str, str]], Awaitable[object]], done: Callable[[], Response]
    ) -> Callable[[Request], Awaitable[Response]]:
        """A Twilio webhook: 403 unsigned, 503 when the database is away, else `done()`."""

        async def endpoint(request: Request) -> Response:
            form = await signed_form(request)
            if form is None:
                return Response(status_code=403)
            try:
                await handle(form)
            except DBAPIError:
                logger.warning("database unavailable; %s refused", request.url.path)
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
