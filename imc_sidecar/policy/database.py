"""Whether the database answers, and when to ask it again: a pure state, time passed in.

The app feeds it what happened (a write the database did not answer, a probe that
failed or succeeded); the request policy reads `reachable` to refuse, up front, the
commands that would change state while it is not.  Probes back off from
`FIRST_RETRY` to `MAX_RETRY` seconds, so a long outage costs one query every few
seconds, and a short one is noticed within a second.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FIRST_RETRY", "MAX_RETRY", "DatabaseHealth"]

FIRST_RETRY = 0.5  # seconds from the failure to the first probe
MAX_RETRY = 5.0


@dataclass(slots=True)
class DatabaseHealth:
    reachable: bool = True
    since: float = 0.0  # when `reachable` last changed (the clock `now` comes from)
    error: str = ""  # why it is not reachable (the last failure), for the RPC and logs
    outages: int = 0  # times it went from reachable to not
    _delay: float = FIRST_RETRY

    def lost(self, now: float, error: str) -> None:
        """A write or a load got no answer: from now on, until `restored`, it is down."""
        self.error = error
        if self.reachable:
            self.reachable = False
            self.since = now
            self.outages += 1
            self._delay = FIRST_RETRY

    def retry_in(self) -> float:
        """Seconds until the next probe; each call backs off (doubling, up to MAX_RETRY)."""
        delay = self._delay
        self._delay = min(MAX_RETRY, delay * 2)
        return delay

    def restored(self, now: float) -> None:
        """The database answered and memory equals it again."""
        if not self.reachable:
            self.reachable = True
            self.since = now
        self.error = ""

    def status(self, now: float) -> dict[str, int | float | str]:
        """What the RPC shows: reachable 1/0, seconds in this state, the last error."""
        return {
            "reachable": int(self.reachable),
            "seconds": round(max(0.0, now - self.since), 3),
            "outages": self.outages,
            "error": self.error,
        }
