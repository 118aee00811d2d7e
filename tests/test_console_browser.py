"""The console in a real browser: Debian's headless Chromium, driven by Selenium, against the
real app on uvicorn on 127.0.0.1. Screenshots of each page go to the run's artifacts folder."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot import roles, signin
from bot.config import Settings
from bot.db import Database
from bot.messages import Address
from bot.models import Signature
from bot.web import create_app
from tests.conftest import Person
from tests.coordinator_helpers import send_full_report
from tests.helpers import choose_language, t
from tests.test_console_web import outbox_to

ARTIFACTS = Path(os.environ.get("ICSSI_ARTIFACTS", Path(__file__).parent.parent / "artifacts"))
WAIT = 15.0  # seconds a page may take to appear, at most


def browser_or_skip() -> Any:
    """A headless Chromium at a phone's width (360 px), or skip (fail under ICSSI_CI)."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        reason = "Debian's chromium and chromium-driver are not installed (.ci/chromium.sh)"
        if os.environ.get("ICSSI_CI"):
            pytest.fail(f"{reason}; ICSSI_CI is set, so this test must run", pytrace=False)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root in a container
        "--disable-dev-shm-usage",
        "--window-size=360,800",
        "--lang=en",
        "--no-proxy-server",
        # Nothing leaves the machine: no name but the loopback resolves, no background calls.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ):
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options, service=Service(driver))
    browser.set_page_load_timeout(WAIT)
    # A window is at least 500 px wide: the page is laid out as on a 360 px phone instead.
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 360, "height": 800, "deviceScaleFactor": 1, "mobile": True},
    )
    return browser


class Server:
    """The real app on uvicorn in a thread of its own, on a free loopback port."""

    def __init__(self, settings: Settings) -> None:
        import uvicorn

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.db = Database(settings.database_url)
        config = uvicorn.Config(
            create_app(self.db, settings=settings),
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        """Serve until told to stop, then close the database in the same loop."""
        try:
            await self.server.serve()
        finally:
            await self.db.close()

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = threading.Event()
        for _ in range(int(WAIT * 20)):
            if self.server.started:
                return self
            deadline.wait(0.05)
        raise TimeoutError("the app did not start")

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(WAIT)

    @property
    def url(self) -> str:
        """The app's address."""
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def browser() -> Iterator[Any]:
    """The browser, closed after the test whatever happens."""
    found = browser_or_skip()
    try:
        yield found
    finally:
        found.quit()


def shot(browser: Any, name: str) -> None:
    """A screenshot of the page, kept with the run's artifacts."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / f"console-{name}.png"))


def wait_for(browser: Any, css: str) -> Any:
    """The element once it is there (at most WAIT seconds)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
    )


