"""``bench/run``: every system started here, the same load at each arm, one report.

Comparisons (same shapes, same senders, same receivers, both arms in the same run):

* ``engine``     -- members addressed directly (``sip:user@127.1.R.M``); A: Kamailio 5.6 +
  imc, no registrar, no outbound proxy; B: the sidecar, no outbound proxy.
* ``deployment`` -- members REGISTER; A: Kamailio as registrar + imc with outbound_proxy
  to itself; B: ``kamailio-snippets/sidecar-front.cfg`` in front of the sidecar, whose
  outbound_proxy is that front.
* ``history``    -- the sidecar of ``engine`` B against itself: A with ``--history 0``,
  B with ``--history 1`` (usage history recorded; shapes 10x10 and 100x5 by default).
* ``dispatcher`` -- only when asked for (not part of the full run): members REGISTER; A:
  one sidecar behind ``kamailio-snippets/dispatcher.cfg``, B: two sidecars behind it, on
  one PostgreSQL database (shapes 100x5 and 10x10 by default); then the CPU per
  command (#join/#leave) of each (bench/dispatch.py).  Alone it writes dispatcher.*.

``--soak`` runs none of them: it keeps ``engine`` B's sidecar at half its clean edge for
ten minutes and follows its memory (bench/soak.py).

The sidecar of ``engine`` and ``deployment`` runs with usage history on (``--history 1``,
the default: what users get).  Before the comparisons, ``generator`` measures the load
generator alone (sipp straight to the member sockets), which bounds what the box can
show; after them the scale figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import dispatch
from .layout import (
    DOMAIN,
    HISTORY_SHAPES,
    SHAPES,
    Pool,
    Shape,
    db_rows,
    direct_plan,
    room_plan,
)
from .report import machine_facts, render_markdown, targets
from .runner import ArmResult, ReceiverPool, Runner, Settings, System, run_arm
from .scale import run_scale
from .soak import DEFAULT_DURATION, DEFAULT_INTERVAL, run_soak, soak_markdown
from .systems import FrontAndSidecar, KamailioImc, Sidecar

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"

COMPARISONS = ("engine", "deployment", "history")
# Run only when named in --comparisons: not part of the full run (they need PostgreSQL).
EXTRA_COMPARISONS = ("dispatcher",)
# Where the search starts, in deliveries/s (arm B starts at arm A's edge).
START = {
    "engine": 6000.0, "deployment": 3000.0, "history": 6000.0, "dispatcher": 3000.0,
    "generator": 12000.0,
}  # fmt: skip
QUICK_RATE = 200.0  # messages/s in --quick
# The history target allows 10 %: its arms bisect once more than the others, so that the
# highest clean and the lowest failing rate end about 5 % apart instead of 11 %.
HISTORY_REFINEMENTS = 3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/run",
        description="Benchmark imc_sidecar against Kamailio 5.6 imc, side by side.",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke mode: one shape, one low rate, a few seconds per arm",
    )
    p.add_argument("--scale", action="store_true", help="only the scale figures")
    p.add_argument(
        "--soak",
        action="store_true",
        help="only a soak: the engine comparison's sidecar at half its clean edge for "
        "--soak-duration seconds, RSS and statistics sampled (first shape of --shapes, "
        "default 10x10); writes soak.*",
    )
    p.add_argument(
        "--soak-duration",
        type=float,
        default=DEFAULT_DURATION,
        help=f"seconds of soak traffic (default {DEFAULT_DURATION:.0f})",
    )
    p.add_argument(
        "--soak-interval",
        type=float,
        default=DEFAULT_INTERVAL,
        help=f"seconds between samples: one sipp segment each (default {DEFAULT_INTERVAL:.0f})",
    )
    p.add_argument(
        "--soak-edge",
        type=float,
        help="the sidecar's clean edge in deliveries/s (the soak runs at half of it); "
        "default: measured first, as the engine comparison does",
    )
    p.add_argument("--no-scale", action="store_true", help="skip the scale figures")
    p.add_argument(
        "--no-generator", action="store_true", help="skip measuring the load generator alone"
    )
    p.add_argument(
        "--comparisons",
        default=",".join(COMPARISONS),
        help="any of engine,deployment,history (default all three), and dispatcher (one "
        "sidecar against two behind kamailio-snippets/dispatcher.cfg on PostgreSQL, then "
        "CPU per command; only when named)",
    )
    p.add_argument(
        "--shapes",
        help="ROOMSxMEMBERS list for every comparison (default 10x10,1x100,100x5 for engine "
        "and deployment, 10x10,100x5 for history, 100x5,10x10 for dispatcher)",
    )
    p.add_argument("--duration", type=float, help="seconds per open-loop step (default 4)")
    p.add_argument(
        "--window",
        type=int,
        default=10,
        help="messages outstanding in the closed-loop run (default 10)",
    )
    p.add_argument(
        "--receiver-processes",
        type=int,
        default=2,
        help="processes serving the member sockets (default 2)",
    )
    p.add_argument(
        "--python-receivers",
        action="store_true",
        help="use bench/receivers.py even when bench/receiver.c can be compiled",
    )
    p.add_argument(
        "--member-net",
        type=int,
        default=1,
        help="members live at 127.N.R.M:5060; N (default 1)",
    )
    p.add_argument("--children", type=int, default=2, help="Kamailio UDP workers (default 2)")
    p.add_argument(
        "--delivery-workers",
        type=int,
        default=1,
        help="the sidecar's --delivery-workers (default 1: with the main process, one per "
        "core of this 2-core machine; more processes cost more in switching than they add)",
    )
    p.add_argument("--shm-mb", type=int, default=4096, help="Kamailio shared memory, MB")
    p.add_argument(
        "--scale-rooms",
        default="0,3000,10000,50000,100000",
        help="room counts (10 members each) for the scale figures",
    )
    p.add_argument(
        "--scale-kamailio-rooms",
        default="1000,3000",
        help="room counts for Kamailio imc's start-up, for reference",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="directory for the .md and .json (default bench/results; --quick writes "
        "quick.*, --scale scale.*, the full run latest.*, --comparisons dispatcher "
        "dispatcher.*, any other partial.*)",
    )
    p.add_argument("--workdir", type=Path, help="keep logs and cfgs here (default: temp)")
    return p.parse_args(argv)  # fmt: skip


def _ratio(b: float | None, a: float | None) -> float | None:
    if a is None or b is None or a == 0:
        return None
    return round(b / a, 2)


def engine_cpu(step: Any, system: str) -> float | None:
    """CPU µs per delivery of the system under test (not receivers, not sipp)."""
    if step is None:
        return None
    groups = ("kamailio",) if system == "kamailio" else ("front", "sidecar")
    values = [step.cpu_us_per_delivery.get(g) for g in groups]
    present = [v for v in values if v is not None]
    return round(sum(present), 1) if present else None


def ratios(a: ArmResult, b: ArmResult) -> dict[str, float | None]:
    a_edge, b_first = a.edge_step, b.first_step
    return {
        "edge_deliveries_per_s": _ratio(b.edge_deliveries_per_s, a.edge_deliveries_per_s),
        "closed_loop_deliveries_per_s": _ratio(
            b.closed.deliveries_per_s if b.closed else None,
            a.closed.deliveries_per_s if a.closed else None,
        ),
        "cpu_us_per_delivery_at_edge": _ratio(
            engine_cpu(b.edge_step, b.system), engine_cpu(a_edge, a.system)
        ),
        "p99_at_a_edge": _ratio(
            b_first.p99_ms if b_first else None, a_edge.p99_ms if a_edge else None
        ),
    }


def output_stem(args: argparse.Namespace, comparisons: list[str]) -> str:
    """quick, soak, scale, latest (everything, the figures README shows) or partial: a run of
    some comparisons, shapes or parts never overwrites the full run's results."""
    if args.quick:
        return "quick"
    if args.soak:
        return "soak"
    if args.scale:
        return "scale"
    if comparisons == ["dispatcher"]:
        return "dispatcher"
    full = (
        set(comparisons) == set(COMPARISONS)
        and args.shapes is None
        and not args.no_generator
        and not args.no_scale
    )
    return "latest" if full else "partial"


