"""How many messages one person may send: past the limit, one notice and nothing more."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from starlette.requests import Request

Verdict = Literal["read", "tell", "drop"]

WINDOW = 60.0  # seconds: the limit is per minute, counted over the last one at each message
REMEMBERED = 10_000  # people counted at once; beyond, those idle for a minute are forgotten


def client_of(request: Request, trust_proxy: bool) -> str:
    """Who a web request comes from, as the limits count clients: the connection's address, or
    behind our own proxy (TRUST_PROXY) the first of X-Forwarded-For, since the proxy's own
    address would be everyone's."""
    client = request.client.host if request.client else "?"
    if trust_proxy:
        client = request.headers.get("x-forwarded-for", client).split(",")[0].strip()
    return client


class InboundLimit:
    """Counts each person's messages over the last minute (in this process).

    Below the limit a message is read ("read"); the first one past it gets a notice ("tell"),
    the others are dropped ("drop") until the minute has room again. Only messages that are
    read count: a person who stops flooding is read again a minute after their last message
    that was. One person's flood would otherwise queue two replies a message, which the sender
    sends to that chat at one a second, for minutes.
    """

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self.read: dict[str, deque[float]] = {}  # address -> when its messages read came
        self.told: dict[str, float] = {}  # address -> when it was told to slow down
        self.roles: dict[str, tuple[float, bool]] = {}  # address -> (when asked, has a role)

    async def verdict(self, address: str, has_role: Callable[[str], Awaitable[bool]]) -> Verdict:
        """`check`, except that a person with a role is always read.

        Only a message the limit would refuse asks `has_role` (a database read), and its answer
        holds for a minute: everyone else's messages cost nothing more, and a flood costs one
        read a minute. A role given or taken counts within that minute.
        """
        verdict = self.check(address)
        if verdict == "read":
            return verdict
        now = self.clock()
        known = self.roles.get(address)
        if known is None or known[0] <= now - WINDOW:
            if address not in self.roles and len(self.roles) >= REMEMBERED:
                for stale in [a for a, (at, _role) in self.roles.items() if at <= now - WINDOW]:
                    del self.roles[stale]
            known = self.roles[address] = (now, await has_role(address))
        if not known[1]:
            return verdict
        # Never told to slow down: should the role go, the notice comes with the next refusal.
        self.told.pop(address, None)
        return "read"

    def check(self, address: str) -> Verdict:
        """Count a message from `address` arriving now and say what to do with it."""
        now = self.clock()
        times = self.read.get(address)
        if times is None:
            if len(self.read) >= REMEMBERED:
                self._forget(now)
            times = self.read[address] = deque()
        while times and times[0] <= now - WINDOW:
            times.popleft()
        if len(times) < self.per_minute:
            times.append(now)
            self.told.pop(address, None)
            return "read"
        told = self.told.get(address)
        if told is not None and told > now - WINDOW:
            return "drop"
        self.told[address] = now
        return "tell"

    def _forget(self, now: float) -> None:
        """Forget the people with no message read in the last minute."""
        idle = [a for a, times in self.read.items() if not times or times[-1] <= now - WINDOW]
        for address in idle:
            del self.read[address]
            self.told.pop(address, None)


class Failures:
    """Counts each client's failed attempts over the last `window` seconds (in this process), so
    that a client with `most` of them is turned away before any work is done for it."""

    def __init__(
        self, most: int, clock: Callable[[], float] = time.monotonic, *, window: float = WINDOW
    ) -> None:
        self.most = most
        self.clock = clock
        self.window = window
        self.failed: dict[str, deque[float]] = {}

    def over(self, client: str) -> bool:
        """Whether `client` failed `most` times in the last `window` seconds."""
        times = self.failed.get(client)
        if times is None:
            return False
        now = self.clock()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self.failed[client]
        return len(times) >= self.most

    def note(self, client: str) -> None:
        """Count one failed attempt of `client`, now."""
        now = self.clock()
        if client not in self.failed and len(self.failed) >= REMEMBERED:
            # A spray of addresses must not grow this for ever: forget the quiet ones (and only
            # them: a guesser's count must outlive the spray).
            quiet = [c for c, t in self.failed.items() if not t or t[-1] <= now - self.window]
            for forgotten in quiet:
                del self.failed[forgotten]
        self.failed.setdefault(client, deque()).append(now)
