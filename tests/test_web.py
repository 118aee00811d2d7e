"""The web app's health check answers for the database."""

from __future__ import annotations

import httpx

from bot.db import Database
from bot.web import create_app


async def test_healthz_with_the_database_up(db: Database) -> None:
    transport = httpx.ASGITransport(app=create_app(db))
    async with httpx.AsyncClient(transport=transport, base_url="http://bot.test") as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


async def test_healthz_with_the_database_gone(tmp_path: object) -> None:
    broken = Database("postgresql+asyncpg://nobody:nothing@127.0.0.1:1/none")
    transport = httpx.ASGITransport(app=create_app(broken))
    async with httpx.AsyncClient(transport=transport, base_url="http://bot.test") as client:
        response = await client.get("/healthz")
    await broken.close()
    assert response.status_code == 503
    assert response.json()["database"] == "unreachable"
