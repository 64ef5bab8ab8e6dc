"""Run one fuzz target under atheris (libFuzzer); scripts/fuzz is the documented front end.

    run_target.py --list
    run_target.py TARGET --work DIR --runs N [libFuzzer options]   a campaign
    run_target.py TARGET [libFuzzer options] FILE...               replay inputs

A campaign reads the committed seeds (corpus/TARGET), keeps what it finds in DIR/corpus
and writes each failing input to DIR/crashes/.  Both ways bound the input length and
the time of one input (10 s), and splice in the target's dictionary.

Only imc_sidecar (and tomllib, which the settings read) is instrumented for coverage:
the fuzzer steers by our branches, not the standard library's or the test helpers'.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "support")]

from targets import CORPUS, DICTIONARY, MAX_LEN, TARGETS, load  # noqa: E402

INSTRUMENTED = ["imc_sidecar", "tomllib"]
TIMEOUT_S = 10  # per input; libFuzzer reports a slower one as a timeout crash


def libfuzzer_args(target: str, work: Path | None, runs: int | None, extra: list[str]) -> list[str]:
    args = [f"-max_len={MAX_LEN}", f"-timeout={TIMEOUT_S}"]
    if target in DICTIONARY:
        args.append(f"-dict={HERE / 'dicts' / DICTIONARY[target]}")
    if runs is not None:
        args += [f"-runs={runs}", "-print_final_stats=1"]
    args += extra
    if work is not None:
        (work / "corpus").mkdir(parents=True, exist_ok=True)
        (work / "crashes").mkdir(parents=True, exist_ok=True)
        # New finds go to the first folder only: the committed seeds stay as they are.
        args += [f"-artifact_prefix={work / 'crashes'}/", str(work / "corpus"),
                 str(CORPUS / target)]
    return args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="print the targets and stop")
    parser.add_argument("--work", type=Path, help="campaign folder (corpus/, crashes/)")
    parser.add_argument("--runs", type=int, help="inputs to run")
    parser.add_argument("target", nargs="?", choices=TARGETS)
    options, extra = parser.parse_known_args()
    if options.list:
        print("\n".join(TARGETS))
        return
    if options.target is None:
        parser.error("name a target")
    # A method's logged failure is caught by the target's own checks; keep stderr for
    # libFuzzer's report.
    logging.disable(logging.CRITICAL)
    with atheris.instrument_imports(include=INSTRUMENTED):
        one_input = load(options.target)
    args = libfuzzer_args(options.target, options.work, options.runs, extra)
    atheris.Setup([sys.argv[0], *args], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
