"""Put the figures of a benchmark run into README.md (between the bench markers).

    python -m bench.readme [bench/results/latest.json]

Only the block between ``<!-- bench:begin -->`` and ``<!-- bench:end -->`` is rewritten:
the machine, the command, the summary table, the history table (history off against on),
the scale figures and the targets, all from the one run in the JSON file.  The prose
around it is written by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .report import HISTORY_GOAL, _f, history_setting, history_table, summary_table, targets

REPO = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def block(report: dict[str, Any]) -> str:
    m = report["machine"]
    s = report["settings"]
    hist = history_setting(report) if set(report["comparisons"]) - {"history"} else ""
    out = [
        f"Run of {report['started']} ({report.get('duration_s', 0) / 60:.0f} min): "
        f"`{report['command']}` on {m['cpu_model']}, {m['cores']} cores, "
        f"{m['memory_gib']} GiB, Linux {m['kernel']} ({m['os']}), Python {m['python']}, "
        f"{m['kamailio'].replace('version: ', '')}, {m['sipp']}, {m['sidecar']}. "
        f"Kamailio: {s['kamailio_children']} UDP workers, `-m {s['kamailio_shm_mb']}`, 4 MB "
        f"receive buffers; sidecar: `--delivery-workers {s.get('sidecar_delivery_workers', 0)}`"
        + (f", {hist} in the engine and deployment comparisons" if hist else "")
        + "; "
        f"members: {s.get('member_sockets', '?')} UDP sockets served by "
        f"{s['receiver_processes']} {s.get('receivers', 'receiver')} processes; open-loop "
        f"steps of {s['duration']:.0f} s. Everything, load generator included, on the same "
        "2 cores.",
        "",
    ]
    if set(report["comparisons"]) - {"history"}:
        out += [*summary_table(report), ""]
    if report["comparisons"].get("history"):
        out += [
            "Usage history, the engine comparison's sidecar with `--history 0` against "
            "`--history 1` in the same run (target: history on keeps at least "
            f"{HISTORY_GOAL:.2f} × the clean edge of history off):",
            "",
            *history_table(report),
            "",
        ]
    gen = report.get("generator")
    if gen and gen.get("edge_step"):
        edge = gen["edge_step"]
        recv = edge["cpu_us_per_delivery"].get("receivers")
        busiest = max(
            (
                arm["edge_step"]["cpu_utilisation"].get("receivers", 0.0)
                for comp in report["comparisons"].values()
                for pair in comp.values()
                for arm in (pair["A"], pair["B"])
                if arm.get("edge_step")
            ),
            default=0.0,
        )
        out += [
            f"The load generator alone (sipp straight to the member sockets) is clean up to "
            f"{_f(gen['edge_deliveries_per_s'])} messages/s, where sipp is the limit; the "
            f"receivers spend {_f(recv, 1)} µs per delivery (a ceiling of about "
            f"{_f(round(1e6 / recv * s['receiver_processes'], -3) if recv else None)} "
            "deliveries/s "
            f"with a core each); at the edges above their busiest process used at most "
            f"{busiest:.2f} of a core.",
            "",
        ]
    scale = report.get("scale")
    if scale and scale.get("points"):
        big = max(scale["points"], key=lambda p: p["rooms"])
        line = (
            f"Scale (sidecar, SQLite): {_f(big['rooms'])} rooms × 10 members start in "
            f"{big['startup_s']:.1f} s with {_f(big['rss_mib'])} MiB RSS; "
        )
        if scale.get("list_rooms_s"):
            line += (
                f"`imc.list_rooms` over {_f(scale['list_rooms_rooms'])} rooms takes "
                f"{min(scale['list_rooms_s']):.2f} s over HTTP "
                f"({scale['list_rooms_bytes'] / 1e6:.1f} MB of JSON); "
            )
        if scale.get("slope_mib_per_million") is not None:
            line += (
                f"RSS grows by {_f(scale['slope_mib_per_million'])} MiB per million members "
                f"(least-squares slope over {len(scale['points'])} sizes from 0 to "
                f"{_f(big['rooms'])} rooms, {_f(scale['intercept_mib'])} MiB at zero)."
            )
        kam = scale.get("kamailio") or []
        if kam:
            pts = " and ".join(f"{p['startup_s']:.1f} s with {_f(p['rooms'])} rooms" for p in kam)
            top = max(kam, key=lambda p: p["rooms"])
            guess = top["startup_s"] * (100_000 / top["rooms"]) ** 2 / 60
            line += (
                f" For reference, Kamailio imc on db_text starts in {pts}: it reads each "
                "room's members with a scan of the whole table, so its start-up grows with "
                f"rooms × members (quadratically extrapolated: about {guess:,.0f} min for "
                "100,000 rooms, not measured)."
            )
        out += [line, ""]
    rows = targets(report)
    if rows:
        out += ["| target | goal | measured | met |", "|---|---|---|---|"]
        for t in rows:
            met = "—" if t["met"] is None else ("yes" if t["met"] else "**no**")
            note = f" ({t['note']})" if t["note"] else ""
            out.append(f"| {t['target']} | {t['goal']} | {t['measured']} | {met}{note} |")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    source = Path(argv[0]) if argv else REPO / "bench" / "results" / "latest.json"
    report = json.loads(source.read_text())
    readme = REPO / "README.md"
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        print(f"README.md has no {BEGIN} ... {END} block", file=sys.stderr)
        return 1
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{block(report)}\n{END}{tail}")
    print(f"README.md: figures of {source} ({report['started']})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
