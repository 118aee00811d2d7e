"""Signing in to the console without a password: a one-time link sent in the person's chat.

A link is valid LINK_MINUTES, used once, and bound to the address it was sent to; it opens a
session (CONSOLE_SESSION_HOURS) that ends on sign-out or when the person's role is removed.
Only hashes of links and session cookies are stored: a copy of the database signs nobody in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot.config import Settings
from bot.models import AuditEntry, Person, SignInLink, WebSession, utcnow

LINK_MINUTES = 10
LINKS_PER_HOUR = 5  # links one person may ask for in an hour
PATH = "/console/sign-in/"


class NoRole(Exception):
    """The address has no role: no link for it."""


class TooManyLinks(Exception):
    """The person asked for LINKS_PER_HOUR links within the hour."""


@dataclass(frozen=True)
class Signed:
    """Who a valid session belongs to, with their role and the session's form token."""

    address: str
    role: str
    name: str | None
    csrf: str
    expires_at: datetime


def digest(token: str) -> str:
    """The stored form of a link or cookie token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def base_url(settings: Settings) -> str:
    """Where the console is reached: PUBLIC_URL, else this machine's web port."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return f"http://127.0.0.1:{settings.port}"


async def new_link(
    session: AsyncSession, settings: Settings, address: str, *, now: datetime | None = None
) -> str:
    """A fresh sign-in link (its whole URL) for a person with a role; NoRole, TooManyLinks."""
    now = now or utcnow()
    if await session.get(Person, address) is None:
        raise NoRole(address)
    recent = await session.scalar(
        select(func.count())
        .select_from(SignInLink)
        .where(SignInLink.address == address, SignInLink.created_at > now - timedelta(hours=1))
    )
    if (recent or 0) >= LINKS_PER_HOUR:
        raise TooManyLinks(address)
    token = secrets.token_urlsafe(32)
    session.add(
        SignInLink(
            token_hash=digest(token),
            address=address,
            created_at=now,
            expires_at=now + timedelta(minutes=LINK_MINUTES),
        )
    )
    return base_url(settings) + PATH + token


async def redeem(
    session: AsyncSession, settings: Settings, token: str, *, now: datetime | None = None
) -> str | None:
    """Use a link once: the new session's cookie token, or None (unknown, used or expired)."""
    now = now or utcnow()
    if not token or len(token) > 100:
        return None
    # One statement marks it used: two clicks at once cannot both win.
    claimed = await session.execute(
        update(SignInLink)
        .where(
            SignInLink.token_hash == digest(token),
            SignInLink.used_at.is_(None),
            SignInLink.expires_at > now,
        )
        .values(used_at=now)
        .returning(SignInLink.address)
    )
    address = claimed.scalar_one_or_none()
    if address is None:
        return None
    cookie = secrets.token_urlsafe(32)
    session.add(
        WebSession(
            token_hash=digest(cookie),
            address=address,
            csrf=secrets.token_urlsafe(24),
            created_at=now,
            expires_at=now + timedelta(hours=settings.console_session_hours),
        )
    )
    await session.execute(
        update(Person).where(Person.address == address).values(last_sign_in_at=now)
    )
    session.add(AuditEntry(at=now, actor=address, action="console:sign-in", detail={}))
    return cookie


async def signed(
    connection: AsyncSession | AsyncConnection, cookie: str | None, *, now: datetime | None = None
) -> Signed | None:
    """The person a session cookie belongs to, if the session is alive and they have a role."""
    if not cookie or len(cookie) > 100:
        return None
    now = now or utcnow()
    row = (
        await connection.execute(
            select(
                WebSession.address,
                Person.role,
                Person.name,
                WebSession.csrf,
                WebSession.expires_at,
            )
            .join(Person, Person.address == WebSession.address)
            .where(WebSession.token_hash == digest(cookie), WebSession.expires_at > now)
        )
    ).one_or_none()
    if row is None:
        return None
    address, role, name, csrf, expires_at = row
    return Signed(address, role, name, csrf, expires_at)


def csrf_ok(who: Signed, given: str | None) -> bool:
    """Whether a posted form token is this session's."""
    return given is not None and hmac.compare_digest(who.csrf.encode(), given.encode())


async def sign_out(session: AsyncSession, cookie: str) -> None:
    """End a session."""
    await session.execute(delete(WebSession).where(WebSession.token_hash == digest(cookie)))