def comparison_shapes(args: argparse.Namespace, comparisons: list[str]) -> dict[str, list[Shape]]:
    """The shapes of each comparison: ``--shapes`` for all, else each one's default."""
    if args.shapes is not None:
        given = [Shape.parse(s) for s in args.shapes.split(",") if s]
        chosen = {c: list(given) for c in comparisons}
    else:
        defaults = {"history": HISTORY_SHAPES, "dispatcher": dispatch.SHAPES}
        chosen = {c: list(defaults.get(c, SHAPES)) for c in comparisons}
    if args.quick:
        chosen = {c: shapes[:1] for c, shapes in chosen.items()}
    return chosen


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.time()
    command = "bench/run " + " ".join(sys.argv[1:] if argv is None else argv)
    command = command.strip()
    out_dir: Path = args.out or RESULTS
    comparisons = [c for c in args.comparisons.split(",") if c]
    for c in comparisons:
        if c not in COMPARISONS + EXTRA_COMPARISONS:
            raise SystemExit(f"bench/run: unknown comparison {c!r}")
    if args.soak and (args.quick or args.scale):
        raise SystemExit("bench/run: --soak runs alone, without --quick or --scale")
    stem = output_stem(args, comparisons)
    per_comparison = comparison_shapes(args, comparisons)
    shapes: list[Shape] = []  # every shape of the run, in order of first use
    for c_shapes in per_comparison.values():
        shapes += [s for s in c_shapes if s not in shapes]
    if not shapes:  # no comparison: the generator alone
        shapes = [Shape.parse(s) for s in (args.shapes or "").split(",") if s] or list(SHAPES)
        shapes = shapes[:1] if args.quick else shapes
    settings = Settings(window=args.window)
    if args.quick:
        settings = Settings(
            duration=args.duration or 2.0,
            closed_duration=1.0,
            window=args.window,
            refinements=0,
            confirm=False,
            max_steps=1,
            retries=0,  # a smoke test: no waiting for a quiet machine
        )
    elif args.duration:
        settings.duration = args.duration
        settings.closed_duration = args.duration

    temp = None
    if args.workdir:
        workdir = args.workdir
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        temp = tempfile.mkdtemp(prefix="imc-bench-")
        workdir = Path(temp)
    print(f"bench: work directory {workdir}", flush=True)

    report: dict[str, Any] = {
        "command": command,
        "mode": stem,
        "machine": machine_facts(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(began)),
        "settings": {
            **settings.__dict__,
            "receiver_processes": args.receiver_processes,
            "kamailio_children": args.children,
            "sidecar_delivery_workers": args.delivery_workers,
            # engine/deployment B: the sidecar as users get it (--history 1, the default)
            "sidecar_history": sidecar_history_setting(),
            "history_refinements": HISTORY_REFINEMENTS if not args.quick else 0,
            "kamailio_shm_mb": args.shm_mb,
            "shapes": [s.name for s in shapes],
            "comparison_shapes": {c: [s.name for s in v] for c, v in per_comparison.items()},
        },
        "generator": None,
        "comparisons": {},
        "scale": None,
    }
    try:
        if args.soak:
            run_soak_mode(args, report, workdir, settings)
        else:
            if not args.scale:
                run_comparisons(args, report, workdir, shapes, per_comparison, settings)
            run_scale_figures(args, report, workdir)
    finally:
        report["duration_s"] = round(time.time() - began, 1)
        if not args.soak:
            report["targets"] = targets(report)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
        markdown = soak_markdown(report) if args.soak else render_markdown(report)
        (out_dir / f"{stem}.md").write_text(markdown)
        print(markdown, flush=True)
        print(f"bench: wrote {out_dir / (stem + '.md')} and {stem}.json", flush=True)
        if temp and os.environ.get("BENCH_KEEP_WORKDIR") != "1":
            shutil.rmtree(temp, ignore_errors=True)
    return 0


