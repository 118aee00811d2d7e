"""Engine.handle(inbound): the one place where conversation state changes."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from weakref import WeakValueDictionary

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached

from bot import outbox, privacy, roles
from bot.config import Settings
from bot.db import Database
from bot.flows import (
    BACK,
    CANCEL,
    COMMANDS,
    HELP,
    LANGUAGE,
    MENU,
    NAV_PAYLOADS,
    Ctx,
    Later,
    Registry,
    Transition,
    resolve_choice,
    restore,
    snapshot,
)
from bot.i18n import _, direct, use_locale
from bot.limits import InboundLimit, Verdict
from bot.messages import Address, Button, Inbound, Outbound
from bot.models import Contact
from bot.outbox import Wakeup, enqueue
from bot.store import ConversationStore, Stored
from bot.text import MAX_INPUT, clean_input

# enqueue is the outbox's; older callers (and benchmarks) import it from here.
__all__ = ["HANDLING", "Engine", "HandlerFailed", "enqueue", "help_text"]

logger = logging.getLogger(__name__)

HANDLING = 8  # messages handled at once


class HandlerFailed(Exception):
    """A step raised: the transaction is rolled back and the user gets an apology."""


def default_hint() -> str:
    """What the bot says to input the current step does not understand."""
    return _("Sorry, I did not understand that. Please choose one of the options below.")


def media_hint() -> str:
    """What the bot says to a photo, file or location where it needs a choice or words."""
    return _(
        "Thank you, but I cannot use a photo, file or location here. "
        "Please choose one of the options below."
    )


def sorry(address: Address, buttons: tuple[tuple[Button, ...], ...] = ()) -> Outbound:
    """Our apology for a failure on our side, in the current locale."""
    text = _("Sorry, something went wrong on our side. Please try again in a moment.")
    return Outbound(address=address, text=direct(text), buttons=buttons)


class Engine:
    """Handles each inbound message in one transaction and queues the replies."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        registry: Registry,
        queued: Callable[..., None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.settings = settings
        self.registry = registry
        # Told `queued(channel, urgent=...)` after each message: the outbox's Wakeup, which
        # wakes the sender where one runs in this process. The engine knows no sender.
        self.queued = queued or Wakeup()
        self.store = ConversationStore()
        self.clock = clock
        # One lock per address: two messages of one person are handled one after the other.
        self._locks: WeakValueDictionary[str, asyncio.Lock] = WeakValueDictionary()
        # A few messages at a time: more would not go faster (the process has one core; SQLite
        # one writer), and a crowd of them would take the event loop from the sender (with 40
        # updates in hand on PostgreSQL, replies fell to 11 a second at 100 updates a second).
        self._handling = asyncio.Semaphore(HANDLING)
        self.limit = InboundLimit(settings.inbound_per_minute)

    async def handle(self, inbound: Inbound) -> list[Outbound]:
        """Handle one inbound message; return the replies queued for it (none if a duplicate)."""
        key = str(inbound.address)
        verdict: Verdict = "read"
        # A restart's resume is not the person writing; people with a role are trusted with more.
        if inbound.kind != "resume" and not self.settings.is_coordinator(inbound.address):
            verdict = await self.limit.verdict(key, self._has_role)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock, self._handling:
            for attempt in range(3):
                try:
                    if verdict == "read":
                        replies = await self._handle_once(inbound)
                    else:
                        replies = await self._slow_down(inbound, tell=verdict == "tell")
                except HandlerFailed:
                    replies = await self._apologize(inbound)
                except IntegrityError:
                    # Another process took this message id or created this contact first.
                    if attempt == 2:
                        raise
                    continue
                break
        # Replies, or messages held for this person, to send.
        self.queued(inbound.address.channel, urgent=bool(replies))
        return replies

    async def _has_role(self, address: str) -> bool:
        """Whether the person has a role in the database (read without the write lock)."""
        async with self.db.reading() as session:
            return await roles.role_of(session, address) is not None

    async def _handle_once(self, inbound: Inbound) -> list[Outbound]:
        # Behind: under a crowd of messages, the sender still gets every other turn at SQLite.
        async with self.db.transaction(behind=True) as session:
            arrived = await self._arrive(session, inbound)
            if arrived is None:
                logger.info("duplicate inbound %s skipped", inbound.message_id)
                return []
            contact, saved, role = arrived
            ctx = Ctx(
                inbound=inbound,
                contact=contact,
                session=session,
                settings=self.settings,
                now=self.clock(),
                flow=saved.flow if saved else "",
                step=saved.step if saved else "",
                # A deep copy: a step may change a nested value (a list of needs), and the
                # "nothing changed" check compares with what was loaded.
                data=copy.deepcopy(saved.data) if saved else {},
                history=list(saved.history) if saved else [],
                offered=[(p, label) for p, label in saved.offered] if saved else [],
                role=role,
            )
            with use_locale(contact.locale or self.settings.default_locale):
                try:
                    await self.route(ctx)
                except Exception as exc:
                    logger.exception(
                        "step %s/%s failed for a %s message",
                        ctx.flow,
                        ctx.step,
                        inbound.address.channel,
                    )
                    raise HandlerFailed from exc
            if ctx.forget:
                return await self._forget(session, contact, ctx.replies)
            await self._leave(session, contact.id, saved, ctx)
            contact_id, locale = contact.id, contact.locale or self.settings.default_locale
        if not ctx.after:
            return ctx.replies + ctx.extra
        with use_locale(locale):
            later = await self._afterwards(contact_id, inbound, ctx.after)
        return ctx.replies + ctx.extra + later

    async def _afterwards(
        self, contact_id: int, inbound: Inbound, jobs: list[Later]
    ) -> list[Outbound]:
        """Run the work the steps left for after the transaction; queue what it says back (an
        apology if it failed: the conversation itself was saved)."""
        messages: list[Outbound] = []
        try:
            for job in jobs:
                messages += await job(self.db)
        except Exception:
            logger.exception("work after a %s message failed", inbound.address.channel)
            messages.append(sorry(inbound.address))
        async with self.db.transaction(behind=True) as session:
            await enqueue(session, messages, contact_id)
        return messages

    async def _arrive(
        self, session: AsyncSession, inbound: Inbound
    ) -> tuple[Contact, Stored | None, str | None] | None:
        """Mark the message handled, and find (or make) its contact and conversation, both
        locked for this transaction on PostgreSQL, and the role the person acts with; None if
        the message was handled before."""
        found = await self.store.arrive(session, inbound, self.clock())
        if found is None:
            return None
        # An object as if loaded by the Session, without asking the database again: the steps
        # read and change it, and the unit of work writes what they change.
        contact = Contact(**found.contact)
        make_transient_to_detached(contact)
        session.add(contact)
        role = found.role
        if role is None and inbound.address in self.settings.coordinators:
            role = "admin"  # COORDINATORS' (bot.roles.adopt makes it so in the database)
        return contact, found.saved, role

    async def _leave(
        self, session: AsyncSession, contact_id: int, saved: Stored | None, ctx: Ctx
    ) -> None:
        """Write where the conversation now stands, if it moved, and queue the messages."""
        now = datetime.now(UTC)
        state = Stored(
            ctx.flow, ctx.step, ctx.data, ctx.history, [list(pair) for pair in ctx.offered]
        )
        rows = outbox.rows(ctx.replies, contact_id, now) + outbox.rows(ctx.extra, None, now)
        await self.store.leave(session, contact_id, saved, state, rows, now)

    async def _forget(
        self, session: AsyncSession, contact: Contact, goodbye: list[Outbound]
    ) -> list[Outbound]:
        """Forget a person (bot.privacy.forget); send only the goodbye, which leaves no trace."""
        withdrawn = await privacy.forget(session, contact, self.clock())
        # Only the confirmation, without buttons: the menu would recreate what was deleted.
        farewell = [dataclasses.replace(m, buttons=(), ephemeral=True) for m in goodbye[:1]]
        await enqueue(session, farewell + withdrawn, None)
        return farewell + withdrawn

    async def _slow_down(self, inbound: Inbound, *, tell: bool) -> list[Outbound]:
        """A message past the person's limit: recorded as handled (not read again when it is
        delivered again), the conversation left where it was; with `tell`, one notice."""
        async with self.db.transaction(behind=True) as session:
            arrived = await self._arrive(session, inbound)
            if arrived is None or not tell:
                return []
            contact, _saved, _role = arrived
            with use_locale(contact.locale or self.settings.default_locale):
                notice = Outbound(
                    address=inbound.address,
                    text=direct(
                        _(
                            "You are sending messages faster than I can read them. "
                            "I will read your messages again in a minute."
                        )
                    ),
                )
            await enqueue(session, [notice], contact.id)
            logger.info("a %s person is over the inbound limit", inbound.address.channel)
            return [notice]

    async def _apologize(self, inbound: Inbound) -> list[Outbound]:
        """Record the message as handled and say sorry; the conversation stays where it was."""
        async with self.db.transaction() as session:
            arrived = await self._arrive(session, inbound)
            if arrived is None:
                return []
            contact, saved, _role = arrived
            offered = saved.offered if saved else []
            with use_locale(contact.locale or self.settings.default_locale):
                buttons = tuple((Button(label, payload),) for payload, label in offered)
                reply = sorry(inbound.address, buttons)
            await enqueue(session, [reply], contact.id)
            return [reply]

    # Routing ---------------------------------------------------------------------------------

    async def route(self, ctx: Ctx) -> None:
        """Decide what the message means here and run the step: the conversation's rules."""
        inbound = ctx.inbound
        if not inbound.is_private:
            ctx.say(
                _(
                    "Hello! To keep what you tell me private, I only talk in private chats. "
                    "Please open a private chat with me."
                )
            )
            return
        again = inbound.command == "start" and ctx.flow == "language"
        if ctx.contact.locale is None and (ctx.flow != "language" or again):
            # First contact: the language comes first; a deep link waits until it is chosen.
            # Start pressed again (people do) asks again, without a reproach, and keeps the
            # deep link of the first one.
            data: dict[str, Any] = {}
            if inbound.command == "start" and inbound.args:
                data["then"] = self.registry.deep_links.get(inbound.args[0])
            elif again and isinstance(ctx.data.get("then"), str):
                data["then"] = ctx.data["then"]
            await self.enter(ctx, "language", data)
            return
        if inbound.kind == "resume":
            await self.ask(ctx)
            return
        if ctx.contact.locale is None:
            await self.run_step(ctx)  # nothing else counts until a language is chosen
            return
        if inbound.command == "start":
            target = self.registry.deep_links.get(inbound.args[0]) if inbound.args else None
            await self.enter(ctx, target if target and self.allowed(ctx, target) else "menu")
            return
        keyword = self.registry.keyword(inbound.text) if inbound.kind == "text" else None
        if keyword is not None:
            await self.follow(ctx, await keyword.run(ctx, ""))
            return
        escape = self.escape(ctx)
        if escape == MENU:
            await self.enter(ctx, "menu")
        elif escape == CANCEL:
            if ctx.flow != "menu":
                ctx.say(_("Cancelled. Nothing was saved."))
            await self.enter(ctx, "menu")
        elif escape == HELP:
            ctx.say(help_text(ctx.is_coordinator), title=_("Help"))
            await self.ask(ctx)
        elif escape == LANGUAGE:
            await self.enter(ctx, "language", {"resume": snapshot(ctx)})
        elif escape == BACK:
            await self.back(ctx)
        elif inbound.command is not None:
            target = self.registry.commands.get(inbound.command)
            if target is not None and self.allowed(ctx, target):
                await self.enter(ctx, target, {"args": list(inbound.args)})
            else:
                ctx.say(_("I do not know that command. Here is where we are."))
                await self.ask(ctx)
        elif ctx.flow and not self.allowed(ctx, ctx.flow):
            # No longer a coordinator (removed from COORDINATORS mid-flow): out of their tools.
            ctx.say(_("This is only for the Initiative's coordinators. Nothing was changed."))
            await self.enter(ctx, "menu")
        else:
            await self.run_step(ctx)

    async def run_action(self, ctx: Ctx, payload: str) -> bool:
        """Run a standing button (allowed or not, it is handled); False if it is not one."""
        found = self.registry.action(payload)
        if found is None:
            return False
        action, rest = found
        if not permitted(ctx, action.coordinators_only, action.permission):
            ctx.say(_("This menu has expired. Here is where we are now."))
            await self.ask(ctx)
        else:
            await self.follow(ctx, await action.run(ctx, rest))
        return True

    def numbered(self, ctx: Ctx) -> bool:
        """Whether a typed number picks an option here (not where numbers are the answer)."""
        step = self.registry.step(ctx.flow, ctx.step)
        return step is None or not step.numbers_are_answers

    def allowed(self, ctx: Ctx, flow: str) -> bool:
        """Whether this person may open `flow`."""
        found = self.registry.flows.get(flow)
        return found is not None and permitted(ctx, found.coordinators_only, found.permission)

    def escape(self, ctx: Ctx) -> str | None:
        """The global escape this message asks for: a command, a pressed button or a word."""
        inbound = ctx.inbound
        if inbound.command is not None:
            return COMMANDS.get(inbound.command)
        if inbound.payload is not None:
            return inbound.payload if inbound.payload in NAV_PAYLOADS else None
        if inbound.text:  # typed, or a photo's caption: "Back" under a photo is still Back
            word = clean_input(inbound.text, limit=200)
            # An offered option (by number or label) wins over an escape word.
            chosen = resolve_choice(word, ctx.offered, by_number=self.numbered(ctx))
            if chosen is not None:
                return chosen if chosen in NAV_PAYLOADS else None
            return self.registry.nav_payload(word)
        return None

    async def run_step(self, ctx: Ctx) -> None:
        """Give the message to the current step's answer and follow where it leads."""
        step = self.registry.step(ctx.flow, ctx.step)
        inbound = ctx.inbound
        if step is None:
            # A standing button works without a conversation too: an organization's Accept
            # may come after its member's idle conversation was deleted (bot.retention).
            if inbound.payload is not None and await self.run_action(ctx, inbound.payload):
                return
            await self.enter(ctx, "menu")  # a state left by an older version of the bot
            return
        ctx.text = clean_input(inbound.text)
        ctx.cut = len(inbound.text) > MAX_INPUT and len(ctx.text) == MAX_INPUT
        offered_payloads = {payload for payload, _label in ctx.offered}
        if inbound.payload is not None:
            if await self.run_action(ctx, inbound.payload):
                return
            if inbound.payload not in offered_payloads:
                ctx.say(_("This menu has expired. Here is where we are now."))
                await self.ask(ctx)
                return
            ctx.choice = inbound.payload
        elif ctx.text:
            ctx.choice = resolve_choice(ctx.text, ctx.offered, by_number=self.numbered(ctx))
            if ctx.choice is not None and await self.run_action(ctx, ctx.choice):
                return
        shared = bool(inbound.media or inbound.location or inbound.phone)
        understood = (
            ctx.choice is not None
            or (step.accepts_text and bool(ctx.text))
            or (step.accepts_media and shared)
        )
        if step.answer is None or not understood:
            ctx.say(media_hint() if shared and not ctx.text else default_hint())
            await self.ask(ctx)
            return
        await self.follow(ctx, await step.answer(ctx))

    async def follow(self, ctx: Ctx, transition: Transition) -> None:
        """Carry out a step's decision."""
        if transition.kind == "goto" and transition.target:
            if transition.target != ctx.step:
                ctx.history.append(ctx.step)
            ctx.step = transition.target
            await self.ask(ctx)
        elif transition.kind == "retry":
            ctx.say(transition.hint or default_hint())
            await self.ask(ctx)
        elif transition.kind == "flow" and transition.target:
            await self.enter(ctx, transition.target, transition.data)
        elif transition.kind == "menu":
            await self.enter(ctx, "menu")
        elif transition.kind == "restore" and transition.data:
            saved = transition.data
            ctx.flow, ctx.step = str(saved["flow"]), str(saved["step"])
            ctx.data, ctx.history = dict(saved["data"]), list(saved["history"])
            await self.ask(ctx)
        # "stay": the answer said what was needed

    async def enter(self, ctx: Ctx, flow: str, data: dict[str, Any] | None = None) -> None:
        """Begin a flow at its first step and ask it."""
        if not self.allowed(ctx, flow):
            flow = "menu"
        ctx.flow = flow
        ctx.step = self.registry.flows[flow].first
        ctx.data = data or {}
        ctx.history = []
        await self.ask(ctx)

    async def back(self, ctx: Ctx) -> None:
        """Return to the previous question of this flow, or to the menu from its first one."""
        saved = ctx.data.get("resume")
        step = self.registry.step(ctx.flow, ctx.step)
        if step is not None and step.back is not None:
            await self.follow(ctx, await step.back(ctx))
        elif ctx.history:
            ctx.step = ctx.history.pop()
            await self.ask(ctx)
        elif isinstance(saved, dict):
            await self.follow(ctx, restore(saved))  # back out of a detour such as the language
        else:
            await self.enter(ctx, "menu")

    async def ask(self, ctx: Ctx) -> None:
        """Ask the current step's question and remember the options it offered."""
        step = self.registry.step(ctx.flow, ctx.step)
        if step is None:
            ctx.flow, ctx.step, ctx.data, ctx.history = "menu", "main", {}, []
            step = self.registry.flows["menu"].steps[self.registry.flows["menu"].first]
        if step.redirect is not None:
            target = await step.redirect(ctx)
            if target is not None and (other := self.registry.step(ctx.flow, target)):
                ctx.step, step = target, other
        before = len(ctx.replies)
        await step.ask(ctx)
        offered: list[tuple[str, str]] = []
        for index in range(before, len(ctx.replies)):
            message = ctx.replies[index]
            if message.buttons:
                offered = [(b.payload, b.label) for b in message.options()]
                if step.numbers_are_answers:  # a typed number is the answer, not an option
                    ctx.replies[index] = dataclasses.replace(message, numbered=False)
        ctx.offered = offered


def permitted(ctx: Ctx, coordinators_only: bool, permission: str | None) -> bool:
    """Whether the person may open a flow or press a standing button of this kind."""
    if coordinators_only and not ctx.is_coordinator:
        return False
    return permission is None or ctx.may(permission)


def help_text(coordinator: bool = False) -> str:
    """What the bot can do and the words that work everywhere, in the current locale; a
    coordinator's commands too."""
    text = _(
        "I am the chat bot of the Iraqi Civil Society Solidarity Initiative.\n\n"
        "Choose from the buttons, or type the number of an option.\n"
        "These words work at any time:\n"
        "• Menu: the main menu\n"
        "• Back: the previous question\n"
        "• Cancel: stop what you are doing\n"
        "• Language: change the language\n"
        "• Help: this message\n\n"
        "/mydata shows everything we hold about you; /forget deletes it."
    )
    if coordinator:
        text += "\n\n" + _(
            "Your coordinator's commands:\n"
            "/reports: the reports, with filters (a governorate, a status, a need)\n"
            "/report and a reference: one report, its history, its status\n"
            "/signatures: the signatures waiting for verification\n"
            "/bulletin: write, schedule and follow bulletins\n"
            "/export: the reports as a file"
        )
        # Apart from the text above, so that its translations stand as they were reviewed.
        text += "\n" + _("/referrals: referrals to relief organizations, the figures")
        text += "\n" + _("/console: a sign-in link to the coordinators' console on the web")
    return text
