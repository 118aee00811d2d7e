"""What the public pages and the partner API show: verified organizations and published
bulletins, made through the chat and the services as in real use, beside personal values that
must never show."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from bot import bulletins, signatures
from bot.db import Database
from bot.engine import Engine
from bot.messages import Address
from bot.models import Bulletin, Signature
from tests.conftest import Person
from tests.coordinator_helpers import send_full_report
from tests.helpers import choose_language

# Every personal value the seeded family and representative give (bot/personal.py's fields:
# the place, the exact point, the notes, the photo, the phone; the representative's name,
# role, phone and e-mail), and the people's chat addresses.
PERSONAL_VALUES = (
    "Khanke camp",
    "We need a doctor",
    "750 123 4567",
    "7501234567",
    "37.12345",
    "42.54321",
    "file-9",
    "Zainab Hassan",
    "Director",
    "790 123 4567",
    "7901234567",
    "info@amal.example.org",
    "telegram:6101",
    "telegram:6102",
)
NEWS = {
    "ar": {"title": "توزيع المياه في دهوك", "text": "يبدأ توزيع المياه يوم الأحد في مخيمات دهوك."},
    "en": {
        "title": "Water distribution in Duhok",
        "text": "Water distribution starts on Sunday in the camps of Duhok, at nine.",
    },
    "ckb": {
        "title": "دابەشکردنی ئاو لە دهۆک",
        "text": "دابەشکردنی ئاو ڕۆژی یەکشەممە دەست پێدەکات.",
    },
}


async def seed(db: Database, engine: Engine) -> dict[str, Any]:
    """A family's full report, an organization signed and verified, another still pending, a
    published bulletin and a scheduled one; what each public page should then show."""
    from tests.test_sign import sign

    family = Person(engine, Address("telegram", "6101"))
    await choose_language(family, "en")
    await send_full_report(family, "en")
    organization = Person(engine, Address("telegram", "6102"))
    await choose_language(organization, "ar")
    await sign(organization, "ar", name="جمعية الأمل للتنمية", other="Al-Amal Development Society")
    waiting = Person(engine, Address("telegram", "6103"))
    await choose_language(waiting, "en")
    await sign(waiting, "en", name="Pending Helpers Union", other=None)
    now = datetime.now(UTC)
    async with db.transaction() as session:
        amal = await session.scalar(
            select(Signature).where(Signature.name_en == "Al-Amal Development Society")
        )
        assert amal is not None
        await signatures.decide(session, amal.id, "verified", None, actor="test", now=now)
        published = Bulletin(texts=NEWS, created_by="telegram:1000")
        later = Bulletin(
            texts={"en": {"title": "Not yet", "text": "A draft nobody may read yet."}},
            created_by="telegram:1000",
            status="scheduled",
            scheduled_at=now,
        )
        session.add_all([published, later])
        await session.flush()
        await bulletins.publish(session, published, now)
        published.status = "sent"
        public_id = published.public_id
    return {"public_id": public_id, "organization": "Al-Amal Development Society"}


def personal_values_in(text: str) -> list[str]:
    """The personal values a response's text shows (none, if all is well)."""
    return [value for value in PERSONAL_VALUES if value in text]
