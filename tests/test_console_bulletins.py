"""The console's bulletin desk: compose in three languages with each channel's preview, the
audience before sending, targeted bulletins, schedules and edits, delivery; hostile forms."""

from __future__ import annotations

import html
import re
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from bot import roles
from bot.config import Settings
from bot.db import Database
from bot.models import AuditEntry, Bulletin, BulletinPicture, Contact, OutboxMessage
from bot.runtime import Bot
from bot.scheduler import BulletinScheduler
from bot.web import create_app
from tests.fake_telegram import FakeTelegram
from tests.fake_twilio import FakeTwilio
from tests.test_console_web import ADDRESSES, CSRF, client, people, sign_in
from tests.test_whatsapp import both, fake

# Fixtures: the whole bot with fake Telegram and fake Twilio; the console's client and people.
__all__ = ["both", "client", "fake", "people"]

EDITOR = ADDRESSES["editor"]
AR = {"title": "توزيع البطانيات", "text": "يبدأ توزيع البطانيات في مخيم شاريا يوم الأحد."}
EN = {"title": "Blanket distribution", "text": "Blankets are given out at Sharya on Sunday."}


def png() -> bytes:
    """A real 1 × 1 PNG picture."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = (1).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", pixels)
        + chunk(b"IEND", b"")
    )


async def add_subscriber(
    db: Database,
    address: str,
    locale: str,
    places: str | None = None,
    wrote_ago: timedelta | None = timedelta(hours=1),
) -> None:
    """A subscriber on the address's channel, wanting news about `places` (None: all)."""
    now = datetime.now(UTC)
    async with db.transaction() as session:
        session.add(
            Contact(
                address=address,
                channel=address.split(":")[0],
                locale=locale,
                subscribed=True,
                bulletin_places=places,
                last_inbound_at=None if wrote_ago is None else now - wrote_ago,
            )
        )


@pytest.fixture
async def editor(
    people: None, client: httpx.AsyncClient, db: Database, settings: Settings
) -> httpx.AsyncClient:
    """The client signed in as the editor."""
    await sign_in(client, db, settings, EDITOR)
    return client


async def token(client: httpx.AsyncClient, path: str = "/console/bulletins/new") -> str:
    """This session's form token, from a page."""
    page = await client.get(path)
    assert page.status_code == 200, page.text
    found = CSRF.search(page.text)
    assert found is not None
    return found.group(1)


def form(csrf: str, action: str, texts: dict[str, dict[str, str]], **more: Any) -> dict[str, Any]:
    """A compose form's fields."""
    fields: dict[str, Any] = {"csrf": csrf, "action": action, "image": ""}
    for locale, text in texts.items():
        fields[f"title_{locale}"] = text["title"]
        fields[f"text_{locale}"] = text["text"]
    fields.update(more)
    return fields


async def audit(db: Database, action: str) -> list[AuditEntry]:
    async with db.transaction() as session:
        return list(
            (await session.scalars(select(AuditEntry).where(AuditEntry.action == action))).all()
        )


async def stored(db: Database) -> list[Bulletin]:
    async with db.transaction() as session:
        return list((await session.scalars(select(Bulletin).order_by(Bulletin.id))).all())


BULLETIN_ROUTES = [
    "/console/bulletins",
    "/console/bulletins/new",
]


@pytest.mark.usefixtures("people")
@pytest.mark.parametrize("path", BULLETIN_ROUTES)
@pytest.mark.parametrize("role", [None, *ADDRESSES])
async def test_only_editors_and_admins_open_the_desk(
    client: httpx.AsyncClient, db: Database, settings: Settings, path: str, role: str | None
) -> None:
    if role is not None:
        await sign_in(client, db, settings, ADDRESSES[role])
    response = await client.get(path)
    if role is None:
        assert response.status_code == 401
    elif role in ("admin", "editor"):
        assert response.status_code == 200
        assert 'href="/console/bulletins"' in response.text  # in the menu
    else:
        assert response.status_code == 403
        assert "Your role does not include this page" in response.text
        assert 'href="/console/bulletins"' not in response.text
    assert "<script>" not in response.text


