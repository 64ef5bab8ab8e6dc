"""Smoke test of the benchmark tool: ``bench/run --quick`` runs and reports both arms
of every comparison (engine, deployment, and history: the sidecar with history off / on),
and ``--comparisons dispatcher`` one sidecar against two behind dispatcher.cfg.

It starts Kamailio 5.6 imc, the sidecar, the front Kamailio, sipp and the member
endpoints (UDP sockets on 127.N.R.M:5060) exactly as the full benchmark does, at one low
rate for a few seconds.  Nothing about speed is asserted: only that the tool worked, that
every arm delivered cleanly at that rate, and that the Markdown and JSON are well formed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(150)
def test_quick_bench_reports_both_arms(tmp_path: Path) -> None:
    out = tmp_path / "results"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--out",
            str(out),
            "--workdir",
            str(tmp_path / "work"),
            # members on 127.N.R.M:5060 apart from a benchmark running meanwhile (N = 1)
            "--member-net",
            str(100 + os.getpid() % 150),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=140,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((out / "quick.json").read_text())
    markdown = (out / "quick.md").read_text()

    assert report["mode"] == "quick"
    for key in ("cpu_model", "cores", "kernel", "python", "kamailio", "sipp"):
        assert report["machine"][key], key
    assert "5.6" in report["machine"]["kamailio"]

    assert set(report["comparisons"]) == {"engine", "deployment", "history"}
    for name, comparison in report["comparisons"].items():
        assert list(comparison) == ["10x10"], name
        pair = comparison["10x10"]
        assert set(pair["ratios"]) >= {"edge_deliveries_per_s", "closed_loop_deliveries_per_s"}
        for arm in ("A", "B"):
            result = pair[arm]
            where = f"{name} {arm}"
            assert result["error"] is None, (where, result["error"])
            assert result["commands"], where
            (step,) = result["steps"]
            assert step["kind"] == "open" and step["rate"] > 0, where
            # one low rate: everything is delivered exactly once
            assert step["clean"], (where, step["reasons"])
            assert step["delivered"] == step["expected"] > 0, where
            assert step["p50_ms"] is not None and step["p99_ms"] >= step["p50_ms"], where
            assert result["edge_deliveries_per_s"] > 0, where
            assert result["closed"]["delivered"] > 0, where
            system = ("kamailio",) if arm == "A" and name != "history" else ("sidecar",)
            for group in (*system, "receivers", "sipp"):
                assert group in step["cpu_us_per_delivery"], (where, group)
        assert pair["B"]["system"] == "sidecar"
        assert pair["A"]["system"] == ("sidecar" if name == "history" else "kamailio")
        # every sidecar runs with an explicit --history; only history A has it off
        assert pair["B"]["setting"] == "history on", name
        assert all("--history 1" in c for c in pair["B"]["commands"] if "imc_sidecar" in c)
        messages = pair["history_rows"]["B"]["imc_sidecar_messages"]
        assert messages > 0, name  # history on really recorded the texts
    history = report["comparisons"]["history"]["10x10"]
    assert history["A"]["setting"] == "history off"
    assert any("--history 0" in c for c in history["A"]["commands"])
    assert history["history_rows"]["A"]["imc_sidecar_messages"] == 0
    assert report["settings"]["sidecar_history"]["history"] is True
    assert (
        "front"
        in report["comparisons"]["deployment"]["10x10"]["B"]["steps"][0]["cpu_us_per_delivery"]
    )
    assert report["generator"]["edge_deliveries_per_s"] > 0
    assert report["scale"]["points"] and report["scale"]["list_rooms_s"]
    assert report["targets"]

    # the Markdown: machine table, both comparisons with both arms and their ratio
    assert "| CPU |" in markdown and "| Kamailio |" in markdown
    assert "## Engine comparison" in markdown and "## Deployment comparison" in markdown
    assert "## History comparison" in markdown and "## Usage history" in markdown
    for label in (
        "A Kamailio imc",
        "B sidecar, history on",
        "B front + sidecar, history on",
        "A sidecar, history off",
        "**B / A**",
    ):
        assert label in markdown, label
    header = next(line for line in markdown.splitlines() if line.startswith("| shape | arm |"))
    columns = header.count("|")
    rows = [line for line in markdown.splitlines() if line.startswith("| 10x10 | ")]
    arm_rows = [row for row in rows if row.count("|") == columns]
    assert len(arm_rows) == 9, rows  # 3 comparisons x (A, B, B / A)
    history_row = [row for row in rows if row not in arm_rows]
    assert len(history_row) == 1 and history_row[0].count("|") == 8, history_row
    assert any(t["target"] == "history on, 10x10: clean open-loop rate" for t in report["targets"])
    assert "bench/run --quick" in markdown


@pytest.mark.timeout(60)
def test_short_soak_samples_memory_and_loses_nothing(tmp_path: Path) -> None:
    """``bench/run --soak`` for a few seconds at a given edge (no edge search): samples
    with the sidecar's RSS (main process and delivery worker) and statistics, nothing
    lost or refused at a low rate, and the report files."""
    out = tmp_path / "results"
    run = subprocess.run(
        [
            sys.executable, "-m", "bench", "--soak", "--soak-edge", "2000",
            "--soak-duration", "4", "--soak-interval", "2",
            "--out", str(out), "--workdir", str(tmp_path / "work"),
            "--member-net", str(100 + os.getpid() % 150),
        ],
        cwd=REPO, capture_output=True, text=True, timeout=55, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((out / "soak.json").read_text())
    soak = report["soak"]
    assert report["mode"] == "soak" and soak["error"] is None, soak["error"]
    assert soak["edge_deliveries_per_s"] == 2000 and not soak["edge_measured"]
    assert soak["rate"] == round(2000 / 2 / 9, 1)  # half the edge, 10x10: 9 per message
    baseline, *samples = soak["samples"]
    assert baseline["segment"] is None and len(samples) >= 2
    for sample in soak["samples"]:
        # the main process and its one delivery worker, each with memory of its own
        assert sample["processes"] == 2 and all(v > 10 for v in sample["rss_per_process_mib"])
        assert "imc.refused_messages" in sample["stats"]
    assert samples[-1]["stats"]["imc.chat_messages"] > baseline["stats"]["imc.chat_messages"]
    summary = soak["summary"]
    assert summary["sent"] > 0 and summary["delivered"] == summary["expected"] > 0
    assert summary["lost"] == summary["acked_incomplete"] == summary["refused_503"] == 0
    assert not any(summary["sidecar_counters"].values()), summary["sidecar_counters"]
    markdown = (out / "soak.md").read_text()
    assert "| no delivery lost (of texts answered 200) | 0 texts" in markdown
    assert "## Samples" in markdown
    assert "bench/run --soak" in markdown


@pytest.mark.timeout(60)
def test_quick_dispatcher_bench_one_sidecar_against_two(tmp_path: Path) -> None:
    """``bench/run --quick --comparisons dispatcher``: one sidecar, then two, behind
    kamailio-snippets/dispatcher.cfg on a scratch PostgreSQL database each; the rooms
    spread over both, every arm clean at a low rate, the commands measured, and the
    scratch databases dropped afterwards."""
    out = tmp_path / "results"
    run = subprocess.run(
        [
            sys.executable, "-m", "bench", "--quick", "--comparisons", "dispatcher",
            "--no-scale", "--no-generator",
            "--out", str(out), "--workdir", str(tmp_path / "work"),
            "--member-net", str(100 + os.getpid() % 150),
        ],
        cwd=REPO, capture_output=True, text=True, timeout=55, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((out / "quick.json").read_text())
    assert set(report["comparisons"]) == {"dispatcher"}
    (shape, pair), *_ = report["comparisons"]["dispatcher"].items()
    assert shape == "100x5"
    databases = set()
    for arm, sidecars in (("A", 1), ("B", 2)):
        result = pair[arm]
        assert result["error"] is None, (arm, result["error"])
        (step,) = result["steps"]
        assert step["clean"], (arm, step["reasons"])
        assert step["delivered"] == step["expected"] > 0, arm
        groups = {"front", "sidecar", "database"} | ({"sidecar-2"} if sidecars == 2 else set())
        assert groups <= set(step["cpu_us_per_delivery"]), (arm, step["cpu_us_per_delivery"])
        assert "sidecar-3" not in step["cpu_us_per_delivery"]
        front, *sidecar_lines = result["commands"]
        assert "dispatcher.cfg" in front and len(sidecar_lines) == sidecars, arm
        databases |= {
            word.rsplit("/", 1)[1] for line in sidecar_lines for word in line.split()
            if word.startswith("postgres://")
        }  # fmt: skip
        # the hash put rooms on every sidecar, and each one recorded usage history
        texts = [s["imc.chat_messages"] for s in pair["sidecar_stats"][arm]]
        assert len(texts) == sidecars and all(n > 0 for n in texts), (arm, texts)
        assert pair["history_rows"][arm]["imc_sidecar_messages"] > 0, arm
    assert len(databases) == 2  # one scratch database per arm
    assert pair["ratios"]["edge_deliveries_per_s"] is not None

    commands = report["dispatcher_commands"]
    assert set(commands) == {"1", "2"}
    for count, arm in commands.items():
        assert arm["error"] is None, (count, arm["error"])
        (step,) = arm["steps"]
        assert step["clean"], (count, step["reasons"])
        assert step["commands"] > 0 and step["notices"] == step["expected_notices"], count
        assert step["cpu_us_per_command"]["sidecar"] > 0, count
        assert {"front", "database"} <= set(step["net_cpu_us_per_command"]), count
        assert set(arm["idle_cores"]) >= {"front", "sidecar", "database"}, count
        databases |= {
            word.rsplit("/", 1)[1] for line in arm["commands"] for word in line.split()
            if word.startswith("postgres://")
        }  # fmt: skip
    left = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-At", "-c",
         "SELECT datname FROM pg_database"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert len(databases) == 4 and not databases & set(left), databases & set(left)

    markdown = (out / "quick.md").read_text()
    assert "## One sidecar against two behind kamailio-snippets/dispatcher.cfg" in markdown
    assert "### Commands: `#join` and `#leave`" in markdown
    assert "| 100x5 | **B / A** |" in markdown
    assert "## Summary" not in markdown  # that table is Kamailio against the sidecar
