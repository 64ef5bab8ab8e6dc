"""The change feed's cursor (feed/cursor.py): every committed row returned exactly once,
whatever order the ids commit in, and a missing id waited for only as long as a write
may take."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from imc_sidecar.feed.cursor import MAX_TRACKED_GAPS, FeedCursor, FeedRow

GAP_TIMEOUT = 10.0


def row(number: int) -> FeedRow:
    return FeedRow(number, f"sip:room-{number}@x", 1, "test")


def read(cursor: FeedCursor, committed: set[int], now: float) -> list[int]:
    """What a follower gets from one read (follower.py): the committed rows after the
    newest id seen, and those of the ids still missing."""
    asked = set(cursor.missing())
    found = [row(i) for i in sorted(committed) if i > cursor.newest or i in asked]
    return [r.id for r in cursor.take(found, now)]


def test_rows_in_order_move_the_cursor() -> None:
    cursor = FeedCursor(0, GAP_TIMEOUT)
    assert read(cursor, {1, 2, 3}, 0.0) == [1, 2, 3]
    assert cursor.after == 3
    assert read(cursor, {1, 2, 3}, 1.0) == []


def test_a_late_commit_is_not_missed() -> None:
    cursor = FeedCursor(0, GAP_TIMEOUT)
    assert read(cursor, {1, 3}, 0.0) == [1, 3]  # 2 is still open
    assert cursor.after == 1 and cursor.waiting_for == 1
    assert (cursor.newest, cursor.missing()) == (3, [2])  # 3 is not read again
    assert read(cursor, {1, 3}, 5.0) == []  # 3 is not returned twice
    assert read(cursor, {1, 2, 3}, 6.0) == [2]
    assert cursor.after == 3 and cursor.waiting_for == 0


def test_a_rolled_back_id_is_given_up_after_the_timeout() -> None:
    cursor = FeedCursor(0, GAP_TIMEOUT)
    read(cursor, {1, 3}, 0.0)
    read(cursor, {1, 3}, GAP_TIMEOUT - 0.1)
    assert cursor.after == 1
    read(cursor, {1, 3, 4}, GAP_TIMEOUT)
    assert cursor.after == 4 and cursor.waiting_for == 0


def test_the_start_skips_older_rows() -> None:
    cursor = FeedCursor(100, GAP_TIMEOUT)
    assert read(cursor, {99, 100, 101}, 0.0) == [101]


def test_missing_ids_are_bounded() -> None:
    cursor = FeedCursor(0, GAP_TIMEOUT)
    newest = MAX_TRACKED_GAPS + 50
    assert read(cursor, {newest}, 0.0) == [newest]
    assert cursor.waiting_for == MAX_TRACKED_GAPS - 1
    assert cursor.after == 50  # the oldest missing ones were given up at once
    far = 10**12  # a sequence set far ahead costs no more than the window
    assert read(cursor, {newest, far}, 1.0) == [far]
    assert cursor.after == far - MAX_TRACKED_GAPS
    assert cursor.waiting_for == MAX_TRACKED_GAPS - 1


@settings(max_examples=300, deadline=None)
@given(
    commits=st.lists(
        st.tuples(st.integers(1, 40), st.floats(0, 30), st.booleans()), max_size=40,
        unique_by=lambda c: c[0],
    ),
    reads=st.lists(st.floats(0, 60), min_size=1, max_size=30),
)
def test_every_row_committed_in_time_is_returned_once(
    commits: list[tuple[int, float, bool]], reads: list[float]
) -> None:
    """Ids 1..40 each commit at some time (or roll back); reads happen at random times.
    A row that commits within the gap timeout of the first read that could have
    missed it is returned exactly once, and nothing is returned twice."""
    cursor = FeedCursor(0, GAP_TIMEOUT)
    returned: list[int] = []
    first_missed: dict[int, float] = {}
    times = [*sorted(reads), 1000.0]
    for now in times:
        committed = {i for i, at, kept in commits if kept and at <= now}
        returned += read(cursor, committed, now)
        for i in range(1, max(returned, default=0)):
            if i not in committed:
                first_missed.setdefault(i, now)
    assert len(returned) == len(set(returned))
    for i, at, kept in commits:
        if not kept:
            continue
        missed = first_missed.get(i)
        if missed is None or at < missed + GAP_TIMEOUT:
            assert i in returned, (i, at, missed)
