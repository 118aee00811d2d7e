"""A bulletin's delivery figures and chart outlive the outbox rows that retention deletes after
OUTBOX_DAYS: they are counted into the bulletin's tally, batch by batch, each row once, and
nothing of any person is kept."""

from __future__ import annotations

import asyncio
import os
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from bot import bulletins, privacy, retention, roles
from bot.config import Settings
from bot.db import Database
from bot.models import Bulletin, Contact, OutboxMessage
from bot.runtime import Bot
from bot.scheduler import BulletinScheduler
from bot.web import create_app
from tests.conftest import user_url
from tests.fake_telegram import FakeTelegram
from tests.fake_twilio import FakeTwilio
from tests.test_bulletin import cli
from tests.test_console_bulletins import AR, EDITOR, EN, add_subscriber, form, token
from tests.test_console_web import sign_in
from tests.test_whatsapp import both, fake

# Fixtures: the whole bot with fake Telegram and fake Twilio.
__all__ = ["both", "fake"]

TELEGRAM = {"ar": 555000101, "ckb": 555000102, "en": 555000103}  # the last blocked the bot
WHATSAPP = {
    "delivered": "whatsapp:+9647702000011",
    "opted out": "whatsapp:+9647702000012",
    "not reachable": "whatsapp:+9647702000013",
}
# Twilio's words for its error 21612 quote the number: the figures must not.
NOT_REACHABLE = (
    "The 'To' phone number: whatsapp:+9647702000013, is not currently reachable using the "
    "'From' phone number: whatsapp:+14155238886 via WhatsApp."
)


def desk_figures(page: str) -> tuple[str, str]:
    """The delivery chart and the figures' table of a bulletin's page on the desk."""
    chart = re.search(r'<figure class="chart">.*?</figure>', page, re.DOTALL)
    table = re.search(r'<table class="figures">.*?</table>', page, re.DOTALL)
    assert chart is not None, "no delivery chart"
    assert table is not None, "no figures"
    return chart.group(0), table.group(0)


async def raw_bulletin(db: Database, bulletin_id: int) -> str:
    """The bulletin's row as the database holds it, every column."""
    async with db.read() as connection:
        row = (
            await connection.execute(
                text("SELECT * FROM bulletins WHERE id = :id"), {"id": bulletin_id}
            )
        ).one()
    return repr(tuple(row))


async def deliveries(db: Database, bulletin_id: int) -> int:
    """The bulletin's outbox rows still there."""
    async with db.read() as connection:
        count = await connection.scalar(
            select(func.count()).where(OutboxMessage.bulletin_id == bulletin_id)
        )
    return int(count or 0)


