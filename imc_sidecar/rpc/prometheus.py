"""The Prometheus exposition of the statistics, built when scraped.

A custom collector reads `Statistics` at scrape time through the mapping in
`metrics.py`: nothing on the hot path feeds prometheus_client.  The process's own
metrics (`process_*`: CPU, memory, open files) come from prometheus_client's collector.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import cast

from prometheus_client import ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from ..histogram import Histogram
from ..metrics import DB_WRITE_SECONDS, FANOUT_SECONDS, Family, families
from ..stats import Statistics

__all__ = ["CONTENT_TYPE", "Exposition", "StatisticsCollector"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
# How prometheus_client writes a bucket's `le` ("+Inf", "0.005"); it has no annotations.
_le = cast(Callable[[float], str], floatToGoString)


class StatisticsCollector(Collector):
    def __init__(self, stats: Callable[[], Statistics]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        totals = ((stat.name, stats.total(stat)) for stat in stats)
        for family, samples in families(totals):
            yield _family(family, samples)
        yield _histogram(FANOUT_SECONDS, stats.fanout_seconds)
        yield _histogram(DB_WRITE_SECONDS, stats.db_write_seconds)


def _family(family: Family, samples: list[tuple[str | None, int]]) -> Metric:
    labels = [] if family.label is None else [family.label]
    metric: CounterMetricFamily | GaugeMetricFamily
    if family.kind == "counter":
        metric = CounterMetricFamily(family.name, family.help, labels=labels)
    else:
        metric = GaugeMetricFamily(family.name, family.help, labels=labels)
    for label_value, value in samples:
        metric.add_metric([] if label_value is None else [label_value], value)
    return metric


def _histogram(family: Family, histogram: Histogram) -> Metric:
    buckets = [(_le(bound), count) for bound, count in histogram.cumulative()]
    return HistogramMetricFamily(family.name, family.help, buckets=buckets,
                                 sum_value=histogram.sum)


class Exposition:
    """The text a scrape gets, from one sidecar's statistics."""

    def __init__(self, stats: Callable[[], Statistics]) -> None:
        # Our own registry, not the global one: several sidecars may share a process
        # (the tests), and nothing else registered anywhere leaks into /metrics.
        self._registry = CollectorRegistry()
        self._registry.register(StatisticsCollector(stats))
        ProcessCollector(registry=self._registry)

    def render(self) -> bytes:
        return generate_latest(self._registry)
