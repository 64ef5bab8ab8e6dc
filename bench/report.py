"""The machine facts, the targets and the Markdown report of a run."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from typing import Any

from .dispatch import dispatcher_markdown
from .systems import kamailio_version, sidecar_version


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    for line in (out.stdout + out.stderr).splitlines():
        if line.strip():
            return line.strip()
    return "?"


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


def machine_facts() -> dict[str, Any]:
    cpuinfo = _read("/proc/cpuinfo")
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    mhz = re.search(r"^cpu MHz\s*:\s*(.+)$", cpuinfo, re.M)
    mem = re.search(r"^MemTotal:\s*(\d+)", _read("/proc/meminfo"), re.M)
    os_release = re.search(r'^PRETTY_NAME="?([^"\n]+)', _read("/etc/os-release"), re.M)
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]

        uvloop_version: str | None = str(getattr(uvloop, "__version__", "?"))
    except ImportError:
        uvloop_version = None
    return {
        "cpu_model": model.group(1).strip() if model else platform.processor() or "?",
        "cpu_mhz": mhz.group(1).strip() if mhz else "?",
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem.group(1)) / 1024 / 1024, 1) if mem else None,
        "kernel": platform.release(),
        "os": os_release.group(1) if os_release else "?",
        "python": sys.version.split()[0],
        "kamailio": kamailio_version(),
        "sipp": _first_line(["sipp", "-v"]),
        "sidecar": sidecar_version(),
        "uvloop": uvloop_version,
        "net.core.rmem_max": _read("/proc/sys/net/core/rmem_max").strip(),
        "net.core.wmem_max": _read("/proc/sys/net/core/wmem_max").strip(),
    }


# --------------------------------------------------------------------------- targets


def _engine_cpu(step: dict[str, Any] | None, system: str) -> float | None:
    if not step:
        return None
    cpu = step["cpu_us_per_delivery"]
    groups = ("kamailio",) if system == "kamailio" else ("front", "sidecar")
    present = [cpu[g] for g in groups if g in cpu]
    return round(sum(present), 1) if present else None


def _acked_lost(arm: dict[str, Any]) -> int:
    """Lower bound of messages answered 200 of which a member never got its copy, over all
    open-loop steps: messages not delivered to every member, less those sipp saw fail or
    refused (503, or 500 through a proxy)."""
    return sum(
        step.get("acked_incomplete", 0) for step in arm.get("steps", []) if step["kind"] == "open"
    )


# The comparisons of Kamailio imc (arm A) against the sidecar (arm B).
KAMAILIO_COMPARISONS = ("engine", "deployment")
HISTORY_GOAL = 0.90  # history on keeps at least this share of history off's clean edge


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(name: str, goal: str, measured: str, met: bool | None, note: str = "") -> None:
        rows.append({"target": name, "goal": goal, "measured": measured, "met": met, "note": note})

    engine = report["comparisons"].get("engine", {})
    for shape, pair in engine.items():
        a, b, r = pair["A"], pair["B"], pair["ratios"]
        ratio = r.get("edge_deliveries_per_s")
        add(
            f"engine {shape}: clean open-loop rate",
            ">= 2.0 x Kamailio",
            f"{_f(ratio, 2)} x ({_f(b['edge_deliveries_per_s'])} vs "
            f"{_f(a['edge_deliveries_per_s'])} deliveries/s)",
            None if ratio is None else ratio >= 2.0,
            "" if ratio is None or ratio >= 2.0 else f"missed by {(1 - ratio / 2.0) * 100:.0f} %",
        )
        a_p99 = a["edge_step"]["p99_ms"] if a.get("edge_step") else None
        b_first = b.get("first_step")
        b_p99 = b_first["p99_ms"] if b_first else None
        b_clean = bool(b_first and b_first["clean"])
        at = a.get("edge_rate")
        met = None if a_p99 is None or b_p99 is None else (b_p99 <= a_p99 and b_clean)
        add(
            f"engine {shape}: p99 at Kamailio's edge ({_f(at)} msg/s)",
            "<= Kamailio's",
            f"{_f(b_p99, 1)} ms vs {_f(a_p99, 1)} ms"
            + ("" if b_clean else " (sidecar not clean there)"),
            met,
        )
        cpu = _engine_cpu(b.get("edge_step"), "sidecar")
        add(
            f"engine {shape}: sidecar CPU per delivery",
            "<= 30 µs",
            f"{cpu} µs (at its edge)",
            None if cpu is None else cpu <= 30.0,
            "" if cpu is None or cpu <= 30 else f"missed by {cpu - 30:.1f} µs",
        )
    deployment = report["comparisons"].get("deployment", {})
    for shape, pair in deployment.items():
        ratio = pair["ratios"].get("edge_deliveries_per_s")
        add(
            f"deployment {shape}: clean open-loop rate",
            ">= 1.0 x Kamailio",
            f"{_f(ratio, 2)} x ({_f(pair['B']['edge_deliveries_per_s'])} vs "
            f"{_f(pair['A']['edge_deliveries_per_s'])} deliveries/s)",
            None if ratio is None else ratio >= 1.0,
            "" if ratio is None or ratio >= 1.0 else f"missed by {(1 - ratio) * 100:.0f} %",
        )
    history = report["comparisons"].get("history", {})
    for shape, pair in history.items():
        ratio = pair["ratios"].get("edge_deliveries_per_s")
        met = None if ratio is None else ratio >= HISTORY_GOAL
        add(
            f"history on, {shape}: clean open-loop rate",
            f">= {HISTORY_GOAL:.2f} x history off",
            f"{_f(ratio, 2)} x ({_f(pair['B']['edge_deliveries_per_s'])} vs "
            f"{_f(pair['A']['edge_deliveries_per_s'])} deliveries/s)",
            met,
            ""
            if ratio is None or met
            else f"missed by {(HISTORY_GOAL - ratio) * 100:.0f} points: history costs "
            f"{(1 - ratio) * 100:.0f} % of the edge, {(1 - HISTORY_GOAL) * 100:.0f} % allowed",
        )
    lost = 0
    arms = 0
    for cname, comp in report["comparisons"].items():
        for pair in comp.values():
            # every sidecar arm: B, and A too in the history and dispatcher comparisons
            for key in ("A", "B") if cname in ("history", "dispatcher") else ("B",):
                lost += _acked_lost(pair[key])
                arms += 1
    if arms:
        add(
            "no acknowledged message lost (sidecar, any rate)",
            "0",
            f"{lost} (lower bound over every open-loop step)",
            lost == 0,
        )
    scale = report.get("scale")
    if scale and scale.get("points"):
        big = max(scale["points"], key=lambda p: p["rooms"])
        add(
            f"start-up with {_f(big['rooms'])} rooms x 10 members",
            "<= 5 s",
            f"{big['startup_s']:.1f} s",
            big["startup_s"] <= 5.0 if big["rooms"] >= 100_000 else None,
            "fewer rooms than the target's 100,000"
            if big["rooms"] < 100_000
            else ""
            if big["startup_s"] <= 5.0
            else f"missed by {big['startup_s'] - 5:.1f} s, {big['startup_s'] / 5:.1f} x the goal",
        )
        if scale.get("list_rooms_s"):
            best = min(scale["list_rooms_s"])
            add(
                f"imc.list_rooms over {_f(scale['list_rooms_rooms'])} rooms (HTTP)",
                "<= 1 s",
                f"{best:.2f} s (best of {len(scale['list_rooms_s'])})",
                best <= 1.0 if scale["list_rooms_rooms"] >= 100_000 else None,
            )
        slope = scale.get("slope_mib_per_million")
        if slope is not None:
            add(
                "RSS per million members",
                "<= 1024 MiB",
                f"{slope:,.0f} MiB (slope)",
                slope <= 1024 if big["members"] >= 100_000 else None,
            )
    return rows


# --------------------------------------------------------------------------- Markdown


def _f(value: Any, digits: int = 0) -> str:
    if value is None:
        return "—"
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}"
    return str(value)


def _cpu_cell(step: dict[str, Any] | None, system: str) -> str:
    if not step:
        return "—"
    cpu = step["cpu_us_per_delivery"]
    if system == "kamailio":
        return _f(cpu.get("kamailio"), 1)
    if "front" in cpu:
        return f"{_f(cpu['front'], 1)} + {_f(cpu.get('sidecar'), 1)}"
    return _f(cpu.get("sidecar"), 1)


def _rss_cell(step: dict[str, Any] | None, system: str) -> str:
    """PSS of all the system's processes (peak RSS of its largest process)."""
    if not step:
        return "—"
    rss, pss = step["peak_rss_mib"], step.get("pss_mib", {})
    groups = ("kamailio",) if system == "kamailio" else ("front", "sidecar")
    cells = [f"{_f(pss.get(g), 0)} ({_f(rss.get(g), 0)})" for g in groups if g in rss]
    return " + ".join(cells) if cells else "—"


