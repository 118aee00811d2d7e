"""The console chat: the same engine and database in a terminal, scriptable through stdin."""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import TextIO

from bot.engine import Engine
from bot.messages import Address, Inbound, Outbound
from bot.outcomes import Unreachable
from bot.sender import Sender
from bot.text import parse_command


def render(message: Outbound) -> str:
    """An Outbound as terminal text: title, text, then the options as a numbered list."""
    lines: list[str] = []
    if message.title:
        lines.append(f"== {message.title} ==")
    lines.append(message.text)
    if message.document:
        lines.append(f"[file: {message.document}]")
    for number, button in enumerate(message.options(), start=1):
        # Where a number is the answer (a family's size), options are picked by their words.
        lines.append(f"  {number}. {button.label}" if message.numbered else f"  • {button.label}")
    return "\n".join(lines)


class ConsoleTransport:
    """Delivers Outbounds by printing them: those to its own person (`only`), or to anyone."""

    channel = "console"
    rate = 1000.0

    def __init__(self, out: TextIO, only: str | None = None) -> None:
        self.out = out
        # One terminal is one person: messages to others wait for their own session.
        self.only = only

    def chat_limit(self, address: str) -> tuple[float, int]:
        """A terminal takes whatever comes."""
        return 1000.0, 1000

    async def deliver(self, message: Outbound) -> str | None:
        """Print one message, with a blank line after it."""
        try:
            self.out.write(render(message) + "\n\n")
            self.out.flush()
        except BrokenPipeError as exc:  # the reader went away: nobody to print to
            raise Unreachable("the console's output is closed") from exc
        return None


def to_inbound(address: Address, line: str) -> Inbound:
    """A typed line as an Inbound: a command when it starts with '/', else text."""
    message_id = uuid.uuid4().hex
    command = parse_command(line)
    if command is not None:
        name, args = command
        return Inbound(address, message_id, kind="command", text=line, command=name, args=args)
    return Inbound(address, message_id, kind="text", text=line)


async def chat(engine: Engine, sender: Sender, user: str, stdin: TextIO, stdout: TextIO) -> None:
    """Talk with the bot as `console:<user>` until end of input (Ctrl-D); the sender is the
    caller's, running."""
    address = Address("console", user)
    interactive = stdin.isatty()
    try:
        # Show where this person is: the language picker the first time, else the current step.
        await engine.handle(Inbound(address, uuid.uuid4().hex, kind="resume"))
        await sender.flush("console")
        while True:
            if interactive:
                stdout.write("> ")
                stdout.flush()
            line = await asyncio.to_thread(stdin.readline)
            if line == "":
                break
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            await engine.handle(to_inbound(address, line))
            await sender.flush("console")
    finally:
        if interactive:
            stdout.write("\n")


def stdio() -> tuple[TextIO, TextIO]:
    """Standard input and output, as UTF-8 whatever the terminal's locale."""
    for stream in (sys.stdin, sys.stdout):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(encoding="utf-8", errors="replace")
    return sys.stdin, sys.stdout
