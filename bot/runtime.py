"""Putting the bot together: database, engine, sender and channels; running and stopping them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot import crypto, outbox, retention, roles
from bot.bulletins import Renderer
from bot.config import Settings
from bot.db import Database, DatabaseInUse
from bot.engine import Engine
from bot.models import Contact, OrganizationMember
from bot.notify import Listener, Notifier
from bot.scheduler import BulletinScheduler
from bot.sender import Sender, Transport
from handlers import build_registry

if TYPE_CHECKING:
    from bot.channels.telegram import TelegramChannel
    from bot.channels.whatsapp import WhatsAppChannel

logger = logging.getLogger(__name__)

# Seconds between two looks at who has a role, for the Telegram menus: a role given or taken
# on the People page or with `icssi-bot people` shows in the person's menu within this time.
MENUS_EVERY = 30.0


@dataclass
class Bot:
    """The running parts of the bot."""

    settings: Settings
    db: Database
    engine: Engine
    sender: Sender
    telegram: TelegramChannel | None = None
    scheduler: BulletinScheduler | None = None
    whatsapp: WhatsAppChannel | None = None


Role = Literal["all", "web", "worker"]


@asynccontextmanager
async def running(
    settings: Settings, role: Role = "all", console: Transport | None = None
) -> AsyncIterator[Bot]:
    """Start the parts of the bot that `role` runs; stop them all on the way out.

    "web" receives (webhooks, or Telegram polling) and answers into the outbox; "worker" sends
    the outbox and runs the bulletin scheduler and the retention rules; "all" is both, in one
    process (the only way with SQLite on separate machines).

    With `console` (a console chat session), the platforms are not started: the session prints
    its own person's messages, and, when no platform is configured and no other process sends
    from this database, it also runs the scheduler and retention, as `make run` must.
    """
    from bot.channels.telegram import TelegramChannel
    from bot.channels.whatsapp import WhatsAppChannel

    receives, sends = role in ("all", "web"), role in ("all", "worker")
    db = Database(settings.database_url)
    # This process schedules bulletins, applies retention and sends to the platforms.
    schedules = sends and (console is None or not settings.channels)
    if schedules:  # on SQLite, refuse to send beside another process
        try:
            db.hold_alone()
        except DatabaseInUse:
            if console is None:
                raise
            # Another process sends from this SQLite file (`make run` in another terminal):
            # this console session prints its own person's messages, and leaves the rest.
            schedules = False
    await adopt_coordinators(db, settings)
    # The engine and the status callbacks tell the outbox's wake-up of rows to send; the
    # sender, built once the channels' transports are, listens to it.
    queued = outbox.Wakeup()
    engine = Engine(db, settings, build_registry(), queued=queued)
    platforms = console is None
    telegram = (
        TelegramChannel(settings, engine) if platforms and settings.telegram_bot_token else None
    )
    if telegram is not None:
        telegram.people = await telegram_people(db)
    whatsapp = (
        WhatsAppChannel(settings, engine, outbox.StatusRecorder(db, settings, wake=queued))
        if platforms and "whatsapp" in settings.channels
        else None
    )
    transports: list[Transport] = [telegram.transport] if telegram else []
    if whatsapp is not None:
        transports.append(whatsapp.transport)
    if console is not None:
        transports.append(console)
    # A worker alone hears of new rows from the database: on PostgreSQL the web process wakes
    # it (bot/notify.py), and it looks every second in case a notification was lost; on SQLite
    # it looks every 0.1 s (at 0.5 s, a reply's p95 was 510 to 590 ms at 100 updates/s with the
    # Procfile's two processes). So does a console session, for another session's messages.
    alone = role == "worker"
    look = (0.1 if db.is_sqlite else 1.0) if alone else 1.0 if console is not None else 5.0
    sender = Sender(
        db,
        transports,
        render=Renderer(db, settings.timezone, settings.public_url),
        poll_every=look,
    )
    listens = alone and not db.is_sqlite
    listener = Listener(db, sender.wake, list(sender.workers)) if listens else None
    notifier = Notifier(db) if role == "web" and not db.is_sqlite else None
    if notifier is not None:
        queued.connect(notifier)
    if sends:
        queued.connect(sender.wake)
        if telegram is not None:  # its calls outside the outbox keep to the sender's pace
            telegram.paced = sender.paced
    scheduler = BulletinScheduler(db, settings, sender)
    bot = Bot(settings, db, engine, sender, telegram, scheduler, whatsapp)
    crypto.configure(settings.data_encryption_keys or None)
    purger = (
        asyncio.create_task(keep_purging(db, settings), name="retention") if schedules else None
    )
    # A referral's expiry is a promise to the family (their request goes back to the
    # coordinators in time): looked at every few minutes, not with the six-hourly rules.
    expirer = (
        asyncio.create_task(keep_expiring(db, settings), name="referral expiry")
        if schedules
        else None
    )
    menus: asyncio.Task[None] | None = None
    try:
        if sends:
            if whatsapp is not None:
                await whatsapp.transport.start()
            if telegram is not None:
                # Its HTTP client first: rows left from before a restart go out at the sender's
                # first pass, and failed with "not initialized" before (sent again 2 s later).
                await telegram.connect()
            sender.start()
            if listener is not None:
                listener.start()
            if schedules:
                await scheduler.start()
        if telegram is not None:
            await (telegram.start() if receives else telegram.connect())
            if receives:  # the process that published the menus keeps them in step
                menus = asyncio.create_task(keep_menus(db, telegram), name="command menus")
        logger.info("running as %s", role)
        yield bot
    finally:
        for task in (purger, expirer, menus):
            if task is not None:
                task.cancel()
        for waking in (listener, notifier):
            if waking is not None:
                await waking.close()
        if schedules:
            await scheduler.stop()
        if telegram is not None:
            await telegram.stop()  # finishes the updates in hand
        if sends:
            with contextlib.suppress(TimeoutError):  # the last replies out, if it is quick
                async with asyncio.timeout(5):
                    await asyncio.gather(*(sender.flush(channel) for channel in sender.workers))
            await sender.stop()
        if telegram is not None:
            await telegram.close()
        if whatsapp is not None:
            await whatsapp.transport.close()
        await db.close()


async def telegram_people(db: Database) -> dict[str, frozenset[str]]:
    """The Telegram chats of the people with a role, with their permissions, and of the
    members of signatory organizations (their menus list /organization)."""
    from bot.channels.telegram import MEMBER

    async with db.transaction() as session:
        found = await roles.everyone(session)
        members = await session.scalars(
            select(Contact.address)
            .join(OrganizationMember, OrganizationMember.contact_id == Contact.id)
            .where(Contact.address.like("telegram:%"))
        )
        member_chats = {address.removeprefix("telegram:") for address in members}
    people = {
        person.address.removeprefix("telegram:"): roles.PERMISSIONS.get(person.role, frozenset())
        for person in found
        if person.address.startswith("telegram:")
    }
    for chat in member_chats:
        people[chat] = people.get(chat, frozenset()) | {MEMBER}
    return people


async def adopt_coordinators(db: Database, settings: Settings) -> None:
    """COORDINATORS' addresses become admins if they have no role yet (README says so)."""
    if not settings.coordinators:
        return
    # The web and worker processes start together: the second one's insert may meet the
    # first one's, and then the role is there, which is all that was wanted.
    with contextlib.suppress(IntegrityError):
        async with db.transaction() as session:
            adopted = await roles.adopt(session, settings.coordinators)
        if adopted:
            logger.info("COORDINATORS: %d address(es) made admins", len(adopted))


