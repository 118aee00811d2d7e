"""Hypothesis fuzzing of every step of every flow, in each language (issue #8, part 4).

Every (flow, step) of the real registry is reached by an explorer that talks to the real engine
the way people do (pressing the offered buttons, typing plausible answers, sharing a location),
from a world made by real conversations: a family's report, two organizations' signatures, a
published and a scheduled bulletin. Each step's database is kept as a snapshot, in English and,
through the Language escape (which brings a person back to the same question), in Arabic and
Sorani. Hypothesis then sends any inbound from that snapshot: any Unicode, any length, commands
with any arguments, offered and forged button payloads, any coordinates, photos, files and shared
contacts where words are expected. For every inbound:

- no step fails (no ERROR log, no apology);
- every reply is non-empty and in its recipient's language;
- nothing stored breaks a validation rule of the models and the handlers.

A new flow or step is fuzzed without editing this file, as long as the explorer can reach it
(`test_every_step_is_reached` says which one it cannot). The inputs are new at each run (the seed
is printed with a failure; ICSSI_FUZZ_SEED replays it); CI tries more of them than `make test`,
and ICSSI_FUZZ_EXAMPLES=500 many more.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import re
import sqlite3
import unicodedata
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from heapq import heappop, heappush
from pathlib import Path
from typing import Any

import pytest
from babel.messages.pofile import read_po
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from sqlalchemy import func, select

from bot import gazetteer, organizations, referrals
from bot.bulletins import TEXT_LIMIT, TITLE_LIMIT
from bot.config import NEEDS, Settings
from bot.db import Database, upgrade
from bot.engine import Engine
from bot.flows import COMMANDS, NAV_PAYLOADS, NAV_WORDS
from bot.forms import valid_phone
from bot.i18n import LANGUAGE_NAMES, LOCALES, locales_dir, translate_in
from bot.messages import SHARE_LOCATION, SHARE_PHONE, Address, Inbound, Location, Media, Outbound
from bot.models import (
    Bulletin,
    Contact,
    Conversation,
    Organization,
    OrganizationInvitation,
    OutboxMessage,
    Report,
    Signature,
)
from bot.reports import REPLY, SHELTER_LABELS, WHEN_LABELS
from bot.reports import STATUS_LABELS as REPORT_STATUS
from bot.signatures import STATUS_LABELS as SIGNATURE_STATUS
from bot.signatures import TYPE_LABELS
from bot.text import clean_input, organization_key, parse_command
from handlers import build_registry
from handlers.bulletin import STOP_WORDS
from handlers.bulletin_admin import STATUS as BULLETIN_STATUS
from handlers.language import ALIASES, CHOOSE
from handlers.report import MAX_PEOPLE, NOTES_LIMIT, PLACE_LIMIT
from handlers.sign import CITY_LIMIT, EMAIL, NAME_LIMIT, PERSON_LIMIT
from tests.conftest import Person
from tests.helpers import choose_language, t

# Examples per (flow, step, language): a few at each `make test`, more in CI (.ci/run sets
# ICSSI_CI), as many as ICSSI_FUZZ_EXAMPLES says by hand. New inputs each run, from a seed
# printed with any failure: ICSSI_FUZZ_SEED=that seed replays them.
EXAMPLES = int(os.environ.get("ICSSI_FUZZ_EXAMPLES") or (8 if os.environ.get("ICSSI_CI") else 3))
SEED = int(os.environ.get("ICSSI_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # a busy machine is slow now and then; that is not a failure
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

REGISTRY = build_registry()
STEPS = [(flow.name, step) for flow in REGISTRY.flows.values() for step in flow.steps]
COORDINATOR_FLOWS = {name for name, flow in REGISTRY.flows.items() if flow.coordinators_only}
COORDINATOR = Address("telegram", "1000")
WHATSAPP_COORDINATOR = Address("whatsapp", "+9647700000001")
CITIZEN = Address("telegram", "3000")
REPRESENTATIVE = Address("telegram", "2000")  # the seed's verified signature
FUZZ_CODE = "FUZZ234567"  # an invitation code of its organization
FAMILY = Address("whatsapp", "+9647501112233")
APOLOGY = "Sorry, something went wrong on our side. Please try again in a moment."


Offered = tuple[tuple[str, str], ...]  # (payload, label) of the options a person was given


# Moves: one thing a person does -----------------------------------------------------------------


@dataclass(frozen=True)
class Move:
    """One inbound a person sends, before it gets its address and message id."""

    kind: str  # text, command, button, location, photo, document, contact, other
    text: str = ""
    payload: str | None = None
    location: Location | None = None
    media: tuple[Media, ...] = ()
    phone: str | None = None
    private: bool = True

    def inbound(self, address: Address) -> Inbound:
        """The Inbound a channel adapter would hand to the engine."""
        common: dict[str, Any] = {"is_private": self.private}
        if self.kind == "command":
            parsed = parse_command(self.text)
            if parsed is not None:
                return Inbound(
                    address,
                    uuid.uuid4().hex,
                    kind="command",
                    text=self.text,
                    command=parsed[0],
                    args=parsed[1],
                    **common,
                )
            return Inbound(address, uuid.uuid4().hex, kind="text", text=self.text, **common)
        return Inbound(
            address,
            uuid.uuid4().hex,
            kind=self.kind,  # type: ignore[arg-type]
            text=self.text,
            payload=self.payload,
            location=self.location,
            media=self.media,
            phone=self.phone,
            **common,
        )

    def typed(self) -> list[str]:
        """What the person wrote here, which a reply may quote back."""
        found = [self.text]
        if self.payload:
            found += [self.payload, *self.payload.split(":")]
        if self.phone:
            found.append(self.phone)
        found += [m.ref for m in self.media]
        return [s for s in found if s]


def text(value: str) -> Move:
    """Typing `value` (a command when it looks like one, as the adapters decide)."""
    return Move("command" if parse_command(value) else "text", text=value)


def press(payload: str) -> Move:
    """Pressing the button with `payload`."""
    return Move("button", payload=payload)


def share_location(lat: float, lon: float) -> Move:
    """Sharing a point."""
    return Move("location", location=Location(lat, lon))


def photo(ref: str, caption: str = "") -> Move:
    """Sending a photo."""
    return Move("photo", text=caption, media=(Media("photo", ref, "image/jpeg"),))


def share_contact(phone: str | None) -> Move:
    """Sharing a contact card (the phone is None when it is someone else's)."""
    return Move("contact", phone=phone)


# Plausible answers the explorer tries first at the steps that need one; any step not listed
# here (a new one) is explored with every offered button and the generic words below.
PLAUSIBLE: dict[tuple[str, str], list[Move]] = {
    ("report", "consent"): [press("r:agree")],
    ("report", "gov"): [press("gov:IQG09")],
    ("report", "district"): [press("dist:IQG09Q04")],
    ("report", "place"): [share_location(36.86, 42.98), text("Sharya camp")],
    ("report", "precision"): [press("prec:area")],
    ("report", "origin"): [press("orig:IQG15")],
    ("report", "when"): [text("3/2024")],
    ("report", "people"): [text("6")],
    ("report", "children"): [text("2")],
    ("report", "elderly"): [text("1")],
    ("report", "disabled"): [text("0")],
    ("report", "pregnant"): [text("1")],
    ("report", "female"): [press("yes")],
    ("report", "shelter"): [press("shelter:camp")],
    ("report", "needs"): [press("need:food"), press("need:health"), press("need:done")],
    ("report", "urgent"): [press("urgent:health")],
    ("report", "notes"): [text("We need tents before the winter")],
    ("report", "contact"): [press("yes")],
    ("report", "phone"): [text("0770 123 4567")],
    ("report", "share"): [press("yes")],
    # A code the seed made for the representative's organization: the explorer joins with it.
    ("join", "code"): [text("/join fuzz2-34567"), text("FUZZ234567")],
    ("organization", "home"): [press("org:edit"), press("org:invite"), press("org:team")],
    ("organization", "needs"): [press("oneed:food"), press("oneed:done")],
    ("organization", "governorates"): [press("ogov:IQG09"), press("ogov:done")],
    ("organization", "districts"): [press("odist:IQG09Q04"), press("odist:done")],
    ("sign", "name"): [text("Al-Amal Development Society")],  # close to a signature: "similar"
    ("sign", "other_name"): [text("جمعية الأمل للتنمية")],
    ("sign", "similar"): [press("same:no")],
    ("sign", "type"): [press("type:women")],
    ("sign", "gov"): [press("gov:IQG08")],
    ("sign", "city"): [text("Baghdad")],
    ("sign", "person"): [text("Zainab Hassan")],
    ("sign", "role"): [text("Director")],
    ("sign", "phone"): [text("0790 123 4567")],
    ("sign", "email"): [text("info@amal.example.org")],
    ("sign", "authorized"): [press("auth:yes")],
    ("sign", "summary"): [press("sig:confirm")],
    ("bulletin", "check"): [text("Two thousand families returned to Sinjar this week.")],
    ("bulletin_admin", "title"): [text("Relief convoys reach Sinjar")],
    ("bulletin_admin", "text"): [text("Twelve trucks of food and medicine arrived today.")],
    ("bulletin_admin", "when"): [text("tomorrow 09:00")],
    # "when": Scheduled, a bulletin; "confirm": the audience, before anything goes
    ("bulletin_admin", "preview"): [press("go:weekly"), press("go:now")],
    ("bulletin_admin", "confirm"): [press("send:no")],
    ("bulletin_admin", "time"): [text("09:00")],
    ("report_detail", "note"): [text("Referred to a health partner in Zakho")],
    ("signature", "reason"): [text("We could not confirm the organization")],
}
GENERIC_WORDS = [
    "Baghdad",
    "3",
    "0770 123 4567",
    "info@example.org",
    "3/2024",
    "tomorrow 09:00",
    "09:00",
    "Al-Amal Development Society",
    "نحتاج إلى خيام قبل الشتاء",
]
GENERIC_MEDIA = [share_location(33.31, 44.36), photo("AgACAgIAAxkBAAIBfuzz"), share_contact(None)]


# The world, the explorer and the snapshots ------------------------------------------------------


class Snapshot:
    """The whole database at one moment, in memory, and where the person stood."""

    def __init__(self, path: Path, view: View, moves: tuple[Move, ...]) -> None:
        self.memory = sqlite3.connect(":memory:")
        source = sqlite3.connect(path)
        try:
            source.backup(self.memory)
        finally:
            source.close()
        # Only messages queued after this moment are checked again.
        self.outbox = int(self.memory.execute("SELECT max(id) FROM outbox").fetchone()[0] or 0)
        self.view = view
        self.moves = moves

    def __str__(self) -> str:
        """Where the person stood and how they got there, for a failure's message."""
        how = " > ".join(m.payload or m.text or m.kind for m in self.moves)
        return f"{self.view.address} at {self.view.flow}/{self.view.step} ({how})"

    def restore(self, path: Path) -> None:
        """Put the database back as it was (idle pooled connections see the new content)."""
        target = sqlite3.connect(path)
        try:
            self.memory.backup(target)
        finally:
            target.close()


@dataclass(frozen=True)
class View:
    """What the explorer knows of a person's state: enough to tell two states apart."""

    address: Address
    locale: str | None
    flow: str
    step: str
    offered: Offered
    shape: tuple[tuple[str, Any], ...]
    world: tuple[Any, ...]

    @property
    def key(self) -> tuple[Any, ...]:
        """States with the same key offer the same ways on."""
        return (self.flow, self.step, tuple(p for p, _ in self.offered), self.shape, self.world)


def shape(data: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The form of a conversation's data: which answers are there, not what they are."""

    def form(value: Any) -> Any:
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, list | dict):
            return (type(value).__name__, len(value))
        return type(value).__name__

    return tuple(sorted((key, form(value)) for key, value in data.items()))


class ErrorLog(logging.Handler):
    """Keeps every ERROR record (the engine logs a failing step with logger.exception)."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class World:
    """The database, the engine, the snapshots of every step and what people typed to get there."""

    runner: asyncio.Runner
    path: Path
    db: Database
    settings: Settings
    engine: Engine
    errors: ErrorLog
    snapshots: dict[tuple[str, str, str], Snapshot] = field(default_factory=dict)
    foreign: set[str] = field(default_factory=set)  # typed by the seed's and explorer's people
    problems: list[str] = field(default_factory=list)
    first: Snapshot | None = None  # the world before someone new writes for the first time

    async def deliver(
        self, person: Person, move: Move, locale: str | None, typed: list[str]
    ) -> Outcome:
        """Send one move from a person who speaks `locale` (None: not chosen yet) and check it.

        `typed` is what the replies may quote besides this move: earlier answers.
        """
        self.errors.records.clear()
        sent = await person.deliver(move.inbound(person.address))
        problems = [
            f"step failed: {r.getMessage()}\n{r.exc_text or ''}" for r in self.errors.records
        ]
        typed = [*self.foreign, *typed, *move.typed()]
        locales, offered = await self.now(person.address, {m.address for m in sent})
        problems += self.check_replies(person, sent, locale, locales, typed)
        return Outcome(problems, locales[person.address] or locale, offered)

    async def now(
        self, person: Address, others: set[Address]
    ) -> tuple[dict[Address, str | None], Offered]:
        """Each address's language (None before it chose, or once forgotten), and the options
        the person was given last."""
        addresses = sorted(others | {person})
        async with self.db.transaction() as session:
            rows = await session.execute(
                select(Contact.address, Contact.locale).where(
                    Contact.address.in_([str(a) for a in addresses])
                )
            )
            found = {Address.parse(a): loc for a, loc in rows}
            options = await session.scalar(
                select(Conversation.offered)
                .join(Contact, Contact.id == Conversation.contact_id)
                .where(Contact.address == str(person))
            )
        offered = tuple((str(p), str(label)) for p, label in options or [])
        return {a: found.get(a) for a in addresses}, offered

    def check_replies(
        self,
        person: Person,
        sent: list[Outbound],
        before: str | None,
        after: dict[Address, str | None],
        typed: list[str],
    ) -> list[str]:
        """Replies: at least one, none empty, each in its recipient's language."""
        problems = []
        if not person.replies:
            problems.append("no reply")
        default = self.settings.default_locale
        for message in sent:
            whole = f"{message.title or ''}\n{message.text}"
            if any(translate_in(loc, APOLOGY) in whole for loc in LOCALES):
                problems.append(f"an apology (a step failed): {message.text!r}")
            if not message.text.strip(" \n\u200e\u200f"):
                problems.append(f"an empty reply to {message.address}")
            allowed = {after[message.address] or default}
            if message.address == person.address:
                allowed.add(before or default)
            if reader := bulletin_reader(message):
                allowed = {reader}  # a bulletin as its reader sees it (a coordinator's preview)
            problems += language_problems(message, allowed, typed)
            if message.document:  # an export: the file is not ours to keep
                Path(message.document).unlink(missing_ok=True)
        return problems


@dataclass(frozen=True)
class Outcome:
    """What one inbound came to."""

    problems: list[str]  # what is wrong with the replies
    locale: str | None  # the person's language afterwards
    offered: Offered  # the options the person was given last


class Recorder(Person):
    """A person whose every word the world remembers (replies may quote it to anyone)."""

    def __init__(self, world: World, address: Address) -> None:
        super().__init__(world.engine, address)
        self.world = world

    async def deliver(self, inbound: Inbound) -> list[Outbound]:
        self.world.foreign.update(s for s in (inbound.text, *inbound.args) if s)
        return await super().deliver(inbound)


async def seed(world: World) -> None:
    """A world made by real conversations, so that every step has something to show."""
    coordinator = Recorder(world, COORDINATOR)
    await choose_language(coordinator, "en")
    family = Recorder(world, FAMILY)
    await choose_language(family, "ckb")
    await family.tap(t("ckb", "Report a displaced family"))
    await family.tap(t("ckb", "I agree"))
    for payload in ("gov:IQG09", "dist:IQG09Q04"):
        await family.press(payload)
    await family.send("Sharya camp")
    for payload in ("orig:IQG15", "when:gt1y", "n:5", "n:2", "n:1", "n:0", "n:1", "yes"):
        await family.press(payload)
    for payload in ("shelter:camp", "need:protection", "need:food", "need:done", "urgent:food"):
        await family.press(payload)
    await family.send("We have no doctor here")
    await family.press("yes")
    await family.send("0750 111 2233")
    await family.press("no")  # the number stays with the coordinators
    await family.tap(t("ckb", "Send the report"))

    for ident, locale, name, other in (
        ("2000", "ar", "جمعية الأمل للتنمية", "Al-Amal Development Society"),
        ("2001", "en", "Tigris Youth Forum", None),
    ):
        org = Recorder(world, Address("telegram", ident))
        await choose_language(org, locale)
        await org.tap(t(locale, "Sign the declaration"))
        await org.press("sig:done")
        await org.send(name)
        await (org.send(other) if other else org.press("name:skip"))
        for payload in ("type:youth", "gov:IQG08"):
            await org.press(payload)
        for answer in ("Baghdad", "Ali Kareem", "Coordinator", "0790 765 4321", "a@b.example"):
            await org.send(answer)
        await org.press("auth:yes")
        await org.press("sig:confirm")
    async with world.db.transaction() as session:
        first = await session.scalar(select(func.min(Signature.id)))
    # The first verified: only a verified signature makes a close name ask "is it yours?"; the
    # other stays pending, for the coordinators' queue.
    await coordinator.press(f"sig:open:{first}")
    await coordinator.press("dec:verify")
    # The verified organization's representative, in English, with a code for a colleague.
    representative = Recorder(world, REPRESENTATIVE)
    await representative.press("nav:lang")
    await representative.press("lang:en")
    await representative.tap("My organization")
    async with world.db.transaction() as session:
        organization = await session.scalar(select(Organization))
        assert organization is not None
        session.add(
            OrganizationInvitation(
                code_hash=organizations.digest(FUZZ_CODE),
                organization_id=organization.id,
                created_at=datetime.now(UTC),
                expires_at=datetime.now(UTC) + timedelta(days=3650),
            )
        )
    await representative.press("nav:menu")
    await seed_referrals(world, representative)

    for go in ("go:now", "go:later"):
        await coordinator.send("/bulletin")
        await coordinator.press("adm:new")
        await coordinator.press("lang:ar")
        await coordinator.send("النشرة الأولى")
        await coordinator.send("عاد ألفا عائلة إلى سنجار هذا الأسبوع.")
        await coordinator.press("lang:en")
        await coordinator.send("First bulletin")
        await coordinator.send("Two thousand families returned to Sinjar this week.")
        await coordinator.press("lang:done")
        await coordinator.press("img:skip")
        await coordinator.press(go)
        if go == "go:now":
            await coordinator.press("send:yes")
    await coordinator.send("tomorrow 10:00")
    await coordinator.press("nav:menu")

    citizen = Recorder(world, CITIZEN)
    await choose_language(citizen, "en")


# The seed's referrals (#22), by id: one waiting for the organization's answer, one it accepted,
# one it helped with (the family's conversation waits on "Did you receive this help?").
SENT_REFERRAL, ACCEPTED_REFERRAL, HELPED_REFERRAL = 1, 2, 3
HELPED_REPORT = "R-FUZZ3"


async def seed_referrals(world: World, representative: Recorder) -> None:
    """The organization's relief in Duhok, two more reports of the family (copies of its
    first, made in the database: the daily limit is 1 here), a referral of each."""
    now = datetime.now(UTC)
    async with world.db.transaction() as session:
        organization = await session.scalar(select(Organization))
        first = await session.scalar(select(Report).order_by(Report.id))
        assert organization is not None
        assert first is not None
        await organizations.set_capacity(
            session,
            organization,
            "cli:fuzz",
            now,
            needs=["food", "protection"],
            governorates=["IQG09"],
            disclose_name=True,
        )
        copied = {
            column.key: getattr(first, column.key)
            for column in Report.__table__.columns
            if column.key not in ("id", "reference", "duplicate_of")
        }
        reports = [first]
        for reference in ("R-FUZZ2", HELPED_REPORT):
            report = Report(reference=reference, **copied)
            session.add(report)
            reports.append(report)
        await session.flush()
        for report in reports:
            await referrals.refer(
                session,
                world.engine.settings,
                report,
                organization.id,
                actor=str(COORDINATOR),
                note="",
                now=now,
            )
    for ident in (ACCEPTED_REFERRAL, HELPED_REFERRAL):
        await representative.press(f"{referrals.ACCEPT}{ident}")
    await representative.press(f"{referrals.HELPED}{HELPED_REFERRAL}")
    await representative.press("hn:food")
    await representative.press("hn:done")
    await representative.press("note:skip")
    await representative.press("nav:menu")


async def view_of(world: World, address: Address) -> View | None:
    """Where a person is now, and the world around them; None once they are forgotten."""
    async with world.db.transaction() as session:
        contact = await session.scalar(select(Contact).where(Contact.address == str(address)))
        if contact is None:
            return None
        conversation = await session.get(Conversation, contact.id)
        assert conversation is not None
        counts = []
        for column in (Report.status, Signature.status, Bulletin.status):
            rows = await session.execute(
                select(column, func.count()).group_by(column).order_by(column)
            )
            counts.append(tuple(tuple(row) for row in rows))
        return View(
            address=address,
            locale=contact.locale,
            flow=conversation.flow,
            step=conversation.step,
            offered=tuple((str(p), str(label)) for p, label in conversation.offered),
            shape=shape(conversation.data),
            world=tuple(counts),
        )


def trials(view: View, root: bool) -> Iterator[list[Move]]:
    """What the explorer tries from a state, in groups: the next group only if none got on."""
    step = REGISTRY.step(view.flow, view.step)
    plausible = PLAUSIBLE.get((view.flow, view.step))
    if plausible:
        yield plausible
    buttons = [
        p
        for p, _ in view.offered
        if (root or p not in NAV_PAYLOADS) and p not in (SHARE_LOCATION, SHARE_PHONE)
    ]
    moves = [press(p) for p in buttons]
    if step is not None and step.accepts_media:
        moves += GENERIC_MEDIA
    yield moves
    if root:
        # The family's Reply under a coordinator's message works at any time (its report
        # need not be the explorer's: the flow says so).
        yield [
            *(text(f"/{name}") for name in REGISTRY.commands),
            *(text(f"/start {link}") for link in REGISTRY.deep_links),
            press(REPLY + "R-22222"),
            # An organization's answers to its referrals work at any time too (#22).
            press(f"{referrals.DECLINE}{SENT_REFERRAL}"),
            press(f"{referrals.HELPED}{ACCEPTED_REFERRAL}"),
            text(f"/report {HELPED_REPORT}"),  # a report that may be referred again
        ]
    if step is not None and step.accepts_text:
        yield [text(word) for word in GENERIC_WORDS]


EXPLORE_LIMIT = 400  # states: far more than the steps need, so a step out of reach ends it


def kind(move: Move) -> str:
    """Options of one kind share their payload's prefix (gov:IQG01, gov:IQG02)."""
    return move.payload.rsplit(":", 1)[0] if move.payload else f"{move.kind}:{move.text}"


async def explore(
    world: World, root: Snapshot, targets: set[tuple[str, str]], flows: set[str]
) -> dict[tuple[str, str], Snapshot]:
    """Find a state at every target step, from `root`, by what people do; fewest visits first.

    States are told apart by step, options, the form of the answers and the counts of what is
    stored; a state of a step already visited waits behind every state of a new step.
    """
    found: dict[tuple[str, str], Snapshot] = {}
    visits: dict[tuple[str, str], int] = {}
    seen = {root.view.key}
    queue: list[tuple[int, int, int, Snapshot]] = [(0, 0, 0, root)]
    order = 0
    while queue and not targets <= found.keys() and order < EXPLORE_LIMIT:
        _visits, _depth, _order, node = heappop(queue)
        here = (node.view.flow, node.view.step)
        visits[here] = visits.get(here, 0) + 1
        for group in trials(node.view, node is root):
            got_on = False
            last = {kind(m): i for i, m in enumerate(group)}
            many = {k for k, n in Counter(kind(m) for m in group).items() if n > 6}
            went: dict[str, list[tuple[str, str] | None]] = {}
            for i, move in enumerate(group):
                earlier = went.setdefault(kind(move), [])
                # Two of many options of a kind (governorates) led to one step: so will the
                # others, but perhaps the last ("I do not know", "Done").
                alike = kind(move) in many and len(earlier) >= 2 and len(set(earlier)) == 1
                if alike and i != last[kind(move)]:
                    continue
                node.restore(world.path)
                person = Recorder(world, node.view.address)
                outcome = await world.deliver(person, move, node.view.locale, [])
                world.problems += [f"exploring {here} with {move}: {p}" for p in outcome.problems]
                view = await view_of(world, node.view.address)
                earlier.append((view.flow, view.step) if view else None)
                if view is None or view.flow not in flows:
                    continue
                # On to another step, or to a state not seen: the next group is not needed.
                got_on = got_on or (view.flow, view.step) != here or view.key not in seen
                if view.key in seen:
                    continue
                seen.add(view.key)
                child = Snapshot(world.path, view, (*node.moves, move))
                found.setdefault((view.flow, view.step), child)
                order += 1
                rank = visits.get((view.flow, view.step), 0)
                heappush(queue, (rank, len(child.moves), order, child))
            if got_on and node is not root:  # from the root, every group: commands lead far
                break
    return found


async def in_language(world: World, node: Snapshot, locale: str) -> Snapshot | None:
    """The same state in another language: Language, then the language (back to the question)."""
    node.restore(world.path)
    person = Recorder(world, node.view.address)
    moves = (press("nav:lang"), press(f"lang:{locale}"))
    speaks = node.view.locale
    for move in moves:
        outcome = await world.deliver(person, move, speaks, [])
        speaks = outcome.locale
        where = f"switching {node.view.flow}/{node.view.step} to {locale}"
        world.problems += [f"{where}: {p}" for p in outcome.problems]
    view = await view_of(world, node.view.address)
    if view is None or (view.flow, view.step) != (node.view.flow, node.view.step):
        return None
    return Snapshot(world.path, view, (*node.moves, *moves))


async def build(world: World) -> None:
    """Seed the world, explore it as a citizen and as a coordinator, in every language."""
    await seed(world)
    newcomer = View(Address("telegram", "4000"), None, "", "", (), (), ())
    world.first = Snapshot(world.path, newcomer, ())
    citizen = await view_of(world, CITIZEN)
    coordinator = await view_of(world, COORDINATOR)
    assert citizen is not None
    assert coordinator is not None
    public = {name for name in REGISTRY.flows if name not in COORDINATOR_FLOWS}
    found: dict[tuple[str, str], Snapshot] = {}
    representative = await view_of(world, REPRESENTATIVE)
    assert representative is not None
    # The family waits on the seed's question (bot.referrals); a state the explorer cannot make
    # again, as that question is asked once: the seed's own.
    family = await view_of(world, FAMILY)
    assert family is not None
    assert (family.flow, family.step) == ("referral_confirm", "answer")
    found[("referral_confirm", "answer")] = Snapshot(world.path, family, ())
    for view, flows in (
        (citizen, public - {"referral_confirm"}),
        # A representative's own steps, and the answers to the organization's referrals.
        (representative, {"organization", "referral_decline", "referral_helped"}),
        (coordinator, COORDINATOR_FLOWS),
    ):
        targets = {s for s in STEPS if s[0] in flows} - found.keys()
        root = Snapshot(world.path, view, ())
        found.update(await explore(world, root, targets, flows))
    for (flow, step), node in found.items():
        world.snapshots[(flow, step, "en")] = node
        for locale in ("ar", "ckb"):
            switched = await in_language(world, node, locale)
            if switched is None:
                world.problems.append(f"the Language escape left {flow}/{step} in {locale}")
            else:
                world.snapshots[(flow, step, locale)] = switched


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The seeded, explored world, shared by every test of this file (each restores its state).

    Its own SQLite file, made by the real migrations, whichever database the suite runs on: the
    world's states are kept and restored as copies of that file.
    """
    path = tmp_path_factory.mktemp("fuzz") / "bot.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(url)
    config = Settings(
        database_url=url,
        coordinators=frozenset({COORDINATOR, WHATSAPP_COORDINATOR}),
        inbound_per_minute=10**9,  # one engine takes every example's messages, in seconds
        reports_per_day=1,  # a report sent, the next one meets the limit (report/limit)
    )
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    runner = asyncio.Runner()
    db = Database(url)
    made = World(runner, path, db, config, Engine(db, config, build_registry()), errors)
    try:
        runner.run(build(made))
        yield made
    finally:
        logging.getLogger().removeHandler(errors)
        runner.run(db.close())
        runner.close()


# Languages ------------------------------------------------------------------------------------


def _catalog_strings() -> dict[str, list[str]]:
    """Every message as each locale shows it (msgid for English), from the three catalogs."""
    shown: dict[str, list[str]] = {loc: [] for loc in LOCALES}
    for locale in LOCALES:
        with (locales_dir() / locale / "LC_MESSAGES" / "messages.po").open("rb") as fh:
            catalog = read_po(fh, locale=locale)
        for message in catalog:
            if not message.id:
                continue
            said = message.id if locale == "en" else message.string  # plurals: a tuple
            forms: list[Any] = list(said) if isinstance(said, list | tuple) else [said]
            shown[locale] += [str(form) for form in forms if form]
    return shown


CATALOG = _catalog_strings()
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|\n|•|[:.,;?!()\u201c\u201d\u060c\u061f]")


def _fragments(strings: list[str]) -> set[str]:
    """The runs of two or more words between placeholders and punctuation."""
    found = set()
    for message in strings:
        for part in PLACEHOLDER.split(message):
            words = [w for w in part.split() if sum(ch.isalpha() for ch in w) >= 2]
            if len(words) >= 2:
                found.add(" ".join(part.split()))
    return found


# For each locale, the phrases of the other two languages' catalogs that it never uses itself.
FOREIGN_PHRASES: dict[str, set[str]] = {}
FOREIGN_LABELS: dict[str, set[str]] = {}
for _loc in LOCALES:
    _own_text = "\n".join(CATALOG[_loc])
    _others = [s for other in LOCALES if other != _loc for s in CATALOG[other]]
    FOREIGN_PHRASES[_loc] = {f for f in _fragments(_others) if f not in _own_text}
    FOREIGN_LABELS[_loc] = {
        s for s in _others if s not in CATALOG[_loc] and any(ch.isalpha() for ch in s)
    }

SORANI_MARKERS = frozenset("ێۆڕڵەڤھیک")  # letters a Sorani text has and an Arabic one does not
# Names that are data, not our words: places in each language, the languages' own names, and
# the language question that is always asked in all three.
NAMES: dict[str, list[str]] = {
    loc: sorted(
        {
            *(p.name(loc) for p in gazetteer.GOVERNORATES),
            *(d.name(loc) for ds in gazetteer.DISTRICTS.values() for d in ds),
            *LANGUAGE_NAMES.values(),
            *(translate_in(other, CHOOSE) for other in LOCALES),
        },
        key=len,
        reverse=True,
    )
    for loc in LOCALES
}


def bulletin_reader(message: Outbound) -> str | None:
    """The reader's language of a bulletin rendered for them: its footer is in that language."""
    if message.locale not in LOCALES:
        return None
    footer = translate_in(message.locale, "Bulletin %(id)s · %(date)s").split("%(id)s")[0]
    return message.locale if footer.strip() and footer.strip() in message.text else None


def arabic_script(ch: str) -> bool:
    """Whether a character is of the Arabic script (letters, digits, punctuation)."""
    return unicodedata.name(ch, "").startswith("ARABIC")


def without(message: str, data: list[str]) -> str:
    """The message with the data removed: what remains is the bot's own words."""
    for item in sorted({d for d in data if d.strip()}, key=len, reverse=True):
        message = message.replace(item, " ")
    return message


def variants(typed: list[str]) -> list[str]:
    """What typed words can look like in a reply: cleaned, re-spaced, lower-cased, word by word."""
    found: set[str] = set()
    for raw in typed:
        cleaned = clean_input(raw)
        spaced = " ".join(cleaned.split())
        found.update((raw, raw.strip(), cleaned, spaced, spaced.lower(), spaced[:500]))
        found.update(spaced.split())
    return list(found)


def language_problems(message: Outbound, allowed: set[str], typed: list[str]) -> list[str]:
    """Whether a message is in one of the `allowed` languages, typed words and names aside.

    English: no character of the Arabic script. Arabic: Arabic letters, and none of the letters
    only Sorani has. Sorani: some of those letters. Each: no phrase or button label from another
    language's catalog that it never uses itself. A message with no words of ours left passes.
    """
    data = variants(typed)
    failures = []
    for locale in sorted(allowed):
        problems = []
        parts = [(f"{message.title or ''}\n{message.text}", False)]
        parts += [(b.label.removeprefix("✅ "), True) for b in message.options()]
        for part, is_label in parts:
            # Names first: a short typed word may be part of one of them.
            rest = without(without(part, NAMES[locale]), data)
            letters = [ch for ch in rest if ch.isalpha()]
            # A label may be a name of no language (CSV, GeoJSON); a text must be in ours.
            ours = letters and not is_label
            if locale == "en" and any(arabic_script(ch) for ch in rest):
                problems.append(f"Arabic script in English: {part!r}")
            elif locale == "ar" and ours and not any(arabic_script(ch) for ch in letters):
                problems.append(f"no Arabic in Arabic: {part!r}")
            elif locale == "ar" and any(ch in SORANI_MARKERS for ch in rest):
                problems.append(f"Sorani letters in Arabic: {part!r}")
            elif locale == "ckb" and ours and SORANI_MARKERS.isdisjoint(rest):
                problems.append(f"no Sorani in Sorani: {part!r}")
            spaced = " ".join(re.sub(r"[\u200e\u200f\u2066-\u2069]", "", rest).split())
            if is_label and spaced in FOREIGN_LABELS[locale]:
                problems.append(f"a button of another language: {part!r}")
            leaked = [f for f in FOREIGN_PHRASES[locale] if f in spaced]
            if leaked:
                problems.append(f"words of another language {leaked[:3]} in {part!r}")
        if not problems:
            return []
        failures += [f"[{locale} to {message.address}] {p}" for p in problems]
    return failures


# What is stored -------------------------------------------------------------------------------
# The rules of the models and of the handlers' validation, for the stored rows and for the
# answers a conversation holds before they become a row (checked on the same names).

REFERENCE = re.compile(r"R-[2-9A-HJKMNP-Z]{5}")
RECEIPT = re.compile(r"S-[2-9A-HJKMNP-Z]{8}")
MONTH = re.compile(r"(\d{4})-(\d{2})")
TIME = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
GOVERNORATES = {p.pcode for p in gazetteer.GOVERNORATES}
COUNTS = ("children", "elderly", "disabled", "pregnant")
ROLE_LIMIT = 100  # the "role" question's limit in handlers/sign.py


def json_safe(value: Any) -> bool:
    """Whether a value is strict JSON (no NaN or infinity), as PostgreSQL's JSON wants it."""
    try:
        return bool(json.loads(json.dumps(value, allow_nan=False)) == value)
    except (TypeError, ValueError):
        return False


def short_text(value: Any, limit: int) -> bool:
    """A non-empty text within its limit."""
    return isinstance(value, str) and bool(value.strip()) and len(value) <= limit


def report_rules(v: dict[str, Any], *, complete: bool) -> list[str]:
    """A report's answers (all of them when `complete`) against the report flow's rules."""
    bad = []
    if complete:
        bad += [f"no {key}" for key in ("gov", "people", "shelter", "urgent") if key not in v]
    if "gov" in v and v["gov"] not in GOVERNORATES:
        bad.append(f"governorate {v['gov']!r}")
    districts = {d.pcode for d in gazetteer.districts_of(str(v.get("gov")))}
    if v.get("district") is not None and v["district"] not in districts:
        bad.append(f"district {v['district']!r} of {v.get('gov')!r}")
    if v.get("origin") is not None and v["origin"] not in GOVERNORATES:
        bad.append(f"origin {v['origin']!r}")
    people = v.get("people")
    if people is not None and not (isinstance(people, int) and 1 <= people <= MAX_PEOPLE):
        bad.append(f"people {people!r}")
    counts = {key: v[key] for key in COUNTS if key in v}
    if any(not isinstance(c, int) or c < 0 for c in counts.values()):
        bad.append(f"counts {counts}")
    elif isinstance(people, int) and (
        any(c > people for c in counts.values())
        or counts.get("children", 0) + counts.get("elderly", 0) > people
    ):
        bad.append(f"counts {counts} for {people} people")
    when = v.get("when")
    month = MONTH.fullmatch(str(when))
    if when is not None and when not in WHEN_LABELS:
        year = datetime.now(UTC).year
        if not month or not 1 <= int(month[2]) <= 12 or not 2003 <= int(month[1]) <= year:
            bad.append(f"displaced {when!r}")
    if "shelter" in v and v["shelter"] not in SHELTER_LABELS:
        bad.append(f"shelter {v['shelter']!r}")
    needs = v.get("needs", [])
    if not isinstance(needs, list) or len(set(needs)) != len(needs) or not set(needs) <= {*NEEDS}:
        bad.append(f"needs {needs!r}")
    elif complete and not needs:
        bad.append("no needs")
    if v.get("urgent") is not None and v["urgent"] not in needs:
        bad.append(f"most urgent {v['urgent']!r} not among {needs!r}")
    if v.get("place") is not None and not short_text(v["place"], PLACE_LIMIT):
        bad.append(f"place {str(v['place'])[:50]!r}")
    if v.get("notes") is not None and not short_text(v["notes"], NOTES_LIMIT):
        bad.append(f"notes {str(v['notes'])[:50]!r}")
    if v.get("phone") is not None and valid_phone(str(v["phone"])) != v["phone"]:
        bad.append(f"phone {v['phone']!r}")
    if complete and v.get("phone") is not None and not v.get("contact"):
        bad.append("a phone number without consent to be contacted")
    point = (v.get("lat"), v.get("lon"))
    if point != (None, None):
        numbers = [x for x in point if isinstance(x, int | float) and math.isfinite(x)]
        if len(numbers) != 2 or not (-90 <= numbers[0] <= 90 and -180 <= numbers[1] <= 180):
            bad.append(f"point {point!r}")
    return bad


def report_problems(r: Report) -> list[str]:
    """A stored report against the report flow's rules, and its own fields."""
    values = {
        "gov": r.governorate,
        "district": r.district,
        "origin": r.origin,
        "when": r.displaced,
        "people": r.people,
        **{key: getattr(r, key) for key in COUNTS},
        "shelter": r.shelter,
        "needs": r.needs,
        "urgent": r.urgent,
        "place": r.place,
        "notes": r.notes,
        "phone": r.phone,
        "contact": r.contact_ok,
        "lat": r.latitude,
        "lon": r.longitude,
    }
    bad = report_rules(values, complete=True)
    if r.exact_point is not None:
        lat, _, lon = r.exact_point.partition(",")
        if not all(math.isfinite(float(x)) for x in (lat, lon)):
            bad.append(f"exact point {r.exact_point!r}")
    if r.status not in REPORT_STATUS or r.locale not in LOCALES:
        bad.append(f"status {r.status!r}, locale {r.locale!r}")
    if not REFERENCE.fullmatch(r.reference):
        bad.append(f"reference {r.reference!r}")
    return [f"report {r.reference}: {b}" for b in bad]


def sign_rules(v: dict[str, Any], *, complete: bool) -> list[str]:
    """A signature's answers (all of them when `complete`) against the signing flow's rules."""
    bad = []
    names = [v[key] for key in ("name_ar", "name_en") if v.get(key) is not None]
    for name in names:
        if not short_text(name, NAME_LIMIT) or len(organization_key(name)) < 2:
            bad.append(f"name {name!r}")
    if complete and not names:
        bad.append("no name")
    if "type" in v and v["type"] not in TYPE_LABELS:
        bad.append(f"type {v['type']!r}")
    if "gov" in v and v["gov"] not in GOVERNORATES:
        bad.append(f"governorate {v['gov']!r}")
    for key, limit in (("city", CITY_LIMIT), ("person", PERSON_LIMIT), ("role", ROLE_LIMIT)):
        value = v.get(key)
        if (key in v or complete) and not (
            short_text(value, limit) and any(ch.isalpha() for ch in str(value))
        ):
            bad.append(f"{key} {str(value)[:50]!r}")
    if v.get("phone") is not None and valid_phone(str(v["phone"])) != v["phone"]:
        bad.append(f"phone {v['phone']!r}")
    email = v.get("email")
    if email is not None and (not EMAIL.fullmatch(str(email)) or len(str(email)) > 200):
        bad.append(f"email {email!r}")
    if complete and not v.get("phone") and not email:
        bad.append("neither a phone number nor an email address")
    return bad


def signature_problems(s: Signature, ids: set[int]) -> list[str]:
    """A stored signature against the signing flow's rules, and its own fields."""
    values = {
        "name_ar": s.name_ar,
        "name_en": s.name_en,
        "type": s.org_type,
        "gov": s.governorate,
        "city": s.city,
        "person": s.representative,
        "role": s.role,
        "phone": s.phone,
        "email": s.email,
    }
    bad = sign_rules(values, complete=True)
    if len(s.name_key) < 2:
        bad.append(f"name key {s.name_key!r}")
    if s.status not in SIGNATURE_STATUS or s.locale not in LOCALES:
        bad.append(f"status {s.status!r}, locale {s.locale!r}")
    if s.status == "rejected" and not (s.reason and len(s.reason) <= 500):
        bad.append(f"rejected with the reason {s.reason!r}")
    if s.similar_to is not None and s.similar_to not in ids:
        bad.append(f"similar to {s.similar_to}")
    if not RECEIPT.fullmatch(s.receipt):
        bad.append(f"receipt {s.receipt!r}")
    return [f"signature {s.receipt}: {b}" for b in bad]


def texts_rules(texts: Any, *, complete: bool) -> list[str]:
    """A bulletin's texts: per language, a title and a text within their limits."""
    if not isinstance(texts, dict) or not set(texts) <= set(LOCALES) or (complete and not texts):
        return [f"languages {texts!r}"]
    bad = []
    for locale, item in texts.items():
        title, body = item.get("title"), item.get("text")
        if not isinstance(title, str) or len(title) > TITLE_LIMIT:
            bad.append(f"{locale}: title {str(title)[:50]!r}")
        if not short_text(body, TEXT_LIMIT):
            bad.append(f"{locale}: text {str(body)[:50]!r}")
    return bad


def bulletin_problems(b: Bulletin) -> list[str]:
    """A stored bulletin against the bulletin flow's rules."""
    bad = texts_rules(b.texts, complete=True)
    if b.status not in BULLETIN_STATUS:
        bad.append(f"status {b.status!r}")
    if b.status == "scheduled" and b.scheduled_at is None:
        bad.append("scheduled without a time")
    if b.recurrence is not None:
        if b.recurrence not in ("daily", "weekly") or not TIME.fullmatch(b.time_of_day or ""):
            bad.append(f"recurrence {b.recurrence!r} at {b.time_of_day!r}")
        if (b.recurrence == "weekly") != (b.weekday is not None):
            bad.append(f"{b.recurrence} on day {b.weekday!r}")
    if b.weekday is not None and not 0 <= b.weekday <= 6:
        bad.append(f"weekday {b.weekday}")
    if b.public_id is not None and set(b.hashes) != set(b.texts):
        bad.append("hashes do not match the languages")
    return [f"bulletin {b.id}: {x}" for x in bad]


def conversation_rules(flow: str, step: str, data: dict[str, Any], coordinator: bool) -> list[str]:
    """Where a conversation stands and the answers it holds (and those of a saved place)."""
    if REGISTRY.step(flow, step) is None:
        return [f"no step {flow}/{step}"]
    bad = []
    if REGISTRY.flows[flow].coordinators_only and not coordinator:
        bad.append(f"someone who is not a coordinator in {flow}")
    if not json_safe(data):
        bad.append(f"answers not JSON: {data!r}")
    if flow == "report":
        bad += report_rules(data, complete=False)
    elif flow == "sign":
        bad += sign_rules(data, complete=False)
    elif flow == "bulletin_admin":
        bad += texts_rules(data.get("texts", {}), complete=False)
        if "writing" in data and data["writing"] not in LOCALES:
            bad.append(f"writing in {data['writing']!r}")
        if "title" in data and not (isinstance(data["title"], str) and len(data["title"]) <= 200):
            bad.append(f"title {str(data['title'])[:50]!r}")
    elif flow == "reports":
        filters = data.get("filters", {})
        known = {"gov": GOVERNORATES, "status": set(REPORT_STATUS), "need": set(NEEDS)}
        if any(value not in known.get(key, set()) for key, value in filters.items()):
            bad.append(f"filters {filters!r}")
    saved = data.get("resume")
    if isinstance(saved, dict):  # the place the Language escape returns to
        bad += [
            f"the saved place: {b}"
            for b in conversation_rules(
                str(saved.get("flow")), str(saved.get("step")), saved.get("data", {}), coordinator
            )
        ]
    return bad


async def stored_problems(world: World, outbox: int = 0) -> list[str]:
    """Everything in the database against the validation rules (the outbox after `outbox`)."""
    async with world.db.transaction() as session:
        reports = (await session.scalars(select(Report))).all()
        signatures = (await session.scalars(select(Signature))).all()
        bulletins = (await session.scalars(select(Bulletin))).all()
        contacts = {c.id: c for c in (await session.scalars(select(Contact))).all()}
        conversations = (await session.scalars(select(Conversation))).all()
        bodies = (
            await session.scalars(select(OutboxMessage.body).where(OutboxMessage.id > outbox))
        ).all()
    bad = [p for r in reports for p in report_problems(r)]
    ids = {s.id for s in signatures}
    bad += [p for s in signatures for p in signature_problems(s, ids)]
    bad += [p for b in bulletins for p in bulletin_problems(b)]
    for contact in contacts.values():
        if contact.locale is not None and contact.locale not in LOCALES:
            bad.append(f"contact {contact.address}: locale {contact.locale!r}")
    for c in conversations:
        address = Address.parse(contacts[c.contact_id].address)
        coordinator = world.settings.is_coordinator(address)
        problems = conversation_rules(c.flow, c.step, c.data, coordinator)
        if any(REGISTRY.step(c.flow, s) is None for s in c.history):
            problems.append(f"history {c.history!r} outside {c.flow}")
        if not json_safe(c.offered):
            problems.append(f"options not JSON: {c.offered!r}")
        bad += [f"conversation of {address} at {c.flow}/{c.step}: {p}" for p in problems]
    bad += [f"outbox body not JSON: {b!r}" for b in bodies if not json_safe(b)]
    return bad


# Hypothesis strategies ------------------------------------------------------------------------

BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff\u200b"
DIGITS = {
    "ascii": "0123456789",
    "arabic": "٠١٢٣٤٥٦٧٨٩",
    "persian": "۰۱۲۳۴۵۶۷۸۹",
    "devanagari": "०१२३४५६७८९",
}
SPECIAL_TEXTS = [
    "",
    " ",
    "\n\n",
    "\t",
    "\x00",
    "\x1b[31mred",
    "\u200f",
    BIDI,
    "\u202e4\u202c",
    "\u2068٣\u2069",
    "٣",
    "۳",
    "²",
    "½",
    "Ⅻ",
    "٠٧٧٠ ١٢٣ ٤٥٦٧",
    "۰۷۵۰۱۱۱۲۲۳۳",
    "+964 770 123 4567",
    "00964 750 111 2233",
    "+1 202 555 0143",
    "-1",
    "0",
    "31",
    "1.5",
    "١٫٥",
    "999999999",
    "9" * 40,
    "1e9",
    "NaN",
    "inf",
    "None",
    "null",
    "true",
    "[]",
    "{}",
    "%(name)s",
    "%s %d {0}",
    "<b>bold</b>",
    "*bold* _it_ ~s~ `c`",
    "../../etc/passwd",
    "' OR 1=1 --",
    "\\",
    "👨‍👩‍👧‍👦",
    "🇮🇶",
    "🙏🏽",
    "ﷺ",
    "ـــ",
    "e\u0301",
    "ﻻ",
    "R-22222",
    "r 7k3m9",
    "S-ABCDEFGH",
    "B-PREVIEW",
    "2030-02-30 09:00",
    "9999-12-31 23:59",
    "0001-01-01 00:00",
    "13/2024",
    "0/2024",
    "3/1999",
    "12/2999",
    "٢٠٢٤/٠٣",
    "24:00",
    "25:61",
    "9 pm",
    "١٢ م",
    "tomorrow 25:00",
    "غدا ٩:٠٠",
    "a@b.c",
    "name@example.org",
    "x@y.zz" + "z" * 300,
    "x" * 201,
    "ب" * 1001,
    "Baghdad",
    "بغداد",
    "هەولێر",
    "Al Anbar",
    "I do not know",
    "Sharya camp",
]
WORDS = [
    *(w for words in NAV_WORDS.values() for w in words),
    *STOP_WORDS,
    "STOP",
    *(w for words in ALIASES.values() for w in words),
    *LANGUAGE_NAMES.values(),
]
FORGED_SUFFIXES = [
    "",
    "IQG99",
    "IQG09Q99",
    "iqg09",
    "-1",
    "0",
    "00",
    "999999",
    "99999999999999999999",
    "1e3",
    "²",
    "١٢",
    "۱",
    "../../",
    "%00",
    "None",
    "null",
    "done",
    "unknown",
    "R-22222",
    "1:2",
    " 1",
    "x" * 70,
]
FORGED_PREFIXES = [
    "gov:",
    "orig:",
    "dist:",
    "n:",
    "need:",
    "urgent:",
    "shelter:",
    "when:",
    "prec:",
    "edit:",
    "lang:",
    "menu:",
    "decl:",
    "arch:",
    "bul:",
    "item:",
    "it:",
    "day:",
    "go:",
    "adm:",
    "img:",
    "st:",
    "f:",
    "x:",
    "list:",
    "show:",
    "dec:",
    "pend:",
    "type:",
    "same:",
    "sig:",
    "sig:open:",
    "rep:open:",
    "signed:",
    "wd:",
    "auth:",
    "r:",
    "nav:",
    "mydata:",
    "forget:",
]
COMMAND_NAMES = sorted(
    {*REGISTRY.commands, *COMMANDS, "start", "stop", "Start", "REPORTS", "unknown_command"}
)


def in_digits(number: int, script: str) -> str:
    """A number written in another digit script."""
    return str(number).translate(str.maketrans("0123456789-", DIGITS[script] + "-"))


any_text = st.text(max_size=40)
long_text = st.builds(
    lambda unit, size: (unit * size)[:size],
    st.sampled_from(["a", "ب", "ە ", "👍", "\u200f", "1", "word ", "\n"]),
    st.integers(4097, 6000),
)
mixed = st.lists(
    st.one_of(st.sampled_from(SPECIAL_TEXTS), st.sampled_from(BIDI), any_text), max_size=4
).map("".join)


def typed_text(offered: Offered) -> st.SearchStrategy[str]:
    """Any text, and texts near to what the step understands."""
    labels = [label for _, label in offered]
    numbers = st.builds(
        lambda n, script, mark: f"{mark}{in_digits(n, script)}{mark}",
        st.integers(-2, max(len(labels), 31) + 2),
        st.sampled_from(sorted(DIGITS)),
        st.sampled_from(["", " ", "\u200f", "\u2066"]),
    )
    near = [st.sampled_from(labels)] if labels else []
    if labels:
        near.append(
            st.builds(
                lambda label, wrap: wrap.replace("L", label),
                st.sampled_from(labels),
                st.sampled_from(["\u200fL\u200f", " L ", "L!", "L.", "LL", "«L»", "L\u0640"]),
            )
        )
    return st.one_of(
        any_text,
        st.sampled_from(SPECIAL_TEXTS),
        st.sampled_from(WORDS),
        numbers,
        mixed,
        long_text,
        *near,
    )


@cache
def moves(offered: Offered) -> st.SearchStrategy[Move]:
    """Everything a person (or a forger) can send where they were given these options."""
    typed = typed_text(offered)
    payloads = [p for p, _ in offered]
    suffixes = st.one_of(st.sampled_from(FORGED_SUFFIXES), st.text(max_size=12))
    forged = st.builds(
        lambda prefix, suffix: prefix + suffix,
        st.one_of(
            # The step's own kinds of payload, those of other steps, and the standing buttons
            # that work anywhere (for coordinators).
            st.sampled_from(sorted({p.rsplit(":", 1)[0] + ":" for p in payloads} or {"x:"})),
            st.sampled_from(FORGED_PREFIXES),
            st.sampled_from(sorted(REGISTRY.actions)),
        ),
        suffixes,
    )
    buttons = st.one_of(
        *([st.sampled_from(payloads)] if payloads else []),
        st.sampled_from([*NAV_PAYLOADS, SHARE_LOCATION, SHARE_PHONE]),
        forged,
        st.text(max_size=64),
    ).map(press)
    arguments = st.one_of(
        st.sampled_from(
            [*REGISTRY.deep_links, "R-22222", "IQG09", "دهوك", "new", "health", "../", "0"]
        ),
        st.text(min_size=1, max_size=12),
    )
    commands = st.builds(
        lambda name, args: " ".join(["/" + name, *args]),
        st.sampled_from(COMMAND_NAMES),
        st.lists(arguments, max_size=3),
    ).map(lambda line: Move("command", text=line))
    coordinate = st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([90.0, -90.0, 180.0, -180.0, 90.000001, -180.000001, -0.0, 5e-324]),
    )
    locations = st.builds(
        lambda lat, lon, name: Move("location", location=Location(lat, lon, name)),
        coordinate,
        coordinate,
        st.none() | st.text(max_size=20),
    )
    refs = st.one_of(st.sampled_from(["AgACAgIAAxkBAAIB", "https://api.twilio.com/x"]), any_text)
    media = st.builds(
        lambda kind, ref, content, caption: Move(
            kind, text=caption, media=(Media(kind, ref, content),)
        ),
        st.sampled_from(["photo", "document"]),
        refs,
        st.sampled_from([None, "image/jpeg", "application/pdf", "audio/ogg", ""]),
        st.one_of(st.just(""), typed),
    )
    contacts = st.builds(
        share_contact,
        st.one_of(
            st.none(),
            st.sampled_from(["9647701234567", "+9647501112233", "12025550143", "0", ""]),
            any_text,
        ),
    )
    # What people mostly do, answering the question they were asked, weighs as much as all
    # the rest: so that sequences go on into the flow (Edit, then an option, then Back).
    answers = (
        [
            st.sampled_from(payloads).map(press),
            st.sampled_from([label for _, label in offered]).map(lambda s: Move("text", text=s)),
        ]
        if offered
        else []
    )
    return st.one_of(
        *answers,
        *answers,
        typed.map(lambda s: Move("text", text=s)),
        commands,
        buttons,
        locations,
        media,
        contacts,
        st.just(Move("other")),
        typed.map(lambda s: Move("text", text=s, private=False)),
    )


