"""The public pages in a real browser: Debian's headless Chromium at a phone's width (360 px),
against the real app on uvicorn on 127.0.0.1, in each language; a bulletin checked by pasting it.
Screenshots go to the run's artifacts folder."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from bot.config import Settings
from bot.db import Database
from bot.engine import Engine
from tests.helpers import t
from tests.public_helpers import NEWS, personal_values_in, seed
from tests.test_console_browser import Server, browser_or_skip, no_sideways_scroll, shot, wait_for

PAGES = ("/", "/declaration", "/signatories", "/bulletins", "/bulletins/verify")


@pytest.fixture
def chromium() -> Iterator[Any]:
    """The browser, closed after the test whatever happens."""
    found = browser_or_skip()
    try:
        yield found
    finally:
        found.quit()


@pytest.mark.timeout(180)
async def test_every_public_page_in_every_language_on_a_phone(
    db: Database, engine: Engine, settings: Settings, chromium: Any
) -> None:
    from selenium.webdriver.common.by import By

    seeded = await seed(db, engine)
    configured = dataclasses.replace(
        settings,
        telegram_bot_username="icssi_test_bot",
        twilio_whatsapp_from="whatsapp:+9647701234500",
    )
    with Server(configured) as server:

        def walk() -> None:
            """Each page in each language, as a reader on a phone sees it."""
            for locale in ("ar", "ckb", "en"):
                for path in PAGES:
                    chromium.get(f"{server.url}{path}?lang={locale}")
                    html = wait_for(chromium, "html")
                    assert html.get_attribute("lang") == locale, path
                    direction = "ltr" if locale == "en" else "rtl"
                    assert html.get_attribute("dir") == direction, path
                    # Laid out right to left for real, not only marked so.
                    computed = chromium.execute_script(
                        "return getComputedStyle(document.body).direction"
                    )
                    assert computed == direction, path
                    heading = wait_for(chromium, "h1").text
                    assert heading, path
                    no_sideways_scroll(chromium)
                    body = chromium.find_element(By.TAG_NAME, "body").text
                    assert personal_values_in(body) == [], path
                    name = path.strip("/").replace("/", "-") or "home"
                    shot(chromium, f"public-{name}-{locale}")
                    # The stylesheet loaded (under the page's CSP): the header bar is coloured.
                    bar = chromium.find_element(By.CSS_SELECTOR, ".bar")
                    assert bar.value_of_css_property("background-color") != "rgba(0, 0, 0, 0)"
            # The home page's QR codes are drawn, and at a readable size.
            chromium.get(f"{server.url}/?lang=en")
            codes = chromium.find_elements(By.CSS_SELECTOR, ".qr svg")
            assert len(codes) == 2
            assert all(code.size["width"] >= 120 for code in codes)
            # The signatories, and a download link for each format.
            chromium.get(f"{server.url}/signatories?lang=ar")
            table = wait_for(chromium, "table.signatories").text
            assert "جمعية الأمل للتنمية" in table
            assert t("ar", "Women's organization") in table
            links = [a.get_attribute("href") for a in chromium.find_elements(By.CSS_SELECTOR, "a")]
            assert f"{server.url}/signatories.csv" in links
            # The archive shows the bulletin in each language, each in its own direction.
            chromium.get(f"{server.url}/bulletins?lang=ckb")
            versions = chromium.find_elements(By.CSS_SELECTOR, f"#{seeded['public_id']} .version")
            assert [v.get_attribute("lang") for v in versions] == ["ckb", "ar", "en"]
            assert versions[2].value_of_css_property("direction") == "ltr"
            assert NEWS["ckb"]["title"] in versions[0].text
            # A reader pastes a forwarded text with one word changed.
            chromium.get(f"{server.url}/bulletins/verify?lang=en")
            box = wait_for(chromium, "textarea#text")
            box.send_keys(NEWS["en"]["title"] + "\n\n" + NEWS["en"]["text"].replace("nine", "ten"))
            chromium.find_element(By.CSS_SELECTOR, "form button.primary").click()
            verdict = wait_for(chromium, "#verdict").text
            assert f"like bulletin {seeded['public_id']}" in verdict
            assert "nine" in verdict
            assert "ten" in verdict
            no_sideways_scroll(chromium)
            shot(chromium, "public-verify-tampered")
            # And the genuine one, by its id, in Arabic.
            chromium.get(f"{server.url}/bulletins/verify?lang=ar")
            wait_for(chromium, "textarea#text").send_keys(seeded["public_id"])
            chromium.find_element(By.CSS_SELECTOR, "form button.primary").click()
            assert seeded["public_id"] in wait_for(chromium, "#verdict.genuine").text
            shot(chromium, "public-verify-genuine-ar")

        await asyncio.to_thread(walk)


# Where a code stands in the page, as the reader sees it: how many boxes it is drawn in (two when
# a line breaks inside it), its direction, and where each of its letters is drawn.
CODE_LAYOUT = """
const el = arguments[0];
const text = el.firstChild;
const letter = (i) => {
  const range = document.createRange();
  range.setStart(text, i);
  range.setEnd(text, i + 1);
  return range.getBoundingClientRect().left;
};
return {
  rects: el.getClientRects().length,
  direction: getComputedStyle(el).direction,
  text: el.textContent,
  lefts: Array.from(text.textContent, (_c, i) => letter(i)),
};
"""


@pytest.mark.timeout(180)
async def test_a_bulletins_id_stays_whole_and_left_to_right_in_a_right_to_left_sentence(
    db: Database, engine: Engine, settings: Settings, chromium: Any
) -> None:
    from selenium.webdriver.common.by import By

    seeded = await seed(db, engine)
    public_id = seeded["public_id"]
    with Server(settings) as server:

        def check(selector: str, locale: str, name: str) -> None:
            """The code at `selector`: one box, drawn left to right, in a sentence of `locale`."""
            code = wait_for(chromium, selector)
            layout = chromium.execute_script(CODE_LAYOUT, code)
            assert layout["text"] == public_id, (name, layout)
            assert layout["rects"] == 1, (name, layout)  # not "B-" on one line, the rest below
            assert layout["direction"] == "ltr", (name, layout)
            lefts = layout["lefts"]
            assert lefts == sorted(lefts), (name, layout)  # each letter right of the one before
            assert chromium.find_element(By.TAG_NAME, "html").get_attribute("dir") == "rtl"
            no_sideways_scroll(chromium)
            shot(chromium, f"public-code-{name}-{locale}")

        def walk() -> None:
            """The verdicts and the bulletin's page in Arabic and Sorani, at 360 px."""
            for locale in ("ar", "ckb"):
                chromium.get(f"{server.url}/bulletins/verify?lang={locale}")
                wait_for(chromium, "textarea#text").send_keys(public_id)
                chromium.find_element(By.CSS_SELECTOR, "form button.primary").click()
                check("#verdict.genuine p bdi.code", locale, "genuine")
                chromium.get(f"{server.url}/bulletins/verify?lang={locale}")
                pasted = NEWS["ar"]["title"] + "\n\n" + NEWS["ar"]["text"] + " تغيير"
                wait_for(chromium, "textarea#text").send_keys(pasted)
                chromium.find_element(By.CSS_SELECTOR, "form button.primary").click()
                check("#verdict p.problem bdi.code", locale, "near")
                chromium.get(f"{server.url}/bulletins/{public_id}?lang={locale}")
                check("h1 bdi.code", locale, "page")

        await asyncio.to_thread(walk)