def sidecar_history_setting() -> dict[str, Any]:
    """What the sidecar arms of engine and deployment run with, for the report."""
    from imc_sidecar.settings import Settings as SidecarSettings

    defaults = SidecarSettings()
    return {
        "history": True,
        "flag": "--history 1",
        "default_history": defaults.history,
        "flush_interval_s": defaults.history_flush_interval,
    }


def run_scale_figures(args: argparse.Namespace, report: dict[str, Any], workdir: Path) -> None:
    """The scale figures, unless the run leaves them out (quick: two small sizes)."""
    if args.scale or (not args.no_scale and not args.quick):
        print("scale figures", flush=True)
        sizes = [int(x) for x in args.scale_rooms.split(",") if x]
        ksizes = tuple(int(x) for x in args.scale_kamailio_rooms.split(",") if x)
        report["scale"] = run_scale(workdir / "scale", sizes, kamailio_sizes=ksizes).to_json()
    elif args.quick and not args.no_scale:
        print("scale figures (quick: 0 and 1000 rooms)", flush=True)
        report["scale"] = run_scale(
            workdir / "scale", [0, 1000], repeats=2, kamailio_sizes=(300,), quiet=False
        ).to_json()


def run_soak_mode(
    args: argparse.Namespace, report: dict[str, Any], workdir: Path, settings: Settings
) -> None:
    """The soak (bench/soak.py) on the first shape of ``--shapes`` (default 10x10)."""
    shape = Shape.parse(args.shapes.split(",")[0]) if args.shapes else SHAPES[0]
    pool = Pool([shape], args.member_net)
    receivers = ReceiverPool(
        workdir / "receivers", pool, args.receiver_processes, python=args.python_receivers
    )
    receivers.start()
    report["settings"].update(
        shapes=[shape.name], comparison_shapes={}, receivers=receivers.kind,
        member_sockets=len(pool.members), member_net=f"127.{args.member_net}.R.M",
    )  # fmt: skip
    try:
        result = run_soak(
            Runner(workdir, receivers, settings), workdir, pool, shape,
            edge=args.soak_edge, edge_start=START["engine"] / shape.fanout,
            duration=args.soak_duration, interval=args.soak_interval,
            delivery_workers=args.delivery_workers,
        )  # fmt: skip
        report["soak"] = result.to_json()
    finally:
        receivers.stop()


