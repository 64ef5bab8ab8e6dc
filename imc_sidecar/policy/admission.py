"""Admission of chat fan-outs: refuse new room messages before accepting means losing.

A sidecar that accepts more than it can send does not fail at once: the MESSAGEs it
sent wait longer and longer for their 200s (which queue behind new requests), start to
be retransmitted, and the retransmissions eat what capacity is left; memory grows with
every transaction held.  So the number of MESSAGEs sent and not yet answered is
bounded: past `limit`, a new chat text is refused (503 with Retry-After) before
anything is sent, and sending resumes once the backlog is down to `resume_at`
(hysteresis, so the answer does not flip with every message at the edge).  A message
that was answered 200 has all its copies admitted, so every accepted text is delivered
or its failure counted.  Commands are never refused here: they are rare and small.

Pure: the caller passes the backlog and the time in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

__all__ = ["Admission", "AdmissionReport"]

log = logging.getLogger(__name__)

RETRY_AFTER = 1  # seconds, in the 503's Retry-After


@dataclass(frozen=True, slots=True)
class AdmissionReport:
    """One overload episode, from the first refusal until sending resumed."""

    began: float
    ended: float
    refused: int


class Admission:
    def __init__(self, limit: int, resume_fraction: float = 0.75) -> None:
        """`limit` 0 admits everything."""
        if limit < 0 or not 0 < resume_fraction <= 1:
            raise ValueError("limit must be >= 0 and resume_fraction in (0, 1]")
        self.limit = limit
        self.resume_at = int(limit * resume_fraction)
        self.refused = 0  # chat texts refused since start
        self.overloaded_since: float | None = None
        self._episode_refused = 0
        self.episodes: list[AdmissionReport] = []  # the last few, for tests and logs

    def refusing(self, pending: int) -> bool:
        """Overloaded, and the backlog still above `resume_at`: `admit` would refuse any
        text, so the caller may refuse one before even looking at it (then `refuse()`)."""
        return self.overloaded_since is not None and pending > self.resume_at

    def refuse(self) -> None:
        """Count a text refused without asking `admit`."""
        self._refuse()

    def admit(self, pending: int, copies: int, now: float) -> bool:
        """May a chat text with `copies` MESSAGEs start, with `pending` unanswered?"""
        if self.limit == 0:
            return True
        if self.overloaded_since is not None:
            if pending > self.resume_at:
                return self._refuse()
            self._resume(now)
        if pending + copies <= self.limit or pending == 0:
            return True  # a single fan-out larger than the limit is not starved forever
        self.overloaded_since = now
        self._episode_refused = 0
        log.warning(
            "overloaded: %d MESSAGEs unanswered (limit %d); refusing chat texts with 503",
            pending, self.limit,
        )
        return self._refuse()

    def _refuse(self) -> bool:
        self.refused += 1
        self._episode_refused += 1
        return False

    def _resume(self, now: float) -> None:
        assert self.overloaded_since is not None
        report = AdmissionReport(self.overloaded_since, now, self._episode_refused)
        self.episodes = [*self.episodes[-9:], report]
        self.overloaded_since = None
        log.warning(
            "overload over after %.1f s: %d chat texts refused", now - report.began,
            report.refused,
        )
