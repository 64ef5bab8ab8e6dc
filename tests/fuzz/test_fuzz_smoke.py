"""The fuzz targets in the default suite: every committed corpus file through every
target (each property must hold on each; the seeds of one target are odd inputs for
another), each in bounded time, and a short atheris run of each target through
scripts/fuzz, so that a broken target or runner fails CI.  The long campaign is
`scripts/fuzz` (README, "Fuzzing")."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from targets import CORPUS, TARGETS, load

ROOT = Path(__file__).resolve().parents[2]
CORPUS_FILES = sorted(path for path in CORPUS.rglob("*") if path.is_file())
PER_INPUT_S = 2.0  # "no hang": far above the slowest seed (the 64 KiB heads, ~50 ms)
SMOKE_RUNS = 2000


def test_every_target_has_seeds() -> None:
    assert sorted(path.name for path in CORPUS.iterdir()) == sorted(TARGETS)
    for target in TARGETS:
        assert len(list((CORPUS / target).iterdir())) >= 10, target


@pytest.mark.parametrize("target", TARGETS)
def test_corpus_through_target(target: str) -> None:
    one_input = load(target)
    for path in CORPUS_FILES:
        data = path.read_bytes()
        started = time.perf_counter()
        try:
            one_input(data)
        except Exception as exc:
            raise AssertionError(f"{target} fails on {path.relative_to(CORPUS)}") from exc
        took = time.perf_counter() - started
        assert took < PER_INPUT_S, f"{target} took {took:.2f} s on {path.relative_to(CORPUS)}"


@pytest.mark.parametrize("target", TARGETS)
def test_atheris_smoke(target: str, tmp_path: Path) -> None:
    done = subprocess.run(
        ["scripts/fuzz", "--smoke", "--runs", str(SMOKE_RUNS), target],
        cwd=ROOT, env={**os.environ, "FUZZ_DIR": str(tmp_path)},
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    row = done.stdout.splitlines()[-1].split()
    assert row[0] == target
    assert int(row[1]) >= SMOKE_RUNS, done.stdout  # every input ran
    assert row[-1] == "0", done.stdout  # no crash
