"""Per-sender rate limiting, pure: a token bucket per sender, time passed in.

A sender may send `rate` chat texts per second on average, and `burst` at once.  Past
that, its texts are refused (the caller answers 503 with Retry-After) until a token is
back; other senders, in the same room or not, are not affected.  The first refusal of a
burst is marked, so that the sender gets one notice per burst, not one per text.
"""

from __future__ import annotations

__all__ = ["SenderRates"]

_SENDERS_MAX = 100_000  # buckets kept; past it, the full ones are forgotten


class SenderRates:
    __slots__ = ("_buckets", "burst", "rate")

    def __init__(self, rate: float, burst: int) -> None:
        """`rate` 0 turns the limit off."""
        if rate < 0 or burst < 1:
            raise ValueError("rate must be >= 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        # sender -> [tokens, time of the last update, refused since the last text allowed]
        self._buckets: dict[str, list[float]] = {}

    def take(self, sender: str, now: float) -> tuple[float, bool]:
        """(0, False) when `sender` may send one more text now (and it is counted);
        else (seconds until it may, whether this is the first refusal of the burst)."""
        rate = self.rate
        if not rate:
            return 0.0, False
        bucket = self._buckets.get(sender)
        if bucket is None:
            if len(self._buckets) >= _SENDERS_MAX:
                self._forget_full(now)
            bucket = self._buckets[sender] = [float(self.burst), now, 0.0]
        else:
            tokens = bucket[0] + (now - bucket[1]) * rate
            bucket[0] = tokens if tokens < self.burst else float(self.burst)
            bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            bucket[2] = 0.0
            return 0.0, False
        first = not bucket[2]
        bucket[2] = 1.0
        return (1.0 - bucket[0]) / rate, first

    def _forget_full(self, now: float) -> None:
        rate, burst = self.rate, self.burst
        full = [sender for sender, (tokens, at, _) in self._buckets.items()
                if tokens + (now - at) * rate >= burst]
        for sender in full:
            del self._buckets[sender]
        if len(self._buckets) >= _SENDERS_MAX:  # all busy: start over rather than grow
            self._buckets.clear()