async def test_a_coordinator_signs_in_and_filters_reports_on_a_phone(
    db: Database, engine: Any, settings: Settings, browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    family = Person(engine, Address("console", "family"))
    await choose_language(family, "en")
    await send_full_report(family, "en")
    async with db.transaction() as session:
        await roles.set_role(session, "telegram:501", "admin", "test", name="Sara")
    # No tile server: this machine reaches none, and a test sends nothing past 127.0.0.1.
    with Server(dataclasses.replace(settings, map_tiles_url="")) as server:
        settings_here = Settings(database_url=settings.database_url, port=server.port)
        async with db.transaction() as session:
            link = await signin.new_link(session, settings_here, "telegram:501")

        def walk() -> None:
            """What the coordinator does, in the browser (blocking calls, off the loop)."""
            browser.get(link + "?lang=en")
            shot(browser, "sign-in")
            wait_for(browser, "button.primary").click()
            wait_for(browser, ".who")
            assert "Overview" in browser.find_element(By.TAG_NAME, "h1").text
            shot(browser, "overview")
            browser.get(server.url + "/console/reports")
            browser.find_element(By.CSS_SELECTOR, ".filter-box summary").click()
            Select(browser.find_element(By.NAME, "governorate")).select_by_value("IQG09")
            browser.find_element(By.CSS_SELECTOR, ".filters button").click()
            # The old page's count is there until the new one replaces it: wait for the new.
            WebDriverWait(browser, WAIT).until(lambda b: "governorate=IQG09" in b.current_url)
            assert wait_for(browser, "#count").text == "1 report"
            assert "Duhok" in browser.find_element(By.CSS_SELECTOR, "table.reports").text
            shot(browser, "reports")
            browser.get(server.url + "/console/reports?lang=ar")
            html = browser.find_element(By.TAG_NAME, "html")
            assert html.get_attribute("dir") == "rtl"
            # Usable at 360 px: the page itself never scrolls sideways (the table may, inside).
            wide, seen = browser.execute_script(
                "return [document.documentElement.scrollWidth, window.innerWidth]"
            )
            assert wide <= seen, f"the page is {wide} px wide in a {seen} px window"
            shot(browser, "reports-ar")
            browser.get(server.url + "/console/people?lang=ckb")
            assert "telegram:501" in browser.find_element(By.CSS_SELECTOR, "table.people").text
            wide, seen = browser.execute_script(
                "return [document.documentElement.scrollWidth, window.innerWidth]"
            )
            assert wide <= seen
            shot(browser, "people-ckb")
            browser.get(server.url + "/console/audit?lang=en")
            assert "console:sign-in" in browser.find_element(By.CSS_SELECTOR, "table.audit").text
            no_sideways_scroll(browser)
            shot(browser, "audit")
            # The map: one circle per district with reports, even with no tiles reachable
            # (this machine reaches no tile server, and none is configured here).
            browser.get(server.url + "/console/map?lang=en")
            WebDriverWait(browser, WAIT).until(
                lambda b: b.find_element(By.ID, "map").get_attribute("data-ready") is not None
            )
            circles = browser.find_elements(By.CSS_SELECTOR, "#map [data-district]")
            assert [c.get_attribute("data-district") for c in circles] == ["IQG09Q04"]
            labels = browser.find_elements(By.CSS_SELECTOR, "#map .governorate")
            assert len(labels) == 18
            swatches = browser.find_elements(By.CSS_SELECTOR, ".legend .swatch")
            assert swatches[0].value_of_css_property("background-color") != "rgba(0, 0, 0, 0)"
            shot(browser, "map")

        await asyncio.to_thread(walk)


def signed_in(browser: Any, link: str) -> None:
    """Open a sign-in link in English and press Sign in."""
    browser.get(link + "?lang=en")
    wait_for(browser, "button.primary").click()
    wait_for(browser, ".who")


def no_sideways_scroll(browser: Any) -> None:
    """The page fits the phone's width (a table may scroll inside its own box)."""
    wide, seen = browser.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth]"
    )
    assert wide <= seen, f"the page is {wide} px wide in a {seen} px window"


