"""Step the rate up per shape with load.py until a run is not clean; print the JSON lines.

    .venv/bin/python bench/profile/sweep.py                 # the working tree
    .venv/bin/python bench/profile/sweep.py --code /tmp/old # an unpacked older imc_sidecar
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Room messages per second to try, per shape (deliveries = rate x (members - 1)).
STEPS = {
    "10x10": [1000, 1200, 1400, 1600, 1800, 2000, 2200, 2400, 2700, 3000, 3300],
    "1x100": [80, 100, 120, 140, 160, 180, 200, 230, 260, 300],
    "100x5": [2000, 2500, 3000, 3500, 4000, 4500, 5000, 5500, 6000, 7000],
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--code", default=None, help="PYTHONPATH holding another imc_sidecar")
    ap.add_argument("--shapes", default="10x10,1x100,100x5")
    ap.add_argument("--seconds", default="8")
    ap.add_argument("--start", type=int, default=0, help="skip this many steps per shape")
    ap.add_argument("--rates", default=None, help="comma-separated rates (one shape)")
    args, extra = ap.parse_known_args()
    for shape in args.shapes.split(","):
        rooms, members = shape.split("x")
        steps = [int(r) for r in args.rates.split(",")] if args.rates else STEPS[shape]
        for rate in steps[args.start:]:
            cmd = [sys.executable, str(HERE / "load.py"), "--rooms", rooms, "--members",
                   members, "--rate", str(rate), "--seconds", args.seconds, *extra]
            if args.code:
                cmd += ["--env", f"PYTHONPATH={args.code}"]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "{}"
            print(line, flush=True)
            if not json.loads(line).get("clean"):
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
