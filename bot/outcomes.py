"""What a transport's send, or a platform's later report on it, came to: typed, storage-free.

Transports (bot/channels/) raise these and build StatusEvents; the outbox (bot/outbox.py)
applies them to its rows. Neither side needs the other's module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


class RetryLater(Exception):
    """The platform asks us to wait (Telegram's RetryAfter, Twilio's 429) before sending again;
    with `rate`, to send no faster than that from now on (paid broadcasts refused)."""

    def __init__(
        self, seconds: float, reason: str = "rate limited", rate: float | None = None
    ) -> None:
        super().__init__(reason)
        self.seconds = seconds
        self.rate = rate


class Unreachable(Exception):
    """The person cannot be reached any more (blocked the bot, deactivated, opted out)."""


class OptedOut(Unreachable):
    """The person asked the platform for no more messages (WhatsApp's STOP): unsubscribed too."""


class Rejected(Exception):
    """The platform refused this message for good (bad request); other messages may go on."""


class Held(Exception):
    """The message must wait until the person writes (WhatsApp's 24-hour window).

    `message_id` is set when something stood in for it meanwhile (an approved template).
    """

    def __init__(self, reason: str, message_id: str | None = None) -> None:
        super().__init__(reason)
        self.message_id = message_id


class WindowClosed(Exception):
    """The platform says the person's window is closed, though we counted it open."""


# What a platform's report on a message it accepted means for the outbox.
Verdict = Literal[
    "delivered",  # it arrived (or was read)
    "failed",  # it will not arrive; nothing else to try
    "opted out",  # the person opted out: unsubscribed, nothing more for them
    "outside the window",  # too late for free text: a template, or wait for the person
    "over the daily limit",  # the platform's cap of people a day: broadcasts wait an hour
]


@dataclass(frozen=True)
class StatusEvent:
    """A platform's report on a message it accepted (Twilio's status callback)."""

    channel: str
    message_id: str  # the platform's id of the message (Twilio's MessageSid)
    status: str  # the platform's word for it (delivered, read, failed, undelivered)
    verdict: Verdict
    error: str | None = None  # the platform's error code, for the record
