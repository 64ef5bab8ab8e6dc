"""`imc-sidecar demo`: its arguments and exit status."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from .scenario import ScenarioConfig

__all__ = ["add_demo_arguments", "run_demo_command"]

TOKEN_ENV = "IMC_RPC_TOKEN"
_DEFAULTS = ScenarioConfig()

DESCRIPTION = """\
Generate realistic chat traffic against a sidecar, for trying it out and for analytics.

Simulated users, each on its own loopback address (sip:NAME@127.77.X.Y, port 5060, so
the sidecar must send directly: no outbound_proxy), create rooms (some private), invite
each other (most accept, some reject; invitations to a few "ghost" users are never
answered and time out after 32 s), join, leave, get removed and promoted, and above all
chat. A few users and rooms do most of the talking (Zipf weights, Pareto-long
conversations), and a few requests are refused on purpose (e.g. a non-member chatting).
The same --seed gives the same script.

Which sidecar: by default the one already running at --sip / --rpc; the demo stops
with an error when nothing answers there (it never starts one behind your back). With
--start it starts its own on a scratch SQLite database and free ports, and stops it at
the end (--keep-running leaves it up), printing the database's IMC_DB_URL either way.

At the end it waits until the sidecar has no MESSAGE pending (admin RPC stats.fetchn
imc:) and every ghost invitation has run out, so that every outcome is final, then prints
a table of what it sent and, with --summary, writes the exact counts as JSON.
"""

EPILOG = """\
exit status: 0 done; 1 the sidecar did not settle within --wait-timeout; 2 bad arguments
or no sidecar to talk to; 130 interrupted (the summary is still written).

examples:
  imc-sidecar demo --start --summary demo.json
  imc-sidecar demo --duration 300 --users 200 --rooms 30 --seed 7
"""


def _address(text: str) -> tuple[str, int]:
    """`udp:HOST:PORT` or `HOST:PORT` (UDP is the only transport the users speak)."""
    rest = text[4:] if text.lower().startswith("udp:") else text
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r}: expected udp:HOST:PORT")
    return host, int(port)


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    where = parser.add_argument_group("which sidecar")
    where.add_argument("--sip", type=_address, default=None, metavar="udp:HOST:PORT",
                       help="its SIP address (default udp:127.0.0.1:5090; with --start, "
                       "where it listens: a free port by default)")
    where.add_argument("--rpc", default=None, metavar="URL",
                       help="its JSON-RPC over HTTP (default http://127.0.0.1:5092/RPC; "
                       "with --start, a free port by default)")
    where.add_argument("--token", default=None,
                       help=f"bearer token of the RPC (default: ${TOKEN_ENV})")
    where.add_argument("--start", action="store_true",
                       help="start a sidecar for the demo on a scratch SQLite database")
    where.add_argument("--db", type=Path, default=None, metavar="PATH",
                       help="with --start: its SQLite file (default: a new temporary "
                       "directory's imc.sqlite; its log goes beside it)")
    where.add_argument("--keep-running", action="store_true",
                       help="with --start: leave it running at the end")
    what = parser.add_argument_group("the traffic")
    what.add_argument("--duration", type=float, default=_DEFAULTS.duration, metavar="S",
                      help="seconds of traffic (default %(default)g)")
    what.add_argument("--users", type=int, default=_DEFAULTS.users, metavar="N",
                      help="users who answer (default %(default)s)")
    what.add_argument("--ghosts", type=int, default=_DEFAULTS.ghosts, metavar="N",
                      help="users who never answer, invited early in the run "
                      "(default %(default)s)")
    what.add_argument("--rooms", type=int, default=_DEFAULTS.rooms, metavar="N",
                      help="rooms to create, 30 %% of them private; named chat-K, K "
                      "above any chat-K of the domain already there (default %(default)s)")
    what.add_argument("--rate", type=float, default=_DEFAULTS.rate, metavar="R",
                      help="requests per second on average (default %(default)g)")
    what.add_argument("--seed", type=int, default=_DEFAULTS.seed,
                      help="the same seed plays the same script (default %(default)s)")
    what.add_argument("--net", default=_DEFAULTS.network, metavar="CIDR",
                      help="loopback network of the users' addresses, taken in order "
                      "(default %(default)s)")
    what.add_argument("--domain", default=_DEFAULTS.domain,
                      help="host part of the room URIs (default %(default)s)")
    out = parser.add_argument_group("the end")
    out.add_argument("--summary", type=Path, default=None, metavar="FILE",
                     help="write the exact counts as JSON to FILE")
    out.add_argument("--no-wait", dest="wait", action="store_false",
                     help="do not wait for the sidecar to settle (ghost invitations "
                     "stay unresolved)")
    out.add_argument("--wait-timeout", type=float, default=40.0, metavar="S",
                     help="how long to wait for it to settle (default %(default)g)")
    bar = out.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="show progress bars (default: only on a terminal)")
    bar.add_argument("--no-progress", dest="progress", action="store_false")


def run_demo_command(args: argparse.Namespace) -> int:
    from .runner import DemoError, DemoOptions, run_demo

    if not args.start and (args.db is not None or args.keep_running):
        print("imc-sidecar demo: --db and --keep-running need --start", file=sys.stderr)
        return 2
    config = ScenarioConfig(
        users=args.users, ghosts=args.ghosts, rooms=args.rooms, duration=args.duration,
        rate=args.rate, seed=args.seed, domain=args.domain.lower(), network=args.net,
    )
    try:
        config.check()
    except ValueError as exc:
        print(f"imc-sidecar demo: {exc}", file=sys.stderr)
        return 2
    options = DemoOptions(
        scenario=config, sip=args.sip, rpc=args.rpc,
        token=args.token if args.token is not None else os.environ.get(TOKEN_ENV),
        start=args.start, db=args.db, keep_running=args.keep_running, summary=args.summary,
        wait=args.wait, wait_timeout=args.wait_timeout, progress=args.progress,
    )
    try:
        return asyncio.run(run_demo(options))
    except DemoError as exc:
        print(f"imc-sidecar demo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
