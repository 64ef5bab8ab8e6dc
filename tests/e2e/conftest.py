"""Fixtures every end-to-end test may use: real sidecar processes that are always
stopped, and a SQLite database URL in the test's own folder."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .sidecar_process import SidecarProcess, sqlite_url

StartSidecar = Callable[..., SidecarProcess]


@pytest.fixture
def start_sidecar() -> Iterator[StartSidecar]:
    """`start_sidecar(args, **fields)`: a started `imc-sidecar serve`; each one started
    is stopped at teardown (SIGTERM, then SIGKILL), whatever the test did."""
    started: list[SidecarProcess] = []

    def start(args: list[str], **fields: object) -> SidecarProcess:
        process = SidecarProcess(args, **fields)  # type: ignore[arg-type]
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop(timeout=5.0)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> str:
    """The URL of a SQLite database in the test's folder (created by the sidecar)."""
    return sqlite_url(tmp_path)
