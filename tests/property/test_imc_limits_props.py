"""Room limits under random command sequences: a limit is never passed, a command is
refused for a limit only when it is reached, and the count of rooms per user the table
keeps up to date always equals a recount."""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_imc_engine_props import Step, _steps, run

from imc_sidecar.imc.engine import EngineConfig, ImcEngine
from imc_sidecar.imc.limits import RoomLimits
from imc_sidecar.imc.outcome import InviteTicket

_limits = st.builds(
    RoomLimits,
    members_per_room=st.integers(0, 4),
    rooms_per_user=st.integers(0, 3),
    rooms=st.integers(0, 3),
)


def _recount(engine: ImcEngine) -> Counter[tuple[str, str]]:
    return Counter(member.key for room in engine.rooms() for member in room.members)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(limits=_limits, steps=_steps(with_modify=True), create_on_join=st.booleans())
def test_limits_hold_and_refuse_only_at_the_limit(
    limits: RoomLimits, steps: list[Step], create_on_join: bool
) -> None:
    engine = ImcEngine(EngineConfig(limits=limits, create_on_join=create_on_join))
    table = engine._table  # the counts under test live there
    tickets: list[InviteTicket] = []
    for step in steps:
        rooms_before = len(list(engine.rooms()))
        outcome = run(engine, step, tickets)
        if outcome is None:
            continue
        tickets.extend(m.invite for m in outcome.messages if m.invite is not None)
        rooms = list(engine.rooms())
        per_user = _recount(engine)
        if outcome.limit == "rooms":
            assert rooms_before == limits.rooms
        elif outcome.limit == "room_members":
            # The full room is the Request-URI's or the one the command names.
            assert limits.members_per_room and any(
                len(r.members) == limits.members_per_room for r in rooms
            )
        elif outcome.limit == "user_rooms":
            assert limits.rooms_per_user in per_user.values()
        # Growth never passes a limit (everything starts empty).
        if limits.rooms:
            assert len(rooms) <= limits.rooms
        if limits.members_per_room:
            assert all(len(r.members) <= limits.members_per_room for r in rooms)
        if limits.rooms_per_user:
            assert all(n <= limits.rooms_per_user for n in per_user.values())
        for (user, domain), count in per_user.items():
            assert table.rooms_of(user, domain) == count
        assert table.rooms_of("nobody", "d") == 0
