"""The one way out: per-channel outbox workers with rate limits, retries and a delivery ledger.

Every message (reply, notice or broadcast) is a row of the `outbox` table before it is sent.
One worker per channel reads the due rows, replies first, and sends them through the channel's
Transport at the channel's pace; the outcome of each send is written back to its row. A crash
leaves unsent rows pending, and they go out after the restart: only messages in flight at the
crash can be sent twice. On PostgreSQL several processes may send from one outbox: each claims
the rows it fetches, for a while (ChannelWorker._claim), and no row is sent by two.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Integer, Select, Update, bindparam, or_, select, update

from bot import outbox
from bot.db import Database
from bot.dbapi import HeldConnection, Prepared
from bot.inflight import FLOOR, InFlight
from bot.messages import HOLDING_CHANNELS, Outbound
from bot.models import OutboxMessage
from bot.outbox import PRIORITIES, Stop
from bot.outcomes import Held, OptedOut, Rejected, RetryLater, Unreachable, WindowClosed

# The typed outcomes lived here before bot/outcomes.py, and the priorities before bot/outbox.py.
__all__ = ["PRIORITIES", "Held", "Rejected", "RetryLater", "Sender", "Transport", "Unreachable"]

logger = logging.getLogger(__name__)

# Seconds a process holds the outbox rows it fetched (PostgreSQL) unless it renews the claim,
# which it does every third of that while it lives: the time after which another process, or
# the same one restarted, sends what a crashed process had claimed and not sent.
CLAIM_LEASE = 15.0


class _Skip(Exception):
    """This row is not to be sent after all."""


Render = Callable[[dict[str, Any], str], Awaitable["Outbound | None"]]


async def plain_render(body: dict[str, Any], address: str) -> Outbound | None:
    """An outbox body that is a whole Outbound already."""
    return Outbound.from_json(body)


class Transport(Protocol):
    """A channel's way of delivering one Outbound, and the pace it allows."""

    channel: str
    rate: float  # messages per second across all chats

    def chat_limit(self, address: str) -> tuple[float, int]:
        """Messages per second to one chat, and the burst it tolerates before that pace."""
        ...

    async def deliver(self, message: Outbound) -> str | None:
        """Send one message; return the platform's message id; raise bot.outcomes' errors.

        A channel with a window (HOLDING_CHANNELS) also has `outside_window(message)`: what
        goes instead of a message to a person whose window is closed (it raises Held).
        """
        ...


