"""Per-sender rate limits: a token bucket per sender, with time passed in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imc_sidecar.policy.rates import SenderRates


def test_a_burst_then_the_rate_then_refusals_with_the_wait() -> None:
    rates = SenderRates(rate=2.0, burst=3)
    assert [rates.take("a", 0.0) for _ in range(3)] == [(0.0, False)] * 3
    assert rates.take("a", 0.0) == (0.5, True)  # first refusal of the burst: notice due
    assert rates.take("a", 0.25) == (0.25, False)  # still refused; no second notice
    assert rates.take("b", 0.25) == (0.0, False)  # another sender is not affected
    assert rates.take("a", 0.5) == (0.0, False)  # one token back after 1 / rate
    assert rates.take("a", 0.5) == (0.5, True)  # a new burst of refusals: a new notice
    assert rates.take("a", 100.0) == (0.0, False)  # refilled, never above the burst
    assert [rates.take("a", 100.0)[0] for _ in range(3)] == [0.0, 0.0, 0.5]


def test_rate_zero_is_no_limit_and_bad_arguments_are_refused() -> None:
    rates = SenderRates(rate=0.0, burst=1)
    assert all(rates.take("a", 0.0) == (0.0, False) for _ in range(1000))
    with pytest.raises(ValueError):
        SenderRates(rate=-1.0, burst=1)
    with pytest.raises(ValueError):
        SenderRates(rate=1.0, burst=0)


@given(st.lists(st.floats(min_value=0.0, max_value=0.5), min_size=1, max_size=200),
       st.floats(min_value=0.5, max_value=50.0), st.integers(min_value=1, max_value=20))
def test_never_more_than_the_burst_plus_the_rate_times_the_time(
    gaps: list[float], rate: float, burst: int
) -> None:
    rates = SenderRates(rate, burst)
    now = allowed = 0
    for gap in gaps:
        now += gap
        wait, _ = rates.take("a", now)
        allowed += wait == 0.0
    assert allowed <= burst + rate * now + 1e-9
