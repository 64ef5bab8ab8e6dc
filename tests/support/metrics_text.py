"""Read a Prometheus text exposition with prometheus_client's own parser, for the tests
of `GET /metrics` (in-process and end to end)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from imc_sidecar.metrics import SERIES


@dataclass(frozen=True)
class Scrape:
    types: dict[str, str]  # family name (a counter's without `_total`) to its type
    samples: dict[str, float]  # `name` or `name{a="x",b="y"}` (labels sorted) to value

    def histogram_count(self, name: str) -> float:
        return self.samples[f"{name}_count"]


def parse(text: str) -> Scrape:
    types: dict[str, str] = {}
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            key = sample.name
            if sample.labels:
                pairs = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                key = f"{key}{{{pairs}}}"
            assert key not in samples, f"{key} twice"
            samples[key] = sample.value
    return Scrape(types, samples)


def key_of(stat: str) -> str:
    """The sample key (as `parse` writes it) that shows the statistic `stat`."""
    series = SERIES[stat]
    family = series.family
    if family.label is None:
        return family.name
    return f'{family.name}{{{family.label}="{series.label_value}"}}'