@dataclass
class _Bucket:
    """A token bucket: `burst` tokens, refilled at `rate` per second."""

    rate: float
    burst: float
    tokens: float
    stamp: float

    def wait_time(self, now: float) -> float:
        """Seconds until a token is free (0 if one is free now)."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self) -> None:
        """Use a token."""
        self.tokens -= 1


class _Pacer:
    """Spaces sends evenly at `rate` per second, and never lets the platform count more than
    `rate` of them in any one second.

    The platform counts a send when it arrives, some time after it left here and before its
    answer came back. Counting each one until a second after its answer, as this did, is exact
    whatever the way there, but a round trip of `r` seconds then holds the rate to
    `rate / (1 + r)`: 23 a second of 30 with Telegram answering in 0.3 s, 870 of 1,000 at 0.15 s.
    So a send counts as "within the last second" from its booking until one second after it
    reached the platform: its answer, or REACH seconds after a lane began it (begin()), whichever
    comes first. A new send starts only when fewer than `limit` others are in that state; then
    no one-second window at the platform's end holds more than `limit`, as long as the way
    there varies by less than REACH from one message to the next (its length, the same for
    all, does not matter; the platform's time to answer, however it varies, counts for nothing).
    The rate falls short of the limit by REACH a second at most (a send answered sooner counts
    from its answer); above 100 a second, by 6 % more (per_second).

    The even spacing keeps bursts away; it gives way to that count, not the other way round: a
    send held back by less than an interval does not hold back the ones after it, which catch
    up, never closer than half an interval. Callers book one at a time: the worker's planner,
    and the calls outside the outbox that Telegram counts too (Sender.paced).
    """

    TOLERANCE = 0.001  # seconds a send may start before its even turn (the loop's timer grain)
    # Seconds of the even schedule a late event loop may make up at once: one interval at 30 a
    # second, ten sends at 1,000 (each sleep of a millisecond overshot by a busy loop lost a
    # send's turn there, 0.6 of the rate).
    CATCH_UP = 0.01
    # Seconds by which the way to the platform may vary between two sends (from the lane's
    # begin() to the platform's count: the event loop's delay, the HTTP pool, the network's
    # jitter). 0.97 of the limit needs it under 0.03 s.
    REACH = 0.025
    # After a 429 the pace drops to this share of itself, then regains RECOVER of the full
    # pace a second (as TCP's window does): at 1,000 a second the event loop's pauses bunched
    # sends past REACH, and at the full pace one 429 came after another, each holding the
    # channel a second (0.64 of the rate to 100,000 subscribers). Slowed, a 429 costs a little
    # pace instead, and the next one is rare.
    DECREASE = 0.85
    RECOVER = 0.01

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        self.full_interval = 1.0 / rate  # the configured pace (or slow_to's)
        self.full_limit = self.per_second(rate)  # sends in any one second, at the full pace
        self.share = 1.0  # of the full pace now: below 1 after a 429, regained over time
        self.regained_at = 0.0  # when the share last grew (or the 429's pause ended)
        self.backed_off_until = 0.0  # later 429s of the same burst lower the share no further
        self.interval = self.full_interval
        self.limit = self.full_limit
        self.clock = clock
        self.next_at = 0.0  # the next send's turn in the even schedule
        self.last = -self.interval  # when the last send was booked
        self.paused_until = 0.0
        self.unanswered = 0  # sends booked, neither begun nor answered
        self.begun = 0  # sends begun and not answered
        # When recent sends reached the platform, at the latest, in order: answered (or begun
        # and answered within REACH), and begun (REACH after their begin()).
        self.answered: deque[float] = deque()
        self.reaching: deque[list[float]] = deque()
        self.answer = asyncio.Event()
        self.booking = asyncio.Lock()  # two callers would book the same turn

    @staticmethod
    def per_second(rate: float) -> int:
        """Sends let through in any one second at `rate`: all of them up to 100 a second; 6 %
        fewer above, where a busy event loop (here and at the platform) delays sends by more
        than REACH (at 1,000 a second against the fake Bot API, the full count brought 429s,
        and 3 % fewer still some: 0.70 to 0.75 of the rate; 6 % fewer none, 0.80 to 0.89)."""
        return max(1, int(rate if rate < 100 else rate * 0.94))

    async def wait(self) -> None:
        """Sleep until the next send may start, and book it; call done() when it is answered."""
        async with self.booking:
            await self._book()

    def _counted(self, start: float) -> int:
        """Forget the sends that reached the platform a second before `start`; how many are left
        (they reached it, or may reach it, within a second of `start`)."""
        while self.answered and self.answered[0] <= start - 1.0:
            self.answered.popleft()
        while self.reaching and self.reaching[0][0] <= start - 1.0:
            self.reaching.popleft()
        return len(self.answered) + len(self.reaching)

    def _freed_at(self, excess: int) -> float:
        """When the `excess`-th of the sends counted stops counting (a second after it reached)."""
        reached = heapq.merge(self.answered, (reach for (reach,) in self.reaching))
        return next(itertools.islice(reached, excess - 1, None)) + 1.0

    async def _book(self) -> None:
        while True:
            now = self.clock()
            if self.share < 1.0:
                self._regain(now)
            # The platform's rules: its pause, and its count of the last second.
            start = max(now, self.paused_until)
            counted = self._counted(start)
            excess = self.unanswered + counted - (self.limit - 1)
            if excess > counted:  # too many on their way: wait for one to begin or be answered
                self.answer.clear()
                await self.answer.wait()
                continue
            if excess > 0:
                start = max(start, self._freed_at(excess))
            # The even spacing, to a millisecond: the event loop's timers are no finer, and a
            # shorter sleep would cost a millisecond at high rates.
            due = max(start, self.next_at, self.last + self.interval / 2)
            if due - now >= self.TOLERANCE:
                start = due
            if start > now:
                await asyncio.sleep(start - now)
                if self.paused_until > start:  # the platform said to wait meanwhile
                    continue
            break
        # The schedule lags at most an interval (or CATCH_UP) behind the sends: idle time is
        # never banked.
        lag = max(self.interval, self.CATCH_UP)
        self.next_at = max(self.next_at, start - lag) + self.interval
        self.last = start
        self.unanswered += 1

    def begin(self) -> list[float]:
        """A send booked with wait() leaves now: it reaches the platform within REACH. Give
        what this returns to arrived() when it is answered."""
        reach = [self.clock() + self.REACH]
        if self.unanswered:  # (else answered already: it counts from its answer)
            self.unanswered -= 1
            self.begun += 1
            self.reaching.append(reach)
            self.answer.set()
        return reach

    def arrived(self, reach: list[float]) -> None:
        """A send begun was answered: if sooner than REACH, it counts from now (at 30 a second
        against a local Bot API, REACH cost 2.5 % of the rate)."""
        now = self.clock()
        if reach[0] <= now:
            return
        # Begun less than REACH ago: near the end of `reaching`, which stays in order.
        for index in range(len(self.reaching) - 1, -1, -1):
            if self.reaching[index] is reach:
                del self.reaching[index]
                self.answered.append(now)
                return

    def done(self) -> None:
        """A send booked with wait() was answered (or failed): it counts for one more second."""
        if self.begun:  # counted from its begin() already
            self.begun -= 1
            return
        self.unanswered = max(0, self.unanswered - 1)
        self.answered.append(self.clock())
        self.answer.set()

    def slow_to(self, rate: float) -> None:
        """Send no faster than `rate` a second from now on (never faster than before)."""
        self.full_interval = max(self.full_interval, 1.0 / rate)
        self.full_limit = min(self.full_limit, self.per_second(rate))
        self._set_share(self.share)

    def pause(self, seconds: float) -> None:
        """Hold every send for `seconds` (the platform said so)."""
        self.paused_until = max(self.paused_until, self.clock() + seconds)

    def back_off(self) -> None:
        """The platform counted too many (a 429): go on at DECREASE of the pace, once for all
        the 429s of one burst (those answered until a second after its pause ends)."""
        now = self.clock()
        if now < self.backed_off_until:
            return
        self._set_share(self.share * self.DECREASE)
        start = max(now, self.paused_until)
        self.regained_at = start
        self.backed_off_until = start + 1.0

    def _regain(self, now: float) -> None:
        """Grow the share of the full pace by RECOVER a second since it last grew."""
        if now > self.regained_at:
            self._set_share(min(1.0, self.share + self.RECOVER * (now - self.regained_at)))
            self.regained_at = now

    def _set_share(self, share: float) -> None:
        # Never under one send a second, nor under one counted: a slow channel stays a channel.
        self.share = max(share, self.full_interval, 1.0 / self.full_limit)
        self.interval = self.full_interval / self.share
        self.limit = max(1, int(self.full_limit * self.share))

    async def hold(self) -> None:
        """Sleep while a pause lasts: for sends booked before the platform asked for it."""
        left = self.paused_until - self.clock()
        while left > 0:  # the pause may grow meanwhile
            await asyncio.sleep(left)
            left = self.paused_until - self.clock()


def _due(one: bool = False) -> Select[Any]:
    """A channel's rows due now (:channel, :now), replies first, then by turn (:limit); with
    `one`, only those to the address :only (a console session prints its own person's).

    By turn (OutboxMessage.turn), not by id alone: each person's first waiting message comes
    before anyone's second, so the batch read holds the next message of every person waiting,
    however many one of them has queued. Within a person, turns follow their order.
    """
    due = (
        select(
            OutboxMessage.id,
            OutboxMessage.address,
            OutboxMessage.priority,
            OutboxMessage.attempts,
            OutboxMessage.body,
            OutboxMessage.turn,
        )
        .where(
            OutboxMessage.channel == bindparam("channel"),
            OutboxMessage.status == "pending",
            or_(OutboxMessage.not_before.is_(None), OutboxMessage.not_before <= bindparam("now")),
        )
        .order_by(OutboxMessage.priority, OutboxMessage.turn, OutboxMessage.id)
        .limit(bindparam("limit", type_=Integer))
    )
    return due.where(OutboxMessage.address == bindparam("only")) if one else due


def _claim_due(one: bool = False) -> Update:
    """Claim the rows of _due() that no other process holds for :claimant until :until, and
    return them (PostgreSQL).

    FOR UPDATE SKIP LOCKED passes over the rows another process is claiming at this moment, and
    `claimed_until` over those it claimed before. A claim is renewed at each pass while its
    process lives; when the process dies, it lapses and its rows are taken over.
    """
    due = _due(one)
    unclaimed = or_(
        OutboxMessage.claimed_until.is_(None),
        OutboxMessage.claimed_until < bindparam("now"),
        OutboxMessage.claimed_by == bindparam("claimant"),
    )
    ids = due.with_only_columns(OutboxMessage.id).where(unclaimed)
    return (
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids.with_for_update(skip_locked=True).scalar_subquery()))
        .values(claimed_by=bindparam("claimant"), claimed_until=bindparam("until"))
        .returning(*due.selected_columns)
    )


def _utcnow() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


_Row = tuple[int, str, int, dict[str, object]]  # outbox id, address, attempts, body
_Due = tuple[int, str, int, int, dict[str, object], int]  # ... priority, attempts, body, turn


class ChannelWorker:
    """Sends one channel's outbox rows, at the channel's pace.

    A planner (run) reads the due rows, keeps replies first and each chat's order and pace,
    books each send with the pacer and hands it to lanes that send one message after another;
    a recorder writes the outcomes, a few at a time, and a lane starts a send only while fewer
    than the slots of `inflight` (the rate times the measured round trip, up to its ceiling)
    are sent or sending and not yet written: a crash repeats at most that many. The reads and
    the writes go straight through the DB-API (bot/dbapi.py), three outcomes to a transaction:
    with the limits lifted, the sender's rate was 0.89 to 1.00 of a bare python-telegram-bot
    send loop's in two runs, against 0.65 before (2-core machine, SQLite, 10,000 and 100,000
    subscribers; benchmarks/broadcast.py, README).
    """

    # Sends at a time, at the least (fewer when max_in_flight is smaller); more as the rate
    # and the round trip need (bot/inflight.py): each costs the HTTP pool more per request.
    LANES = FLOOR
    # Seconds an outcome waits, at most, for others to be written with it (see _send).
    GATHER = 0.05
    # Rows of a full batch still to be booked when the next one is read (see pass_once).
    READ_AHEAD = 100

    def __init__(
        self,
        db: Database,
        transport: Transport,
        *,
        max_in_flight: int | None = None,
        max_attempts: int = 24,
        batch: int = 500,
        backoff: float = 2.0,
        max_backoff: float = 30.0,
        render: Render | None = None,
        clock: Callable[[], float] = time.monotonic,
        utcnow: Callable[[], datetime] = _utcnow,
        poll_every: float = 5.0,
        claim_lease: float = CLAIM_LEASE,
    ) -> None:
        self.db = db
        self.poll_every = poll_every  # seconds between looks at the outbox when nothing wakes us
        self.transport = transport
        self.channel = transport.channel
        # A transport that reaches one person only (a console session): the rows to others
        # wait for their own session.
        self.only: str | None = getattr(transport, "only", None)
        # Several processes may send from one PostgreSQL outbox: each claims what it fetches.
        # SQLite serves one process, and claims nothing.
        self.claims = not db.is_sqlite
        self.claimant = uuid.uuid4().hex
        self.claim_lease = claim_lease
        # The outbox reads and the outcome writes go straight to the driver on a connection the
        # worker keeps while it has work: through a Session they cost more than the sends.
        self.held = HeldConnection(db)
        # A channel that may send free text only for a while after the person wrote (WhatsApp).
        self.window = (
            outbox.Window(db, lambda: self.utcnow()) if self.channel in HOLDING_CHANNELS else None
        )
        # A platform that fails (5xx, network) is tried again after 2, 4, 8, 16, then every 30
        # seconds: a message goes out at most 30 s after the platform is back, however long it
        # was away; 24 tries keep trying for 10 minutes before the message is given up.
        # Sends in flight: the rate times the measured round trip, up to inflight.bound(rate)
        # or `max_in_flight` when given.
        self.inflight = InFlight(transport.rate, clock, max_in_flight)
        self.max_in_flight = self.inflight.ceiling
        self.max_attempts = max_attempts
        self.batch = batch
        self.backoff = backoff  # seconds before the first retry; doubled each time
        self.max_backoff = max_backoff  # ... up to this
        self.render = render or plain_render
        self.clock = clock
        self.utcnow = utcnow  # the wall clock of rows due at a moment (tests move both clocks)
        self.pacer = _Pacer(transport.rate, clock)
        self.delivering = 0  # lanes in the middle of a send
        self.overdue: asyncio.TimerHandle | None = None  # when waiting outcomes are written
        # The worker's own transactions take turns: a pass must not read a row as pending while
        # the recorder writes its outcome, then find it no longer in flight and send it again
        # (on PostgreSQL the two could otherwise run at once).
        self.turn = asyncio.Lock()
        # Rows booked and not yet taken by a lane, by priority then booking (None tells a lane
        # to end). A batch of them: the lanes never wait while the planner reads the next one,
        # which takes a few tenths of a second when the event loop is busy with the sends. It
        # fills only at high rates (at 30 a second a lane takes each row as soon as it is
        # booked), and replies go ahead of the broadcasts in it.
        # (Room for a None to each lane, in finish(): they may be more than a batch.)
        self.ready: asyncio.PriorityQueue[tuple[int, int, _Row | None]] = asyncio.PriorityQueue(
            max(batch, self.inflight.ceiling)
        )
        self.booked = itertools.count()
        self.lanes: set[asyncio.Task[None]] = set()
        self.chats: dict[str, _Bucket] = {}
        self.in_flight: dict[int, str] = {}  # outbox id -> address, until its outcome is written
        self.sending: dict[int, str] = {}  # outbox id -> address, until the platform answers
        self.done: list[tuple[int, str, dict[str, object], Stop | None]] = []
        self.wakeup = asyncio.Event()
        self.finished = asyncio.Event()  # outcomes are to be written now
        self.urgent = asyncio.Event()
        self.idle = asyncio.Condition()
        self.requested = 0  # wake-ups asked for
        self.served = 0  # wake-ups answered by a pass that found nothing left to do
        self.stopping = False
        # Whether each send in flight is to be followed by a pass once answered: the last pass
        # left rows for a chat with a send in flight. Whether the last of them is: the last pass
        # found only sends in flight (then the next one finds nothing to do, and says so).
        # Otherwise a send asks for nothing: a pass costs statements, and at the end of a
        # broadcast one after each of the last sends read the hundreds still booked each time.
        self.again = True
        self.after_all = False
        self.flushing = 0  # callers waiting in flush()
        self.ahead: asyncio.Future[tuple[list[_Due], bool]] | None = None  # the next batch
        self.retry_at: float | None = None  # (clock) the first retry postponed by this worker

    @property
    def gather(self) -> int:
        """Outcomes written together when sends are under way: half the slots (see _send)."""
        # ... so that the other half go on sending meanwhile.
        return max(1, self.inflight.limit // 2)

    def wake(self, *, urgent: bool = False) -> None:
        """New rows are waiting; `urgent` (a reply) interrupts a broadcast batch."""
        self.requested += 1
        self.wakeup.set()
        if urgent:
            self.urgent.set()

    async def run(self) -> None:
        """Send until cancelled or stopped (then call finish())."""
        self._start_lanes()
        recorder = asyncio.create_task(self._keep_recording(), name=f"record-{self.channel}")
        try:
            await self._plan()
        finally:
            recorder.cancel()
            await asyncio.wait({recorder})  # what it had in hand is back in `done`, for finish()

    def _start_lanes(self) -> None:
        """Start lanes up to the slots in flight: they live as long as the worker."""
        # A task per message would cost more, and python-telegram-bot's connection pool works
        # best with a new request right after a response on the same task. Lanes beyond the
        # slots, after the number shrank, wait for a slot.
        while not self.stopping and len(self.lanes) < self.inflight.limit:
            lane = asyncio.create_task(self._lane(), name=f"send-{self.channel}-lane")
            self.lanes.add(lane)
            lane.add_done_callback(self.lanes.discard)

    async def _plan(self) -> None:
        """Pass over the outbox again and again, waiting for rows in between."""
        while not self.stopping:
            generation = self.requested
            self.wakeup.clear()
            self.urgent.clear()
            if self.retry_at is not None and self.retry_at <= self.clock():
                # Due: this pass reads it. Kept, a time past made every wait below nothing,
                # and the planner passed over the outbox without pause until it was empty.
                self.retry_at = None
            try:
                idle, delay = await self.pass_once()
            except Exception:  # the database away for a moment must not end the sender
                logger.exception("the %s sender could not read the outbox", self.channel)
                idle, delay = False, 2.0
            if idle:  # nothing due now: anyone waiting in flush() may go on
                await self._report_idle(generation)
            if self.retry_at is not None:
                due = max(0.0, self.retry_at - self.clock())
                delay = due if delay is None else min(delay, due)
            if delay is None or delay > self.poll_every:
                delay = self.poll_every  # rows another process may have added; a safety net
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # arrives as the event fires, and stop() would wait for ever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self.wakeup.wait()

    async def _lane(self) -> None:
        """Send the booked rows one after another, until told to end."""
        while True:
            _priority, _booked, row = await self.ready.get()
            if row is None:
                self.ready.task_done()
                return
            try:
                await self.inflight.acquire()  # given back once the outcome is written
                await self.pacer.hold()
                self.inflight.begin(row[0])  # its hold time counts from here
                reach = self.pacer.begin()  # ... and it reaches the platform within REACH
                await self._send(*row)
                self.pacer.arrived(reach)  # (_send returns as soon as it is answered)
            except Exception:  # a bug must not take a lane away (the row stays in flight)
                logger.exception("the %s sender failed on outbox message %s", self.channel, row[0])
                self.inflight.release(row[0])
            finally:
                self.ready.task_done()

    async def _keep_recording(self) -> None:
        """Write outcomes while sending goes on: those that finish meanwhile go in the next
        write, and the slots they hold are free again once it is done."""
        while True:
            await self.finished.wait()
            self.finished.clear()
            try:
                await self.record()
            except Exception as exc:  # the database away: the outcomes and their slots wait
                logger.warning("%s outcomes wait to be written: %s", self.channel, exc)
                self.finished.set()
                await asyncio.sleep(1.0)

    async def _report_idle(self, generation: int) -> None:
        await self.ready.join()  # every booked row sent
        await self.record()
        if not self.in_flight:  # the connection goes back to the pool while there is no work
            async with self.turn:
                await self.held.release()
        async with self.idle:
            self.served = max(self.served, generation)
            self.idle.notify_all()

    async def flush(self) -> None:
        """Wait until every row due now (and queued before this call) has been tried."""
        self.flushing += 1  # the last send answered asks for a pass, until one finds nothing
        try:
            self.wake()
            target = self.requested
            async with self.idle:
                await self.idle.wait_for(lambda: self.served >= target)
        finally:
            self.flushing -= 1

    async def finish(self, grace: float) -> None:
        """After run() ended: let the sends under way end (`grace` seconds at most), write
        their outcomes, and give up the claims on the rows not sent (they stay pending)."""
        if self.ahead is not None:
            self.ahead.cancel()
            await asyncio.gather(self.ahead, return_exceptions=True)
            self.ahead = None
        while not self.ready.empty():
            _priority, _booked, row = self.ready.get_nowait()
            self.ready.task_done()
            if row is not None:
                self.in_flight.pop(row[0], None)
                self.sending.pop(row[0], None)
        lanes = set(self.lanes)
        for _lane in lanes:
            self.ready.put_nowait((len(PRIORITIES), next(self.booked), None))
        if lanes:
            _done, late = await asyncio.wait(lanes, timeout=grace)
            for lane in late:
                lane.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        with contextlib.suppress(Exception):  # a database away: the rows stay pending
            await self.record()
            await self.release()
        with contextlib.suppress(Exception):
            await self.held.release()

    async def pass_once(self) -> tuple[bool, float | None]:
        """Book the due rows and hand them to the lanes.

        Returns whether nothing was due or under way, and the seconds until more rows are due
        (None when none are waiting at all).
        """
        self._start_lanes()
        self.again = self.after_all = False
        ahead, self.ahead = self.ahead, None
        if ahead is not None and self.urgent.is_set():
            ahead.cancel()  # a reply came in: read again, so that it goes first
            await asyncio.gather(ahead, return_exceptions=True)
            ahead = None
        rows, full = await (ahead if ahead is not None else self._read(frozenset()))
        if ahead is not None and not rows:
            # What the last batch left for later (a chat busy or paced) was not in this read.
            ahead = None
            rows, full = await self._read(frozenset())
        if not rows:
            if self.sending:
                self.after_all = True  # look again when they are answered
                return False, None
            # Outcomes first: a row to retry is due at the time they hold.
            await self.record()
            self.retry_at = None  # _next_due covers every postponed row
            if await self._passed_over():
                return False, 0.05
            return True, await self._next_due()
        # Keep each chat's order: one send at a time to a chat. A chat found unreachable waits
        # for that to be written (which stops its other rows).
        waiting = set(self.sending.values())
        # ... and a chat whose message is to go again later waits for it (its order is kept).
        waiting.update(
            address
            for _id, address, values, unreachable in self.done
            if unreachable or values.get("not_before") is not None
        )
        soonest: float | None = None
        # The next batch is read while the last rows of this one are booked: read between
        # bookings, it left the pace behind by the time it took (at 1,000 a second, tenths
        # of the broadcast at 0.7 to 0.8 of the rate between tenths at 1.0).
        read_ahead = len(rows) - self.READ_AHEAD if full else -1
        for index, (row_id, address, priority, attempts, body, _turn) in enumerate(rows):
            if index == read_ahead and self.ahead is None:
                later = frozenset(row[0] for row in rows[index:])
                self.ahead = asyncio.ensure_future(self._read(later))
            if priority > 0 and self.urgent.is_set():
                return False, 0.0  # a reply came in: fetch again so it goes first
            if address in waiting:
                self.again = True  # after the send in flight to this chat
                continue
            bucket = self._bucket(address)
            pause = bucket.wait_time(self.clock())
            if pause > 0:
                waiting.add(address)
                soonest = pause if soonest is None else min(soonest, pause)
                continue
            # Booked far ahead of the slots (at the start, before any answer has measured the
            # round trip), sends left in a burst when the slots grew, and the pace stumbled
            # after: 0.948 of 80 a second to 800 WhatsApp subscribers.
            await self.inflight.room(lambda: self.pacer.unanswered)
            await self.pacer.wait()
            bucket.take()
            waiting.add(address)
            self.in_flight[row_id] = address
            self.sending[row_id] = address
            # Waits while every lane is busy and a batch is booked ahead of them.
            booked = (row_id, address, attempts, body)
            await self.ready.put((priority, next(self.booked), booked))
        if soonest is not None:
            return False, soonest
        # A full batch: more may be due now. Rows left for a chat with a send under way go
        # when it is answered (`again`).
        # After a batch read ahead, a pass reads again at once: rows of the last batch left
        # for later were not in it.
        return False, 0.0 if full or ahead is not None else None

    async def _read(self, later: frozenset[int]) -> tuple[list[_Due], bool]:
        """The due rows not under way, nor among `later` (rows of the batch still to be booked,
        which come first in this order); and whether the batch was full (more may be due)."""
        now_utc = self.utcnow()
        # The rows under way are pending still, and come first in this order: they are read
        # again, and left out here (naming them in the query cost more than reading them).
        limit = self.batch + len(self.in_flight) + len(later)
        values: dict[str, object] = {"channel": self.channel, "now": now_utc, "limit": limit}
        one = self.only is not None
        if one:
            values["only"] = self.only
        async with self.turn:
            if self.claims:
                values.update(
                    claimant=self.claimant,
                    until=now_utc + timedelta(seconds=self.claim_lease),
                )
                statement = self._statement(("claim", one), functools.partial(_claim_due, one))
                found = await self.held.fetch(statement, values)
                found.sort(key=lambda row: (row[2], row[5], row[0]))  # RETURNING: no order
            else:
                statement = self._statement(("due", one), functools.partial(_due, one))
                found = await self.held.fetch(statement, values)
            # Under the turn: a row whose outcome the recorder writes next is in flight still.
            # Ids and priorities are plain integers: only the rows kept are converted (bodies).
            rows = [
                statement.read(row)
                for row in found
                if row[0] not in self.in_flight and row[0] not in later
            ]
        return rows, len(found) >= limit

    def _unclaimed(self, now_utc: datetime) -> ColumnElement[bool]:
        """Rows no other process holds: never claimed, claimed by us, or the claim lapsed."""
        return or_(
            OutboxMessage.claimed_until.is_(None),
            OutboxMessage.claimed_until < now_utc,
            OutboxMessage.claimed_by == self.claimant,
        )

    def _statement(self, key: Hashable, build: Callable[[], Any]) -> Prepared:
        """One of the worker's statements, compiled once for the database."""
        return self.held.compiled(key, build)

    async def keep_claims(self) -> None:
        """Renew this process's claims while it lives (PostgreSQL), every third of the lease.

        A long batch (a slow pace, a pause asked by the platform) or a slow send keeps its rows.
        """
        while True:
            await asyncio.sleep(self.claim_lease / 3)
            try:
                async with self.db.transaction() as session:
                    await session.execute(
                        update(OutboxMessage)
                        .where(
                            OutboxMessage.claimed_by == self.claimant,
                            OutboxMessage.status == "pending",
                        )
                        .values(claimed_until=self.utcnow() + timedelta(seconds=self.claim_lease))
                    )
            except Exception:  # the database away for a moment: next time
                logger.warning("could not renew the %s sender's claims", self.channel)

    async def release(self) -> None:
        """Give up the claims on rows not sent, for another process to send them at once."""
        if not self.claims:
            return
        async with self.db.transaction() as session:
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.claimed_by == self.claimant)
                .values(claimed_by=None, claimed_until=None)
            )

    async def _passed_over(self) -> bool:
        """Whether a row due now waits that the pass did not read (PostgreSQL).

        SKIP LOCKED passes over a row that another transaction holds for a moment (the status
        recorder writing a callback to it, the claims being renewed): the pass found nothing,
        yet the row is ours to send. Called idle, flush() returned before the row went: a
        reply missing from a conversation, about once in fifteen runs of tests/test_whatsapp.py
        on a busy machine. Read again without locking, it is seen and sent at the next pass.
        """
        if not self.claims:
            return False  # SQLite: the pass read every row due
        now_utc = self.utcnow()
        async with self.turn, self.db.transaction() as session:
            query = (
                select(OutboxMessage.id)
                .where(
                    OutboxMessage.channel == self.channel,
                    OutboxMessage.status == "pending",
                    or_(OutboxMessage.not_before.is_(None), OutboxMessage.not_before <= now_utc),
                    self._unclaimed(now_utc),
                )
                .limit(len(self.in_flight) + 1)
            )
            if self.only is not None:
                query = query.where(OutboxMessage.address == self.only)
            ids = (await session.scalars(query)).all()
        return any(row_id not in self.in_flight for row_id in ids)

    async def _next_due(self) -> float | None:
        """Seconds until the next postponed row is due, or None if there is none."""
        async with self.turn, self.db.transaction() as session:
            query = (
                select(OutboxMessage.not_before)
                .where(OutboxMessage.channel == self.channel, OutboxMessage.status == "pending")
                .order_by(OutboxMessage.not_before)
                .limit(1)
            )
            if self.claims:  # rows another process holds are its to send
                query = query.where(self._unclaimed(self.utcnow()))
            if self.only is not None:
                query = query.where(OutboxMessage.address == self.only)
            due = await session.scalar(query)
        if due is None:
            return None
        return max(0.05, (due - self.utcnow()).total_seconds())

    def retry_delay(self, failures: int) -> float | None:
        """Seconds before the next try of a message that failed `failures` times; None: give up."""
        if failures >= self.max_attempts:
            return None
        return min(self.max_backoff, self.backoff * 2.0 ** min(failures - 1, 32))

    def _bucket(self, address: str) -> _Bucket:
        bucket = self.chats.get(address)
        if bucket is None:
            rate, burst = self.transport.chat_limit(address)
            bucket = _Bucket(rate, float(burst), float(burst), self.clock())
            self.chats[address] = bucket
            if len(self.chats) > 10_000:  # forget chats idle long enough to have a full bucket
                for key in list(self.chats)[:5_000]:
                    del self.chats[key]
        return bucket

    async def _send(
        self, row_id: int, address: str, attempts: int, body: dict[str, object]
    ) -> None:
        """Send one row and record what happened."""
        values: dict[str, object] = {"attempts": attempts + 1}
        unreachable: Stop | None = None
        self.delivering += 1
        try:
            message = await self.render(dict(body), address)
            if message is None:  # a bulletin stopped by a coordinator
                values.update(status="cancelled", error="stopped")
                raise _Skip
            values["platform_message_id"] = await self._deliver(message)
            values.update(status="sent", sent_at=self.utcnow(), error=None)
        except _Skip:
            pass
        except Held as exc:
            # The engine sets the row pending again when the person next writes.
            values.update(status="held", error=str(exc)[:200], not_before=None)
            if exc.message_id is not None:
                values.update(platform_message_id=exc.message_id, sent_at=self.utcnow())
        except RetryLater as exc:
            # Flood control is per bot, not per chat: hold the whole channel.
            self.pacer.pause(exc.seconds)
            if exc.rate is not None:  # and go on slower
                self.pacer.slow_to(exc.rate)
                self.inflight.rate = min(self.inflight.rate, exc.rate)
            else:  # for a while (the pacer's count fell short of the platform's)
                self.pacer.back_off()
            values.update(
                attempts=attempts,  # not the message's fault
                not_before=self.utcnow() + timedelta(seconds=exc.seconds),
                error=f"retry after {exc.seconds}s",
            )
            logger.warning("%s asks to wait %.1f s", self.channel, exc.seconds)
        except Unreachable as exc:
            unreachable = Stop(str(exc)[:200] or "unreachable", isinstance(exc, OptedOut))
            values.update(status="unreachable", error=unreachable.reason)
        except Rejected as exc:
            values.update(status="failed", error=str(exc)[:1000])
            logger.error("%s rejected outbox message %s: %s", self.channel, row_id, exc)
        except Exception as exc:  # network and server errors: try again later
            values["error"] = f"{type(exc).__name__}: {exc}"[:1000]
            delay = self.retry_delay(attempts + 1)
            if delay is None:
                values["status"] = "failed"
                logger.error("giving up on outbox message %s after %s tries", row_id, attempts + 1)
            else:
                values["not_before"] = self.utcnow() + timedelta(seconds=delay)
                logger.warning("sending %s failed (%s); retry in %.0f s", row_id, exc, delay)
        finally:
            self.delivering -= 1
            self.pacer.done()
            self.sending.pop(row_id, None)
        values = outbox.settled(self.channel, body, values)
        # The row stays "in flight", holding its slot, until its outcome is written: never
        # fetched and sent again meanwhile, and a crash can repeat at most `max_in_flight`
        # messages. The recorder writes it with the others that finish meanwhile.
        self.done.append((row_id, address, values, unreachable))
        retry = values.get("not_before")
        if isinstance(retry, datetime):  # a pass when it is due
            at = self.clock() + max(0.0, (retry - self.utcnow()).total_seconds())
            self.retry_at = at if self.retry_at is None else min(self.retry_at, at)
        # A transaction costs more than the rows it writes: written as they came, outcomes took
        # 0.92 transactions per message at high rates, nearly a fifth of the bot's CPU. They
        # are written `gather` at a time (a third as many transactions; the lanes that wait for
        # their slots meanwhile are never more than half), or at once when no other send is
        # under way (none would join them soon), and GATHER seconds after the first at most.
        if len(self.done) >= self.gather or not self.delivering:
            self.finished.set()
        elif self.overdue is None:
            self.overdue = asyncio.get_running_loop().call_later(self.GATHER, self.finished.set)
        # A pass only when one is wanted: each costs statements, and a reply needs none. Those
        # waiting in flush() want one once the last send is answered, to find nothing to do.
        last = not self.sending and (self.after_all or self.flushing > 0)
        if self.again or last or isinstance(retry, datetime):
            self.wakeup.set()

    async def _deliver(self, message: Outbound) -> str | None:
        """Send through the transport, keeping to the person's window where the channel has one."""
        if self.window is None:
            return await self.transport.deliver(message)
        address = str(message.address)
        # The goodbye to a forgotten person answers the message just received, so the window
        # is open; the contact that recorded when they wrote is gone with their data.
        if message.ephemeral or await self.window.open(address):
            try:
                return await self.transport.deliver(message)
            except WindowClosed:  # the platform counts the window its own way
                await self.window.close(address)
        outside: Callable[[Outbound], Awaitable[str | None]] | None = getattr(
            self.transport, "outside_window", None
        )
        if outside is None:
            raise Held("outside the 24-hour window")
        return await outside(message)

    async def record(self) -> None:
        """Write the outcomes of finished sends, all in one transaction; free their slots."""
        if not self.done:
            return
        # With claims, writing the outcome also ends the claim.
        claim: dict[str, object] = (
            {"claimed_by": None, "claimed_until": None} if self.claims else {}
        )
        async with self.turn:  # one transaction of the worker's at a time
            if not self.done:
                return
            batch, self.done = self.done, []
            if self.overdue is not None:  # those that come next have a GATHER of their own
                self.overdue.cancel()
                self.overdue = None
            # One executemany per kind of outcome: a statement per row would cost more than
            # the send itself.
            groups: dict[tuple[str, ...], list[dict[str, object]]] = {}
            unreachable: list[dict[str, object]] = []
            opted_out: list[dict[str, object]] = []
            deleted: list[dict[str, object]] = []
            for row_id, address, values, reason in batch:
                if values.get("delete"):
                    deleted.append({"row_id": row_id})
                    continue
                params = {f"new_{key}": value for key, value in {**values, **claim}.items()}
                params["row_id"] = row_id
                groups.setdefault(tuple(sorted({**values, **claim})), []).append(params)
                if reason is not None:
                    stopped = opted_out if reason.opted_out else unreachable
                    stopped.append({"to": address, "why": reason.reason})
            statements = [
                (
                    self._statement(
                        f"outcome {keys}", functools.partial(outbox.outcome_update, keys)
                    ),
                    p,
                )
                for keys, p in groups.items()
            ]
            if deleted:
                statements.append((self._statement("delete", outbox.delete_row), deleted))
            postponed = [
                {"address": address, "until": values["not_before"]}
                for _id, address, values, _reason in batch
                if values.get("not_before") is not None and values.get("status") is None
            ]
            if postponed:  # after the outcomes: the postponed row itself keeps its own time
                statements.append((self._statement("postpone", outbox.postpone_person), postponed))
            # The contact, and its other waiting messages stopped, in the outcome's transaction.
            for stopped, kind in (
                (unreachable, outbox.stop_statements()),
                (opted_out, outbox.opt_out_statements()),
            ):
                for key, build in kind if stopped else ():
                    statements.append((self._statement(key, build), stopped))
            try:
                await self.held.write(statements)
            except BaseException:  # also cancelled: these rows must not be sent again
                self.done = batch + self.done  # try again next time
                raise
        for row_id, *_rest in batch:
            self.in_flight.pop(row_id, None)
            self.inflight.release(row_id)
        if len(self.lanes) < self.inflight.limit:  # answers slower than before: more lanes
            self._start_lanes()


