"""The web app: the platforms' webhooks and /healthz, in one Starlette app."""

from __future__ import annotations

import hmac
import json
import logging
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from telegram import Update

from bot.db import Database

if TYPE_CHECKING:
    from bot.channels.telegram import TelegramChannel

logger = logging.getLogger(__name__)


def create_app(db: Database, telegram: TelegramChannel | None = None) -> Starlette:
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

    return Starlette(routes=routes)
