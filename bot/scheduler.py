"""Scheduled and recurring bulletins with APScheduler; the bulletins table is the one truth.

Jobs are rebuilt from the table at start and kept in step with it every few seconds, so a
schedule made in the chat, on the server or by another process is picked up, and a restart
loses none. A bulletin whose time passed while the bot was down is sent on start-up when it is
within BULLETIN_GRACE_MINUTES, and otherwise marked missed, and its author told.

Exactly one process schedules: on PostgreSQL, the one holding an advisory lock; the others wait,
and one of them takes over when that process dies. SQLite serves one process (bot.db).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot import bulletins
from bot.config import Settings
from bot.db import Database
from bot.i18n import _, direct, isolate, use_locale
from bot.messages import Address, Outbound
from bot.models import Bulletin, Contact
from bot.outbox import enqueue
from bot.sender import Sender

logger = logging.getLogger(__name__)

# The PostgreSQL advisory lock of the process that schedules (advisory locks are per database).
SCHEDULER_LOCK = int.from_bytes(
    hashlib.sha256(b"icssi-bot bulletin scheduler").digest()[:8], "big", signed=True
)


class BulletinScheduler:
    """Fires scheduled and recurring bulletins, and queues the deliveries of those sending."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        sender: Sender | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        every: float = 5.0,
    ) -> None:
        self.db = db
        self.settings = settings
        self.sender = sender
        self.clock = clock
        self.every = every
        self.scheduler = AsyncIOScheduler(timezone=ZoneInfo(settings.timezone))
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        # The connection holding SCHEDULER_LOCK while this process schedules (PostgreSQL).
        self._holder: AsyncConnection | None = None

    @property
    def leading(self) -> bool:
        """Whether this process is the one that schedules (on SQLite, always)."""
        return self.db.is_sqlite or self._holder is not None

    async def start(self) -> None:
        """Start APScheduler and the loop that keeps it in step with the table."""
        self.scheduler.start()
        if await self._lead():
            await self.sync()
        self._task = asyncio.create_task(self._loop(), name="bulletin-scheduler")

    async def stop(self) -> None:
        """Stop firing (a broadcast being queued resumes at the next start)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        await self._step_down()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                if await self._lead():
                    await self.sync()
            except Exception:  # the database away for a moment: next round
                logger.exception("bulletin scheduler could not sync")

    async def _lead(self) -> bool:
        """Whether this process schedules: on PostgreSQL, whether it holds or now takes the lock.

        The lock belongs to a database session: it is freed when its process dies or loses its
        connection, and the next process to try takes it.
        """
        if self.db.is_sqlite:
            return True
        if self._holder is not None and await self._still_holding():
            return True
        connection = await self.db.engine.connect()
        try:
            # Autocommit: a session idle in a transaction for days could be ended by the server.
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            taken = await connection.scalar(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": SCHEDULER_LOCK}
            )
        except BaseException:
            await connection.invalidate()
            await connection.close()
            raise
        if not taken:
            await connection.close()
            return False
        self._holder = connection
        logger.info("this process runs the bulletin scheduler")
        return True

    async def _still_holding(self) -> bool:
        """Whether the session holding the lock is still there; if not, step down."""
        if self._holder is None:
            return False
        try:
            async with asyncio.timeout(10):
                await self._holder.execute(text("SELECT 1"))
        except Exception:  # the session is gone, and the lock with it
            logger.warning("the bulletin scheduler lost its lock; another process may lead")
            await self._step_down()
            return False
        return True

    async def _step_down(self) -> None:
        """Drop the jobs and free the lock: the session ends with its connection."""
        if self._holder is None:
            return
        holder, self._holder = self._holder, None
        if self.scheduler.running:
            self.scheduler.remove_all_jobs()
        # Closed, not returned to the pool: a pooled session would keep the lock.
        with contextlib.suppress(Exception):
            await holder.invalidate()
        with contextlib.suppress(Exception):
            await holder.close()

    async def sync(self) -> None:
        """Bring the jobs in line with the table; queue what is sending; handle missed times."""
        async with self._lock:
            now = self.clock()
            grace = timedelta(minutes=self.settings.bulletin_grace_minutes)
            wanted: set[str] = set()
            async with self.db.transaction() as session:
                # Locked: a coordinator cancelling or moving one at this moment waits, or
                # goes first and is seen (SQLite's BEGIN IMMEDIATE does the same for it).
                rows = (
                    await session.scalars(
                        select(Bulletin)
                        .where(Bulletin.status.in_(("scheduled", "recurring", "sending")))
                        .with_for_update()
                    )
                ).all()
                sending = [b.id for b in rows if b.status == "sending"]
                for bulletin in rows:
                    job = f"bulletin-{bulletin.id}"
                    if bulletin.status == "scheduled" and bulletin.scheduled_at is not None:
                        if bulletin.scheduled_at <= now - grace:
                            bulletin.status = "missed"
                            await self._tell_author(session, bulletin)
                        elif bulletin.scheduled_at <= now:
                            await bulletins.publish(session, bulletin, now)
                            sending.append(bulletin.id)
                        else:
                            wanted.add(job)
                            self._ensure(job, DateTrigger(bulletin.scheduled_at), bulletin.id)
                    elif bulletin.status == "recurring" and bulletin.time_of_day:
                        hour, minute = (int(p) for p in bulletin.time_of_day.split(":"))
                        trigger = CronTrigger(
                            hour=hour,
                            minute=minute,
                            day_of_week=str(bulletin.weekday)
                            if bulletin.recurrence == "weekly"
                            else None,
                            timezone=ZoneInfo(self.settings.timezone),
                        )
                        wanted.add(job)
                        self._ensure(job, trigger, bulletin.id)
            for job in self.scheduler.get_jobs():
                if job.id not in wanted:
                    job.remove()
            for bulletin_id in sending:
                await self.queue(bulletin_id)

    def _ensure(self, job_id: str, trigger: DateTrigger | CronTrigger, bulletin_id: int) -> None:
        """Add the job, or replace it when its trigger changed."""
        existing = self.scheduler.get_job(job_id)
        if existing is not None and str(existing.trigger) == str(trigger):
            return
        self.scheduler.add_job(
            self.fire,
            trigger,
            args=[bulletin_id],
            id=job_id,
            replace_existing=True,
            misfire_grace_time=self.settings.bulletin_grace_minutes * 60,
            coalesce=True,
        )

    async def fire(self, bulletin_id: int) -> None:
        """The time has come: publish (a recurring one as a new copy) and queue its deliveries."""
        if self._holder is not None and not await self._still_holding():
            return  # the lock lost since the last round: another process may lead now
        now = self.clock()
        async with self.db.transaction() as session:
            bulletin = await session.get(Bulletin, bulletin_id, with_for_update=True)
            if bulletin is None:
                return
            if bulletin.status == "recurring":
                copy = Bulletin(
                    texts=dict(bulletin.texts),
                    image=bulletin.image,
                    places=list(bulletin.places or []),
                    created_by=bulletin.created_by,
                    parent_id=bulletin.id,
                    created_at=now,
                )
                session.add(copy)
                await session.flush()
                await bulletins.publish(session, copy, now)
                target = copy.id
            elif bulletin.status == "scheduled":
                await bulletins.publish(session, bulletin, now)
                target = bulletin.id
            else:
                return
        await self.queue(target)

    async def queue(self, bulletin_id: int) -> None:
        """Queue a bulletin's deliveries and wake the sender."""
        extra = []
        if self.settings.telegram_channel_id:
            extra.append(Address("telegram", self.settings.telegram_channel_id))
        count = await bulletins.queue_deliveries(self.db, bulletin_id, self.clock(), extra)
        logger.info("bulletin %s: %s deliveries queued", bulletin_id, count)
        if self.sender is not None:
            for channel in self.sender.workers:
                self.sender.wake(channel)

    async def _tell_author(self, session: AsyncSession, bulletin: Bulletin) -> None:
        """Tell the coordinator who scheduled a bulletin that its time passed unsent."""
        locale = await session.scalar(
            select(Contact.locale).where(Contact.address == bulletin.created_by)
        )
        try:
            address = Address.parse(bulletin.created_by)
        except ValueError:
            return  # scheduled from the server's command line
        with use_locale(locale or self.settings.default_locale):
            text = _(
                "The bulletin scheduled for %(when)s was not sent: the bot was not running at "
                "that time. Send it again from /bulletin if it is still current."
            ) % {
                "when": isolate(
                    bulletin.scheduled_at.isoformat() if bulletin.scheduled_at else "-"
                )
            }
            await enqueue(session, [Outbound(address, direct(text), priority="notice")], None)