@pytest.mark.usefixtures("people")
@pytest.mark.parametrize("role", ["coordinator", "viewer"])
async def test_others_cannot_post_to_the_desk(
    client: httpx.AsyncClient, db: Database, settings: Settings, role: str
) -> None:
    await sign_in(client, db, settings, ADDRESSES[role])
    home = await client.get("/console/")
    csrf = CSRF.search(home.text)
    assert csrf is not None
    fields = form(csrf.group(1), "now", {"en": EN})
    for path in ("/console/bulletins/new", "/console/bulletins/preview"):
        assert (await client.post(path, data=fields)).status_code == 403
    assert await stored(db) == []


async def test_compose_and_preview_each_channel_and_language(
    editor: httpx.AsyncClient, db: Database
) -> None:
    await add_subscriber(db, "telegram:11", "ar")
    await add_subscriber(db, "telegram:12", "ckb")
    await add_subscriber(db, "whatsapp:+9647701000013", "en", wrote_ago=timedelta(days=3))
    await add_subscriber(db, "whatsapp:+9647701000014", "ar")
    await add_subscriber(db, "whatsapp:+9647701000015", "ar", wrote_ago=timedelta(hours=23))
    csrf = await token(editor)
    long_text = ("Families return to Sinjar. " * 160).strip()  # 4,000+: WhatsApp cuts it
    english = {"title": EN["title"], "text": long_text[:3400]}
    # Without JavaScript: the Preview button.
    page = await editor.post(
        "/console/bulletins/new", data=form(csrf, "preview", {"ar": AR, "en": english})
    )
    assert page.status_code == 200
    shown = page.text
    # Telegram: HTML, the title bold.
    assert f"&lt;b&gt;{AR['title']}" not in shown
    assert f"<b>{AR['title']}</b>" in shown
    # WhatsApp: the title between asterisks; the long English text in parts of at most 1,600
    # characters, cut at line ends as the adapter cuts them (the title's line end first).
    assert f"*{EN['title']}*" in shown
    english_reader = shown.split('data-locale="en"')[1]
    whatsapp = english_reader.split('class="channel whatsapp"')[1].split("</div>")[0]
    assert "4 messages" in whatsapp.split("</h4>")[0]
    parts = re.findall(r'<blockquote class="part"[^>]*>(.*?)</blockquote>', whatsapp, re.S)
    assert len(parts) == 4
    assert parts[0] == f"*{EN['title']}*"
    assert all(len(html.unescape(part)) <= 1600 for part in parts)
    # Sorani left empty: its readers get Arabic, with the note (in Sorani) above it.
    sorani = shown.split('data-locale="ckb"')[1].split('data-locale="en"')[0]
    assert "No text in this language" in sorani
    assert "ئەم بڵاوکراوەیە" in sorani or "بڵاوکراوە" in sorani
    # The audience: 5 subscribers, 1 in another language, 1 outside WhatsApp's window.
    assert 'data-total="5"' in shown
    assert "goes to 5 subscribers" in shown
    assert 'id="audience-fallback" data-count="1"' in shown
    assert 'id="audience-window" data-count="1"' in shown
    assert await stored(db) == []  # a preview writes no bulletin

    # With JavaScript: the same from the preview address, as a fragment.
    live = await editor.post(
        "/console/bulletins/preview",
        data=form(csrf, "preview", {"en": EN}, place=["IQG09"]),
    )
    assert live.status_code == 200
    assert "<html" not in live.text
    assert f"<b>{EN['title']}</b>" in live.text
    assert "subscribers of Duhok" in live.text
    assert 'data-total="5"' in live.text  # nobody chose a governorate: all get it
    assert 'id="audience-fallback" data-count="4"' in live.text
    assert live.headers["content-security-policy"].startswith("default-src 'self'")


async def test_the_audience_of_a_bulletin_for_two_governorates(
    editor: httpx.AsyncClient, db: Database
) -> None:
    await add_subscriber(db, "telegram:21", "ar", "IQG09")  # Duhok
    await add_subscriber(db, "telegram:22", "ar", "IQG01 IQG15")  # Anbar and Ninewa
    await add_subscriber(db, "telegram:23", "en", "IQG02")  # Basra only: not this one
    await add_subscriber(db, "telegram:24", "en", None)  # all of Iraq
    csrf = await token(editor)
    page = await editor.post(
        "/console/bulletins/new",
        data=form(csrf, "preview", {"ar": AR}, place=["IQG15", "IQG09"]),
    )
    assert page.status_code == 200
    assert 'data-total="3"' in page.text
    assert "subscribers of Duhok, Ninewa" in page.text  # in the gazetteer's order


