"""An asyncio event loop on a clock of its own, which jumps to the next timer when nothing runs.

`asyncio.sleep(30)` takes no time here, and each turn of the loop moves the clock by a
microsecond, as if the code were fast: a test of the sender's pace runs minutes of the platform's
time in a moment, and always the same way. (A clock that stood still between timers would spin
for ever on a wait rounded to nothing, as a token bucket's can be, which a real clock ends.)
The real selector is still asked for I/O (a database thread, a socket) before the clock jumps,
for `real_wait` seconds at most, and, with `max_jump`, the clock moves no more than that at a
time: a connection being made (PostgreSQL's takes a few milliseconds) then sees its timeout of a
minute only after a few seconds of real time. Work that takes longer sees time jump meanwhile, as
on a busy machine, which the rules under test must survive anyway.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

T = TypeVar("T")


class _JumpingSelector(selectors.BaseSelector):
    """The loop's selector, which moves the loop's clock instead of sleeping."""

    def __init__(self, real: selectors.BaseSelector, loop: VirtualClockLoop) -> None:
        self.real = real
        self.loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        """Events ready now (or within `real_wait`); else jump the clock by `timeout`."""
        self.loop.now += self.loop.TICK
        self.loop.turns += 1
        if timeout is None:  # no timer at all: only I/O can wake the loop
            return self.real.select(None)
        if timeout <= 0:
            return self.real.select(0)
        events = self.real.select(min(timeout, self.loop.real_wait))
        if not events:
            jump = max(0.0, timeout - self.loop.TICK)
            if self.loop.max_jump is not None:
                jump = min(jump, self.loop.max_jump)
            self.loop.now += jump
        return events

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self.real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self.real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self.real.modify(fileobj, events, data)

    def close(self) -> None:
        self.real.close()

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self.real.get_key(fileobj)

    def get_map(self) -> Any:
        return self.real.get_map()


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose time() is virtual: it starts at 0 and jumps to each timer."""

    TICK = 1e-6  # seconds each turn of the loop takes

    def __init__(self, real_wait: float = 0.0, max_jump: float | None = None) -> None:
        super().__init__()
        self.now = 0.0
        self.turns = 0  # turns of the loop: a busy loop shows here, not on the clock
        self.real_wait = real_wait  # seconds of real time given to pending I/O before a jump
        self.max_jump = max_jump  # seconds the clock may jump at once (None: to the next timer)
        self.started = datetime.now(UTC)
        self._selector = _JumpingSelector(self._selector, self)  # type: ignore[has-type]

    def time(self) -> float:
        """The virtual clock, in seconds."""
        return self.now

    def utcnow(self) -> datetime:
        """The wall clock that goes with the virtual one (for rows due at a moment)."""
        return self.started + timedelta(seconds=self.now)


def run_virtual(
    main: Callable[[], Coroutine[Any, Any, T]],
    *,
    real_wait: float = 0.0,
    max_jump: float | None = None,
) -> T:
    """Run `main()` to its end on a new VirtualClockLoop."""
    loop = VirtualClockLoop(real_wait, max_jump)
    try:
        return loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
