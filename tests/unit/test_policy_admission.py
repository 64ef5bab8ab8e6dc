from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imc_sidecar.policy.admission import Admission, AdmissionReport


def test_no_limit_admits_everything() -> None:
    admission = Admission(0)
    assert all(admission.admit(10**9, 10**6, float(t)) for t in range(10))
    assert admission.refused == 0


def test_refuses_past_the_limit_and_resumes_below_the_low_mark() -> None:
    admission = Admission(100)  # resumes at 75
    assert admission.admit(pending=91, copies=9, now=0.0)  # exactly at the limit
    assert not admission.admit(pending=92, copies=9, now=1.0)
    assert admission.overloaded_since == 1.0
    # Still refusing while the backlog drains, even for a small fan-out that would fit.
    assert not admission.admit(pending=80, copies=1, now=2.0)
    assert admission.admit(pending=75, copies=9, now=3.5)
    assert admission.overloaded_since is None
    assert admission.refused == 2
    assert admission.episodes == [AdmissionReport(began=1.0, ended=3.5, refused=2)]


def test_a_fan_out_larger_than_the_limit_still_goes_when_nothing_is_pending() -> None:
    admission = Admission(50)
    assert admission.admit(pending=0, copies=99, now=0.0)
    assert not admission.admit(pending=99, copies=99, now=0.1)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        Admission(-1)
    with pytest.raises(ValueError):
        Admission(10, resume_fraction=0)


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(st.tuples(st.integers(0, 300), st.integers(1, 20)), max_size=60),
    limit=st.integers(1, 200),
)
def test_admitted_work_never_exceeds_the_limit_unless_idle(
    steps: list[tuple[int, int]], limit: int
) -> None:
    admission = Admission(limit)
    refused = 0
    for now, (pending, copies) in enumerate(steps):
        if admission.admit(pending, copies, float(now)):
            assert pending + copies <= limit or pending == 0
        else:
            refused += 1
            assert pending + copies > limit or pending > admission.resume_at
    assert admission.refused == refused
    assert sum(e.refused for e in admission.episodes) <= refused


def test_refusing_says_what_admit_would_do_for_any_text() -> None:
    admission = Admission(100)
    assert not admission.refusing(pending=10_000)  # not overloaded yet: admit decides
    assert not admission.admit(pending=100, copies=1, now=0.0)
    assert admission.refusing(pending=76)
    admission.refuse()
    assert admission.refused == 2
    assert not admission.refusing(pending=75)
    assert admission.admit(pending=75, copies=1, now=1.0)
    assert admission.episodes == [AdmissionReport(began=0.0, ended=1.0, refused=2)]
