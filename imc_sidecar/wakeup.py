"""One event-loop timer for a sans-I/O endpoint's next deadline.

A fan-out sets a deadline per copy within a few microseconds of each other, so the
timer fires `slack` seconds late and one wake-up serves them all.  An armed timer due no
later than needed is left alone even when the next deadline moved away: it fires,
finds little or nothing due, and the owner re-arms it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["Wakeup"]


class Wakeup:
    def __init__(
        self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None], slack: float
    ) -> None:
        self._loop = loop
        self._callback = callback
        self._slack = slack
        self._handle: asyncio.TimerHandle | None = None
        self._at: float | None = None

    def arm(self, deadline: float | None) -> None:
        """Make sure the callback runs at `deadline` (plus slack); None: nothing due."""
        if deadline is None:
            return
        at = deadline + self._slack
        if self._handle is not None:
            assert self._at is not None
            if self._at <= at:
                return
            self._handle.cancel()
        self._at = at
        self._handle = self._loop.call_at(at, self._fire)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._at = None

    def _fire(self) -> None:
        self._handle = None
        self._at = None
        self._callback()