async def test_send_now_asks_first_then_sends_to_the_chosen_governorates(
    editor: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    await add_subscriber(db, "telegram:31", "ar", "IQG09")
    await add_subscriber(db, "telegram:32", "ar", "IQG02")
    await add_subscriber(db, "telegram:33", "en", None)
    csrf = await token(editor)
    answer = await editor.post(
        "/console/bulletins/new", data=form(csrf, "now", {"ar": AR, "en": EN}, place=["IQG09"])
    )
    assert answer.status_code == 303
    page_url = answer.headers["location"]
    assert page_url.endswith("?done=draft")
    [bulletin] = await stored(db)
    assert (bulletin.status, bulletin.places, bulletin.public_id) == ("draft", ["IQG09"], None)
    page = await editor.get(page_url)
    assert "Yes, send it to 2 people" in page.text
    assert "Check the audience below" in page.text
    async with db.transaction() as session:
        assert await session.scalar(select(OutboxMessage.id)) is None  # nothing has gone
    sent = await editor.post(page_url.split("?")[0], data={"csrf": csrf, "action": "send"})
    assert sent.status_code == 303
    [bulletin] = await stored(db)
    assert bulletin.status == "sending"
    assert bulletin.public_id is not None
    await BulletinScheduler(db, settings).sync()  # queues, as the running bot does
    async with db.transaction() as session:
        rows = (
            await session.scalars(
                select(OutboxMessage.address).where(OutboxMessage.bulletin_id == bulletin.id)
            )
        ).all()
    assert sorted(rows) == ["telegram:31", "telegram:33"]
    [written] = await audit(db, "bulletin:write")
    assert written.actor == EDITOR
    assert written.detail["places"] == ["IQG09"]
    [send] = await audit(db, "bulletin:send")
    assert send.detail["audience"] == 2
    # Sent: a second press changes nothing and says so.
    again = await editor.post(page_url.split("?")[0], data={"csrf": csrf, "action": "send"})
    assert again.status_code == 409
    assert "changed meanwhile" in again.text
    assert len(await audit(db, "bulletin:send")) == 1
    # Stop: what has not gone yet is cancelled, and the page says so.
    stopped = await editor.post(page_url.split("?")[0], data={"csrf": csrf, "action": "stop"})
    assert stopped.headers["location"].endswith("?done=stopped")
    [bulletin] = await stored(db)
    assert bulletin.status == "stopped"
    [stop] = await audit(db, "bulletin:stop")
    assert stop.detail["cancelled"] == 2
    assert "Stop sending" not in (await editor.get(page_url.split("?")[0])).text


async def test_schedule_edit_reschedule_and_cancel(
    editor: httpx.AsyncClient, db: Database
) -> None:
    csrf = await token(editor)
    answer = await editor.post(
        "/console/bulletins/new",
        data=form(csrf, "schedule", {"ar": AR}, when="2030-01-02T09:30"),
    )
    assert answer.status_code == 303
    [bulletin] = await stored(db)
    assert bulletin.status == "scheduled"
    assert bulletin.scheduled_at == datetime(2030, 1, 2, 6, 30, tzinfo=UTC)  # Baghdad is +3
    edit_url = f"/console/bulletins/{bulletin.id}/edit"
    page = await editor.get(edit_url)
    assert 'value="2030-01-02T09:30"' in page.text
    assert AR["title"] in page.text
    saved = await editor.post(
        edit_url,
        data=form(
            csrf,
            "save",
            {"ar": AR, "en": EN},
            when="2030-01-03T10:00",
            place=["IQG11"],
        ),
    )
    assert saved.status_code == 303
    assert saved.headers["location"].endswith("?done=saved")
    [bulletin] = await stored(db)
    assert set(bulletin.texts) == {"ar", "en"}
    assert bulletin.places == ["IQG11"]
    assert bulletin.scheduled_at == datetime(2030, 1, 3, 7, 0, tzinfo=UTC)
    [edited] = await audit(db, "bulletin:edit")
    assert edited.detail["added"] == ["en"]
    assert edited.detail["places"] == {"before": [], "after": ["IQG11"]}
    assert len(await audit(db, "bulletin:reschedule")) == 1
    # The same again changes nothing.
    same = await editor.post(
        edit_url,
        data=form(csrf, "save", {"ar": AR, "en": EN}, when="2030-01-03T10:00", place=["IQG11"]),
    )
    assert same.headers["location"].endswith("?done=unchanged")
    cancelled = await editor.post(
        f"/console/bulletins/{bulletin.id}", data={"csrf": csrf, "action": "cancel"}
    )
    assert cancelled.status_code == 303
    [bulletin] = await stored(db)
    assert bulletin.status == "cancelled"
    assert len(await audit(db, "bulletin:cancel")) == 1
    # Gone out of reach: editing it is refused, and nothing changes.
    refused = await editor.post(edit_url, data=form(csrf, "save", {"en": EN}))
    assert refused.status_code == 409
    assert set((await stored(db))[0].texts) == {"ar", "en"}


async def test_daily_and_weekly(editor: httpx.AsyncClient, db: Database) -> None:
    csrf = await token(editor)
    await editor.post(
        "/console/bulletins/new", data=form(csrf, "daily", {"en": EN}, time="08:15", weekday="")
    )
    await editor.post(
        "/console/bulletins/new", data=form(csrf, "weekly", {"en": EN}, time="18:00", weekday="4")
    )
    daily, weekly = await stored(db)
    assert (daily.status, daily.recurrence, daily.time_of_day) == ("recurring", "daily", "08:15")
    assert (weekly.recurrence, weekly.time_of_day, weekly.weekday) == ("weekly", "18:00", 4)
    desk = await editor.get("/console/bulletins")
    assert "Every day at" in desk.text
    assert "Every Friday at" in desk.text
    moved = await editor.post(
        f"/console/bulletins/{weekly.id}/edit",
        data=form(csrf, "save", {"en": EN}, time="19:30", weekday="5"),
    )
    assert moved.status_code == 303
    weekly = (await stored(db))[1]
    assert (weekly.time_of_day, weekly.weekday) == ("19:30", 5)
    [moved_entry] = await audit(db, "bulletin:reschedule")
    assert moved_entry.detail["after"] == {"time": "19:30", "weekday": 5}


async def test_a_photo_is_uploaded_checked_and_shown(
    editor: httpx.AsyncClient, db: Database
) -> None:
    csrf = await token(editor)
    picture = png()
    answer = await editor.post(
        "/console/bulletins/new",
        data=form(csrf, "preview", {"en": EN}),
        files={"photo": ("camp.png", picture, "image/png")},
    )
    assert answer.status_code == 200
    found = re.search(r'name="image" value="(upload:\d+)"', answer.text)
    assert found is not None
    shown = re.search(r'<img class="photo" src="([^"]+)"', answer.text)
    assert shown is not None
    served = await editor.get(shown.group(1))
    assert served.status_code == 200
    assert served.content == picture
    assert served.headers["content-type"] == "image/png"
    # Kept by its reference from then on: scheduling needs no second upload.
    await editor.post(
        "/console/bulletins/new",
        data=form(csrf, "schedule", {"en": EN}, image=found.group(1), when="2030-05-05 08:00"),
    )
    [bulletin] = await stored(db)
    assert bulletin.image == found.group(1)
    # Not a picture, whatever its name says: refused in the editor's language, nothing kept.
    refused = await editor.post(
        "/console/bulletins/new",
        data=form(csrf, "schedule", {"en": EN}, when="2030-05-05 08:00"),
        files={"photo": ("camp.png", b"MZ\x90\x00 not a picture", "image/png")},
    )
    assert refused.status_code == 400
    assert "must be a JPEG or PNG picture" in refused.text
    async with db.transaction() as session:
        assert len((await session.scalars(select(BulletinPicture.id))).all()) == 1
    assert len(await stored(db)) == 1


HOSTILE: list[tuple[str, dict[str, Any], int]] = [
    # (what, changes to a valid form, the status expected)
    ("no token", {"csrf": ""}, 400),
    ("another token", {"csrf": "x" * 43}, 400),
    ("an unknown action", {"action": "launch"}, 400),
    ("save on a new one", {"action": "save"}, 400),
    ("a place that is no governorate", {"place": ["IQG99"]}, 400),
    ("a LIKE pattern as a place", {"place": ["%"]}, 400),
    ("an image from elsewhere", {"image": "https://evil.example/x.jpg"}, 400),
    ("a Telegram file id as image", {"image": "AgACAgQAAx"}, 400),
    ("a photo never uploaded", {"image": "upload:999"}, 400),
    ("a photo id too long", {"image": "upload:" + "9" * 40}, 400),
    ("no language", {"title_en": "", "text_en": ""}, 400),
    ("a title without text", {"text_en": ""}, 400),
    ("a title too long", {"title_en": "x" * 201}, 400),
    ("a text too long", {"text_en": "x" * 3501}, 400),
    ("a past time", {"action": "schedule", "when": "2001-01-01T09:00"}, 400),
    ("no time", {"action": "daily", "time": "late"}, 400),
    ("a weekday out of the week", {"action": "weekly", "time": "09:00", "weekday": "9"}, 400),
]


@pytest.mark.parametrize(("what", "changes", "status"), HOSTILE, ids=[h[0] for h in HOSTILE])
async def test_hostile_forms_get_a_clear_answer(
    editor: httpx.AsyncClient, db: Database, what: str, changes: dict[str, Any], status: int
) -> None:
    csrf = await token(editor)
    fields = {**form(csrf, "now", {"en": EN}), **changes}
    answer = await editor.post("/console/bulletins/new", data=fields)
    assert answer.status_code == status, what
    assert await stored(db) == []


async def test_malformed_bodies_get_400_or_413_never_500(
    editor: httpx.AsyncClient, db: Database
) -> None:
    csrf = await token(editor)
    cases: list[tuple[Any, bytes, int]] = [
        ({"content-type": "multipart/form-data; boundary=zz"}, b"--zz\r\nnonsense", 400),
        ({"content-type": "application/x-www-form-urlencoded"}, b"csrf=%ff%fe&action=now", 400),
        ({"content-type": "text/plain"}, f"csrf={csrf}&action=now".encode(), 400),
        ({"content-type": "application/json"}, b'{"csrf": "x"}', 400),
        (
            {"content-type": "application/x-www-form-urlencoded"},
            "&".join(f"f{n}=1" for n in range(500)).encode(),
            400,
        ),
        (
            {"content-type": "multipart/form-data; boundary=é".encode()},
            b"--\xc3\xa9\r\n",
            400,
        ),
    ]
    for headers, body, status in cases:
        for path in ("/console/bulletins/new", "/console/bulletins/preview"):
            answer = await editor.post(path, content=body, headers=headers)
            assert answer.status_code == status, (path, headers, body[:40])
    # Larger than a photo and the texts may be: refused before it is read.
    huge = await editor.post(
        "/console/bulletins/new",
        content=b"x" * 10,
        headers={"content-type": "multipart/form-data; boundary=zz", "content-length": "9999999"},
    )
    assert huge.status_code == 413
    assert "at most 5 MB" in huge.text
    # Another site's form, even with the token.
    other = await editor.post(
        "/console/bulletins/new",
        data=form(csrf, "now", {"en": EN}),
        headers={"origin": "https://evil.example"},
    )
    assert other.status_code == 400
    # Actions on a bulletin: unknown id, not a number, unknown action, no token.
    assert (await editor.get("/console/bulletins/999")).status_code == 404
    assert (await editor.get("/console/bulletins/abc")).status_code == 404
    assert (await editor.get("/console/bulletins/999/edit")).status_code == 404
    assert (await editor.get("/console/bulletins/pictures/77")).status_code == 404
    assert (await editor.get("/console/bulletins/pictures/x1")).status_code == 404
    missing = await editor.post("/console/bulletins/999", data={"csrf": csrf, "action": "stop"})
    assert missing.status_code == 404
    word = await editor.post("/console/bulletins/abc", data={"csrf": csrf, "action": "stop"})
    assert word.status_code == 400
    await editor.post("/console/bulletins/new", data=form(csrf, "now", {"en": EN}))
    [draft] = await stored(db)
    unknown = await editor.post(
        f"/console/bulletins/{draft.id}", data={"csrf": csrf, "action": "explode"}
    )
    assert unknown.status_code == 400
    no_token = await editor.post(f"/console/bulletins/{draft.id}", data={"action": "send"})
    assert no_token.status_code == 400
    bad_edit = await editor.post(
        f"/console/bulletins/{draft.id}/edit", data=form(csrf, "now", {"en": EN})
    )
    assert bad_edit.status_code == 400
    [draft] = await stored(db)
    assert draft.status == "draft"


async def test_a_targeted_bulletin_reaches_exactly_the_chosen_governorates_and_the_chart_shows_it(
    fake: FakeTwilio, both: tuple[Bot, FakeTelegram], db: Database
) -> None:
    bot, telegram = both
    await add_subscriber(db, "telegram:7001", "ar", "IQG09")  # Duhok: yes
    await add_subscriber(db, "telegram:7002", "en", "IQG02")  # Basra: no
    await add_subscriber(db, "telegram:7003", "ckb", None)  # all of Iraq: yes
    await add_subscriber(db, "telegram:7004", "ar", "IQG09 IQG02")  # yes, but blocked the bot
    await add_subscriber(db, "whatsapp:+9647702000001", "ar", "IQG11 IQG15")  # Ninewa: yes
    await add_subscriber(db, "whatsapp:+9647702000002", "ar", "IQG08")  # Baghdad: no
    telegram.block(7004)
    async with db.transaction() as session:
        await roles.set_role(session, EDITOR, "editor", "test")
    app = create_app(bot.db, bot.telegram, bot.whatsapp, settings=bot.settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://bot.test",
        headers={"accept-language": "en"},
    ) as client:
        await sign_in(client, db, bot.settings, EDITOR)
        csrf = await token(client)
        written = await client.post(
            "/console/bulletins/new",
            data=form(csrf, "now", {"ar": AR, "en": EN}, place=["IQG09", "IQG15"]),
        )
        page = written.headers["location"].split("?")[0]
        assert "Yes, send it to 4 people" in (await client.get(page)).text
        await client.post(page, data={"csrf": csrf, "action": "send"})
        scheduler = bot.scheduler or BulletinScheduler(db, bot.settings)
        await scheduler.sync()
        for channel in ("telegram", "whatsapp"):
            bot.sender.wake(channel)
            await bot.sender.flush(channel)
        await fake.wait_for_callbacks()
        # Exactly the subscribers of Duhok and Ninewa, and those who want all of Iraq.
        assert [len(telegram.sent(chat)) for chat in (7001, 7002, 7003, 7004)] == [1, 0, 1, 0]
        [to_ninewa] = fake.sent("whatsapp:+9647702000001")
        assert AR["text"] in (to_ninewa.body or "")
        assert fake.sent("whatsapp:+9647702000002") == []
        assert AR["text"] in telegram.sent(7003)[0]["plain"]  # Sorani readers: Arabic
        shown = (await client.get(page)).text
    chart = re.search(r'<svg id="delivery-chart"[^>]*>', shown)
    assert chart is not None
    assert 'data-sent="3"' in chart.group(0)
    assert 'data-delivered="1"' in chart.group(0)  # WhatsApp says so; Telegram does not
    assert 'data-failed="1"' in chart.group(0)
    assert len(re.findall(r'<polyline class="line (sent|delivered|failed)"', shown)) == 3
    figures = shown.split('class="figures"')[1]
    assert "Forbidden: bot was blocked by the user" in figures
    assert "Sent: 3" in shown


async def test_photos_uploaded_for_nothing_are_deleted_after_a_day(
    db: Database, settings: Settings
) -> None:
    from bot.retention import purge

    long_ago = datetime.now(UTC) - timedelta(days=2)
    async with db.transaction() as session:
        pictures = [
            BulletinPicture(
                content=png(), media_type="image/png", created_by=EDITOR, created_at=at
            )
            for at in (long_ago, long_ago, datetime.now(UTC))
        ]
        session.add_all(pictures)
        await session.flush()
        used, unused, fresh = (p.id for p in pictures)
        session.add(Bulletin(texts={"en": EN}, image=f"upload:{used}", created_by=EDITOR))
    counts = await purge(db, settings, datetime.now(UTC))
    assert counts["unused bulletin photos deleted"] == 1
    async with db.transaction() as session:
        kept = set((await session.scalars(select(BulletinPicture.id))).all())
    assert kept == {used, fresh}
    assert unused not in kept