# The tests ------------------------------------------------------------------------------------


def test_every_step_is_reached(world: World) -> None:
    """The explorer reached every step of every flow in every language, without a failure."""
    missing = [
        f"{flow}/{step} ({locale})"
        for flow, step in STEPS
        for locale in LOCALES
        if (flow, step, locale) not in world.snapshots
    ]
    assert not missing, (
        f"not reached: {missing}; give the explorer a plausible answer in PLAUSIBLE"
    )
    assert not world.problems, "\n".join(world.problems)


MOVES = 3  # inbounds per example, at most


async def fuzz_once(world: World, snap: Snapshot, data: st.DataObject) -> None:
    """From the snapshot, send up to MOVES inbounds, each drawn for the options then offered;
    check every reply, then everything stored."""
    snap.restore(world.path)
    person = Person(world.engine, snap.view.address)
    typed: list[str] = []  # earlier answers of this sequence may be quoted too
    speaks, offered = snap.view.locale, snap.view.offered
    for number in range(1, data.draw(st.integers(1, MOVES), label="inbounds") + 1):
        move = data.draw(moves(offered), label=f"inbound {number}")
        outcome = await world.deliver(person, move, speaks, typed)
        assert not outcome.problems, f"{snap}, inbound {number}: {move}\n" + "\n".join(
            outcome.problems
        )
        typed += move.typed()
        speaks, offered = outcome.locale, outcome.offered
    bad = await stored_problems(world, snap.outbox)
    assert not bad, f"{snap}\n" + "\n".join(bad)


def replayable(run: Callable[[], None]) -> None:
    """Run a fuzzing test; a failure says the seed that replays its inputs."""
    try:
        run()
    except BaseException as exc:
        exc.add_note(f"ICSSI_FUZZ_SEED={SEED} replays these inputs ({EXAMPLES} examples)")
        raise


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize(("flow", "step"), STEPS, ids=[f"{f}/{s}" for f, s in STEPS])
def test_fuzz(world: World, flow: str, step: str, locale: str) -> None:
    """Any inbound at this step gets replies in the person's language and stores nothing bad."""
    snap = world.snapshots.get((flow, step, locale))
    if snap is None:
        pytest.fail(f"{flow}/{step} was not reached in {locale} (see test_every_step_is_reached)")

    @FUZZ
    @hypothesis_seed(SEED)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        world.runner.run(fuzz_once(world, snap, data))

    replayable(run)


def test_fuzz_first_contact(world: World) -> None:
    """Anything as the very first message gets the language question, or words in Arabic."""
    assert world.first is not None

    first = world.first

    @FUZZ
    @hypothesis_seed(SEED)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        world.runner.run(fuzz_once(world, first, data))

    replayable(run)