async def test_a_coordinator_triages_a_report_and_verifies_a_signature(
    db: Database, engine: Any, settings: Settings, browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from tests.test_sign import sign

    family = Person(engine, Address("telegram", "6001"))
    await choose_language(family, "ar")
    await send_full_report(family, "ar")
    reference = re.search(r"R-[2-9A-Z]{5}", family.text())
    assert reference is not None
    organization = Person(engine, Address("telegram", "6002"))
    await choose_language(organization, "ckb")
    await sign(organization, "ckb", name="Tigris Youth Forum", other=None)
    async with db.transaction() as session:
        await roles.set_role(session, "telegram:501", "coordinator", "test", name="Sara")
    with Server(dataclasses.replace(settings, map_tiles_url="")) as server:
        settings_here = Settings(database_url=settings.database_url, port=server.port)
        async with db.transaction() as session:
            link = await signin.new_link(session, settings_here, "telegram:501")
        page = f"{server.url}/console/reports/{reference.group(0)}?lang=en"

        def change_and_write() -> None:
            """Open the report, change its status with a note, write to the family."""
            browser.get(link + "?lang=en")
            wait_for(browser, "button.primary").click()
            wait_for(browser, ".who")
            browser.get(page)
            Select(browser.find_element(By.NAME, "status")).select_by_value("verified")
            browser.find_element(By.NAME, "note").send_keys("Tents arrive on Sunday")
            browser.find_element(By.NAME, "tell").click()
            browser.find_element(By.CSS_SELECTOR, 'button[value="preview"]').click()
            assert "Tents arrive on Sunday" in wait_for(browser, ".preview blockquote").text
            shot(browser, "report-preview")
            browser.find_element(By.CSS_SELECTOR, 'button[value="status"]').click()
            wait_for(browser, ".history li")
            message = browser.find_elements(By.CSS_SELECTOR, 'textarea[name="note"]')[1]
            message.send_keys("How many blankets do you need?")
            browser.find_element(By.CSS_SELECTOR, 'button[value="message"]').click()
            wait_for(browser, ".thread li.out")
            no_sideways_scroll(browser)

        await asyncio.to_thread(change_and_write)
        told = await outbox_to(db, family.address)
        notice = next(m for m in told if "Tents arrive on Sunday" in m.text)
        assert notice.locale == "ar"
        assert t("ar", "A note from the coordinator: %(note)s").split(":")[0] in notice.text
        question = next(m for m in told if "blankets" in m.text)
        family.replies = [question]
        await family.tap(t("ar", "Reply"))
        await family.send("نحتاج ست بطانيات")

        def read_reply_and_verify() -> None:
            """See the family's answer, then verify the signature."""
            browser.get(page)
            assert "نحتاج ست بطانيات" in wait_for(browser, ".thread li.in").text
            shot(browser, "report-thread")
            browser.get(server.url + "/console/signatures?lang=ar")
            assert browser.find_element(By.TAG_NAME, "html").get_attribute("dir") == "rtl"
            no_sideways_scroll(browser)
            shot(browser, "signatures-ar")
            browser.find_element(By.CSS_SELECTOR, 'button[value="verify"]').click()
            wait_for(browser, 'button[value="undo"]')
            shot(browser, "signatures-decided")

        await asyncio.to_thread(read_reply_and_verify)
    async with db.transaction() as session:
        assert await session.scalar(select(Signature.status)) == "verified"


async def test_an_editor_composes_schedules_and_edits_a_bulletin_on_a_phone(
    db: Database, settings: Settings, browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from bot.models import Bulletin, Contact

    async with db.transaction() as session:
        await roles.set_role(session, "telegram:503", "editor", "test", name="Huda")
        session.add_all(
            [
                Contact(
                    address="telegram:81",
                    channel="telegram",
                    locale="ar",
                    subscribed=True,
                    bulletin_places="IQG09",
                ),
                Contact(
                    address="telegram:82",
                    channel="telegram",
                    locale="ckb",
                    subscribed=True,
                    bulletin_places="IQG02",
                ),
                Contact(address="telegram:83", channel="telegram", locale="en", subscribed=True),
            ]
        )
    with Server(dataclasses.replace(settings, map_tiles_url="")) as server:
        settings_here = Settings(database_url=settings.database_url, port=server.port)
        async with db.transaction() as session:
            link = await signin.new_link(session, settings_here, "telegram:503")

        def compose_and_schedule() -> None:
            """Write in two languages, watch the live preview, target, schedule."""
            signed_in(browser, link)
            browser.get(server.url + "/console/bulletins/new")
            browser.find_element(By.NAME, "title_ar").send_keys("توزيع البطانيات")
            browser.find_element(By.NAME, "text_ar").send_keys("يبدأ التوزيع يوم الأحد.")
            browser.find_element(By.NAME, "title_en").send_keys("Blankets")
            browser.find_element(By.NAME, "text_en").send_keys("Given out on Sunday.")
            # The script asks the server for the previews as the editor types.
            WebDriverWait(browser, WAIT).until(
                lambda b: "Given out on Sunday." in b.find_element(By.ID, "live").text
            )
            live = browser.find_element(By.ID, "live")
            assert "<b>" not in live.text  # Telegram's bold is shown as bold, not as a tag
            bold = live.find_elements(By.CSS_SELECTOR, ".telegram b")
            assert "Blankets" in [b.text for b in bold]
            assert "*Blankets*" in live.text  # WhatsApp's bold
            assert "No text in this language" in live.text  # the Sorani readers
            total = browser.find_element(By.ID, "audience-total")
            assert total.get_attribute("data-total") == "3"
            for code in ("IQG09", "IQG15"):
                browser.find_element(
                    By.CSS_SELECTOR, f'input[name="place"][value="{code}"]'
                ).click()
            WebDriverWait(browser, WAIT).until(
                lambda b: (
                    b.find_element(By.ID, "audience-total").get_attribute("data-total") == "2"
                )
            )
            no_sideways_scroll(browser)
            shot(browser, "bulletin-compose")
            when = browser.find_element(By.NAME, "when")
            browser.execute_script("arguments[0].value = '2030-01-02T09:30'", when)
            browser.find_element(By.CSS_SELECTOR, 'button[value="schedule"]').click()
            WebDriverWait(browser, WAIT).until(lambda b: "done=scheduled" in b.current_url)
            assert "Scheduled" in browser.find_element(By.ID, "status").text
            no_sideways_scroll(browser)
            shot(browser, "bulletin-scheduled")

        await asyncio.to_thread(compose_and_schedule)
        async with db.transaction() as session:
            [bulletin] = (await session.scalars(select(Bulletin))).all()
        assert bulletin.status == "scheduled"
        assert bulletin.places == ["IQG09", "IQG15"]
        assert set(bulletin.texts) == {"ar", "en"}

        def edit() -> None:
            """Change the English title and the time, on the bulletin's edit page."""
            browser.find_element(By.LINK_TEXT, "Edit").click()
            title = wait_for(browser, 'input[name="title_en"]')
            title.clear()
            title.send_keys("Blankets and stoves")
            when = browser.find_element(By.NAME, "when")
            assert when.get_attribute("value") == "2030-01-02T09:30"
            browser.execute_script("arguments[0].value = '2030-01-04T08:00'", when)
            browser.find_element(By.CSS_SELECTOR, 'button[value="save"]').click()
            WebDriverWait(browser, WAIT).until(lambda b: "done=saved" in b.current_url)
            shot(browser, "bulletin-edited")
            browser.get(server.url + "/console/bulletins?lang=ckb")
            assert browser.find_element(By.TAG_NAME, "html").get_attribute("dir") == "rtl"
            waiting = browser.find_element(By.CSS_SELECTOR, "table.waiting").text
            assert "توزيع البطانيات" in waiting  # its title in its first language
            assert "دهۆک" in waiting  # the governorates, in Sorani
            no_sideways_scroll(browser)
            shot(browser, "bulletins-ckb")

        await asyncio.to_thread(edit)
        async with db.transaction() as session:
            [bulletin] = (await session.scalars(select(Bulletin))).all()
        assert bulletin.texts["en"]["title"] == "Blankets and stoves"
        assert bulletin.scheduled_at is not None
        assert bulletin.scheduled_at.isoformat() == "2030-01-04T05:00:00+00:00"


async def test_the_delivery_chart_in_the_browser(
    db: Database, settings: Settings, browser: Any
) -> None:
    from datetime import UTC, datetime, timedelta

    from selenium.webdriver.common.by import By

    from bot.models import Bulletin, OutboxMessage

    start = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    async with db.transaction() as session:
        await roles.set_role(session, "telegram:504", "admin", "test")
        bulletin = Bulletin(
            texts={"en": {"title": "Stoves", "text": "Stoves arrive."}},
            created_by="telegram:504",
            status="sent",
            public_id="B-CHART2",
            published_at=start,
        )
        session.add(bulletin)
        await session.flush()
        for n in range(6):  # the ledger: five sent over five minutes, three delivered, one failed
            failed = n == 5
            session.add(
                OutboxMessage(
                    channel="whatsapp",
                    address=f"whatsapp:+96477030000{n}",
                    priority=2,
                    body={"bulletin": bulletin.id, "locale": "en"},
                    status="failed" if failed else "sent",
                    error="undelivered (63024)" if failed else None,
                    bulletin_id=bulletin.id,
                    locale="en",
                    sent_at=None if failed else start + timedelta(minutes=n),
                    delivered_at=start + timedelta(minutes=n + 1) if n < 3 else None,
                    failed_at=start + timedelta(minutes=4) if failed else None,
                )
            )
        ident = bulletin.id
    with Server(dataclasses.replace(settings, map_tiles_url="")) as server:
        settings_here = Settings(database_url=settings.database_url, port=server.port)
        async with db.transaction() as session:
            link = await signin.new_link(session, settings_here, "telegram:504")

        def look() -> None:
            """The chart and the table of a bulletin's delivery."""
            signed_in(browser, link)
            browser.get(f"{server.url}/console/bulletins/{ident}?lang=en")
            chart = wait_for(browser, "#delivery-chart")
            assert chart.size["width"] > 200  # drawn, at the phone's width
            lines = browser.find_elements(By.CSS_SELECTOR, "#delivery-chart polyline")
            assert [line.get_attribute("class") for line in lines] == [
                "line sent",
                "line delivered",
                "line failed",
            ]
            # The sent line climbs to the top: its last point is the highest of the chart.
            last = lines[0].get_attribute("points").split()[-1]
            assert float(last.split(",")[1]) == 12.0
            legend = browser.find_element(By.CSS_SELECTOR, "figure.chart .legend").text
            assert "Sent: 5" in legend
            assert "Delivered: 3" in legend
            assert "Failed: 1" in legend
            assert (
                "undelivered (63024)"
                in browser.find_element(By.CSS_SELECTOR, "table.figures").text
            )
            no_sideways_scroll(browser)
            shot(browser, "bulletin-delivery")

        await asyncio.to_thread(look)


async def test_a_coordinator_refers_a_report_to_an_organization(
    db: Database, engine: Any, settings: Settings, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    from tests.test_referrals import an_organization, family_report

    family = Person(engine, Address("whatsapp", "+9647501112222"))
    await choose_language(family, "ar")
    reference = await family_report(family, "ar")
    member = await an_organization(engine, db, "6002", "ckb", "جمعية الأمل للتنمية")
    async with db.transaction() as session:
        await roles.set_role(session, "telegram:501", "coordinator", "test", name="Sara")
    with Server(dataclasses.replace(settings, map_tiles_url="")) as server:
        settings_here = Settings(database_url=settings.database_url, port=server.port)
        async with db.transaction() as session:
            link = await signin.new_link(session, settings_here, "telegram:501")

        def refer() -> None:
            """From the report's page, Refer: pick the suggested organization, add a note."""
            browser.get(link + "?lang=ar")
            wait_for(browser, "button.primary").click()
            wait_for(browser, ".who")
            browser.get(f"{server.url}/console/reports/{reference}?lang=ar")
            wait_for(browser, f'a[href="/console/reports/{reference}/refer"]').click()
            choice = wait_for(browser, 'input[name="organization"]')
            assert choice.is_selected()  # the best suggestion, chosen already
            assert "جمعية الأمل للتنمية" in browser.find_element(By.TAG_NAME, "table").text
            no_sideways_scroll(browser)
            shot(browser, "refer-ar")
            browser.find_element(By.NAME, "note").send_keys("Call before noon")
            browser.find_element(By.CSS_SELECTOR, 'button[value="refer"]').click()
            assert "جمعية الأمل للتنمية" in wait_for(browser, ".referrals li").text
            shot(browser, "report-referred")

        await asyncio.to_thread(refer)
    [request] = [m for m in await outbox_to(db, member.address) if "Call before noon" in m.text]
    assert request.locale == "ckb"
    assert t("ckb", "Accept") in [b.label for b in request.options()]