async def repeatedly(
    work: Callable[[], Awaitable[object]], every: float, what: str, *, at_start: bool
) -> None:
    """Run `work` every `every` seconds for ever, the first time at once or after `every`; a
    failure is logged and tried again next time (a database away for a moment)."""
    await asyncio.sleep(0 if at_start else every)
    while True:
        try:
            await work()
        except Exception:
            logger.exception("%s failed", what)
        await asyncio.sleep(every)


async def keep_purging(db: Database, settings: Settings, every: float = 6 * 3600) -> None:
    """Apply the retention rules at start and every `every` seconds."""
    await repeatedly(
        lambda: retention.purge(db, settings, datetime.now(UTC)), every, "retention", at_start=True
    )


async def keep_expiring(db: Database, settings: Settings, every: float = 300) -> None:
    """Expire the referrals left unanswered, every `every` seconds (the first after one: at
    start, keep_purging does it)."""
    await repeatedly(
        lambda: retention.expire_referrals(db, settings, datetime.now(UTC)),
        every,
        "referral expiry",
        at_start=False,
    )


async def keep_menus(db: Database, telegram: TelegramChannel) -> None:
    """Every MENUS_EVERY seconds, give the Telegram chats whose role (or membership of an
    organization) changed their new command menu, or take it away (at start,
    TelegramChannel.start published them)."""

    async def follow() -> None:
        await telegram.follow_people(await telegram_people(db))

    await repeatedly(follow, MENUS_EVERY, "bringing the command menus up to date", at_start=False)


async def serve(settings: Settings, role: Role = "all") -> None:
    """The web app (webhooks, /healthz) on uvicorn, with every channel, until SIGINT/SIGTERM."""
    import uvicorn

    from bot.web import create_app

    async with running(settings, role) as bot:
        app = create_app(
            bot.db, bot.telegram, bot.whatsapp, settings=settings, wake=bot.engine.queued
        )
        config = uvicorn.Config(
            app, host=settings.host, port=settings.port, log_config=None, access_log=False
        )
        # uvicorn stops on SIGINT/SIGTERM after answering the requests in progress, then raises
        # the signal again for the previous handler: make that one harmless, so that the
        # channels, the sender and the database are closed properly after it.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: None)
        await uvicorn.Server(config).serve()


async def poll(settings: Settings, role: Role = "all") -> None:
    """The bot without a web server (Telegram by polling; or a worker), until SIGINT/SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running(settings, role):
        logger.info("the bot is running; Ctrl-C stops it")
        await stop.wait()