async def test_last_months_bulletin_still_shows_whom_it_reached(
    fake: FakeTwilio, both: tuple[Bot, FakeTelegram], db: Database
) -> None:
    bot, telegram = both
    for locale, chat in TELEGRAM.items():
        await add_subscriber(db, f"telegram:{chat}", locale)
    telegram.block(TELEGRAM["en"])
    for address in WHATSAPP.values():
        await add_subscriber(db, address, "ar")
    fake.reject(WHATSAPP["opted out"], 21610)
    fake.reject(WHATSAPP["not reachable"], 21612, message=NOT_REACHABLE)
    async with db.transaction() as session:
        await roles.set_role(session, EDITOR, "editor", "test")
    app = create_app(bot.db, bot.telegram, bot.whatsapp, settings=bot.settings)
    env = {**os.environ, "DATABASE_URL": user_url(bot.settings.database_url)}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://bot.test",
        headers={"accept-language": "en"},
    ) as client:
        await sign_in(client, db, bot.settings, EDITOR)
        csrf = await token(client)
        written = await client.post(
            "/console/bulletins/new", data=form(csrf, "now", {"ar": AR, "en": EN})
        )
        page = written.headers["location"].split("?")[0]
        bulletin_id = int(page.rsplit("/", 1)[1])
        await client.post(page, data={"csrf": csrf, "action": "send"})
        await (bot.scheduler or BulletinScheduler(db, bot.settings)).sync()
        for channel in ("telegram", "whatsapp"):
            bot.sender.wake(channel)
            await bot.sender.flush(channel)
        await fake.wait_for_callbacks()
        assert len(telegram.sent(TELEGRAM["ar"])) == 1
        assert len(fake.sent(WHATSAPP["delivered"])) == 1
        chart, table = desk_figures((await client.get(page)).text)
        stats = await asyncio.to_thread(cli, ["bulletin", "stats", str(bulletin_id)], env)
        assert stats.returncode == 0, stats.stderr

        # What a coordinator reads today: 3 sent (one delivered, WhatsApp says), 3 not.
        assert 'data-sent="3" data-delivered="1" data-failed="3"' in chart
        assert "Forbidden: bot was blocked by the user" in table
        assert "opted out (21610)" in table
        assert (
            "Twilio 21612: Unable to create record: The &#39;To&#39; phone number: whatsapp:***,"
            in table
        )
        assert "9647702000013" not in table
        lines = stats.stdout.splitlines()
        # The Sorani reader got the Arabic text: counted in Arabic, the language sent.
        assert "telegram\tar\t2\t2\t0\t0\t0\t0\t0\t0" in lines
        assert "telegram\ten\t1\t0\t0\t0\t0\t0\t1\t0" in lines
        assert "whatsapp\tar\t3\t1\t1\t0\t0\t1\t1\t0" in lines

        # A month later, twice (the daily run): the rows with the addresses are gone, the
        # figures, the chart and the command's numbers stay as they were, not doubled.
        later = datetime.now(UTC) + timedelta(days=15)
        for run in range(2):
            counts = await retention.purge(db, bot.settings, later + timedelta(days=run))
            assert counts["outbox rows deleted"] == (6 if run == 0 else 0)
            assert await deliveries(db, bulletin_id) == 0
            await sign_in(client, db, bot.settings, EDITOR)  # the session ended meanwhile
            shown = await client.get(page)
            assert shown.status_code == 200
            assert desk_figures(shown.text) == (chart, table)
            again = await asyncio.to_thread(cli, ["bulletin", "stats", str(bulletin_id)], env)
            assert again.stdout == stats.stdout

    stored = await raw_bulletin(db, bulletin_id)
    assert '"sent": [' in stored.replace("'", '"')  # the tally is there, in the row
    for chat in TELEGRAM.values():
        assert str(chat) not in stored
    for address in WHATSAPP.values():
        assert address.split("+")[1] not in stored


async def old_deliveries(db: Database, now: datetime) -> tuple[int, int]:
    """Two bulletins of three weeks ago and their outcome rows, as the sender left them (and
    two other messages long sent); their ids."""
    sent = now - timedelta(days=21)
    rows: list[dict[str, Any]] = []

    def add(ident: int, channel: str, locale: str, status: str, count: int, **more: Any) -> None:
        for _n in range(count):
            minute = timedelta(minutes=len(rows))
            rows.append(
                {
                    "bulletin_id": ident,
                    "channel": channel,
                    "locale": locale,
                    "status": status,
                    "address": f"{channel}:{'+' if channel == 'whatsapp' else ''}"
                    f"96477090{len(rows):05d}",
                    "created_at": sent,
                    "sent_at": sent + minute if status in ("sent", "held") else None,
                    "failed_at": sent + minute if status in ("failed", "unreachable") else None,
                    **more,
                }
            )

    async with db.transaction() as session:
        first, second = (
            Bulletin(
                texts={"en": EN},
                created_by="test",
                status="sent",
                public_id=code,
                published_at=sent,
            )
            for code in ("B-TALYA2", "B-TALYB3")
        )
        session.add_all([first, second])
        await session.flush()
        add(first.id, "telegram", "ar", "sent", 4)
        add(first.id, "telegram", "en", "unreachable", 2, error="Forbidden: bot was blocked")
        add(first.id, "whatsapp", "ar", "sent", 3, delivered_at=sent + timedelta(hours=1))
        add(first.id, "whatsapp", "ar", "failed", 1, error=f"Twilio 21612: {NOT_REACHABLE}")
        add(first.id, "whatsapp", "en", "held", 1, error="outside the 24-hour window")
        add(first.id, "telegram", "ar", "cancelled", 1, error="stopped")
        add(first.id, "telegram", "ckb", "pending", 1)  # waits to go: retention keeps it
        add(second.id, "telegram", "ar", "sent", 3)
        add(second.id, "whatsapp", "ar", "failed", 1, error="Twilio 63016: outside the window")
        for row in rows:
            session.add(OutboxMessage(priority=2, body={"bulletin": row["bulletin_id"]}, **row))
        for n in range(2):
            session.add(
                OutboxMessage(
                    channel="telegram",
                    address=f"telegram:55500020{n}",
                    priority=0,
                    body={},
                    status="sent",
                    created_at=sent,
                    sent_at=sent,
                )
            )
        return first.id, second.id


