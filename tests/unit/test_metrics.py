"""The Prometheus mapping (metrics.py), the cheap histogram, and counters read as if
never reset (`Statistics.total`)."""

from __future__ import annotations

import math
import re
from typing import cast

import pytest
from rpc_support import ROOMS, Context

from imc_sidecar.histogram import Histogram
from imc_sidecar.history.writer import HistoryCounters, HistoryWriter
from imc_sidecar.metrics import DB_WRITE_SECONDS, FANOUT_SECONDS, PREFIX, SERIES, families
from imc_sidecar.policy.connections import ConnectionCounts
from imc_sidecar.stats import DB_WRITE_BUCKETS, FANOUT_BUCKETS, Stat, Statistics

_SNAKE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")


def test_every_statistic_has_exactly_one_series() -> None:
    names = [stat.name for stat in Context().stats]
    assert sorted(SERIES) == sorted(names)
    keys = [(s.family.name, s.label_value) for s in SERIES.values()]
    assert len(set(keys)) == len(keys)


def test_series_kind_follows_the_statistic() -> None:
    for stat in Context().stats:
        kind = SERIES[stat.name].family.kind
        assert kind == ("gauge" if stat.reset is None else "counter"), stat.name


def test_names_follow_prometheus_conventions() -> None:
    every = {series.family for series in SERIES.values()} | {FANOUT_SECONDS, DB_WRITE_SECONDS}
    assert len({family.name for family in every}) == len(every)  # one family per name
    for family in every:
        assert family.name.startswith(PREFIX) and _SNAKE.fullmatch(family.name), family.name
        assert family.name.endswith("_total") == (family.kind == "counter"), family.name
        assert family.help.strip() and "\n" not in family.help
        assert family.label is None or _SNAKE.fullmatch(family.label)
    for family in (FANOUT_SECONDS, DB_WRITE_SECONDS):
        assert family.kind == "histogram" and family.name.endswith("_seconds")


def test_labelled_families_group_their_statistics() -> None:
    grouped = dict(families((stat.name, 0) for stat in Context().stats))
    by_name = {family.name: samples for family, samples in grouped.items()}
    for family, samples in grouped.items():
        # A family of several statistics tells them apart by its one label.
        assert (family.label is not None) == (len(samples) > 1), family.name
    assert {v for v, _ in by_name["imc_sidecar_limit_refusals_total"]} == {
        "size", "rate", "room_members", "user_rooms", "rooms", "database",
    }
    assert len(by_name["imc_sidecar_commands_total"]) == 14
    assert {v for v, _ in by_name["imc_sidecar_tcp_closed_connections_total"]} == {
        "idle", "overflow", "framing",
    }


def test_families_keep_values_and_leave_out_unknown_names() -> None:
    grouped = families([
        ("cmd_join", 3), ("no_such_statistic", 9), ("active_rooms", 2), ("cmd_create", 1),
    ])
    assert [(family.name, samples) for family, samples in grouped] == [
        ("imc_sidecar_commands_total", [("join", 3), ("create", 1)]),
        ("imc_sidecar_active_rooms", [(None, 2)]),
    ]


# -- the histogram ----------------------------------------------------------------------


def test_histogram_buckets_are_inclusive_and_cumulative() -> None:
    histogram = Histogram((0.1, 1.0, 10.0))
    for value in (0.05, 0.1, 0.5, 1.0, 3.0, 99.0):
        histogram.observe(value)
    assert histogram.cumulative() == [(0.1, 2), (1.0, 4), (10.0, 5), (math.inf, 6)]
    assert histogram.count == 6
    assert histogram.sum == pytest.approx(103.65)


def test_empty_histogram_reads_zero_everywhere() -> None:
    histogram = Histogram(FANOUT_BUCKETS)
    assert [count for _, count in histogram.cumulative()] == [0] * (len(FANOUT_BUCKETS) + 1)
    assert (histogram.count, histogram.sum) == (0, 0.0)


@pytest.mark.parametrize("bounds", [(), (1.0, 1.0), (2.0, 1.0)])
def test_histogram_bounds_must_ascend(bounds: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="ascending"):
        Histogram(bounds)


def test_bucket_choices() -> None:
    assert 30.0 < 32.0 < FANOUT_BUCKETS[-1]  # a copy that times out (Timer F, 32 s)
    assert DB_WRITE_BUCKETS[-1] == 10.0  # db_statement_timeout's default


# -- counters as if never reset -----------------------------------------------------------


def test_total_survives_resets_of_every_kind_of_counter() -> None:
    counts = ConnectionCounts()
    history = _History()
    untrusted = [0, 0]
    engine = Context(ROOMS).engine
    stats = Statistics(
        lambda: engine, history=lambda: cast(HistoryWriter, history),
        untrusted=lambda: (untrusted[0], untrusted[1]), tcp=counts,
    )
    kinds = ("received_messages", "cmd_join", "untrusted_requests", "tcp_idle_closed",
             "history_written", "active_rooms")

    def bump(n: int) -> None:
        stats.received_messages += n
        stats.commands["join"] += n
        untrusted[0] += n
        counts.idle_closed += n
        history.counters.written += n

    def totals() -> dict[str, int]:
        return {name: stats.total(_stat(stats, name)) for name in kinds}

    bump(5)
    for stat in stats:
        stats.reset(stat)
    assert {name: _stat(stats, name).value for name in kinds} == {
        **dict.fromkeys(kinds[:-1], 0), "active_rooms": 3,
    }
    bump(2)
    stats.reset(_stat(stats, "cmd_join"))  # twice in a row: nothing counted twice
    stats.reset(_stat(stats, "cmd_join"))
    bump(1)
    assert totals() == {**dict.fromkeys(kinds[:-1], 8), "active_rooms": 3}
    assert _stat(stats, "received_messages").value == 3  # what kamcmd shows
    assert _stat(stats, "cmd_join").value == 1


class _History:
    """What Statistics reads of a history writer: its queue length and counters."""

    def __init__(self) -> None:
        self.queued = 0
        self.counters = HistoryCounters()


def _stat(stats: Statistics, name: str) -> Stat:
    stat = stats.find(name)
    assert stat is not None
    return stat
