"""Loopback helpers for tests that start servers: a free port, and waiting for /healthz."""

from __future__ import annotations

import asyncio
import socket

import httpx


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def healthy(port: int, tries: int = 300) -> None:
    """Wait until the bot's web app on `port` answers /healthz with 200 (0.1 s between tries)."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        for _ in range(tries):
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"nothing answers on port {port}")
