"""Rows in, typed DataFrames out: the one frame builder both sources go through.

Whether the rows came over the RPC (parsed JSON) or straight from the database, they
are the same plain values (history/snapshot.py rows, history/query.py pages), so the
frames are equal.  `typed` is the only place a dtype is set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
from pandas.api.types import pandas_dtype

from .schema import FRAMES

__all__ = [
    "history_frame",
    "members_frame",
    "rooms_frame",
    "stats_frame",
    "typed",
]


def typed(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """`frame` with exactly the columns of FRAMES[name], in order, with their dtypes."""
    schema = FRAMES[name]
    missing = [column for column in schema if column not in frame.columns]
    if missing:
        raise KeyError(f"{name} frame lacks column(s) {', '.join(missing)}")
    columns = {column: _as(frame[column], dtype) for column, dtype in schema.items()}
    return pd.DataFrame(columns).reset_index(drop=True)


def _as(series: pd.Series[Any], dtype: str) -> pd.Series[Any]:
    if dtype == "category":
        # Categories are the values present: a filtered or aggregated frame does not
        # carry the categories of the frame it came from.
        return series.astype("object").astype("category")
    return series.astype(pandas_dtype(dtype))


def _records(rows: Iterable[Mapping[str, object]], name: str) -> pd.DataFrame:
    return pd.DataFrame.from_records(list(rows), columns=list(FRAMES[name]))


def rooms_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    ordered = sorted(rows, key=lambda row: str(row["room"]))
    return typed(_records(ordered, "rooms"), "rooms")


def members_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    ordered = sorted(rows, key=lambda row: (str(row["room"]), str(row["member"])))
    return typed(_records(ordered, "members"), "members")


def stats_frame(values: Mapping[str, int]) -> pd.DataFrame:
    """`values`: statistic name (without the `imc` group) -> value."""
    rows = [{"name": name, "value": values[name]} for name in sorted(values)]
    return typed(_records(rows, "stats"), "stats")


def history_frame(
    which: str, columns: Sequence[str], rows: Sequence[Sequence[object]]
) -> pd.DataFrame:
    """A history page's rows (history.query columns) as the `events`/`messages` frame."""
    raw = pd.DataFrame.from_records([tuple(row) for row in rows], columns=list(columns))
    raw["time"] = pd.to_datetime(raw["time_us"].astype("Int64"), unit="us", utc=True)
    if which == "messages":
        raw["latency_ms"] = raw["latency_us"].astype("Float64") / 1000
    return typed(raw, which)
