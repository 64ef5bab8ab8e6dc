"""``bench/run --soak``: the sidecar under steady traffic for a long time.

The engine comparison's sidecar (members addressed directly, usage history on,
``--delivery-workers`` as the comparisons run it) gets room messages at half its clean
edge (measured at the start of the run, as the engine comparison measures it, or given
with ``--soak-edge``) for ``--soak-duration`` seconds.  The traffic runs as consecutive
sipp segments of ``--soak-interval`` seconds, each measured like a benchmark step (lost,
refused, latency, CPU); after each one the soak samples the resident memory (VmRSS) of
every sidecar process (delivery workers included) and its statistics over the admin
RPC.  Segments keep the receivers' records, and the analysis of them, to one interval's
worth; the price is a pause of about a second between segments while the last copies
arrive and are counted, which the report shows as the share of the time with traffic.

Expected: no delivery lost, nothing refused, RSS flat once warm.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.harness.sipua import free_port
from tests.e2e.sidecar_process import rpc_result

from .layout import DOMAIN, Plan, Pool, Shape, db_rows, room_plan
from .procs import descendants, status_kib
from .report import _f, machine_table
from .runner import ArmResult, Runner, Settings, Step, run_arm
from .scale import fit
from .systems import Sidecar

# How long the soak runs by default, and how often it samples.
DEFAULT_DURATION = 600.0
DEFAULT_INTERVAL = 10.0
WARM_UP = 1.0  # seconds of traffic before the first sample, not counted
# RSS is judged after the sidecar has warmed up: from this far into the soak (or half
# of a shorter one) to the end.  Its working set grows for the first 64*T1 = 32 s, while
# answered server transactions are kept for retransmitted requests (Timer J).
SETTLE = 60.0
FLAT_MIB_PER_MIN = 1.0  # a least-squares slope above this is growth, not noise
QUIET_CORES = Settings().disturbed  # other processes above this: a benchmark step is redone
# Statistics that count something refused or lost: shown per sample in the report.
_REFUSAL_WORDS = ("refus", "limited", "oversized", "failed", "dropped", "errors", "untrusted")


@dataclass
class Sample:
    """The sidecar after one segment of traffic (the first one: after the warm-up)."""

    elapsed_s: float  # since the soak's traffic began
    rss_mib: float  # VmRSS summed over the sidecar's processes, now
    rss_per_process_mib: list[float]
    processes: int
    peak_rss_mib: float | None  # largest process's VmHWM during the segment
    stats: dict[str, int]  # stats.fetchn imc:, cumulative since start
    segment: dict[str, Any] | None  # the segment's measured step (None: the baseline)


@dataclass
class SoakResult:
    shape: str
    fanout: int
    edge_deliveries_per_s: float | None = None
    edge_measured: bool = False  # False: given with --soak-edge
    rate: float | None = None  # room messages/s offered (half the edge)
    duration_s: float = 0.0
    interval_s: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    edge_arm: dict[str, Any] | None = None
    commands: list[str] = field(default_factory=list)
    log_problems: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def sidecar_rss(root: int) -> list[int]:
    """VmRSS (KiB) of the sidecar's main process and each process it started."""
    return [status_kib(pid, "VmRSS") for pid in descendants(root)]


def _sample(system: Sidecar, rpc_port: int, elapsed: float, step: Step | None) -> Sample:
    assert system.proc is not None
    rss = sidecar_rss(system.proc.pid)
    peak = step.peak_rss_mib.get("sidecar") if step is not None else None
    segment = None
    if step is not None:
        segment = {
            key: getattr(step, key)
            for key in (
                "rate", "duration_s", "sent", "expected", "delivered", "lost",
                "acked_incomplete", "refused_503", "refused_500", "sipp_failed",
                "duplicates", "engine_retransmissions", "deliveries_per_s", "p50_ms",
                "p99_ms", "max_ms", "clean", "reasons", "other_processes_cores",
            )
        }  # fmt: skip
        segment["cpu_us_per_delivery"] = step.cpu_us_per_delivery.get("sidecar")
    return Sample(
        elapsed_s=round(elapsed, 1),
        rss_mib=round(sum(rss) / 1024, 1),
        rss_per_process_mib=[round(kib / 1024, 1) for kib in rss],
        processes=len(rss),
        peak_rss_mib=peak,
        stats=dict(rpc_result(rpc_port, "stats.fetchn", ["imc:"])),
        segment=segment,
    )


