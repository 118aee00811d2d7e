"""The web app: webhooks of the platforms and /healthz, in one Starlette app."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.db import Database


def create_app(db: Database) -> Starlette:
    """The Starlette app; channels add their webhook routes to it."""

    async def healthz(_request: Request) -> JSONResponse:
        """200 when the database answers, 503 when it does not."""
        if await db.ping():
            return JSONResponse({"status": "ok", "database": "ok"})
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)

    return Starlette(routes=[Route("/healthz", healthz, methods=["GET"])])