def _arm_systems(
    args: argparse.Namespace,
    comparison: str,
    base: Path,
    rooms: list[tuple[str, str, int]],
    members: list[tuple[str, str, str, int]],
) -> tuple[tuple[str, str, System], tuple[str, str, System]]:
    """(system label, setting, system) of arm A and arm B."""
    if comparison == "history":
        off = Sidecar(
            base / "A", rooms, members, delivery_workers=args.delivery_workers, history=False
        )
        on = Sidecar(
            base / "B", rooms, members, delivery_workers=args.delivery_workers, history=True
        )
        return ("sidecar", "history off", off), ("sidecar", "history on", on)
    if comparison == "dispatcher":
        one, two = dispatch.systems(
            base, rooms, members, children=args.children, shm_mb=args.shm_mb,
            delivery_workers=args.delivery_workers,
        )  # fmt: skip
        return ("sidecar", "1 sidecar", one), ("sidecar", "2 sidecars", two)
    deployment = comparison == "deployment"
    a_sys = KamailioImc(
        base / "A",
        "deploy" if deployment else "engine",
        rooms,
        members,
        children=args.children,
        shm_mb=args.shm_mb,
    )
    b_sys: FrontAndSidecar | Sidecar
    if deployment:
        b_sys = FrontAndSidecar(
            base / "B", rooms, members, children=args.children, shm_mb=args.shm_mb,
            delivery_workers=args.delivery_workers, history=True,
        )  # fmt: skip
    else:
        b_sys = Sidecar(
            base / "B", rooms, members, delivery_workers=args.delivery_workers, history=True
        )
    return ("kamailio", "", a_sys), ("sidecar", "history on", b_sys)


def _history_rows(system: System) -> dict[str, int] | None:
    if isinstance(system, dispatch.DispatcherSidecars):
        try:
            return system.history_rows()
        except Exception as exc:
            print(f"    (history rows not counted: {exc})", flush=True)
            return None
    inner = system.sidecar if isinstance(system, FrontAndSidecar) else system
    if not isinstance(inner, Sidecar):
        return None
    try:
        return inner.history_rows()
    except Exception as exc:  # a figure for the report, never a reason to stop the run
        print(f"    (history rows not counted: {exc})", flush=True)
        return None


def run_dispatcher_commands(
    args: argparse.Namespace, runner: Runner, workdir: Path, pool: Pool
) -> dict[str, Any]:
    """CPU per command (#join/#leave) with one and with two sidecars behind dispatcher.cfg."""
    rates = (dispatch.QUICK_COMMAND_RATE,) if args.quick else dispatch.COMMAND_RATES
    duration = runner.settings.duration
    arms = {}
    for count in (1, 2):
        print(f"dispatcher commands, {count} sidecar(s)", flush=True)
        arm = dispatch.run_command_arm(
            runner, workdir / "dispatcher" / f"commands-{count}", pool, count=count,
            rates=rates, duration=duration, children=args.children, shm_mb=args.shm_mb,
            delivery_workers=args.delivery_workers,
        )  # fmt: skip
        arms[str(count)] = arm.to_json()
    return arms


