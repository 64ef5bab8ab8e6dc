"""Whether the database answers: state, back-off between probes, what the RPC shows."""

from __future__ import annotations

from imc_sidecar.policy.database import FIRST_RETRY, MAX_RETRY, DatabaseHealth


def test_lost_then_restored() -> None:
    health = DatabaseHealth()
    assert health.reachable and health.outages == 0
    health.lost(10.0, "connection refused")
    health.lost(12.0, "timed out")  # still the same outage
    assert not health.reachable
    assert health.status(13.5) == {
        "reachable": 0, "seconds": 3.5, "outages": 1, "error": "timed out",
    }
    health.restored(20.0)
    assert health.status(21.0) == {"reachable": 1, "seconds": 1.0, "outages": 1, "error": ""}
    health.lost(30.0, "gone again")
    assert health.outages == 2


def test_probes_back_off_and_start_over_with_each_outage() -> None:
    health = DatabaseHealth()
    health.lost(0.0, "x")
    delays = [health.retry_in() for _ in range(6)]
    assert delays[0] == FIRST_RETRY
    assert delays == sorted(delays) and delays[-1] == MAX_RETRY
    health.restored(1.0)
    health.lost(2.0, "y")
    assert health.retry_in() == FIRST_RETRY
