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
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Row, Select, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db import Database
from bot.messages import Outbound, Priority
from bot.models import Contact, OutboxMessage

logger = logging.getLogger(__name__)

PRIORITIES: dict[Priority, int] = {"reply": 0, "notice": 1, "broadcast": 2}

# Seconds a process holds the outbox rows it fetched (PostgreSQL) unless it renews the claim,
# which it does every third of that while it lives: the time after which another process, or
# the same one restarted, sends what a crashed process had claimed and not sent.
CLAIM_LEASE = 15.0


class RetryLater(Exception):
    """The platform asks us to wait (Telegram's RetryAfter, Twilio's 429) before sending again."""

    def __init__(self, seconds: float, reason: str = "rate limited") -> None:
        super().__init__(reason)
        self.seconds = seconds


class Unreachable(Exception):
    """The person cannot be reached any more (blocked the bot, deactivated, opted out)."""


class Rejected(Exception):
    """The platform refused this message for good (bad request); other messages may go on."""


class Held(Exception):
    """The message must wait until the person writes (WhatsApp's 24-hour window).

    `message_id` is set when something stood in for it meanwhile (an approved template).
    """

    def __init__(self, reason: str, message_id: str | None = None) -> None:
        super().__init__(reason)
        self.message_id = message_id


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
        """Send one message; return the platform's message id; raise the errors above."""
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
    """Spaces sends evenly at `rate` per second: bursts would trip the platforms' flood control.

    Two rules: an even interval between sends, and never more than `rate` sends in any second
    (a send delayed here by a busy moment must not be followed by a catch-up burst).
    """

    # A hair under the limit: network jitter can bring two sends closer together at the
    # platform's end than they left here, and one message too many in a second costs a pause.
    MARGIN = 0.975

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        self.interval = 1.0 / (rate * self.MARGIN)
        self.per_second = max(1, int(rate * self.MARGIN))
        self.clock = clock
        self.next_at = 0.0
        self.paused_until = 0.0
        self.recent: deque[float] = deque(maxlen=self.per_second)

    async def wait(self) -> None:
        """Sleep until the next send may start, and book it."""
        now = self.clock()
        start = max(now, self.next_at, self.paused_until)
        if len(self.recent) == self.per_second:
            start = max(start, self.recent[0] + 1.0)
        # Never bank idle time: no burst after a quiet spell.
        self.next_at = start + self.interval
        self.recent.append(start)
        if start > now:
            await asyncio.sleep(start - now)

    def pause(self, seconds: float) -> None:
        """Hold every send for `seconds` (the platform said so)."""
        self.paused_until = max(self.paused_until, self.clock() + seconds)


