"""Between the sidecar and its history writer: turns outcomes into rows, off the hot path.

A chat message's row can only be written once every copy has a final answer, so each
accepted message gets a `FanoutTally` that rides along with its copies as their
transaction context (in the main process, or as a token through a delivery worker) and
is handed back here with each final status.  Open tallies are kept so that a stopping
sidecar can still write the messages whose copies never got an answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ..imc.outcome import Outcome
from .records import FanoutTally, command_events
from .writer import HistoryWriter

__all__ = ["HistoryRecorder"]

log = logging.getLogger("imc_sidecar.history")

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
        fanout_done: Callable[[float], None] | None = None,
    ) -> None:
        """`fanout_done` is told, once per chat text, the seconds from its acceptance to
        its last copy's final answer (the Prometheus histogram)."""
        self.writer = writer
        self._bodies = bodies
        self._clock = clock  # wall clock, for the rows' times
        # For latencies: uvloop's loop.time() only counts whole milliseconds.
        self._monotonic = monotonic
        self._fanout_done = fanout_done
        self._open: set[FanoutTally] = set()

    # Every entry point is guarded: a fault here may cost a history row, never the reply
    # or the copies of the request being served.

    def _failed(self, what: str) -> None:
        self.writer.counters.errors += 1
        log.exception("history: could not record %s", what)

    def command(self, outcome: Outcome) -> None:
        try:
            events = command_events(outcome, _micros(self._clock))
            if events:
                self.writer.add_events(events)
        except Exception:
            self._failed(f"the events of #{outcome.command}")

    def chat(self, outcome: Outcome, body: bytes, content_type: str | None) -> FanoutTally | None:
        """Start the row of an accepted chat text; None when it has no recipient."""
        try:
            recipients = sum(len(out.recipients) for out in outcome.messages)
            # The copies carry the type the row should show (the sender's, or the default).
            kind = outcome.messages[0].content_type if outcome.messages else content_type
            tally = FanoutTally(
                _micros(self._clock), self._monotonic(), outcome.room, outcome.actor,
                len(body), kind or "text/plain", recipients,
                body.decode("utf-8", "replace") if self._bodies else None,
            )
            if not recipients:
                self.writer.add_message(tally.record())
                return None
            self._open.add(tally)
            return tally
        except Exception:
            self._failed("a chat message")
            return None

    def answered(self, tally: FanoutTally, status: int) -> None:
        """One copy of `tally`'s message got its final `status`, just now."""
        try:
            if tally.answered(status, self._monotonic()) and tally in self._open:
                self._finished(tally)
        except Exception:
            self._failed("a delivery answer")

    def answered_many(
        self, tally: FanoutTally, delivered: int, failed: int, worst: int, last: float
    ) -> None:
        """Several copies of `tally`'s message ended (a delivery worker's share), the last
        at monotonic time `last`."""
        try:
            if tally.add(delivered, failed, worst, last) and tally in self._open:
                self._finished(tally)
        except Exception:
            self._failed("a delivery worker's answers")

    def _finished(self, tally: FanoutTally) -> None:
        """Every copy of `tally`'s message has its final answer: write its row."""
        self._open.discard(tally)
        self.writer.add_message(tally.record())
        if self._fanout_done is not None:
            self._fanout_done(tally.last - tally.started)

    def abandon_open(self) -> None:
        """At stop: write the messages still waiting for answers, the rest failed."""
        for tally in self._open:
            tally.abandon(_NO_ANSWER)
            self.writer.add_message(tally.record())
        self._open.clear()