def summarise(result: SoakResult) -> dict[str, Any]:
    """Totals over the segments, the statistics' growth and the RSS trend."""
    samples = result.samples
    segments = [s.segment for s in samples if s.segment is not None]
    total = {
        key: sum(int(seg[key]) for seg in segments)
        for key in ("sent", "expected", "delivered", "lost", "acked_incomplete",
                    "refused_503", "refused_500", "sipp_failed", "duplicates",
                    "engine_retransmissions")
    }  # fmt: skip
    first, last = (samples[0], samples[-1]) if samples else (None, None)
    counters: dict[str, int] = {}
    if first is not None and last is not None:
        counters = {
            name: last.stats[name] - first.stats.get(name, 0)
            for name in sorted(last.stats)
            if any(word in name for word in _REFUSAL_WORDS)
        }
    traffic = sum(float(seg["duration_s"]) for seg in segments)
    wall = last.elapsed_s if last is not None else 0.0
    settle = min(SETTLE, wall / 2)
    settled = [s for s in samples if s.elapsed_s >= settle]
    slope = None
    if len(settled) >= 3:
        _, per_second = fit([s.elapsed_s for s in settled], [s.rss_mib for s in settled])
        slope = round(per_second * 60, 2)
    p99s = [float(seg["p99_ms"]) for seg in segments if seg["p99_ms"] is not None]
    others = [float(seg["other_processes_cores"]) for seg in segments]
    refused = total["refused_503"] + total["refused_500"] + total["sipp_failed"]
    return {
        **total,
        "segments": len(segments),
        "unclean_segments": sum(1 for seg in segments if not seg["clean"]),
        "traffic_s": round(traffic, 1),
        "wall_s": round(wall, 1),
        "offered_deliveries_per_s": round((result.rate or 0) * result.fanout, 1),
        "sidecar_counters": counters,  # growth over the soak, refusals and failures
        "rss_first_mib": first.rss_mib if first else None,
        "rss_last_mib": last.rss_mib if last else None,
        "rss_min_mib": min(s.rss_mib for s in samples) if samples else None,
        "rss_max_mib": max(s.rss_mib for s in samples) if samples else None,
        "rss_settle_s": round(settle, 1),
        "rss_slope_mib_per_min": slope,
        "rss_flat": None if slope is None else slope <= FLAT_MIB_PER_MIN,
        "worst_p99_ms": max(p99s) if p99s else None,
        # deliveries not made that belong to texts refused or failed at the sender: never
        # promised (a refused text reaches nobody)
        "refused_deliveries": refused * result.fanout,
        "other_processes_cores_mean": round(sum(others) / len(others), 2) if others else None,
    }


def run_soak(
    runner: Runner,
    workdir: Path,
    pool: Pool,
    shape: Shape,
    *,
    edge: float | None,
    edge_start: float,
    duration: float,
    interval: float,
    delivery_workers: int,
) -> SoakResult:
    """Find the clean edge unless ``edge`` (deliveries/s) is given, then soak at half of
    it.  Errors are reported in the result; the run goes on to write its report."""
    result = SoakResult(shape.name, shape.fanout, duration_s=duration, interval_s=interval)
    plan = room_plan(pool, shape, deployment=False)
    rooms, members = db_rows(pool, shape, deployment=False)
    try:
        if edge is None:
            runner.log(f"clean edge of the sidecar, {shape.name}")
            arm = run_arm(
                runner,
                ArmResult("soak", "edge", "sidecar", shape.name, shape.fanout, "history on"),
                Sidecar(workdir / "edge", rooms, members, delivery_workers=delivery_workers),
                plan, shape, edge_start, domain=DOMAIN, closed_loop=False,
            )  # fmt: skip
            result.edge_arm = arm.to_json()
            if arm.edge_deliveries_per_s is None:
                raise RuntimeError(arm.error or "no clean rate found: nothing to soak at")
            edge = arm.edge_deliveries_per_s
            result.edge_measured = True
        result.edge_deliveries_per_s = edge
        result.rate = round(edge / 2 / shape.fanout, 1)
        _soak(runner, workdir, plan, shape, rooms, members, delivery_workers, result)
    except Exception as exc:  # reported in the results
        result.error = f"{type(exc).__name__}: {exc}"
        runner.log(f"    ERROR in the soak: {result.error}")
    result.summary = summarise(result)
    return result