async def seen(db: Database, ids: tuple[int, ...]) -> list[Any]:
    """Each bulletin's figures and chart, as the desk and the command read them."""
    async with db.read() as connection, AsyncSession(bind=connection) as session:
        return [
            (await bulletins.figures(session, ident), await bulletins.timeline(session, ident))
            for ident in ids
        ]


async def test_a_purge_cut_short_counts_every_row_once(db: Database, settings: Settings) -> None:
    now = datetime.now(UTC)
    ids = await old_deliveries(db, now)
    before = await seen(db, ids)
    [(first, _chart), _second] = before
    assert [(f.channel, f.locale, f.recipients) for f in first] == [
        ("telegram", "ar", 5),
        ("telegram", "ckb", 1),
        ("telegram", "en", 2),
        ("whatsapp", "ar", 4),
        ("whatsapp", "en", 1),
    ]
    assert first[3].reasons == {
        "Twilio 21612: The 'To' phone number: whatsapp:***, is not currently reachable us": 1
    }

    # The connection is lost at the third batch's DELETE, after its rows were counted: that
    # batch is undone, the two before it stay counted and deleted.
    deletes = 0

    def cut(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        nonlocal deletes
        if statement.lstrip().upper().startswith("DELETE FROM OUTBOX"):
            deletes += 1
            if deletes == 3:
                raise ConnectionError("power cut")

    event.listen(db.engine.sync_engine, "before_cursor_execute", cut)
    try:
        with pytest.raises(ConnectionError, match="power cut"):
            await retention.purge(db, settings, now, batch=3)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", cut)
    async with db.read() as connection:
        left = await connection.scalar(select(func.count()).select_from(OutboxMessage))
    assert left == 19 - 2 * 3  # two batches of three gone, counted into the tallies
    assert await seen(db, ids) == before

    counts = await retention.purge(db, settings, now, batch=3)
    assert counts["outbox rows deleted"] == left - 1
    assert await seen(db, ids) == before
    async with db.read() as connection:
        kept = (await connection.execute(select(OutboxMessage.status))).scalars().all()
    assert kept == ["pending"]  # and it still counts, live
    assert [f.waiting for f in (await seen(db, ids))[0][0]] == [0, 1, 0, 0, 0]

    counts = await retention.purge(db, settings, now, batch=3)
    assert counts["outbox rows deleted"] == 0
    assert await seen(db, ids) == before
    stored = await raw_bulletin(db, ids[0])
    assert "9647702000013" not in stored
    assert "96477090" not in stored


async def test_a_person_who_deletes_their_data_stays_counted_not_named(
    db: Database, settings: Settings
) -> None:
    now = datetime.now(UTC)
    ids = await old_deliveries(db, now)
    before = await seen(db, ids)
    # A Telegram reader who got the first bulletin, a WhatsApp reader whose message failed (the
    # reason quotes the number), and the Sorani reader whose message still waits.
    async with db.transaction() as session:
        rows = (
            await session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.bulletin_id == ids[0])
                .order_by(OutboxMessage.id)
            )
        ).all()
        people = [
            next(row.address for row in rows if row.status == status)
            for status in ("sent", "failed", "pending")
        ]
        for address in people:
            contact = Contact(address=address, channel=address.split(":")[0], subscribed=True)
            session.add(contact)
            await session.flush()
            await privacy.forget(session, contact, now)
    async with db.read() as connection:
        left = (await connection.execute(select(OutboxMessage.address))).scalars().all()
        errors = (
            (
                await connection.execute(
                    select(OutboxMessage.error).where(OutboxMessage.address == privacy.FORGOTTEN)
                )
            )
            .scalars()
            .all()
        )
    for address in people:
        assert address not in left
    assert left.count(privacy.FORGOTTEN) == 2
    assert sorted(map(str, errors)) == [
        "None",
        "Twilio 21612: The 'To' phone number: whatsapp:***, is not currently reachable us",
    ]
    after = await seen(db, ids)
    assert after[1] == before[1]
    assert after[0][1] == before[0][1]  # the chart: their messages went all the same
    # Every figure as before, but the message that waited for the Sorani reader: it will not
    # go, and it is not counted.
    assert before[0][0][1].locale == "ckb"
    assert after[0][0] == [before[0][0][0], *before[0][0][2:]]

    # And once retention has deleted the rows, the same.
    await retention.purge(db, settings, now)
    assert await seen(db, ids) == after
    stored = await raw_bulletin(db, ids[0])
    assert "96477090" not in stored
