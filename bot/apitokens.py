"""Partners' bearer tokens for the read-only API: made, listed and revoked by admins, checked on
every request, counted into the audit log a minute at a time, and rate-limited per token.

Only a token's SHA-256 is stored: the token itself is shown once, when it is made.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot.db import Database
from bot.models import ApiToken, AuditEntry, utcnow

logger = logging.getLogger(__name__)

SCOPES = ("reports", "figures", "signatories")
PREFIX = "icssi_"  # says what a token is when one is found in a log or a file
NAME_LIMIT = 100


class TokenError(ValueError):
    """A token that cannot be made or revoked: the message says why, for the CLI."""


def digest(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


async def create(session: AsyncSession, name: str, scope: str, actor: str) -> tuple[int, str]:
    """A new token for a partner: its id and the token, which is never stored. Audited."""
    name = name.strip()
    if not 0 < len(name) <= NAME_LIMIT:
        raise TokenError(f"a name of 1 to {NAME_LIMIT} characters, please")
    if scope not in SCOPES:
        raise TokenError("the scope is one of " + ", ".join(SCOPES))
    token = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(token_hash=digest(token), name=name, scope=scope, created_by=actor)
    session.add(row)
    await session.flush()
    session.add(
        AuditEntry(
            actor=actor,
            action="api-token:create",
            detail={"token": row.id, "name": name, "scope": scope},
        )
    )
    return row.id, token


async def everyone(session: AsyncSession) -> list[ApiToken]:
    """Every token ever made, revoked ones too, oldest first."""
    return list((await session.scalars(select(ApiToken).order_by(ApiToken.id))).all())


async def revoke(session: AsyncSession, token_id: int, actor: str) -> ApiToken:
    """Revoke a token at once (the next request with it gets 403). Audited."""
    row = await session.get(ApiToken, token_id, with_for_update=True)
    if row is None:
        raise TokenError(f"no token {token_id}: `icssi-bot api-token list` shows them")
    if row.revoked_at is not None:
        raise TokenError(f"token {token_id} was revoked already")
    row.revoked_at = utcnow()
    session.add(
        AuditEntry(
            actor=actor, action="api-token:revoke", detail={"token": row.id, "name": row.name}
        )
    )
    return row


@dataclass(frozen=True)
class Holder:
    """Whose token a request carries, as the API needs it."""

    id: int
    name: str
    scope: str
    revoked: bool


async def holder(connection: AsyncConnection, token: str) -> Holder | None:
    """The token's holder, revoked or not; None for a token never made. A read, no lock."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    row = (
        await connection.execute(
            select(ApiToken.id, ApiToken.name, ApiToken.scope, ApiToken.revoked_at).where(
                ApiToken.token_hash == digest(token)
            )
        )
    ).first()
    if row is None:
        return None
    return Holder(row.id, row.name, row.scope, row.revoked_at is not None)


class RateLimit:
    """At most `per_minute` requests a token in any 60 seconds (a sliding window)."""

    def __init__(self, per_minute: int, window: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window = window
        self.seen: dict[int, deque[float]] = {}

    def wait(self, token_id: int, now: float | None = None) -> float:
        """0 and the request counted if the token may make one now; else the seconds to wait."""
        now = time.monotonic() if now is None else now
        times = self.seen.setdefault(token_id, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) >= self.per_minute:
            return max(times[0] + self.window - now, 0.001)
        times.append(now)
        return 0.0


@dataclass
class Minute:
    """One token's requests in one minute, before they are written to the audit log."""

    name: str
    count: int = 0
    paths: dict[str, int] = field(default_factory=dict)


class Usage:
    """Each use of a token, audited: one line per token per minute, with the count and paths.

    A line per request would flood the log (a partner's script may call every second); a
    minute is written once it is over, by `flush`, which the API calls at the next request
    and at least every minute, and once more when the app stops.
    """

    def __init__(self) -> None:
        self.pending: dict[tuple[int, datetime], Minute] = {}

    def note(self, holder: Holder, path: str, now: datetime | None = None) -> None:
        """Count one request of a token."""
        minute = (now or utcnow()).replace(second=0, microsecond=0)
        entry = self.pending.setdefault((holder.id, minute), Minute(holder.name))
        entry.count += 1
        entry.paths[path] = entry.paths.get(path, 0) + 1

    def due(self, now: datetime | None = None, *, everything: bool = False) -> bool:
        """Whether a finished minute waits to be written (any minute, with `everything`)."""
        this_minute = (now or utcnow()).replace(second=0, microsecond=0)
        return any(everything or minute < this_minute for _id, minute in self.pending)

    async def flush(
        self, db: Database, now: datetime | None = None, *, everything: bool = False
    ) -> int:
        """Write the finished minutes (all, with `everything`) to the audit log; how many."""
        this_minute = (now or utcnow()).replace(second=0, microsecond=0)
        ready = sorted(key for key in self.pending if everything or key[1] < this_minute)
        if not ready:
            return 0
        taken = {key: self.pending.pop(key) for key in ready}
        try:
            async with db.transaction() as session:
                for (token_id, minute), entry in taken.items():
                    session.add(
                        AuditEntry(
                            at=minute,
                            actor=f"api:{entry.name}"[:100],
                            action="api:use",
                            detail={
                                "token": token_id,
                                "minute": minute.isoformat(timespec="minutes"),
                                "count": entry.count,
                                "paths": entry.paths,
                            },
                        )
                    )
                    await session.execute(
                        update(ApiToken)
                        .where(ApiToken.id == token_id)
                        .values(last_used_at=minute + timedelta(seconds=59))
                    )
        except Exception:
            # Kept for the next try rather than lost: the counts are the audit.
            for key, entry in taken.items():
                kept = self.pending.setdefault(key, Minute(entry.name))
                kept.count += entry.count
                for path, count in entry.paths.items():
                    kept.paths[path] = kept.paths.get(path, 0) + count
            raise
        return len(taken)
