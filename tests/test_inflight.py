"""The sends in flight follow the rate and the round trip (Little's law), within their bound.

On the virtual clock (tests/virtual_time.py): the platform answers after the delay it is given,
the same way each run, and the rate is counted where the platform receives the messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from typing import cast

import pytest

from bot.db import Database
from bot.inflight import CAP, FLOOR, HEADROOM, LONGEST, InFlight, bound
from bot.messages import Outbound
from bot.sender import Sender
from tests.test_pacer import (
    migrated_url,  # noqa: F401 (a fixture)
    most_in_a_window,
)
from tests.test_sender import FakePlatform, queue, rows
from tests.virtual_time import VirtualClockLoop, run_virtual

# ---------------------------------------------------------------- the estimate alone


def test_the_slots_follow_rate_times_round_trip_and_come_down_again() -> None:
    slots = InFlight(80.0, lambda: 0.0)
    assert slots.limit == FLOOR  # nothing measured yet
    for _ in range(50):
        slots.observe(0.3)
    # 80 a second, each slot held 0.3 s: 24 needed, and the headroom.
    assert abs(slots.limit - 80 * 0.3 * HEADROOM) <= 1
    for _ in range(100):
        slots.observe(0.01)  # answers come faster
    assert slots.limit == FLOOR


def test_jitter_gets_headroom() -> None:
    steady, jittery = InFlight(1000.0, lambda: 0.0), InFlight(1000.0, lambda: 0.0)
    rng = random.Random(3)
    for _ in range(400):
        steady.observe(0.15)
        jittery.observe(rng.uniform(0.05, 0.25))  # the same mean
    assert abs(steady.limit - 1000 * 0.15 * HEADROOM) <= 1
    assert jittery.limit > steady.limit * 1.2


@pytest.mark.parametrize("rate", [1.0, 30.0, 80.0, 1000.0, 5000.0])
def test_a_stalled_platform_grows_the_slots_no_further_than_the_bound(rate: float) -> None:
    slots = InFlight(rate, lambda: 0.0)
    for _ in range(50):
        slots.observe(600.0)  # ten minutes for an answer
    assert slots.limit == bound(rate) == max(FLOOR, min(CAP, math.ceil(rate * LONGEST * HEADROOM)))
    assert slots.limit <= CAP


async def taken(slots: InFlight, count: int) -> int:
    """How many of `count` acquire() calls get a slot without one being freed."""
    waiting = [asyncio.ensure_future(slots.acquire()) for _ in range(count)]
    await asyncio.sleep(0.01)
    got = sum(task.done() for task in waiting)
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    return got


def test_no_more_slots_are_taken_than_there_are() -> None:
    slots = InFlight(80.0, lambda: 0.0)
    assert run_virtual(lambda: taken(slots, 20)) == FLOOR


# ---------------------------------------------------------------- the sender, on a database


class SlowPlatform(FakePlatform):
    """Receives each message `delay` ± `jitter` / 2 seconds after it left (half on the way
    there, half on the way back); counts the sends under way. No delay: it never answers."""

    def __init__(self, rate: float, delay: float | None, jitter: float = 0.0) -> None:
        super().__init__(rate=rate, chat_rate=1.0, chat_burst=3)
        self.delay = delay
        self.jitter = jitter
        self.rng = random.Random(11)
        self.under_way = 0
        self.most = 0  # sends under way at once, at the most
        self.arrivals: list[float] = []
        self.starts: list[float] = []
        self.count = 0  # messages to be sent
        self.all_sent = asyncio.Event()

    async def deliver(self, message: Outbound) -> str | None:
        loop = asyncio.get_running_loop()
        self.under_way += 1
        self.most = max(self.most, self.under_way)
        self.starts.append(loop.time())
        try:
            if self.delay is None:
                await asyncio.Event().wait()
            assert self.delay is not None
            trip = self.delay + self.rng.uniform(-self.jitter / 2, self.jitter / 2)
            await asyncio.sleep(trip / 2)
            self.arrivals.append(loop.time())
            answer = await super().deliver(message)
            if len(self.sent) >= self.count:
                self.all_sent.set()
            await asyncio.sleep(trip / 2)
            return answer
        finally:
            self.under_way -= 1


def broadcast(url: str, platform: SlowPlatform, count: int, seconds: float) -> list[str]:
    """Queue a broadcast to `count` people and send for `seconds` of the virtual clock at most
    (until nothing is pending); the rows' statuses."""

    async def main() -> list[str]:
        loop = cast(VirtualClockLoop, asyncio.get_running_loop())
        db = Database(url)
        try:
            await queue(db, *[(str(n), f"bulletin {n}", "broadcast") for n in range(count)])
            sender = Sender(db, [platform], clock=loop.time, utcnow=loop.utcnow)
            sender.start()
            platform.count = count
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(seconds):
                        await platform.all_sent.wait()
            finally:
                await sender.stop(grace=1.0)
            return [row.status for row in await rows(db)]
        finally:
            await db.close()

    return run_virtual(main, real_wait=0.005, max_jump=0.1)  # a database: see virtual_time


def test_a_platform_answering_in_300_ms_is_sent_to_at_the_rate(migrated_url: str) -> None:  # noqa: F811
    # Six sends at a time made 19 a second of 80 against Twilio answering in 0.3 s.
    platform = SlowPlatform(rate=80.0, delay=0.3, jitter=0.2)
    statuses = broadcast(migrated_url, platform, 800, 60.0)
    assert statuses == ["sent"] * 800
    arrivals = sorted(platform.arrivals)
    steady = (700 - 100) / (arrivals[700] - arrivals[100])
    # The virtual clock jumps while the database works on a busy machine: margin for that.
    assert steady >= 0.85 * 80, steady
    assert platform.most <= bound(80.0)


def test_sends_booked_before_the_round_trip_is_known_do_not_leave_in_a_burst(
    migrated_url: str,  # noqa: F811
) -> None:
    """At the start six slots carry 20 sends a second at 0.3 s: booked at 80 a second, the
    rest waited, and left together when the slots grew (0.948 of the rate to 800 people)."""
    platform = SlowPlatform(rate=80.0, delay=0.3, jitter=0.2)
    statuses = broadcast(migrated_url, platform, 240, 60.0)
    assert statuses == ["sent"] * 240
    # Never faster than the pacer's catching up (twice the rate), bar a send or two.
    assert most_in_a_window(platform.starts, 0.1) <= 2 * 80 * 0.1 + 2


def test_a_stalled_platform_does_not_grow_the_sends_in_flight(migrated_url: str) -> None:  # noqa: F811
    platform = SlowPlatform(rate=1000.0, delay=None)
    statuses = broadcast(migrated_url, platform, 300, 30.0)
    assert platform.most == FLOOR  # no answer, no measure: the number it started with
    assert statuses == ["pending"] * 300  # nothing lost: sent after the next start


def test_a_slow_platform_grows_them_no_further_than_the_bound(migrated_url: str) -> None:  # noqa: F811
    platform = SlowPlatform(rate=80.0, delay=4.0)
    broadcast(migrated_url, platform, 400, 40.0)
    assert platform.most <= bound(80.0)
    assert platform.most >= bound(80.0) * 0.9  # ... and uses it
