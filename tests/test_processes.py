"""Several bot processes on one database: each message sent once, one scheduler.

On PostgreSQL two web processes may run at once: their senders claim the outbox rows they
fetch, and one scheduler runs, the one holding an advisory lock. Each process here is a
Database of its own (its own connections) with its own sender or scheduler. SQLite serves one
process, and refuses a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from bot import outbox
from bot.config import Settings
from bot.db import Database, DatabaseInUse
from bot.engine import Engine
from bot.messages import Address, Outbound
from bot.models import Bulletin, OutboxMessage
from bot.notify import Listener, Notifier
from bot.runtime import running
from bot.scheduler import BulletinScheduler
from bot.sender import ChannelWorker, Sender
from handlers import build_registry
from tests.conftest import ON_POSTGRES, Person
from tests.helpers import until
from tests.test_sender import FakePlatform, HangingPlatform, queue, rows

postgres_only = pytest.mark.skipif(
    not ON_POSTGRES, reason="SQLite serves one process; several need PostgreSQL"
)
sqlite_only = pytest.mark.skipif(ON_POSTGRES, reason="about SQLite's one process")


class SlowPlatform(FakePlatform):
    """A platform that takes a moment per message, so that two senders overlap."""

    async def deliver(self, message: Outbound) -> str | None:
        await asyncio.sleep(0.01)
        return await super().deliver(message)


async def bulletin_statuses(db: Database) -> list[str]:
    """The status of each bulletin, in order."""
    async with db.transaction() as session:
        return list((await session.scalars(select(Bulletin.status).order_by(Bulletin.id))).all())


async def all_done(db: Database, *senders: Sender) -> None:
    """Wait until no outbox row is pending, 60 s at most."""
    async with asyncio.timeout(60):
        while True:
            for sender in senders:
                await sender.flush("telegram")
            if all(row.status != "pending" for row in await rows(db)):
                return
            await asyncio.sleep(0.05)


@postgres_only
async def test_two_processes_send_each_message_once(db: Database, settings: Settings) -> None:
    expected = [f"m{n}" for n in range(150)]
    await queue(db, *[(str(n), f"m{n}", "broadcast") for n in range(150)])
    other = Database(settings.database_url)
    one, two = SlowPlatform(), SlowPlatform()
    senders = [Sender(db, [one], batch=10), Sender(other, [two], batch=10)]
    try:
        for sender in senders:
            sender.start()
        await all_done(db, *senders)
    finally:
        for sender in senders:
            await sender.stop()
        await other.close()
    assert sorted(one.texts() + two.texts()) == sorted(expected)  # each once
    assert one.texts()
    assert two.texts()  # and both had their share
    assert {(row.status, row.claimed_by) for row in await rows(db)} == {("sent", None)}


@postgres_only
async def test_the_messages_of_a_process_that_died_are_sent_by_another(
    db: Database, settings: Settings
) -> None:
    await queue(db, *[(str(n), f"m{n}", "broadcast") for n in range(6)])
    dying = Database(settings.database_url)
    hung = HangingPlatform(after=0)
    worker = ChannelWorker(dying, hung, claim_lease=3.0)
    await worker.pass_once()  # it claims the six and starts sending; the sends hang
    await asyncio.wait_for(hung.stuck.wait(), timeout=30)
    # The process dies: nothing recorded, nothing given back, its connections gone.
    lanes = set(worker.lanes)
    for lane in lanes:
        lane.cancel()
    await asyncio.gather(*lanes, return_exceptions=True)
    await dying.close()

    alive = FakePlatform()
    sender = Sender(db, [alive])
    sender.start()
    try:
        await sender.flush("telegram")
        assert alive.texts() == []  # still claimed by the dead process, for a while
        await all_done(db, sender)
    finally:
        await sender.stop()
    assert sorted(alive.texts()) == [f"m{n}" for n in range(6)]
    assert hung.texts() == []


@postgres_only
async def test_a_process_that_stops_gives_its_messages_back_at_once(
    db: Database, settings: Settings
) -> None:
    await queue(db, *[(str(n), f"m{n}", "broadcast") for n in range(6)])
    stopping = Database(settings.database_url)
    hung = HangingPlatform(after=2)
    first = Sender(stopping, [hung])  # the default claim: 15 seconds
    first.start()
    await asyncio.wait_for(hung.stuck.wait(), timeout=30)
    await first.stop(grace=0.1)
    await stopping.close()

    second = FakePlatform()
    sender = Sender(db, [second])
    sender.start()
    try:
        await all_done(db, sender)
    finally:
        await sender.stop()
    assert sorted(hung.texts() + second.texts()) == [f"m{n}" for n in range(6)]


async def schedule_later(db: Database) -> int:
    """A bulletin scheduled for tomorrow; its id."""
    async with db.transaction() as session:
        bulletin = Bulletin(
            texts={"en": {"title": "Water", "text": "Water is back in Hay al-Amel."}},
            status="scheduled",
            scheduled_at=datetime.now(UTC) + timedelta(days=1),
            created_by="cli:test",
        )
        session.add(bulletin)
        await session.flush()
        return bulletin.id


def jobs(scheduler: BulletinScheduler) -> list[str]:
    """The ids of a scheduler's APScheduler jobs."""
    return [job.id for job in scheduler.scheduler.get_jobs()]