class ChannelWorker:
    """Sends one channel's outbox rows, at the channel's pace."""

    def __init__(
        self,
        db: Database,
        transport: Transport,
        *,
        max_in_flight: int = 6,
        max_attempts: int = 24,
        batch: int = 200,
        backoff: float = 2.0,
        max_backoff: float = 30.0,
        render: Render | None = None,
        clock: Callable[[], float] = time.monotonic,
        poll_every: float = 5.0,
        claim_lease: float = CLAIM_LEASE,
    ) -> None:
        self.db = db
        self.poll_every = poll_every  # seconds between looks at the outbox when nothing wakes us
        self.transport = transport
        self.channel = transport.channel
        # Several processes may send from one PostgreSQL outbox: each claims what it fetches.
        # SQLite serves one process, and claims nothing.
        self.claims = not db.is_sqlite
        self.claimant = uuid.uuid4().hex
        self.claim_lease = claim_lease
        # A platform that fails (5xx, network) is tried again after 2, 4, 8, 16, then every 30
        # seconds: a message goes out at most 30 s after the platform is back, however long it
        # was away; 24 tries keep trying for 10 minutes before the message is given up.
        self.max_attempts = max_attempts
        self.batch = batch
        self.backoff = backoff  # seconds before the first retry; doubled each time
        self.max_backoff = max_backoff  # ... up to this
        self.render = render or plain_render
        self.clock = clock
        self.pacer = _Pacer(transport.rate, clock)
        self.slots = asyncio.Semaphore(max_in_flight)  # rows sent or sending, not yet recorded
        self.recording = asyncio.Lock()
        self.chats: dict[str, _Bucket] = {}
        self.in_flight: dict[int, str] = {}  # outbox id -> address
        self.done: list[tuple[int, str, dict[str, object], str | None]] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.wakeup = asyncio.Event()
        self.urgent = asyncio.Event()
        self.idle = asyncio.Condition()
        self.requested = 0  # wake-ups asked for
        self.served = 0  # wake-ups answered by a pass that found nothing left to do
        self.stopping = False
        # Whether the sends in flight are to be followed by a pass once written: the last pass
        # left rows for a chat with a send in flight, or found only sends in flight. Otherwise
        # a written send asks for nothing (a pass costs two statements per reply).
        self.again = True
        self.flushing = 0  # callers waiting in flush()
        self.retry_at: float | None = None  # (clock) the first retry postponed by this worker

    def wake(self, *, urgent: bool = False) -> None:
        """New rows are waiting; `urgent` (a reply) interrupts a broadcast batch."""
        self.requested += 1
        self.wakeup.set()
        if urgent:
            self.urgent.set()

    async def run(self) -> None:
        """Send until cancelled or stopped."""
        while not self.stopping:
            generation = self.requested
            self.wakeup.clear()
            self.urgent.clear()
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

    async def _report_idle(self, generation: int) -> None:
        if self.tasks:
            await asyncio.wait(set(self.tasks))
        await self.record()
        async with self.idle:
            self.served = max(self.served, generation)
            self.idle.notify_all()

    async def flush(self) -> None:
        """Wait until every row due now (and queued before this call) has been tried."""
        self.flushing += 1  # each written send asks for a pass, until one finds nothing to do
        try:
            self.wake()
            target = self.requested
            async with self.idle:
                await self.idle.wait_for(lambda: self.served >= target)
        finally:
            self.flushing -= 1

    async def pass_once(self) -> tuple[bool, float | None]:
        """Start sending the due rows.

        Returns whether nothing was due or in flight, and the seconds until more rows are due
        (None when none are waiting at all).
        """
        await self.record()
        self.again = False
        now_utc = datetime.now(UTC)
        limit = self.batch + len(self.in_flight)
        async with self.db.transaction() as session:
            # Plain columns, not ORM objects: this runs for every batch of a broadcast.
            query = (
                select(
                    OutboxMessage.id,
                    OutboxMessage.address,
                    OutboxMessage.priority,
                    OutboxMessage.attempts,
                    OutboxMessage.body,
                )
                .where(
                    OutboxMessage.channel == self.channel,
                    OutboxMessage.status == "pending",
                    (OutboxMessage.not_before.is_(None)) | (OutboxMessage.not_before <= now_utc),
                )
                .order_by(OutboxMessage.priority, OutboxMessage.id)
                .limit(limit)
            )
            if self.claims:
                found = await self._claim(session, query, now_utc)
            else:
                found = list(await session.execute(query))
            rows = [row for row in found if row.id not in self.in_flight]
        if not rows:
            if self.in_flight:
                self.again = True  # look again when they are written
                return False, None
            self.retry_at = None  # _next_due covers every postponed row
            return True, await self._next_due()
        waiting: set[str] = set(self.in_flight.values())  # keep each chat's order
        soonest: float | None = None
        for row in rows:
            if row.priority > 0 and self.urgent.is_set():
                return False, 0.0  # a reply came in: fetch again so it goes first
            if row.address in waiting:
                self.again = True  # after the send in flight to this chat
                continue
            bucket = self._bucket(row.address)
            pause = bucket.wait_time(self.clock())
            if pause > 0:
                waiting.add(row.address)
                soonest = pause if soonest is None else min(soonest, pause)
                continue
            await self.slots.acquire()
            await self.pacer.wait()
            bucket.take()
            waiting.add(row.address)
            self.in_flight[row.id] = row.address
            task = asyncio.create_task(self._send(row.id, row.address, row.attempts, row.body))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        if soonest is not None:
            return False, soonest
        # A full batch: more may be due now. Rows left for a chat with a send in flight go
        # when it is written (`again`).
        return False, 0.0 if len(found) >= limit else None

    def _unclaimed(self, now_utc: datetime) -> ColumnElement[bool]:
        """Rows no other process holds: never claimed, claimed by us, or the claim lapsed."""
        return or_(
            OutboxMessage.claimed_until.is_(None),
            OutboxMessage.claimed_until < now_utc,
            OutboxMessage.claimed_by == self.claimant,
        )

    async def _claim(
        self, session: AsyncSession, due: Select[Any], now_utc: datetime
    ) -> list[Row[Any]]:
        """Claim the rows of `due` that no other process holds, and return them (PostgreSQL).

        FOR UPDATE SKIP LOCKED passes over the rows another process is claiming at this
        moment, and `claimed_until` over those it claimed before. A claim is renewed at each
        pass while its process lives; when the process dies, it lapses and its rows are taken
        over.
        """
        ids = (
            due.with_only_columns(OutboxMessage.id)
            .where(self._unclaimed(now_utc))
            .with_for_update(skip_locked=True)
        )
        claimed = await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids.scalar_subquery()))
            .values(
                claimed_by=self.claimant,
                claimed_until=now_utc + timedelta(seconds=self.claim_lease),
            )
            .returning(*due.selected_columns)
            .execution_options(synchronize_session=False)
        )
        return sorted(claimed, key=lambda row: (row.priority, row.id))  # RETURNING has no order

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
                        .values(
                            claimed_until=datetime.now(UTC) + timedelta(seconds=self.claim_lease)
                        )
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

    async def _next_due(self) -> float | None:
        """Seconds until the next postponed row is due, or None if there is none."""
        async with self.db.transaction() as session:
            query = (
                select(OutboxMessage.not_before)
                .where(OutboxMessage.channel == self.channel, OutboxMessage.status == "pending")
                .order_by(OutboxMessage.not_before)
                .limit(1)
            )
            if self.claims:  # rows another process holds are its to send
                query = query.where(self._unclaimed(datetime.now(UTC)))
            due = await session.scalar(query)
        if due is None:
            return None
        return max(0.05, (due - datetime.now(UTC)).total_seconds())

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
        unreachable: str | None = None
        try:
            message = await self.render(dict(body), address)
            if message is None:  # a bulletin stopped by a coordinator
                values.update(status="cancelled", error="stopped")
                raise _Skip
            values["platform_message_id"] = await self.transport.deliver(message)
            values.update(status="sent", sent_at=datetime.now(UTC), error=None)
        except _Skip:
            pass
        except Held as exc:
            # The engine sets the row pending again when the person next writes.
            values.update(status="held", error=str(exc)[:200], not_before=None)
            if exc.message_id is not None:
                values.update(platform_message_id=exc.message_id, sent_at=datetime.now(UTC))
        except RetryLater as exc:
            # Flood control is per bot, not per chat: hold the whole channel.
            self.pacer.pause(exc.seconds)
            values.update(
                attempts=attempts,  # not the message's fault
                not_before=datetime.now(UTC) + timedelta(seconds=exc.seconds),
                error=f"retry after {exc.seconds}s",
            )
            logger.warning("%s asks to wait %.1f s", self.channel, exc.seconds)
        except Unreachable as exc:
            unreachable = str(exc)[:200] or "unreachable"
            values.update(status="unreachable", error=unreachable)
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
                values["not_before"] = datetime.now(UTC) + timedelta(seconds=delay)
                logger.warning("sending %s failed (%s); retry in %.0f s", row_id, exc, delay)
        # The row stays "in flight", holding its slot, until its outcome is written: never
        # fetched and sent again meanwhile, and a crash can repeat at most `max_in_flight`
        # messages. Outcomes that finish while one is being written go in the next write.
        self.done.append((row_id, address, values, unreachable))
        retry = values.get("not_before")
        if isinstance(retry, datetime):  # a pass when it is due
            at = self.clock() + max(0.0, (retry - datetime.now(UTC)).total_seconds())
            self.retry_at = at if self.retry_at is None else min(self.retry_at, at)
        while True:
            try:
                await self.record()
                break
            except Exception as exc:  # the database away: the outcome and the slot wait
                logger.warning("the outcome of outbox message %s waits: %s", row_id, exc)
                await asyncio.sleep(1.0)
        if self.again or self.flushing or isinstance(retry, datetime):
            self.wakeup.set()

    async def record(self) -> None:
        """Write the outcomes of finished sends, all in one transaction; free their slots."""
        if not self.done:
            return
        # With claims, writing the outcome also ends the claim.
        claim: dict[str, object] = (
            {"claimed_by": None, "claimed_until": None} if self.claims else {}
        )
        async with self.recording:  # one write at a time
            if not self.done:
                return
            batch, self.done = self.done, []
            try:
                async with self.db.transaction() as session:
                    for row_id, address, values, unreachable in batch:
                        await session.execute(
                            update(OutboxMessage)
                            .where(OutboxMessage.id == row_id)
                            .values(**values, **claim)
                            .execution_options(synchronize_session=False)  # none loaded
                        )
                        if unreachable is not None:
                            await self._mark_unreachable(session, address, unreachable)
            except Exception:
                self.done = batch + self.done  # try again later
                raise
        for row_id, *_rest in batch:
            self.in_flight.pop(row_id, None)
            self.slots.release()

    @staticmethod
    async def _mark_unreachable(session: AsyncSession, address: str, reason: str) -> None:
        """Mark the contact unreachable and stop its other pending messages."""
        await session.execute(
            update(Contact)
            .where(Contact.address == address)
            .values(unreachable=True, unreachable_reason=reason)
        )
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.address == address, OutboxMessage.status == "pending")
            .values(status="unreachable", error=reason)
        )


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

    async def pace(self, channel: str) -> None:
        """Wait for a moment in the channel's pace, for a call that is not in the outbox.

        Telegram counts a removed keyboard (an edit) in its 30 messages a second: made beside
        the sender's even pace, such calls brought 429 answers, each holding every send 1 s.
        """
        worker = self.workers.get(channel)
        if worker is not None:
            await worker.pacer.wait()

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
            if worker.tasks:
                _done, late = await asyncio.wait(set(worker.tasks), timeout=grace)
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
            with contextlib.suppress(Exception):  # a database away: the rows stay pending
                await worker.record()
                await worker.release()
        self._tasks.clear()