class Sender:
    """All channel workers: start them, wake them, wait for them."""

    def __init__(self, db: Database, transports: list[Transport], **options: Any) -> None:
        self.db = db
        self.workers = {t.channel: ChannelWorker(db, t, **options) for t in transports}
        self._tasks: list[asyncio.Task[None]] = []

    def wake(self, channel: str, *, urgent: bool = False) -> None:
        """Tell a channel's worker that rows are waiting."""
        worker = self.workers.get(channel)
        if worker is not None:
            worker.wake(urgent=urgent)

    @contextlib.asynccontextmanager
    async def paced(self, channel: str) -> AsyncIterator[None]:
        """Make a call that is not in the outbox at a moment in the channel's pace.

        Telegram counts a removed keyboard (an edit) in its 30 messages a second: made beside
        the sender's even pace, such calls brought 429 answers, each holding every send 1 s.
        """
        worker = self.workers.get(channel)
        if worker is None:
            yield
            return
        await worker.pacer.wait()
        try:
            yield
        finally:
            worker.pacer.done()  # it counts for a second from its answer, like a send

    def start(self) -> None:
        """Start every worker in the running loop."""
        for worker in self.workers.values():
            self._tasks.append(asyncio.create_task(worker.run(), name=f"send-{worker.channel}"))
            if worker.claims:
                self._tasks.append(
                    asyncio.create_task(worker.keep_claims(), name=f"claims-{worker.channel}")
                )

    async def flush(self, channel: str) -> None:
        """Wait until the channel has sent everything due (its worker must be running)."""
        await self.workers[channel].flush()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop the workers, give sends in flight `grace` seconds, then cancel them.

        Rows not sent stay pending and go out after the next start.
        """
        for worker in self.workers.values():
            worker.stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for worker in self.workers.values():
            await worker.finish(grace)
        self._tasks.clear()