def run_comparisons(
    args: argparse.Namespace,
    report: dict[str, Any],
    workdir: Path,
    shapes: list[Shape],
    per_comparison: dict[str, list[Shape]],
    settings: Settings,
) -> None:
    pool = Pool(list(shapes) if args.quick else list(SHAPES) + list(shapes), args.member_net)
    receivers = ReceiverPool(
        workdir / "receivers", pool, args.receiver_processes, python=args.python_receivers
    )
    receivers.start()
    report["settings"]["receivers"] = receivers.kind
    report["settings"]["member_sockets"] = len(pool.members)
    report["settings"]["member_net"] = f"127.{args.member_net}.R.M"
    runner = Runner(workdir, receivers, settings)
    try:
        if not args.no_generator:
            gshape = shapes[0]
            print(f"generator alone (sipp -> member sockets, {gshape.name} members)", flush=True)
            start = QUICK_RATE * gshape.fanout if args.quick else START["generator"]
            result = ArmResult("generator", "-", "sipp+receivers", gshape.name, 1)
            run_arm(
                runner,
                result,
                None,
                direct_plan(pool, gshape),
                gshape,
                start,
                domain=DOMAIN,
                closed_loop=False,
                direct=True,
            )
            report["generator"] = result.to_json()
        for comparison, c_shapes in per_comparison.items():
            deployment = comparison in ("deployment", "dispatcher")  # members REGISTER
            report["comparisons"][comparison] = {}
            # both arms of a comparison searched alike; history's bisected once more
            runner.settings = (
                replace(settings, refinements=HISTORY_REFINEMENTS)
                if comparison == "history" and not args.quick
                else settings
            )
            for shape in c_shapes:
                print(f"{comparison} comparison, {shape.name}", flush=True)
                plan = room_plan(pool, shape, deployment=deployment)
                rooms, members = db_rows(pool, shape, deployment=deployment)
                base = workdir / comparison / shape.name
                (a_name, a_setting, a_sys), (b_name, b_setting, b_sys) = _arm_systems(
                    args, comparison, base, rooms, members
                )
                start = QUICK_RATE if args.quick else START[comparison] / shape.fanout
                try:
                    a = run_arm(
                        runner,
                        ArmResult(comparison, "A", a_name, shape.name, shape.fanout, a_setting),
                        a_sys,
                        plan,
                        shape,
                        start,
                        domain=DOMAIN,
                    )
                    a_rows = _history_rows(a_sys)
                    b_start = a.edge_rate if (a.edge_rate and not args.quick) else start
                    b = run_arm(
                        runner,
                        ArmResult(comparison, "B", b_name, shape.name, shape.fanout, b_setting),
                        b_sys,
                        plan,
                        shape,
                        b_start,
                        domain=DOMAIN,
                    )
                    b_rows = _history_rows(b_sys)
                finally:
                    for system in (a_sys, b_sys):  # the dispatcher's scratch databases
                        if isinstance(system, dispatch.DispatcherSidecars):
                            system.close()
                pair: dict[str, Any] = {
                    "A": a.to_json(),
                    "B": b.to_json(),
                    "ratios": ratios(a, b),
                    # rows in the usage-history tables after the arm (its whole run)
                    "history_rows": {"A": a_rows, "B": b_rows},
                }
                if isinstance(a_sys, dispatch.DispatcherSidecars) and isinstance(
                    b_sys, dispatch.DispatcherSidecars
                ):
                    pair["ratios"] = dispatch.ratios(a, b)  # CPU: every process of the system
                    pair["sidecar_stats"] = {
                        "A": dispatch.served(a_sys), "B": dispatch.served(b_sys)
                    }  # fmt: skip
                report["comparisons"][comparison][shape.name] = pair
            runner.settings = settings
            if comparison == "dispatcher":
                report["dispatcher_commands"] = run_dispatcher_commands(
                    args, runner, workdir, pool
                )
    finally:
        receivers.stop()
