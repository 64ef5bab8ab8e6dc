"""Between the sidecar and its history writer: turns outcomes into rows, off the hot path.

A chat message's row can only be written once every copy has a final answer, so each
accepted message gets a `FanoutTally` that rides along with its copies as their
transaction context (in the main process, or as a token through a delivery worker) and
is handed back here with each final status.  Open tallies are kept so that a stopping
sidecar can still write the messages whose copies never got an answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..imc.outcome import InviteTicket, Outcome
from .records import FanoutTally, command_events, invite_failed_event
from .writer import HistoryWriter

__all__ = ["HistoryRecorder"]

_NO_ANSWER = 408  # what a copy still unanswered at stop counts as


def _micros(clock: Callable[[], float]) -> int:
    return int(clock() * 1_000_000)


class HistoryRecorder:
    def __init__(
        self,
        writer: HistoryWriter,
        bodies: bool,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.writer = writer
        self._bodies = bodies
        self._clock = clock  # wall clock, for the rows' times
        # For latencies: uvloop's loop.time() only counts whole milliseconds.
        self._monotonic = monotonic
        self._open: set[FanoutTally] = set()

    def command(self, outcome: Outcome) -> None:
        events = command_events(outcome, _micros(self._clock))
        if events:
            self.writer.add_events(events)

    def invite_failed(
        self, ticket: InviteTicket, outcome: Outcome, status: int, reason: str
    ) -> None:
        self.writer.add_events(
            invite_failed_event(ticket, outcome, status, reason, _micros(self._clock))
        )

    def chat(self, outcome: Outcome, body: bytes, content_type: str | None) -> FanoutTally | None:
        """Start the row of an accepted chat text; None when it has no recipient."""
        recipients = sum(len(out.recipients) for out in outcome.messages)
        tally = FanoutTally(
            _micros(self._clock), self._monotonic(), outcome.room, outcome.actor, len(body),
            content_type or "text/plain", recipients,
            body.decode("utf-8", "replace") if self._bodies else None,
        )
        if not recipients:
            self.writer.add_message(tally.record())
            return None
        self._open.add(tally)
        return tally

    def answered(self, tally: FanoutTally, status: int) -> None:
        """One copy of `tally`'s message got its final `status`, just now."""
        if tally.answered(status, self._monotonic()) and tally in self._open:
            self._open.discard(tally)
            self.writer.add_message(tally.record())

    def abandon_open(self) -> None:
        """At stop: write the messages still waiting for answers, the rest failed."""
        for tally in self._open:
            tally.abandon(_NO_ANSWER)
            self.writer.add_message(tally.record())
        self._open.clear()