def _soak(
    runner: Runner,
    workdir: Path,
    plan: Plan,
    shape: Shape,
    rooms: list[tuple[str, str, int]],
    members: list[tuple[str, str, str, int]],
    delivery_workers: int,
    result: SoakResult,
) -> None:
    assert result.rate is not None
    rate = result.rate
    rpc_port = free_port()
    system = Sidecar(
        workdir / "soak", rooms, members, rpc_http_port=rpc_port,
        delivery_workers=delivery_workers,
    )  # fmt: skip
    runner.log(
        f"soak: {rate:.0f} room messages/s ({rate * shape.fanout:.0f} deliveries/s, half of "
        f"{result.edge_deliveries_per_s:.0f}) for {result.duration_s:.0f} s, "
        f"a sample every {result.interval_s:.0f} s"
    )
    system.start()
    try:
        result.commands = system.commands()
        runner.measure("warm-up", system, plan, shape, rate=rate, duration=WARM_UP)
        began = time.monotonic()
        result.samples.append(_sample(system, rpc_port, 0.0, None))
        while (left := result.duration_s - (time.monotonic() - began)) > 0.5:
            step = runner.measure(
                "soak", system, plan, shape, rate=rate, duration=min(result.interval_s, left)
            )
            sample = _sample(system, rpc_port, time.monotonic() - began, step)
            result.samples.append(sample)
            runner.log(_show(sample))
    finally:
        result.log_problems = system.problems()[:20]
        system.stop()


def _show(sample: Sample) -> str:
    seg = sample.segment or {}
    refused = seg.get("refused_503", 0) + seg.get("refused_500", 0)
    return (
        f"    {sample.elapsed_s:>7.1f} s: RSS {sample.rss_mib:.1f} MiB "
        f"({sample.processes} processes), {seg.get('deliveries_per_s', 0):.0f} del/s, "
        f"lost {seg.get('lost', 0)}, refused {refused}, p99 {seg.get('p99_ms')} ms"
        + ("" if seg.get("clean", True) else " -- NOT clean: " + "; ".join(seg["reasons"]))
    )


# --------------------------------------------------------------------------- Markdown


def _counters_cell(sample: Sample, baseline: Sample) -> str:
    """The refusal and failure counters that grew since the soak began, else 0."""
    grown = [
        f"{name.removeprefix('imc.')} {value - baseline.stats.get(name, 0):,}"
        for name, value in sorted(sample.stats.items())
        if any(word in name for word in _REFUSAL_WORDS) and value > baseline.stats.get(name, 0)
    ]
    return ", ".join(grown) or "0"


def _met(value: bool | None) -> str:
    return "—" if value is None else ("yes" if value else "**no**")


