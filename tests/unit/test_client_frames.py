"""The analysts' frames, built from plain rows: every dtype as schema.FRAMES says, and the
aggregations on synthetic data (the adaptive activity bucket included)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pandas as pd
import pytest

from imc_sidecar.client import aggregate
from imc_sidecar.client.api import _micros
from imc_sidecar.client.frames import (
    history_frame,
    members_frame,
    rooms_frame,
    stats_frame,
    typed,
)
from imc_sidecar.client.schema import FRAMES
from imc_sidecar.history.query import EVENT_COLUMNS, MESSAGE_COLUMNS

T0 = 1_764_000_000_000_000  # 2025-11-24 16:00:00 UTC, in microseconds
SECOND = 1_000_000
R1, R2 = "sip:chat-1@d.test", "sip:chat-2@d.test"
A, B, C, D, E = (f"sip:{u}@d.test" for u in ("alice", "bob", "carol", "dave", "erin"))

ROOM_ROWS = [
    {"room": R2, "name": "chat-2", "domain": "d.test", "private": True, "members": 2,
     "active": 1, "invited": 1, "owner": None},
    {"room": R1, "name": "chat-1", "domain": "d.test", "private": False, "members": 3,
     "active": 3, "invited": 0, "owner": A},
]
MEMBER_ROWS = [
    {"room": R2, "member": E, "role": "member", "pending": True},
    {"room": R1, "member": B, "role": "admin", "pending": False},
    {"room": R1, "member": A, "role": "owner", "pending": False},
]


def _event(id_: int, t: int, room: str, kind: str, actor: str, subject: str | None,
           result: str = "ok", detail: str | None = None) -> tuple[object, ...]:
    return (id_, T0 + t * SECOND, room, kind, actor, subject, result, detail)


def _message(id_: int, t: int, room: str, sender: str, recipients: int = 2,
             delivered: int = 2, latency_us: int | None = 1500,
             size: int = 5) -> tuple[object, ...]:
    failed = recipients - delivered
    return (id_, T0 + t * SECOND, room, sender, size, "text/plain", recipients, delivered,
            failed, 486 if failed else None, latency_us if recipients else None, None)


EVENTS = history_frame("events", EVENT_COLUMNS, [
    _event(1, 0, R1, "created", A, A),
    _event(2, 1, R1, "invited", A, B),
    _event(3, 2, R1, "accepted", B, B),
    _event(4, 3, R1, "invited", A, C),
    _event(5, 4, R1, "rejected", C, C),
    _event(6, 5, R1, "invited", A, D),
    _event(7, 6, R1, "invite_failed", A, D, detail="480 Temporarily Unavailable"),
    _event(8, 7, R1, "invited", A, "sip:frank@d.test"),
    _event(9, 8, R1, "left", "sip:frank@d.test", "sip:frank@d.test"),
    _event(10, 9, R1, "destroyed", C, None, result="Not a member of the room"),
    _event(11, 10, R2, "created", D, D),
    _event(12, 11, R2, "invited", D, "sip:gina@d.test"),
    _event(13, 12, R2, "destroyed", D, None),
    _event(14, 13, R2, "created", D, D),
    _event(15, 14, R2, "invited", D, "sip:Hugo@d.test"),  # still pending now
    _event(16, 15, R2, "invited", D, "sip:ivan@d.test"),  # ends unrecorded
    _event(17, 16, R1, "invited", B, E, result="Permission denied"),  # refused: ignored
])
MESSAGES = history_frame("messages", MESSAGE_COLUMNS, [
    _message(1, 0, R1, A, latency_us=1000),
    _message(2, 1, R1, A, latency_us=2000),
    _message(3, 2, R1, B, delivered=1, latency_us=3000),
    _message(4, 3, R2, A, recipients=0, delivered=0),
    _message(5, 59, R1, C, latency_us=5000, size=7),
])


def assert_schema(frame: pd.DataFrame, name: str) -> None:
    assert [(column, str(dtype)) for column, dtype in frame.dtypes.items()] == list(
        FRAMES[name].items()
    )


# Every frame the client returns, from synthetic rows: the test below checks them all.
BUILDERS: dict[str, Callable[[], pd.DataFrame]] = {
    "rooms": lambda: rooms_frame(ROOM_ROWS),
    "members": lambda: members_frame(MEMBER_ROWS),
    "events": lambda: EVENTS,
    "messages": lambda: MESSAGES,
    "stats": lambda: stats_frame({"members": 5, "active_rooms": 2}),
    "activity": lambda: aggregate.activity(MESSAGES, by=None),
    "activity_by_room": lambda: aggregate.activity(MESSAGES, by="room"),
    "activity_by_sender": lambda: aggregate.activity(MESSAGES, by="sender"),
    "top_senders": lambda: aggregate.top_senders(MESSAGES),
    "invite_funnel": lambda: aggregate.invite_funnel(EVENTS, members_frame(MEMBER_ROWS)),
    "delivery_report": lambda: aggregate.delivery_report(MESSAGES),
}
EMPTY_EVENTS = history_frame("events", EVENT_COLUMNS, [])
EMPTY_MESSAGES = history_frame("messages", MESSAGE_COLUMNS, [])
EMPTY_BUILDERS: dict[str, Callable[[], pd.DataFrame]] = {
    "rooms": lambda: rooms_frame([]),
    "members": lambda: members_frame([]),
    "events": lambda: EMPTY_EVENTS,
    "messages": lambda: EMPTY_MESSAGES,
    "stats": lambda: stats_frame({}),
    "activity": lambda: aggregate.activity(EMPTY_MESSAGES, by=None),
    "activity_by_room": lambda: aggregate.activity(EMPTY_MESSAGES, by="room"),
    "activity_by_sender": lambda: aggregate.activity(EMPTY_MESSAGES, by="sender"),
    "top_senders": lambda: aggregate.top_senders(EMPTY_MESSAGES),
    "invite_funnel": lambda: aggregate.invite_funnel(EMPTY_EVENTS, members_frame([])),
    "delivery_report": lambda: aggregate.delivery_report(EMPTY_MESSAGES),
}


def test_every_frame_is_covered() -> None:
    assert set(BUILDERS) == set(FRAMES) == set(EMPTY_BUILDERS)


@pytest.mark.parametrize("name", list(FRAMES))
def test_dtypes_follow_the_schema(name: str) -> None:
    frame = BUILDERS[name]()
    assert len(frame) > 0
    assert_schema(frame, name)
    assert isinstance(frame.index, pd.RangeIndex)


@pytest.mark.parametrize("name", list(FRAMES))
def test_empty_frames_keep_the_schema(name: str) -> None:
    frame = EMPTY_BUILDERS[name]()
    assert len(frame) == 0
    assert_schema(frame, name)


def test_typed_names_a_missing_column() -> None:
    with pytest.raises(KeyError, match="lacks column"):
        typed(pd.DataFrame({"name": ["x"]}), "stats")


# -- the basic frames -------------------------------------------------------------------


def test_rooms_and_members_are_sorted_and_typed() -> None:
    rooms = rooms_frame(ROOM_ROWS)
    assert list(rooms["room"]) == [R1, R2]
    assert rooms["owner"].isna().tolist() == [False, True]
    assert rooms["private"].tolist() == [False, True]
    members = members_frame(MEMBER_ROWS)
    assert list(zip(members["room"], members["member"], strict=True)) == [
        (R1, A), (R1, B), (R2, E)
    ]
    # Categories are the values present, whatever the rows were filtered from.
    assert list(members_frame(MEMBER_ROWS[:1])["room"].cat.categories) == [R2]


def test_history_times_and_latency() -> None:
    assert MESSAGES["time"].iloc[0] == pd.Timestamp("2025-11-24 16:00:00", tz="UTC")
    micro = history_frame("messages", MESSAGE_COLUMNS, [(
        1, T0 + 1, R1, A, 1, "text/plain", 1, 1, 0, None, 1234, None)])
    assert micro["time"].iloc[0].value == (T0 + 1) * 1000  # microseconds kept exactly
    assert micro["latency_ms"].iloc[0] == 1.234
    no_copies = MESSAGES[MESSAGES["recipients"] == 0]
    assert no_copies["latency_ms"].isna().all() and no_copies["worst_status"].isna().all()
    assert EVENTS["subject"].isna().sum() == 2 and EVENTS["detail"].notna().sum() == 1


def test_stats_sorted_by_name() -> None:
    frame = stats_frame({"members": 5, "active_rooms": 2})
    assert frame.to_dict("list") == {"name": ["active_rooms", "members"], "value": [2, 5]}


@pytest.mark.parametrize(("value", "micros"), [
    ("2025-11-24 16:00", T0),  # naive: UTC
    ("2025-11-24T17:00+01:00", T0),
    (dt.datetime(2025, 11, 24, 16, 0, 0, 1), T0 + 1),
    (dt.datetime(2025, 11, 24, 11, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5))), T0),
    (pd.Timestamp("2025-11-24 16:00:00.000002"), T0 + 2),
    (dt.date(2025, 11, 24), T0 - 16 * 3600 * SECOND),
    (None, None),
])
def test_times_given_to_the_client(value: object, micros: int | None) -> None:
    assert _micros(value) == micros  # type: ignore[arg-type]


def test_numbers_are_not_times() -> None:
    with pytest.raises(TypeError):
        _micros(T0)  # type: ignore[arg-type]


# -- activity -----------------------------------------------------------------------------


def _spread(span_seconds: float, count: int = 500) -> pd.DataFrame:
    step = span_seconds / (count - 1)
    rows = [_message(n + 1, 0, R1 if n % 2 else R2, A if n % 3 else B) for n in range(count)]
    rows = [(*row[:1], T0 + round(n * step * SECOND), *row[2:]) for n, row in enumerate(rows)]
    return history_frame("messages", MESSAGE_COLUMNS, rows)


@pytest.mark.parametrize("span", [
    60.0,  # the one-minute demo
    5.0, 20.0, 3600.0, 86_400.0, 30 * 86_400.0, 365 * 86_400.0, 10 * 365 * 86_400.0,
])
def test_adaptive_bucket_gives_20_to_200(span: float) -> None:
    frame = aggregate.activity(_spread(span), by=None)
    assert 20 <= len(frame) <= 200, (frame.attrs["freq"], len(frame))
    assert frame["messages"].sum() == 500
    assert frame["time"].is_monotonic_increasing


def test_one_minute_in_seconds_and_a_month_in_half_days() -> None:
    assert aggregate.activity(_spread(60), by=None).attrs["freq"] == "1s"
    assert aggregate.activity(_spread(30 * 86_400), by=None).attrs["freq"] == "12h"


def test_activity_counts_with_zero_buckets() -> None:
    frame = aggregate.activity(MESSAGES, freq="10s", by=None)
    assert frame.attrs["freq"] == "10s"
    assert frame["messages"].tolist() == [4, 0, 0, 0, 0, 1]
    assert frame["time"].iloc[0] == pd.Timestamp("2025-11-24 16:00:00", tz="UTC")


def test_activity_by_room_and_sender_is_a_full_grid() -> None:
    by_room = aggregate.activity(MESSAGES, freq="30s", by="room")
    assert by_room[["room", "messages"]].astype(object).values.tolist() == [
        [R1, 3], [R2, 1], [R1, 1], [R2, 0]
    ]
    by_sender = aggregate.activity(MESSAGES, freq="1min", by="sender")
    assert dict(zip(by_sender["sender"], by_sender["messages"], strict=True)) == {
        A: 3, B: 1, C: 1
    }
    with pytest.raises(ValueError, match="by must be"):
        aggregate.activity(MESSAGES, by="kind")  # type: ignore[arg-type]


# -- top senders, funnel, delivery ---------------------------------------------------------


def test_top_senders() -> None:
    frame = aggregate.top_senders(MESSAGES, n=2)
    assert frame[["sender", "messages", "rooms", "bytes"]].astype(object).values.tolist() == [
        [A, 3, 2, 15], [B, 1, 1, 5]  # B before C: ties go by sender
    ]
    assert frame["first"].iloc[0] == MESSAGES["time"].iloc[0]
    assert frame["last"].iloc[0] == MESSAGES["time"].iloc[3]


def test_invite_funnel() -> None:
    members = members_frame([
        *MEMBER_ROWS,
        {"room": R2, "member": "sip:hugo@d.test", "role": "member", "pending": True},
    ])
    frame = aggregate.invite_funnel(EVENTS, members)
    rows = frame.drop(columns="accept_rate").astype(object).values.tolist()
    assert rows == [
        # B accepted, C rejected, D failed, frank left while invited
        [R1, 4, 1, 1, 1, 0, 1],
        # gina: room destroyed; Hugo pending (case-insensitive); ivan: ended unrecorded;
        # erin: pending from before the history
        [R2, 4, 0, 0, 0, 2, 2],
    ]
    assert frame["accept_rate"].tolist() == [0.25, 0.0]
    sums = frame[["accepted", "rejected", "failed", "pending", "other"]].sum(axis=1)
    assert (sums == frame["invited"]).all()


def test_delivery_report() -> None:
    frame = aggregate.delivery_report(MESSAGES)
    assert frame[["room", "messages", "copies", "delivered", "failed"]].astype(
        object).values.tolist() == [[R1, 4, 8, 7, 1], [R2, 1, 0, 0, 0]]
    r1, r2 = frame.iloc[0], frame.iloc[1]
    assert r1["failure_rate"] == 1 / 8 and pd.isna(r2["failure_rate"])
    assert r1["latency_p50_ms"] == 2.5  # of 1, 2, 3, 5 ms
    assert r1["latency_p90_ms"] == pytest.approx(4.4)
    assert r1["latency_p99_ms"] == pytest.approx(4.94)
    assert pd.isna(r2["latency_p50_ms"])
