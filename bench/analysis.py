"""Turn what the members received into deliveries, losses, duplicates and latencies.

A record is ``(member, body, arrival wall time, hash of the whole datagram)``.  The body
holds the sipp call number (``n<seq>``) and sipp's send time (the last tab-separated
field of ``t<timestamp>``).  For each sent message the plan says which members must get
it; per (message, member):

* the first arrival is the delivery;
* a further arrival of a *different* datagram (new Call-ID: Kamailio fans a
  retransmitted room message out again) is a duplicate, a failure;
* a further arrival of the *same* datagram is an engine retransmission (the member's 200
  came too late): not a duplicate for the user, but the run is not clean either.

Latency of a message: from its send time to the arrival at its *last* member; only
messages delivered to every member count.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .layout import Plan

Record = tuple[int, int, int, int, int, int]


@dataclass
class Deliveries:
    sent: int  # messages sipp created
    expected: int  # deliveries those messages call for
    delivered: int  # distinct (message, member) pairs that arrived and were expected
    lost: int
    duplicates: int  # extra copies under a new Call-ID
    retransmitted: int  # the same datagram again
    unexpected: int  # arrivals at a member that should not get that message
    unparsed: int  # arrivals without a benchmark body (notices)
    complete: int  # messages delivered to all their members
    first_send: float
    last_send: float
    first_arrival: float
    last_arrival: float
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    def percentile(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        data = sorted(self.latencies_ms)
        k = min(len(data) - 1, max(0, round(q / 100 * len(data) + 0.5) - 1))
        return data[k]


def analyse(records: Iterable[Record], plan: Plan, sent: int) -> Deliveries:
    first: dict[tuple[int, int], float] = {}  # (seq, member) -> first arrival
    digests: dict[tuple[int, int], set[int]] = {}
    copies: dict[tuple[int, int], int] = {}
    send_time: dict[int, float] = {}
    unparsed = unexpected = 0
    last_arrival = 0.0
    for member, _pad, seq, sent_us, arrived_us, digest in records:
        if seq == 0:
            unparsed += 1
            continue
        if seq > sent or member not in plan.expected(seq):
            unexpected += 1
            continue
        arrived = arrived_us / 1e6
        send_time[seq] = sent_us / 1e6
        last_arrival = max(last_arrival, arrived)
        key = (seq, member)
        if key in first:
            first[key] = min(first[key], arrived)
            digests[key].add(digest)
            copies[key] += 1
        else:
            first[key] = arrived
            digests[key] = {digest}
            copies[key] = 1

    duplicates = sum(len(d) - 1 for d in digests.values())
    retransmitted = sum(copies[k] - len(digests[k]) for k in copies)
    last_per_seq: dict[int, float] = {}
    count_per_seq: dict[int, int] = {}
    for (seq, _member), arrived in first.items():
        if arrived > last_per_seq.get(seq, 0.0):
            last_per_seq[seq] = arrived
        count_per_seq[seq] = count_per_seq.get(seq, 0) + 1

    expected = sum(len(plan.expected(seq)) for seq in range(1, sent + 1))
    latencies = []
    complete = 0
    for seq, n in count_per_seq.items():
        if n == len(plan.expected(seq)):
            complete += 1
            latencies.append((last_per_seq[seq] - send_time[seq]) * 1000.0)
    sends = list(send_time.values())
    return Deliveries(
        sent=sent,
        expected=expected,
        delivered=len(first),
        lost=expected - len(first),
        duplicates=duplicates,
        retransmitted=retransmitted,
        unexpected=unexpected,
        unparsed=unparsed,
        complete=complete,
        first_send=min(sends) if sends else 0.0,
        last_send=max(sends) if sends else 0.0,
        first_arrival=min(first.values()) if first else 0.0,
        last_arrival=last_arrival,
        latencies_ms=latencies,
    )