def soak_markdown(report: dict[str, Any]) -> str:
    """The soak's report, in the style of the benchmark's."""
    soak = report["soak"]
    s = report["settings"]
    summary = soak["summary"]
    samples = [Sample(**sample) for sample in soak["samples"]]
    edge = soak["edge_deliveries_per_s"]
    edge_text = (
        "not found"
        if edge is None
        else "measured at the start of this run (below)"
        if soak["edge_measured"]
        else "given"
    )
    out = [
        f"# imc_sidecar soak, {report['started']}",
        "",
        f"Command: `{report['command']}` (run from the repository root; took "
        f"{report.get('duration_s', 0) / 60:.1f} min).",
        "",
        *machine_table(report["machine"]),
        "",
        f"Setup: the engine comparison's sidecar (members addressed directly, "
        f"`--delivery-workers {s['sidecar_delivery_workers']}`, usage history on), rooms "
        f"{soak['shape']} ({soak['fanout']} deliveries per room message), members on "
        f"{s.get('member_sockets', '?')} UDP sockets served by {s['receiver_processes']} "
        f"{s.get('receivers', '')} receiver processes; its clean edge "
        f"{_f(edge)} deliveries/s, {edge_text}; the soak offers half of it, "
        f"{_f(soak['rate'], 1)} room messages/s ({_f(summary['offered_deliveries_per_s'])} "
        f"deliveries/s) for {_f(soak['duration_s'])} s, in sipp segments of "
        f"{_f(soak['interval_s'])} s: traffic ran {_f(summary['traffic_s'], 1)} s of "
        f"{_f(summary['wall_s'], 1)} s (between segments the last copies are awaited and "
        "counted). After each segment: VmRSS of every sidecar process (delivery workers "
        "included) and its statistics (`stats.fetchn imc:`).",
        "",
    ]
    if soak.get("error"):
        out += [f"**Error:** {soak['error']}", ""]
    refused = summary["refused_503"] + summary["refused_500"] + summary["sipp_failed"]
    counters = summary["sidecar_counters"]
    grown = ", ".join(f"{k.removeprefix('imc.')} {v:,}" for k, v in counters.items() if v)
    slope = summary["rss_slope_mib_per_min"]
    out += [
        "| expectation | measured | met |",
        "|---|---|---|",
        f"| no delivery lost (of texts answered 200) "
        f"| {_f(summary['acked_incomplete'])} texts answered 200 with a copy missing; "
        f"{_f(summary['lost'])} of {_f(summary['expected'])} deliveries not made, "
        f"{_f(summary['refused_deliveries'])} of them the copies of refused texts; "
        f"{_f(summary['duplicates'])} duplicated, "
        f"{_f(summary['engine_retransmissions'])} retransmitted "
        f"| {_met(summary['acked_incomplete'] == 0 if summary['segments'] else None)} |",
        f"| nothing refused or failed | sipp: {_f(summary['refused_503'])} answered 503, "
        f"{_f(summary['refused_500'])} 500, {_f(summary['sipp_failed'])} failed; sidecar "
        f"counters grown: {grown or 'none'} "
        f"| {_met(refused == 0 and not grown if summary['segments'] else None)} |",
        f"| RSS flat once warm (slope <= {FLAT_MIB_PER_MIN:g} MiB/min) "
        f"| {_f(slope, 2)} MiB/min (least squares from {_f(summary['rss_settle_s'])} s on); "
        f"{_f(summary['rss_first_mib'], 1)} MiB after the warm-up, "
        f"{_f(summary['rss_last_mib'], 1)} at the end, "
        f"{_f(summary['rss_min_mib'], 1)}-{_f(summary['rss_max_mib'], 1)} "
        f"| {_met(summary['rss_flat'])} |",
        "",
        f"{summary['segments']} segments, {summary['unclean_segments']} not clean; "
        f"{_f(summary['sent'])} room messages sent; worst segment p99 "
        f"{_f(summary['worst_p99_ms'], 1)} ms; other processes of the machine used "
        f"{_f(summary['other_processes_cores_mean'], 2)} cores on average"
        + (
            f" (more than {QUIET_CORES:g}: the machine was not quiet, and the soak shares "
            "its 2 cores with them)"
            if (summary["other_processes_cores_mean"] or 0) > QUIET_CORES
            else ""
        )
        + ".",
        "",
        "## Samples",
        "",
        "| s | RSS MiB (per process) | peak RSS MiB | deliveries/s | lost | refused 503/500 "
        "| p50 / p99 ms | sidecar CPU µs per delivery | other processes, cores "
        "| sidecar counters since the start | clean |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|",
    ]
    for sample in samples:
        seg = sample.segment
        per_process = " + ".join(f"{v:g}" for v in sample.rss_per_process_mib)
        if seg is None:
            traffic = "| (after the warm-up) | | | | | "
            clean = ""
        else:
            traffic = (
                f"| {_f(seg['deliveries_per_s'])} | {_f(seg['lost'])} "
                f"| {_f(seg['refused_503'])}/{_f(seg['refused_500'])} "
                f"| {_f(seg['p50_ms'], 2)} / {_f(seg['p99_ms'], 2)} "
                f"| {_f(seg['cpu_us_per_delivery'], 1)} "
                f"| {_f(seg['other_processes_cores'], 2)} "
            )
            clean = "yes" if seg["clean"] else "no: " + "; ".join(seg["reasons"])[:160]
        out.append(
            f"| {_f(sample.elapsed_s, 1)} | {_f(sample.rss_mib, 1)} ({per_process}) "
            f"| {_f(sample.peak_rss_mib, 1)} {traffic}"
            f"| {_counters_cell(sample, samples[0])} | {clean} |"
        )
    out += ["", *(f"- `{command}`" for command in soak["commands"]), ""]
    arm = soak.get("edge_arm")
    if arm:
        out += [
            "## The clean edge, measured first",
            "",
            "Found as the engine comparison finds it (steps ×1.5, bisected, the best "
            "rate repeated), on a sidecar of its own:",
            "",
            "| rate msg/s | deliveries/s | p50 / p99 ms | clean | why not |",
            "|--:|--:|--:|---|---|",
        ]
        for st in arm["steps"]:
            out.append(
                f"| {_f(st['rate'])} | {_f(st['deliveries_per_s'])} "
                f"| {_f(st['p50_ms'], 2)} / {_f(st['p99_ms'], 2)} "
                f"| {'yes' if st['clean'] else 'no'} | {'; '.join(st['reasons'])[:160]} |"
            )
        out.append("")
    if soak.get("log_problems"):
        out += ["Sidecar log problems:", "", *(f"    {line}" for line in soak["log_problems"]), ""]
    return "\n".join(out) + "\n"