@postgres_only
async def test_one_scheduler_runs_and_another_takes_over_when_its_process_dies(
    db: Database, settings: Settings
) -> None:
    bulletin_id = await schedule_later(db)
    first_db, second_db = Database(settings.database_url), Database(settings.database_url)
    # The first looks at its lock once an hour: once dead, it does nothing more.
    first = BulletinScheduler(first_db, settings, every=3600)
    second = BulletinScheduler(second_db, settings, every=0.1)
    try:
        await first.start()
        await second.start()
        assert (first.leading, second.leading) == (True, False)
        assert jobs(first) == [f"bulletin-{bulletin_id}"]
        assert jobs(second) == []
        await asyncio.sleep(0.3)  # a few rounds: the second waits
        assert (first.leading, second.leading) == (True, False)

        # The first process dies: the server ends its session, and the lock with it.
        async with db.engine.connect() as connection:
            await connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
                    " AND database = (SELECT oid FROM pg_database"
                    " WHERE datname = current_database())"
                )
            )
        await until(lambda: second.leading, "the second scheduler to lead")
        await until(
            lambda: jobs(second) == [f"bulletin-{bulletin_id}"],
            "the second scheduler to hold the bulletin's job",
        )

        # Had the first lived on without its lock, its jobs would not fire any more.
        await first.fire(bulletin_id)
        assert not first.leading
        assert jobs(first) == []
        async with db.transaction() as session:
            bulletin = await session.get(Bulletin, bulletin_id)
            assert bulletin is not None
            assert (bulletin.status, bulletin.public_id) == ("scheduled", None)
    finally:
        await second.stop()
        await first.stop()
        await first_db.close()
        await second_db.close()


@postgres_only
async def test_a_scheduler_that_stops_hands_over(db: Database, settings: Settings) -> None:
    bulletin_id = await schedule_later(db)
    other = Database(settings.database_url)
    first = BulletinScheduler(db, settings, every=0.1)
    second = BulletinScheduler(other, settings, every=0.1)
    try:
        await first.start()
        await second.start()
        assert (first.leading, second.leading) == (True, False)
        await first.stop()
        await until(lambda: second.leading, "the second scheduler to lead")
        await until(
            lambda: jobs(second) == [f"bulletin-{bulletin_id}"],
            "the second scheduler to hold the bulletin's job",
        )
    finally:
        await second.stop()
        await other.close()


@postgres_only
async def test_two_processes_publish_a_due_bulletin_once(db: Database, settings: Settings) -> None:
    async with db.transaction() as session:
        session.add(
            Bulletin(
                texts={"en": {"title": "Water", "text": "Water is back in Hay al-Amel."}},
                status="scheduled",
                scheduled_at=datetime.now(UTC) - timedelta(minutes=1),  # due: sent at start
                created_by="cli:test",
            )
        )
    other = Database(settings.database_url)
    schedulers = [
        BulletinScheduler(db, settings, every=0.1),
        BulletinScheduler(other, settings, every=0.1),
    ]
    try:
        await asyncio.gather(*(scheduler.start() for scheduler in schedulers))
        assert sorted(s.leading for s in schedulers) == [False, True]
        for _ in range(600):  # the leader publishes it, within 30 s
            if await bulletin_statuses(db) == ["sent"]:
                break
            await asyncio.sleep(0.05)
    finally:
        for scheduler in schedulers:
            await scheduler.stop()
        await other.close()
    async with db.transaction() as session:
        [bulletin] = (await session.scalars(select(Bulletin))).all()
        assert bulletin.status == "sent"
        assert bulletin.public_id is not None


@sqlite_only
async def test_a_second_bot_on_one_sqlite_file_is_refused(
    db: Database, settings: Settings
) -> None:
    async with running(settings):
        with pytest.raises(DatabaseInUse, match="SQLite serves one sending process"):
            async with running(settings):
                pass
    async with running(settings):  # once the first has stopped, another may run
        pass


@sqlite_only
async def test_sqlite_claims_nothing(db: Database) -> None:
    await queue(db, ("1", "hello", "reply"))
    platform = FakePlatform()
    sender = Sender(db, [platform])
    sender.start()
    try:
        await all_done(db, sender)
    finally:
        await sender.stop()
    assert platform.texts() == ["hello"]
    async with db.transaction() as session:
        claims = (await session.execute(select(OutboxMessage.claimed_by))).scalars().all()
    assert claims == [None]


