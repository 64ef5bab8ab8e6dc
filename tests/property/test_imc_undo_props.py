"""Taking changes back: after any command sequence, undoing the outcomes of the last few
steps, newest first, puts memory back exactly as it was before them: rooms and their
order, members, their order and flags, who a broadcast reaches, rooms per user."""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_imc_engine_props import Step, _configs, _steps, run

from imc_sidecar.imc.engine import EngineConfig, ImcEngine
from imc_sidecar.imc.outcome import InviteTicket, Outcome

Snapshot = tuple[object, ...]


def snapshot(engine: ImcEngine) -> Snapshot:
    table = engine._table
    rooms = list(engine.rooms())
    users = Counter(m.key for room in rooms for m in room.members)
    return (
        [(r.name, r.domain, r.flags, [(m.user, m.domain, m.flags) for m in r.members])
         for r in rooms],
        [table.broadcast_uris(r) for r in rooms],
        {user: table.rooms_of(*user) for user in users},
        len(table),
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=_configs, steps=_steps(with_modify=True), split=st.integers(0, 60))
def test_undoing_the_last_outcomes_restores_memory_exactly(
    config: EngineConfig, steps: list[Step], split: int
) -> None:
    engine = ImcEngine(config)
    tickets: list[InviteTicket] = []
    split = min(split, len(steps))
    for step in steps[:split]:
        outcome = run(engine, step, tickets)
        if outcome is not None:
            tickets.extend(m.invite for m in outcome.messages if m.invite is not None)
    before = snapshot(engine)
    engine._table.rooms_of("nobody", "d")  # counts kept up to date from here on
    taken: list[Outcome] = []
    for step in steps[split:]:
        outcome = run(engine, step, tickets)
        if outcome is None:
            continue
        tickets.extend(m.invite for m in outcome.messages if m.invite is not None)
        # Exactly the outcomes that changed something can be taken back.
        assert (outcome.undo is not None) == bool(outcome.changes)
        taken.append(outcome)
    for outcome in reversed(taken):
        engine.undo(outcome)
        assert outcome.undo is None
    assert snapshot(engine) == before
