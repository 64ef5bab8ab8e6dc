"""`ConnectionTable` against a plain model: any sequence of connections opened, refused,
active, closed by a rule or lost, at non-decreasing times, gives the same answers as
recomputing everything from a list (no limit ever exceeded, each idle connection
returned once and only when its time has come, counts that add up)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from imc_sidecar.policy.connections import ConnectionLimits, ConnectionTable

SOURCES = ("192.0.2.1", "192.0.2.2", "198.51.100.7")


@dataclass
class Model:
    """The connections as a plain dict: key -> (source or None for ours, last progress,
    state), recomputed from scratch at each question."""

    limits: ConnectionLimits
    conns: dict[int, tuple[str | None, float, str]] = field(default_factory=dict)
    refused: int = 0
    idle_closed: int = 0

    def inbound_from(self, source: str | None = None) -> int:
        return sum(
            1 for src, _, _ in self.conns.values()
            if src is not None and (source is None or src == source)
        )

    def admit(self, key: int, source: str, now: float) -> bool:
        limits = self.limits
        total, mine = self.inbound_from(), self.inbound_from(source)
        if (limits.max_total and total >= limits.max_total) or (
            limits.max_per_source and mine >= limits.max_per_source
        ):
            self.refused += 1
            return False
        self.conns[key] = (source, now, "open")
        return True

    def idle(self, now: float) -> set[int]:
        timeout = self.limits.idle_timeout
        if not timeout:
            return set()
        due = {
            key for key, (_, last, state) in self.conns.items()
            if state == "open" and now - last >= timeout
        }
        for key in due:
            source, last, _ = self.conns[key]
            self.conns[key] = (source, last, "closing")
        self.idle_closed += len(due)
        return due


operations = st.lists(
    st.tuples(
        st.sampled_from(["admit", "track", "active", "idle", "removed", "overflow"]),
        st.integers(0, 11),  # connection key
        st.sampled_from(SOURCES),
        st.sampled_from([0.0, 0.5, 1.0, 2.5]),  # time step: deadlines are met exactly too
    ),
    max_size=80,
)


@settings(max_examples=400, deadline=None)
@given(
    operations,
    st.integers(0, 6),
    st.integers(0, 3),
    st.sampled_from([0.0, 1.0, 2.5]),
)
def test_table_agrees_with_the_model(
    ops: list[tuple[str, int, str, float]], max_total: int, max_per_source: int,
    timeout: float,
) -> None:
    limits = ConnectionLimits(max_total, max_per_source, timeout, max_write_buffer=10)
    table: ConnectionTable[int] = ConnectionTable(limits)
    model = Model(limits)
    now = 0.0
    for op, key, source, step in ops:
        now += step
        known = key in model.conns
        if op == "admit" and not known:
            accepted = table.admit(key, source, now) is None
            assert accepted == model.admit(key, source, now)
        elif op == "track" and not known:
            table.track(key, now)
            model.conns[key] = (None, now, "open")
        elif op == "active":
            table.active(key, now)
            if known and model.conns[key][2] == "open":
                model.conns[key] = (model.conns[key][0], now, "open")
        elif op == "idle":
            due = table.idle(now)
            assert len(due) == len(set(due))
            assert set(due) == model.idle(now)
        elif op == "removed":
            table.removed(key)
            model.conns.pop(key, None)
        elif op == "overflow" and known:
            assert table.overflowing(key, 11)
            source_, last, _ = model.conns[key]
            model.conns[key] = (source_, last, "closing")
        # The same picture after every step, and never over a limit.
        assert table.counts.open == len(model.conns)
        assert table.inbound == model.inbound_from()
        for src in SOURCES:
            assert table.from_source(src) == model.inbound_from(src)
            if max_per_source:
                assert table.from_source(src) <= max_per_source
        if max_total:
            assert table.inbound <= max_total
        assert (table.counts.refused, table.counts.idle_closed) == (
            model.refused, model.idle_closed
        )
        open_lasts = [last for _, last, state in model.conns.values() if state == "open"]
        expected_next = min(open_lasts) + timeout if timeout and open_lasts else None
        assert table.next_idle() == expected_next
