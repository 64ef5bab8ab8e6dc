"""The stream connection limits, pure: admission by total and by source, idle closing
with time passed in, the write bound, and the counts the statistics read."""

from __future__ import annotations

import pytest

from imc_sidecar.policy.connections import (
    TOO_MANY,
    TOO_MANY_FROM_SOURCE,
    ConnectionCounts,
    ConnectionLimits,
    ConnectionTable,
)


def test_refusal_by_total_then_by_source() -> None:
    limits = ConnectionLimits(max_total=10, max_per_source=3)
    assert limits.refusal(0, 0) is None
    assert limits.refusal(9, 2) is None
    assert limits.refusal(9, 3) == TOO_MANY_FROM_SOURCE
    assert limits.refusal(10, 0) == TOO_MANY
    assert limits.refusal(10, 3) == TOO_MANY  # the total is the first reason given


def test_zero_is_no_limit() -> None:
    limits = ConnectionLimits()
    assert limits.refusal(10**9, 10**9) is None
    assert not limits.over_buffer(10**12)
    assert ConnectionLimits(max_total=1).refusal(0, 10**9) is None
    table: ConnectionTable[str] = ConnectionTable(limits)
    table.admit("a", "192.0.2.1", 0.0)
    assert table.idle(10**9) == [] and table.next_idle() is None


def test_write_bound_is_strictly_above() -> None:
    limits = ConnectionLimits(max_write_buffer=1000)
    assert not limits.over_buffer(0)
    assert not limits.over_buffer(1000)
    assert limits.over_buffer(1001)


def test_per_source_limit_leaves_other_sources_alone() -> None:
    table: ConnectionTable[str] = ConnectionTable(ConnectionLimits(max_per_source=2))
    assert table.admit("a1", "192.0.2.1", 0.0) is None
    assert table.admit("a2", "192.0.2.1", 0.0) is None
    assert table.admit("a3", "192.0.2.1", 0.0) == TOO_MANY_FROM_SOURCE
    assert table.admit("b1", "192.0.2.2", 0.0) is None
    assert (table.inbound, table.from_source("192.0.2.1"), table.counts.refused) == (3, 2, 1)
    table.removed("a3")  # a refused one was never counted: its loss changes nothing
    assert (table.inbound, table.counts.open) == (3, 3)
    table.removed("a1")
    assert table.admit("a4", "192.0.2.1", 0.0) is None  # the slot is free again
    assert table.from_source("192.0.2.1") == 2


def test_total_limit_and_our_own_connections() -> None:
    table: ConnectionTable[str] = ConnectionTable(ConnectionLimits(max_total=2))
    table.track("proxy", 0.0)  # one we opened: open, but not a peer's to count
    assert table.admit("a", "192.0.2.1", 0.0) is None
    assert table.admit("b", "192.0.2.2", 0.0) is None
    assert table.admit("c", "192.0.2.3", 0.0) == TOO_MANY
    assert (table.counts.open, table.inbound, table.counts.refused) == (3, 2, 1)
    table.removed("proxy")
    assert table.admit("c", "192.0.2.3", 0.0) == TOO_MANY  # still two peers' connections
    table.removed("b")
    assert table.admit("c", "192.0.2.3", 0.0) is None


def test_idle_after_timeout_without_progress() -> None:
    table: ConnectionTable[str] = ConnectionTable(ConnectionLimits(idle_timeout=10.0))
    table.admit("quiet", "192.0.2.1", 0.0)
    table.admit("busy", "192.0.2.2", 1.0)
    table.admit("late", "192.0.2.3", 2.0)
    assert table.next_idle() == 10.0
    table.active("busy", 5.0)
    assert table.idle(9.999) == []
    assert table.idle(10.0) == ["quiet"]
    assert table.next_idle() == 12.0  # "late" is now the least recently active
    assert table.idle(12.0) == ["late"]
    assert table.idle(14.9) == []
    assert table.idle(15.0) == ["busy"]
    assert table.idle(100.0) == []  # each is returned once
    assert table.next_idle() is None
    assert table.counts.idle_closed == 3
    assert table.counts.open == 3  # closing, not gone yet
    for key in ("quiet", "busy", "late"):
        table.removed(key)
    assert (table.counts.open, table.inbound) == (0, 0)


def test_progress_after_the_decision_does_not_bring_it_back() -> None:
    table: ConnectionTable[str] = ConnectionTable(ConnectionLimits(idle_timeout=1.0))
    table.track("a", 0.0)
    assert table.idle(1.0) == ["a"]
    table.active("a", 1.5)  # the last bytes before the close took effect
    assert table.next_idle() is None and table.idle(10.0) == []
    table.removed("a")
    table.removed("a")  # a second loss report is harmless
    assert table.counts.open == 0


def test_overflow_closes_and_counts() -> None:
    counts = ConnectionCounts()
    table: ConnectionTable[str] = ConnectionTable(
        ConnectionLimits(idle_timeout=5.0, max_write_buffer=100), counts
    )
    table.admit("reader", "192.0.2.1", 0.0)
    table.admit("sink-hole", "192.0.2.2", 0.0)
    assert not table.overflowing("sink-hole", 100)
    assert table.overflowing("sink-hole", 101)
    assert table.overflowing(None, 500)  # data for a connection still being opened
    assert counts.overflow_closed == 2
    assert table.idle(5.0) == ["reader"]  # the overflowing one is already being closed
    table.malformed("reader")  # already closing: counted, nothing else
    assert counts.framing_closed == 1 and counts.idle_closed == 1
    table.removed("sink-hole")
    table.removed("reader")
    assert counts.open == 0 and table.from_source("192.0.2.2") == 0


def test_malformed_stream_is_no_longer_tracked() -> None:
    table: ConnectionTable[str] = ConnectionTable(ConnectionLimits(idle_timeout=1.0))
    table.admit("bad", "192.0.2.1", 0.0)
    table.malformed("bad")
    assert table.idle(5.0) == [] and table.counts.framing_closed == 1
    assert table.counts.open == 1
    table.removed("bad")
    assert table.counts.open == 0


@pytest.mark.parametrize("timeout", [0.5, 120.0])
def test_next_idle_follows_the_oldest(timeout: float) -> None:
    table: ConnectionTable[int] = ConnectionTable(ConnectionLimits(idle_timeout=timeout))
    for key in range(5):
        table.track(key, float(key))
    table.active(0, 10.0)
    assert table.next_idle() == 1.0 + timeout
    table.removed(1)
    assert table.next_idle() == 2.0 + timeout
