"""How many sends a channel keeps in flight: its rate times the measured round trip.

By Little's law a channel that sends `rate` messages a second, each holding its slot for `W`
seconds (the platform's answer, then its outcome written), needs `rate × W` sends at a time, and
no fewer: with six, Twilio answering in 0.3 s allowed 19 messages a second out of 80. So the
number follows the slots' measured hold time, with headroom for its jitter, and shrinks again
when answers come faster. It never goes past `bound(rate)`, the hold time counted being at most
LONGEST: a slow or stalled platform cannot grow it without end, and a crash repeats at most that
many messages (each slot is freed only once its outcome is written).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Hashable

FLOOR = 6  # sends at a time, at the least: what a local platform (a fake, a Bot API server) needs
HEADROOM = 1.25  # over rate × hold time: the hold time's jitter, and the planner's own delays
# Seconds of hold time counted, at most: slower answers do not grow the number. Telegram and
# Twilio answer in 0.1 to 0.5 s; longer holds mean a platform, or this machine, overloaded,
# which more sends at a time would only load further.
LONGEST = 0.5
CAP = 1_000  # sends at a time, never more (bound(1,000/s) is 625)


def bound(rate: float) -> int:
    """The most sends a channel at `rate` a second keeps in flight (and a crash repeats)."""
    return max(FLOOR, min(CAP, math.ceil(rate * LONGEST * HEADROOM)))


class InFlight:
    """Slots for sends, as many as `rate` × the measured hold time needs, between FLOOR and
    `ceiling` (bound(rate) unless given).

    A lane takes a slot (acquire), notes when its send starts (begin), and the recorder frees it
    once the outcome is written (release): the time between is the hold time measured. Its
    estimate is the mean plus twice the mean deviation, both moving averages (as TCP's
    retransmission timer does it), so a few slow answers raise it at once and it comes down
    over a few dozen faster ones.
    """

    def __init__(
        self, rate: float, clock: Callable[[], float], ceiling: int | None = None
    ) -> None:
        self.rate = rate
        self.clock = clock
        self.ceiling = max(1, ceiling if ceiling is not None else bound(rate))
        self.floor = min(FLOOR, self.ceiling)
        self.limit = self.floor  # slots now
        self.used = 0  # slots taken
        self.mean: float | None = None  # seconds a slot is held, moving average
        self.deviation = 0.0  # ... and its mean deviation
        self.started: dict[Hashable, float] = {}  # key of a send -> when it started
        self.freed = asyncio.Event()

    @property
    def estimate(self) -> float:
        """Seconds a slot is held, with room for its jitter (0 before any is measured)."""
        if self.mean is None:
            return 0.0
        return min(LONGEST, self.mean + 2 * self.deviation)

    async def acquire(self) -> None:
        """Wait for a free slot, and take it."""
        while self.used >= self.limit:
            self.freed.clear()
            await self.freed.wait()
        self.used += 1

    async def room(self, booked: Callable[[], int]) -> None:
        """Wait until the slots taken and those `booked()` (sends booked, not yet begun) are
        fewer than twice the slots: the bookings keep in step with what can be sent."""
        while self.used + booked() >= 2 * self.limit:
            self.freed.clear()
            await self.freed.wait()

    def begin(self, key: Hashable) -> None:
        """The send holding a slot starts now (after any pause the platform asked for)."""
        self.started[key] = self.clock()

    def release(self, key: Hashable) -> None:
        """Free a slot; its hold time, if its send began, goes into the estimate."""
        self.used -= 1
        started = self.started.pop(key, None)
        if started is not None:
            self.observe(self.clock() - started)
        self.freed.set()

    def observe(self, seconds: float) -> None:
        """One hold time measured: move the estimate, and the number of slots with it."""
        seconds = min(LONGEST, max(0.0, seconds))
        if self.mean is None:
            self.mean, self.deviation = seconds, seconds / 2
        else:
            self.deviation += (abs(seconds - self.mean) - self.deviation) / 4
            self.mean += (seconds - self.mean) / 8
        wanted = math.ceil(self.rate * self.estimate * HEADROOM)
        self.limit = max(self.floor, min(self.ceiling, wanted))
        if self.used < self.limit:
            self.freed.set()