@postgres_only
async def test_a_slow_batch_keeps_its_claim_to_the_end(db: Database, settings: Settings) -> None:
    await queue(db, *[(str(n), f"m{n}", "broadcast") for n in range(6)])
    other = Database(settings.database_url)
    slow = FakePlatform(rate=2.0)  # three seconds for the six, claimed for one second at a time
    fast = FakePlatform()
    first = Sender(db, [slow], claim_lease=1.0)
    second = Sender(other, [fast], claim_lease=1.0, poll_every=0.05)  # looks all the time
    try:
        first.start()
        await until(
            lambda: len(slow.texts()) == 1, "the slow worker's first message"
        )  # the first has claimed them all
        second.start()
        await until(
            lambda: len(slow.texts() + fast.texts()) >= 6, "six messages between the two workers"
        )
        # A later message: a pass that sends it has passed over the six before it, so a second
        # copy of one of them would be out by then.
        await queue(db, ("99", "later", "broadcast"))
        first.wake("telegram")
        second.wake("telegram")
        await until(lambda: "later" in slow.texts() + fast.texts(), "the later message")
    finally:
        await first.stop()
        await second.stop()
        await other.close()
    sent = [text for text in slow.texts() + fast.texts() if text != "later"]
    assert sorted(sent) == [f"m{n}" for n in range(6)]
    assert [text for text in fast.texts() if text != "later"] == []


@postgres_only
async def test_a_contact_made_meanwhile_by_another_process_is_taken_up(
    db: Database, settings: Settings
) -> None:
    """Two first messages of one person reach two processes at once: the one that finds its
    contact made meanwhile by the other (a unique address) tries again and answers."""
    from bot.engine import Engine
    from bot.messages import Address, Inbound
    from bot.models import Contact, ProcessedInbound
    from handlers import build_registry

    other = Database(settings.database_url)
    try:
        async with other.transaction() as session:
            now = datetime.now(UTC)
            session.add(Contact(address="telegram:4242", channel="telegram", first_seen=now))
            await session.flush()  # the row exists, uncommitted: the engine's INSERT waits
            engine = Engine(db, settings, build_registry())
            first = Inbound(Address("telegram", "4242"), "u1", kind="command", text="/start")
            handling = asyncio.create_task(engine.handle(first))
            waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted"
            for _ in range(600):  # the engine's INSERT queues for the row, within 30 s
                if await session.scalar(text(waiting)):
                    break
                await asyncio.sleep(0.05)
            assert await session.scalar(text(waiting))
            assert not handling.done()  # waiting for the other process's transaction
        replies = await asyncio.wait_for(handling, timeout=30)  # the other one committed
    finally:
        await other.close()
    assert replies
    assert replies[0].address == Address("telegram", "4242")
    async with db.transaction() as session:
        contacts = (await session.scalars(select(Contact.address))).all()
        handled = (await session.scalars(select(ProcessedInbound.message_id))).all()
    assert contacts == ["telegram:4242"]
    assert handled == ["u1"]


async def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    """Whether `condition()` holds within `seconds` (checked every 10 ms)."""
    async with asyncio.timeout(seconds + 1.0):
        for _ in range(int(seconds * 100)):
            if condition():
                return True
            await asyncio.sleep(0.01)
    return condition()


@postgres_only
async def test_the_web_process_wakes_the_worker_at_once(db: Database, settings: Settings) -> None:
    """The Procfile's two processes: a person's reply, queued by the web process's engine, is
    sent by the worker's sender, which looks at the outbox only once a minute here: only the
    notification can have woken it."""
    web, worker_db = Database(settings.database_url), Database(settings.database_url)
    queued = outbox.Wakeup()
    notifier = Notifier(web)
    queued.connect(notifier)
    engine = Engine(web, settings, build_registry(), queued=queued)
    platform = FakePlatform()
    sender = Sender(worker_db, [platform], poll_every=60.0)
    listener = Listener(worker_db, sender.wake, ["telegram"])
    sender.start()
    listener.start()
    try:
        assert await wait_for(listener.listening.is_set, 10.0)
        await asyncio.sleep(0.2)  # the sender's first pass, at its start, found nothing
        assert platform.sent == []
        await Person(engine, Address("telegram", "71")).send("/start")
        assert await wait_for(lambda: len(platform.sent) == 1, 10.0), "the worker slept on"
        [(_at, picker)] = platform.sent
        assert picker.address == Address("telegram", "71")
        # Its connection lost (a restart of PostgreSQL, a proxy's timeout), it listens again.
        async with db.transaction() as session:
            await session.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
                )
            )
        assert await wait_for(lambda: not listener.listening.is_set(), 10.0)
        assert await wait_for(listener.listening.is_set, 10.0)
        await Person(engine, Address("telegram", "72")).send("/start")
        assert await wait_for(lambda: len(platform.sent) == 2, 10.0), "not heard after it"
        assert platform.sent[1][1].address == Address("telegram", "72")
    finally:
        await listener.close()
        await notifier.close()
        await sender.stop()
        await web.close()
        await worker_db.close()