def _comparison_table(comp: dict[str, Any]) -> list[str]:
    lines = [
        "| shape | arm | clean edge, msg/s | deliveries/s at edge | p50 / p99 ms at edge "
        "| p99 ms at A's edge | closed loop, deliveries/s (p50 / p99 ms) "
        "| CPU µs per delivery | receivers' busiest process | memory MiB: PSS (peak RSS) "
        "| steps (restarts) |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for shape, pair in comp.items():
        for key in ("A", "B"):
            arm = pair[key]
            edge = arm.get("edge_step")
            first = arm.get("first_step") if key == "B" else edge
            mark = "" if not first or first["clean"] else " ✗"
            n_disturbed = len(arm.get("disturbed", []))
            repeated = f"; {n_disturbed} disturbed, repeated" if n_disturbed else ""
            closed = arm.get("closed")
            if arm["system"] == "kamailio":
                name = "A Kamailio imc"
            elif arm["steps"] and "front" in arm["steps"][0]["cpu_us_per_delivery"]:
                name = f"{key} front + sidecar"
            else:
                name = f"{key} sidecar"
            if arm.get("setting"):
                name += f", {arm['setting']}"
            if arm.get("error"):
                name += f" (error: {arm['error'][:80]})"
            lines.append(
                f"| {shape} | {name} | {_f(arm.get('edge_rate'))} "
                f"| {_f(arm.get('edge_deliveries_per_s'))} "
                f"| {_f(edge and edge['p50_ms'], 2)} / {_f(edge and edge['p99_ms'], 2)} "
                f"| {_f(first and first['p99_ms'], 2)}{mark} "
                f"| {_f(closed and closed['deliveries_per_s'])} "
                f"({_f(closed and closed['p50_ms'], 2)} / {_f(closed and closed['p99_ms'], 2)}) "
                f"| {_cpu_cell(edge, arm['system'])} "
                f"| {_f(edge and edge['cpu_utilisation'].get('receivers'), 2)} "
                f"| {_rss_cell(edge, arm['system'])} "
                f"| {len(arm['steps'])} ({arm['restarts']}){repeated} |"
            )
        r = pair["ratios"]
        lines.append(
            f"| {shape} | **B / A** | | **{_f(r['edge_deliveries_per_s'], 2)}** | "
            f"| {_f(r['p99_at_a_edge'], 2)} | {_f(r['closed_loop_deliveries_per_s'], 2)} "
            f"| {_f(r['cpu_us_per_delivery_at_edge'], 2)} | | | |"
        )
    return lines


def _history_rows_cell(pair: dict[str, Any], key: str) -> str:
    rows = (pair.get("history_rows") or {}).get(key)
    if rows is None:
        return "—"
    accepted = pair[key].get("accepted")
    of = f" of {_f(accepted)}" if accepted else ""
    return f"{_f(rows.get('imc_sidecar_messages'))}{of}"


def history_table(report: dict[str, Any]) -> list[str]:
    """The history comparison: the sidecar with history off (A) against on (B)."""
    comp = report["comparisons"].get("history") or {}
    if not comp:
        return []
    lines = [
        "| shape | clean edge, deliveries/s: history off → on | on/off "
        "| p99 ms at history off's edge: off / on "
        "| CPU µs per delivery at the edge: off / on "
        "| closed loop (window 10), deliveries/s: off / on "
        "| message rows written of texts answered 200: off / on |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for shape, pair in comp.items():
        a, b, r = pair["A"], pair["B"], pair["ratios"]
        a_edge, b_edge, b_first = a.get("edge_step"), b.get("edge_step"), b.get("first_step")
        mark = "" if not b_first or b_first["clean"] else " ✗"
        lines.append(
            f"| {shape} "
            f"| {_f(a.get('edge_deliveries_per_s'))} → {_f(b.get('edge_deliveries_per_s'))} "
            f"| **{_f(r['edge_deliveries_per_s'], 2)}** "
            f"| {_f(a_edge and a_edge['p99_ms'], 1)} / {_f(b_first and b_first['p99_ms'], 1)}"
            f"{mark} "
            f"| {_cpu_cell(a_edge, 'sidecar')} / {_cpu_cell(b_edge, 'sidecar')} "
            f"| {_f(a['closed'] and a['closed']['deliveries_per_s'])} / "
            f"{_f(b['closed'] and b['closed']['deliveries_per_s'])} "
            f"| {_history_rows_cell(pair, 'A')} / {_history_rows_cell(pair, 'B')} |"
        )
    return lines


def history_setting(report: dict[str, Any]) -> str:
    """How the sidecar arms of engine and deployment ran, for the setup lines."""
    h = report["settings"].get("sidecar_history")
    if not h:
        return ""
    state = "on" if h["history"] else "off"
    default = ", the default" if h["history"] == h.get("default_history") else ""
    return (
        f"usage history {state} (`{h['flag']}`{default}; rows flushed every "
        f"{h['flush_interval_s']:g} s)"
    )


def summary_table(report: dict[str, Any]) -> list[str]:
    """Kamailio (A) against the sidecar (B), per comparison and shape (not history)."""
    lines = [
        "| comparison | shape | clean edge, deliveries/s: Kamailio → sidecar | B/A "
        "| p99 ms at Kamailio's edge: Kamailio / sidecar "
        "| CPU µs per delivery at the edge: Kamailio / sidecar "
        "| closed loop (window 10), deliveries/s: Kamailio / sidecar |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    for cname, comp in report["comparisons"].items():
        if cname not in KAMAILIO_COMPARISONS:
            continue
        for shape, pair in comp.items():
            a, b, r = pair["A"], pair["B"], pair["ratios"]
            a_edge, b_edge, b_first = a.get("edge_step"), b.get("edge_step"), b.get("first_step")
            mark = "" if not b_first or b_first["clean"] else " ✗"
            b_cpu = _cpu_cell(b_edge, "sidecar")
            lines.append(
                f"| {cname} | {shape} "
                f"| {_f(a.get('edge_deliveries_per_s'))} → {_f(b.get('edge_deliveries_per_s'))} "
                f"| **{_f(r['edge_deliveries_per_s'], 2)}** "
                f"| {_f(a_edge and a_edge['p99_ms'], 1)} / {_f(b_first and b_first['p99_ms'], 1)}"
                f"{mark} "
                f"| {_cpu_cell(a_edge, 'kamailio')} / {b_cpu} "
                f"| {_f(a['closed'] and a['closed']['deliveries_per_s'])} / "
                f"{_f(b['closed'] and b['closed']['deliveries_per_s'])} |"
            )
    return lines


def _steps_table(report: dict[str, Any]) -> list[str]:
    lines = [
        "| comparison | shape | arm | rate msg/s | deliveries/s | p50 / p99 ms "
        "| other processes, cores | clean | why not |",
        "|---|---|---|--:|--:|--:|--:|---|---|",
    ]
    for cname, comp in report["comparisons"].items():
        for shape, pair in comp.items():
            for key in ("A", "B"):
                for st in pair[key]["steps"]:
                    why = "; ".join(st["reasons"])[:160]
                    lines.append(
                        f"| {cname} | {shape} | {key} | {_f(st['rate'])} "
                        f"| {_f(st['deliveries_per_s'])} "
                        f"| {_f(st['p50_ms'], 2)} / {_f(st['p99_ms'], 2)} "
                        f"| {_f(st.get('other_processes_cores'), 2)} "
                        f"| {'yes' if st['clean'] else 'no'} | {why} |"
                    )
    return lines


def machine_table(m: dict[str, Any]) -> list[str]:
    """The machine a run measured, from :func:`machine_facts`."""
    return [
        "| machine | |",
        "|---|---|",
        f"| CPU | {m['cpu_model']}, {m['cores']} cores ({m['cpu_mhz']} MHz) |",
        f"| memory | {m['memory_gib']} GiB |",
        f"| OS, kernel | {m['os']}, Linux {m['kernel']} |",
        f"| Python | {m['python']} (uvloop: {m['uvloop'] or 'not installed'}) |",
        f"| Kamailio | {m['kamailio']} |",
        f"| sipp | {m['sipp']} |",
        f"| sidecar | {m['sidecar']} |",
        f"| UDP buffers | net.core.rmem_max {m['net.core.rmem_max']}, "
        f"wmem_max {m['net.core.wmem_max']} |",
    ]


def render_markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    s = report["settings"]
    kamailio_arms = set(report["comparisons"]) & set(KAMAILIO_COMPARISONS)
    hist = history_setting(report) if kamailio_arms else ""
    out = [
        f"# imc_sidecar benchmark ({report['mode']}), {report['started']}",
        "",
        f"Command: `{report['command']}` (run from the repository root; took "
        f"{report.get('duration_s', 0) / 60:.1f} min).",
        "",
        *machine_table(m),
        "",
        f"Setup: Kamailio with {s['kamailio_children']} UDP workers, `-m {s['kamailio_shm_mb']}` "
        "MB shared memory, 4 MB UDP receive buffers (`maxbuffer`), errors-only "
        f"logging; sidecar: `--delivery-workers {s.get('sidecar_delivery_workers', 0)}`"
        + (f", {hist} in the engine and deployment comparisons" if hist else "")
        + "; "
        f"members: {s.get('member_sockets', '?')} UDP sockets "
        f"(`{s.get('member_net', '127.1.R.M')}:5060`, "
        f"one per member) served by {s['receiver_processes']} {s.get('receivers', '')} "
        "receiver processes that answer 200 at once; senders: one sipp per step. "
        f"Open-loop steps of {s['duration']} s, closed loop {s['closed_duration']} s with "
        f"{s['window']} messages outstanding. All systems run on the same cores as the "
        "load generator.",
        "",
    ]
    if set(report["comparisons"]) & set(KAMAILIO_COMPARISONS):
        out += [
            "## Summary",
            "",
            *summary_table(report),
            "",
            "(✗: the sidecar was not clean at Kamailio's edge rate; deployment CPU for the "
            "sidecar arm is front Kamailio + sidecar.)",
            "",
        ]
    if report["comparisons"].get("history"):
        refine = s.get("history_refinements")
        out += [
            "## Usage history: the sidecar with history off (A) and on (B)",
            "",
            *history_table(report),
            "",
            "Both arms are the engine comparison's sidecar (members addressed directly, "
            f"`--delivery-workers {s.get('sidecar_delivery_workers', 0)}`), A with "
            "`--history 0`, B with `--history 1` (rows written in batches to "
            "imc_sidecar_events / imc_sidecar_messages of the same SQLite file), under the "
            "same load; B's first step runs at A's edge rate (✗: not clean there). "
            + (
                f"The edge search bisects {refine} times (the others twice), so the highest "
                "clean and the lowest failing rate end about 5 % apart. "
                if refine
                else ""
            )
            + "*message rows written*: rows in imc_sidecar_messages after the arm's whole "
            "run, of the texts sipp saw answered 200 over it (warm-ups, repeated steps and "
            "closed loop included). Target: history on keeps at least "
            f"{HISTORY_GOAL:.2f} × history off's clean edge.",
            "",
        ]
    gen = report.get("generator")
    if gen:
        edge = gen.get("edge_step")
        recv_us = edge["cpu_us_per_delivery"].get("receivers") if edge else None
        procs = s["receiver_processes"]
        ceiling = round(1e6 / recv_us * procs) if recv_us else None
        out += [
            "## The load generator alone",
            "",
            "sipp sending MESSAGEs straight to the member sockets (no engine), "
            f"{gen['shape']} members round-robin:",
            "",
            "| clean edge, deliveries/s | receivers µs per delivery | receivers' busiest process "
            "(share of a core) | sipp µs per message | receivers' own ceiling |",
            "|--:|--:|--:|--:|--:|",
            f"| {_f(gen.get('edge_deliveries_per_s'))} | {_f(recv_us, 1)} "
            f"| {_f(edge and edge['cpu_utilisation'].get('receivers'), 2)} "
            f"| {_f(edge and edge['cpu_us_per_delivery'].get('sipp'), 1)} "
            f"| ~{_f(ceiling)} deliveries/s |",
            "",
            "The receivers' own ceiling is 10⁶ / (their µs per delivery) × "
            f"{procs} processes, i.e. what they could answer with a core each.",
            "",
        ]
    names = {
        "engine": "Engine comparison (members addressed directly, no registrar)",
        "deployment": "Deployment comparison (members REGISTER; A: imc + registrar in one "
        "Kamailio; B: kamailio-snippets/sidecar-front.cfg in front of the sidecar)",
        "history": "History comparison (the engine comparison's sidecar; A: `--history 0`, "
        "B: `--history 1`)",
    }
    for cname, comp in report["comparisons"].items():
        if cname == "dispatcher":
            out += dispatcher_markdown(report)
            continue
        out += [f"## {names.get(cname, cname)}", "", *_comparison_table(comp), ""]
        for shape, pair in comp.items():
            for key in ("A", "B"):
                for cmd in pair[key].get("commands", []):
                    out.append(f"- {cname} {shape} {key}: `{cmd}`")
        out.append("")
    if report["comparisons"]:
        out += [
            "Columns: *clean edge* = the highest offered rate (room messages/s, each fanned "
            "out to every member but the sender) at which every run had no failed or "
            "retransmitted send, no lost, duplicated, retransmitted or misdirected delivery "
            "and the generator kept the rate; found by stepping ×1.5, bisecting twice and "
            "repeating the best rate. *p50 / p99* = from sipp's send time (in the body) to "
            "the arrival at the *last* member. *p99 at A's edge*: arm B's first step runs at "
            "A's edge rate (✗: not clean there). *CPU µs per delivery* = utime+stime of all "
            "the system's processes over the step (/proc/PID/stat) divided by the deliveries "
            "(front + sidecar for deployment B; the sidecar's delivery worker included). "
            "*receivers' busiest process*: CPU share of "
            "the busiest receiver process during the edge step (far below 1.0 = not the "
            "bottleneck). *memory*: PSS summed over the system's processes at the end of the "
            "edge step (shared memory such as Kamailio's shm counted once), and in brackets "
            "the peak RSS (VmHWM, reset before the step) of its largest process.",
            "",
        ]
    scale = report.get("scale")
    if scale:
        out += [
            "## Scale (sidecar, rooms of 10 members in SQLite)",
            "",
            "| rooms | members | start-up s | RSS MiB | peak RSS MiB |",
            "|--:|--:|--:|--:|--:|",
        ]
        for p in scale["points"]:
            out.append(
                f"| {_f(p['rooms'])} | {_f(p['members'])} | {_f(p['startup_s'], 2)} "
                f"| {_f(p['rss_mib'], 1)} | {_f(p['peak_rss_mib'], 1)} |"
            )
        out += [""]
        if scale.get("list_rooms_s"):
            out.append(
                f"`imc.list_rooms` over {_f(scale['list_rooms_rooms'])} rooms, HTTP POST /RPC: "
                f"best {min(scale['list_rooms_s'])} s, median "
                f"{sorted(scale['list_rooms_s'])[len(scale['list_rooms_s']) // 2]} s "
                f"({_f(scale['list_rooms_bytes'])} bytes, {_f(scale['list_rooms_count'])} rooms)."
            )
        if scale.get("slope_mib_per_million") is not None:
            out.append(
                f"RSS per million members: {scale['slope_mib_per_million']} MiB, the slope of a "
                "least-squares line of RSS over members through the points above (intercept "
                f"{scale['intercept_mib']} MiB: interpreter, libraries, buffers)."
            )
        if scale.get("kamailio"):
            out += [
                "",
                "For reference, Kamailio 5.6 imc on db_text (bench/kamailio/engine.cfg.tmpl) with "
                "the same rooms: imc queries each room's members separately and db_text scans the "
                "whole members table for every query, so its start-up grows with rooms × members.",
                "",
                "| rooms | members | Kamailio start-up s | Kamailio PSS MiB |",
                "|--:|--:|--:|--:|",
            ]
            for p in scale["kamailio"]:
                out.append(
                    f"| {_f(p['rooms'])} | {_f(p['members'])} | {_f(p['startup_s'], 2)} "
                    f"| {_f(p['pss_mib'], 1)} |"
                )
        if scale.get("error"):
            out.append(f"Error: {scale['error']}")
        out.append("")
        for cmd in scale.get("commands", []):
            out.append(f"- `{cmd}`")
        out.append("")
    if report.get("targets"):
        out += ["## Targets", "", "| target | goal | measured | met |", "|---|---|---|---|"]
        for t in report["targets"]:
            met = "—" if t["met"] is None else ("yes" if t["met"] else "**no**")
            note = f" ({t['note']})" if t["note"] else ""
            out.append(f"| {t['target']} | {t['goal']} | {t['measured']} | {met}{note} |")
        out.append("")
    if report["comparisons"]:
        out += ["## Every step", "", *_steps_table(report), ""]
    return "\n".join(out) + "\n"
