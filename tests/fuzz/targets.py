"""The fuzz targets: each is the module `fuzz_<name>` beside this file, whose
`one_input(data: bytes) -> None` raises (AssertionError or an undocumented exception)
exactly when the property it checks is broken.

Shared by the atheris runner (run_target.py, scripts/fuzz) and the pytest smoke
(test_fuzz_smoke.py).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

__all__ = ["CORPUS", "DICTIONARY", "MAX_LEN", "TARGETS", "load"]

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"  # committed seeds and minimised crashes, one folder per target
TARGETS = ("sip_request", "sip_response", "framer", "commands", "binrpc", "jsonrpc", "settings")
# libFuzzer dictionaries (tokens worth splicing in) under dicts/; binrpc has none.
DICTIONARY = {
    "sip_request": "sip.dict",
    "sip_response": "sip.dict",
    "framer": "sip.dict",
    "commands": "commands.dict",
    "jsonrpc": "jsonrpc.dict",
    "settings": "settings.dict",
}
# Longest input the fuzzer makes: just past the 4,300 digits CPython refuses to turn into
# an int, and past BINRPC's parameter and nesting limits.  Longer inputs cost more than
# they find (a 12 KB limit ran sip_request ten times slower); the longer seeds run whole
# in the pytest smoke, truncated here.
MAX_LEN = 4_500


def load(name: str) -> Callable[[bytes], None]:
    if name not in TARGETS:
        raise ValueError(f"unknown fuzz target {name!r}; one of {', '.join(TARGETS)}")
    one_input: Callable[[bytes], None] = importlib.import_module(f"fuzz_{name}").one_input
    return one_input
