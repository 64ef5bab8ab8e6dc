"""Aggregations over the typed `events`, `messages` and `members` frames.

Pure functions of frames, so they are tested on synthetic data and give the same
answer whichever source the frames came from.  Every result goes through
`frames.typed` with its own entry in schema.FRAMES.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

import pandas as pd

from .frames import typed
from .schema import FRAMES

__all__ = ["FREQS", "activity", "choose_freq", "delivery_report", "invite_funnel",
           "top_senders"]

By = Literal["room", "sender"] | None

# Bucket sizes tried in order; neighbours differ by at most 2.5x, so the first that
# gives at most MAX_BUCKETS gives at least MAX_BUCKETS / 2.5 whenever the span allows:
# a one-minute demo gets 1 s buckets, a month 12 h ones.
FREQS = (
    "100ms", "200ms", "500ms", "1s", "2s", "5s", "10s", "15s", "30s",
    "1min", "2min", "5min", "10min", "15min", "30min", "1h", "2h", "3h", "6h", "12h",
    "1D", "2D", "5D", "7D", "14D", "28D", "56D", "91D", "182D", "364D",
)
MAX_BUCKETS = 100


def choose_freq(start: pd.Timestamp, end: pd.Timestamp) -> str:
    """The smallest bucket in FREQS that covers start..end in at most MAX_BUCKETS."""
    for freq in FREQS:
        buckets = (end.floor(freq) - start.floor(freq)) // pd.Timedelta(freq) + 1
        if buckets <= MAX_BUCKETS:
            return freq
    return FREQS[-1]


def activity(messages: pd.DataFrame, freq: str | None = None, by: By = "room") -> pd.DataFrame:
    """Chat messages per time bucket (and per room or sender), zeros included."""
    if by not in (None, "room", "sender"):
        raise ValueError(f"by must be 'room', 'sender' or None, not {by!r}")
    name = "activity" if by is None else f"activity_by_{by}"
    times = messages["time"]
    if times.empty:
        empty = typed(pd.DataFrame({column: [] for column in FRAMES[name]}), name)
        empty.attrs["freq"] = freq
        return empty
    chosen = freq or choose_freq(times.min(), times.max())
    buckets = pd.date_range(times.min().floor(chosen), times.max().floor(chosen), freq=chosen)
    bucket = times.dt.floor(chosen).rename("time")
    if by is None:
        counts = bucket.value_counts().reindex(buckets, fill_value=0)
        frame = pd.DataFrame({"time": buckets, "messages": counts.to_numpy()})
    else:
        keys = messages[by].astype("object")
        grid = pd.MultiIndex.from_product(
            [buckets, sorted(keys.dropna().unique())], names=["time", by]
        )
        counts = pd.Series(1, index=pd.MultiIndex.from_arrays([bucket, keys]))
        counts = counts.groupby(level=[0, 1]).sum().reindex(grid, fill_value=0)
        frame = counts.rename("messages").reset_index()
    result = typed(frame, name)
    result.attrs["freq"] = chosen
    return result


def top_senders(messages: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The `n` senders with the most messages, with rooms, bytes, first and last time."""
    grouped = messages.groupby("sender", observed=True).agg(
        messages=("id", "count"),
        rooms=("room", "nunique"),
        bytes=("body_size", "sum"),
        first=("time", "min"),
        last=("time", "max"),
    )
    frame = grouped.reset_index().sort_values(
        ["messages", "sender"], ascending=[False, True], kind="stable"
    )
    return typed(frame.head(n), "top_senders")


# What ends an open invitation: the event kind -> the funnel column it counts in.
_CLOSES = {
    "accepted": "accepted",
    "joined": "accepted",  # a member again, whatever the command
    "rejected": "rejected",
    "invite_failed": "failed",
    "left": "other",
    "removed": "other",
}
_OUTCOMES = ("accepted", "rejected", "failed", "pending", "other")


def invite_funnel(events: pd.DataFrame, members: pd.DataFrame) -> pd.DataFrame:
    """Per room: invitations and how each ended (see schema.FRAMES["invite_funnel"]).

    An invitation is followed through the room's later events for the same invitee;
    one still open at the end is pending when members() shows the invitee invited
    now, else other.  Invitees pending now whose invitation predates the history are
    counted as invited and pending, so the columns always add up.
    """
    counts: dict[str, Counter[str]] = {}
    spelled: dict[str, str] = {}  # room key -> the room as first seen
    open_: dict[tuple[str, str], str] = {}  # (room key, subject key) -> room key
    done = events[events["result"] == "ok"].sort_values("id", kind="stable")
    for kind, room, subject in zip(
        done["kind"].astype("object"), done["room"].astype("object"),
        done["subject"].astype("object"), strict=True,
    ):
        key = str(room).lower()
        if kind == "destroyed":
            for invite in [k for k in open_ if k[0] == key]:
                counts[open_.pop(invite)]["other"] += 1
            continue
        if not isinstance(subject, str):
            continue
        invite = (key, subject.lower())
        if kind == "invited":
            if invite in open_:  # not seen ending (history gap): cannot say how
                counts[key]["other"] += 1
            spelled.setdefault(key, str(room))
            counts.setdefault(key, Counter())["invited"] += 1
            open_[invite] = key
        elif kind in _CLOSES and invite in open_:
            counts[open_.pop(invite)][_CLOSES[kind]] += 1
    pending_now = members[members["pending"].fillna(False).astype(bool)]
    for room, member in zip(pending_now["room"].astype("object"),
                            pending_now["member"].astype("object"), strict=True):
        key = str(room).lower()
        invite = (key, str(member).lower())
        if invite in open_:
            counts[open_.pop(invite)]["pending"] += 1
        else:
            spelled.setdefault(key, str(room))
            tally = counts.setdefault(key, Counter())
            tally["invited"] += 1
            tally["pending"] += 1
    for key in open_.values():  # open, yet not invited now: ended unrecorded
        counts[key]["other"] += 1
    rows = [
        {"room": spelled[key], "invited": tally["invited"],
         **{column: tally[column] for column in _OUTCOMES}}
        for key, tally in counts.items()
    ]
    frame = pd.DataFrame.from_records(rows, columns=["room", "invited", *_OUTCOMES])
    frame = frame.sort_values("room", kind="stable")
    frame["accept_rate"] = frame["accepted"] / frame["invited"]
    return typed(frame, "invite_funnel")


def delivery_report(messages: pd.DataFrame) -> pd.DataFrame:
    """Per room: messages, copies, delivered, failed, failure rate, latency percentiles."""
    grouped = messages.groupby("room", observed=True)
    frame = grouped.agg(
        messages=("id", "count"),
        copies=("recipients", "sum"),
        delivered=("delivered", "sum"),
        failed=("failed", "sum"),
    )
    latency = grouped["latency_ms"]
    for q, column in ((0.5, "latency_p50_ms"), (0.9, "latency_p90_ms"), (0.99, "latency_p99_ms")):
        frame[column] = latency.quantile(q)
    copies = frame["copies"].astype("Float64")
    frame["failure_rate"] = frame["failed"].astype("Float64") / copies.where(copies > 0)
    frame = frame.reset_index()
    frame["room"] = frame["room"].astype("object")
    return typed(frame.sort_values("room", kind="stable"), "delivery_report")
