"""Putting the bot together: database, engine, sender and channels; running and stopping them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bot import crypto, retention
from bot.bulletins import Renderer
from bot.config import Settings
from bot.db import Database
from bot.engine import Engine
from bot.scheduler import BulletinScheduler
from bot.sender import Sender, Transport
from handlers import build_registry

if TYPE_CHECKING:
    from bot.channels.telegram import TelegramChannel
    from bot.channels.whatsapp import WhatsAppChannel

logger = logging.getLogger(__name__)


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


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Bot]:
    """Start every configured channel and the sender; stop them all on the way out."""
    from bot.channels.telegram import TelegramChannel
    from bot.channels.whatsapp import WhatsAppChannel

    db = Database(settings.database_url)
    engine = Engine(db, settings, build_registry())
    telegram = TelegramChannel(settings, engine) if settings.telegram_bot_token else None
    whatsapp = WhatsAppChannel(settings, engine) if "whatsapp" in settings.channels else None
    transports: list[Transport] = [telegram.transport] if telegram else []
    if whatsapp is not None:
        transports.append(whatsapp.transport)
    sender = Sender(db, transports, render=Renderer(db, settings.timezone))
    engine.sender = sender
    scheduler = BulletinScheduler(db, settings, sender)
    bot = Bot(settings, db, engine, sender, telegram, scheduler, whatsapp)
    crypto.configure(settings.data_encryption_keys or None)
    purger = asyncio.create_task(keep_purging(db, settings), name="retention")
    try:
        if whatsapp is not None:
            await whatsapp.transport.start()
        sender.start()
        await scheduler.start()
        if telegram is not None:
            await telegram.start()
        yield bot
    finally:
        purger.cancel()
        await scheduler.stop()
        if telegram is not None:
            await telegram.stop()  # finishes the updates in hand
        with contextlib.suppress(TimeoutError):  # the last replies out, if it is quick
            async with asyncio.timeout(5):
                await asyncio.gather(*(sender.flush(channel) for channel in sender.workers))
        await sender.stop()
        if telegram is not None:
            await telegram.close()
        if whatsapp is not None:
            await whatsapp.transport.close()
        await db.close()


async def keep_purging(db: Database, settings: Settings, every: float = 6 * 3600) -> None:
    """Apply the retention rules at start and every `every` seconds."""
    while True:
        try:
            await retention.purge(db, settings, datetime.now(UTC))
        except Exception:  # a database away for a moment: try again next time
            logger.exception("retention failed")
        await asyncio.sleep(every)


async def serve(settings: Settings) -> None:
    """The web app (webhooks, /healthz) on uvicorn, with every channel, until SIGINT/SIGTERM."""
    import uvicorn

    from bot.web import create_app

    async with running(settings) as bot:
        app = create_app(bot.db, bot.telegram, bot.whatsapp)
        config = uvicorn.Config(
            app, host=settings.host, port=settings.port, log_config=None, access_log=False
        )
        # uvicorn stops on SIGINT/SIGTERM after answering the requests in progress, then raises
        # the signal again for the previous handler: make that one harmless, so that the
        # channels, the sender and the database are closed properly after it.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: None)
        await uvicorn.Server(config).serve()


async def poll(settings: Settings) -> None:
    """The channels without a web server (Telegram by polling), until SIGINT/SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running(settings):
        logger.info("the bot is running; Ctrl-C stops it")
        await stop.wait()
