"""runtime.raise_open_files: the soft open-files limit goes up to what is wanted, never
past the hard limit, never down."""

from __future__ import annotations

import resource
from collections.abc import Iterator

import pytest

from imc_sidecar.runtime import raise_open_files


@pytest.fixture
def limits() -> Iterator[tuple[int, int]]:
    """This process's limits, restored afterwards; the soft one lowered to 256."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1024:
        pytest.fail(f"the hard open-files limit {hard} is too low for this test")
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    yield 256, hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_raised_to_what_is_wanted(limits: tuple[int, int]) -> None:
    assert raise_open_files(1000) == 1000
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (1000, limits[1])


def test_never_lowered(limits: tuple[int, int]) -> None:
    assert raise_open_files(100) == 256
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 256


def test_capped_by_the_hard_limit(limits: tuple[int, int]) -> None:
    hard = limits[1]
    if hard == resource.RLIM_INFINITY:
        assert raise_open_files(2000) == 2000
        return
    assert raise_open_files(hard + 1000) == hard
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
